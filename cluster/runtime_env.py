"""The Ray runtime environment of a submitted job: where its code and its packages come from.

A job's entrypoint runs with the head node's ``python``, so the runtime environment has to say which
packages that interpreter sees (``cluster.packages``):

- ``preinstalled``: the cluster's Python already has our dependencies (the image built from our
  Dockerfile, or the venv that ran ``ray start``); only the code travels, as ``working_dir``.
- ``pip``: Ray installs the project's requirements per job, pinned to ``constraints.txt``, on top of
  the cluster's Ray (Ray itself is never reinstalled: job and cluster must run the same Ray).
- ``image``: Ray runs the job in ``cluster.image`` (podman on the nodes). Ray does not combine
  ``image_uri`` with ``working_dir``, so the code is the image's own, not the local checkout.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from core.config import S3JediConfig
from core.logs import RAY_WORKER_SETUP_HOOK, library_env
from core.paths import REPO_ROOT

CLUSTER_PROVIDED = {"ray"}


def constraint_pins(path: Path) -> dict[str, str]:
    """``name -> version`` from a pip constraints file (``name==version`` lines)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def pinned_requirements(extras: list[str], repo: Path = REPO_ROOT) -> list[str]:
    """The project's requirements (plus ``extras``) at the versions ``constraints.txt`` pins."""
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"cluster.extras: unknown extra(s) {unknown}; pyproject.toml has {sorted(optional)}")
    pins = constraint_pins(repo / "constraints.txt")
    wanted = list(project["dependencies"]) + [r for extra in extras for r in optional[extra]]
    out = []
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name in CLUSTER_PROVIDED:
            continue
        if name in pins:
            extras_part = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            marker = f"; {req.marker}" if req.marker else ""
            out.append(f"{req.name}{extras_part}=={pins[name]}{marker}")
        else:
            out.append(str(req))
    return out


def job_env_vars(cfg: S3JediConfig, models: str | None, hf_home: str | None) -> dict[str, str]:
    """Environment of a job's driver and workers (and of Kubernetes pods): the configured variables
    plus the homes of the model store and the Hugging Face cache, when the cluster provides them."""
    env = dict(cfg.cluster.env_vars)
    if models:
        env["S3JEDI_HOME"] = models
    if hf_home:
        env["HF_HOME"] = hf_home
    return env


def runtime_env(cfg: S3JediConfig, repo: Path = REPO_ROOT) -> dict:
    """The ``runtime_env`` for ``JobSubmissionClient.submit_job``; validated with Ray's own ``RuntimeEnv``."""
    from ray.runtime_env import RuntimeEnv

    c = cfg.cluster
    # The quiet terminal of a local run (core.logs) for the job's driver and workers; the configured
    # variables win. Ray takes no setup hook beside image_uri, so an image job's workers get the
    # environment only (Ray's own INFO lines stay).
    env: dict = {"env_vars": {**library_env(), **job_env_vars(cfg, c.storage.models, c.storage.hf_home)}}
    if c.packages == "image":
        env["image_uri"] = c.image
    elif not (repo / "pyproject.toml").is_file():
        raise ValueError(
            f"cluster.packages={c.packages}: the job's code is the checkout it is submitted from, and s3jedi "
            f"runs from an installed package here ({repo}); submit from a checkout, or use cluster.packages=image"
        )
    else:
        env["worker_process_setup_hook"] = RAY_WORKER_SETUP_HOOK
        env["working_dir"] = str(repo)
        env["excludes"] = list(c.excludes)
        if c.packages == "pip":
            env["pip"] = {"packages": pinned_requirements(c.extras, repo), "pip_check": False}
    RuntimeEnv(**env)  # raises on combinations Ray would refuse on the cluster
    return env
