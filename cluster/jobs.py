"""What a submitted job is: the same module a local run uses, where it writes, and its provenance.

A job kind names the entry point (``python -m datagen``, ``python -m training jedi``, ...) so that a
job on a cluster runs exactly the code of ``s3jedi datagen`` on a laptop. The cluster profile's storage
roots (``cluster.storage``) become ``--out`` defaults or ``--set`` overrides placed *before* the user's
own ``--set`` (which therefore win), and every place a job writes to must be an absolute path or a URI:
a submitted job runs in a temporary copy of the repo, so a relative path would write into that copy and
vanish with it, and a rerun could not resume.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cluster.runtime_env import runtime_env
from core import storage
from core.config import S3JediConfig, config_hash, load_config
from core.config.loader import PROFILES_DIR, profile_path
from core.paths import REPO_ROOT


@dataclass(frozen=True)
class JobKind:
    name: str
    module: str
    command: tuple[str, ...]
    out_root: str | None  # the cluster.storage field under which `--out` defaults to <root>/<profile>
    help: str
    out_name: str | None = None  # `--out` defaults to <root>/<profile>-<out_name> (beside another kind's)


KINDS = {
    k.name: k
    for k in (
        JobKind("datagen", "datagen", (), "datasets", "Build (or resume) an S3 dataset: python -m datagen."),
        JobKind("train", "training", ("jedi",), None, "Train JeDi (resumes by run name): python -m training jedi."),
        JobKind(
            "precompute-latents",
            "training",
            ("precompute-latents",),
            "datasets",
            "Encode training sources with the VAE once: python -m training precompute-latents.",
        ),
        JobKind(
            "finetune",
            "training",
            ("finetune",),
            None,
            "Fine-tune subjects: python -m training finetune (pass --subjects/--method after --).",
        ),
        JobKind(
            "eval",
            "cluster.cli",
            ("eval",),
            "evaluations",
            "Compare methods on the DreamBooth benchmark (fine-tunes them): python -m cluster.cli eval.",
        ),
        JobKind(
            "selfdistill",
            "training",
            ("selfdistill",),
            None,
            "Self-distil subjects: python -m training selfdistill (pass --subjects after --).",
        ),
        JobKind(
            "multiconcept",
            "training",
            ("multiconcept",),
            None,
            "Learn a scene's concepts: python -m training multiconcept (pass --scene after --).",
        ),
        JobKind(
            "toyworld-train",
            "training",
            ("toyworld", "train"),
            None,
            "Train ToyWorld's JeDi recipe (data, base, JeDi; resumes): python -m training toyworld train.",
        ),
        JobKind(
            "toyworld-eval",
            "cluster.cli",
            ("toyworld", "eval"),
            "evaluations",
            "Run the ToyWorld experiment (JeDi, ablations, fine-tuning rows): python -m cluster.cli toyworld eval.",
            out_name="toyworld",
        ),
    )
}


class JobSpecError(ValueError):
    """A job that must not be submitted as asked; ``str()`` is one line naming the option or field."""


@dataclass(frozen=True)
class JobRequest:
    kind: str
    entrypoint: str
    config: S3JediConfig
    overrides: tuple[str, ...]
    out: str | None
    runtime_env: dict
    metadata: dict[str, str]
    submission_id: str


def storage_overrides(kind: JobKind, cfg: S3JediConfig) -> list[str]:
    """``--set`` assignments that point a job's run storage at the cluster's storage roots."""
    s = cfg.cluster.storage
    out = []
    if kind.name == "train" and s.checkpoints:
        out.append(f"train.jedi.run.storage_path={s.checkpoints}")
    if kind.name in ("finetune", "selfdistill", "multiconcept"):
        if s.checkpoints:
            section = "multiconcept" if kind.name == "multiconcept" else "finetune"
            out.append(f"{section}.run.storage_path={s.checkpoints}")
        if s.subjects:
            out.append(f"finetune.store={s.subjects}")
    if kind.name == "toyworld-train" and s.checkpoints:
        out.append(f"toyworld.train.out={storage.join(s.checkpoints, 'toyworld')}")
    return out


def written_paths(kind: JobKind, cfg: S3JediConfig, out: str | None) -> dict[str, str]:
    """Every place the job writes to that must survive it, by the option or field that sets it."""
    paths = {"--out": out} if out is not None else {}
    if kind.name == "train":
        paths["train.jedi.run.storage_path"] = cfg.train.jedi.run.storage_path
    if kind.name in ("finetune", "selfdistill"):
        paths["finetune.run.storage_path"] = cfg.finetune.run.storage_path
    if kind.name == "multiconcept":
        paths["multiconcept.run.storage_path"] = cfg.multiconcept.run.storage_path
    if kind.name in ("finetune", "selfdistill", "multiconcept") and cfg.finetune.store is not None:
        paths["finetune.store"] = cfg.finetune.store
    if kind.name == "toyworld-train":
        paths["toyworld.train.out"] = cfg.toyworld.train.out
        if cfg.toyworld.train.ship is not None:
            paths["toyworld.train.ship"] = cfg.toyworld.train.ship
    return paths


def check_durable(paths: dict[str, str]) -> None:
    for where, path in paths.items():
        if not (storage.is_uri(path) or PurePosixPath(path).is_absolute()):
            raise JobSpecError(
                f"{where}: {path!r} is relative, so the job would write into its temporary copy of the repo; "
                "use an absolute path on storage the cluster shares or a URI (or set cluster.storage.*)"
            )


def config_reference(config: str, packages: str, repo: Path = REPO_ROOT) -> str:
    """How the job names its profile: a built-in name as is, a YAML file by its path inside the repo
    (the job's working directory is the shipped repo). A file outside the repo would not be shipped."""
    path = profile_path(config)  # raises ConfigError for a missing file
    if path.parent.resolve() == PROFILES_DIR.resolve() and config == path.stem:
        return config
    if packages == "image":
        raise JobSpecError(
            f"--config {config}: with cluster.packages=image the job runs the image's code and configs; "
            "use a built-in profile name and --set"
        )
    try:
        return str(path.resolve().relative_to(repo.resolve()))
    except ValueError:
        raise JobSpecError(
            f"--config {config}: the file is outside the repository, so it would not be shipped with the job; "
            "put it under configs/"
        ) from None


def git_provenance(repo: Path = REPO_ROOT) -> dict[str, str]:
    """Commit of the code being shipped, and whether the tree has uncommitted changes to tracked files."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "s3jedi.git_commit": commit or "unknown",
        "s3jedi.git_dirty": "unknown" if status is None else str(bool(status)).lower(),
    }


def new_submission_id(kind: str) -> str:
    return f"s3jedi-{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def entrypoint(
    kind: JobKind,
    cfg: S3JediConfig,
    config_ref: str,
    out: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    job_args: list[str] | None = None,
) -> str:
    """The shell command a local run would type, with the cluster's interpreter."""
    argv = [cfg.cluster.python, "-m", kind.module, *kind.command, "--config", config_ref]
    if out is not None:
        argv += ["--out", out]
    for assignment in overrides:
        argv += ["--set", assignment]
    return shlex.join(argv + list(job_args or []))


def job_metadata(kind: JobKind, cfg: S3JediConfig, out: str | None) -> dict[str, str]:
    """What a job records about itself on the cluster (``ray job list``, ``s3jedi submit status``)."""
    return {
        "s3jedi.job": kind.name,
        "s3jedi.profile": cfg.profile,
        "s3jedi.config_hash": config_hash(cfg),
        "s3jedi.out": out or "",
        **git_provenance(),
    }


def build_request(
    kind_name: str,
    config: str,
    user_overrides: list[str] | None,
    out: str | None = None,
    job_args: list[str] | None = None,
    submission_id: str | None = None,
) -> JobRequest:
    """Resolve the config here, on the submitting machine (a typo fails now, not on the cluster), and
    assemble the entrypoint, its provenance and the checks on where it writes."""
    kind = KINDS[kind_name]
    user = list(user_overrides or [])
    overrides = storage_overrides(kind, load_config(config, user)) + user
    cfg = load_config(config, overrides)
    if out is None and kind.out_root is not None:
        root = getattr(cfg.cluster.storage, kind.out_root)
        if root is None:
            raise JobSpecError(f"--out: required (or set cluster.storage.{kind.out_root})")
        out = storage.join(root, f"{cfg.profile}-{kind.out_name}" if kind.out_name else cfg.profile)
    if out is not None and kind.out_root is None:
        raise JobSpecError(f"--out: {kind.name} takes no --out; its storage is set in the config (cluster.storage.*)")
    check_durable(written_paths(kind, cfg, out))
    config_ref = config_reference(config, cfg.cluster.packages)
    return JobRequest(
        kind=kind.name,
        entrypoint=entrypoint(kind, cfg, config_ref, out, overrides, job_args),
        config=cfg,
        overrides=tuple(overrides),
        out=out,
        runtime_env=runtime_env(cfg),
        metadata=job_metadata(kind, cfg, out),
        submission_id=submission_id or new_submission_id(kind.name),
    )
