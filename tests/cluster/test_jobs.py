"""What `s3jedi submit` sends: entrypoints, storage wiring, durable outputs, runtime environments."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from ray.runtime_env import RuntimeEnv
from typer.testing import CliRunner

from cluster.cli import app
from cluster.jobs import KINDS, JobSpecError, build_request, config_reference
from cluster.runtime_env import constraint_pins, pinned_requirements, runtime_env
from core.config import ConfigError, config_hash, load_config
from core.logs import library_env
from tests.conftest import REPO


def test_each_kind_runs_the_module_a_local_run_uses():
    expected = {
        "datagen": ["-m", "datagen", "--config", "tiny", "--out", "/data/s3"],
        "train": ["-m", "training", "jedi", "--config", "tiny"],
        "precompute-latents": ["-m", "training", "precompute-latents", "--config", "tiny", "--out", "/data/s3"],
        "finetune": ["-m", "training", "finetune", "--config", "tiny"],
        "eval": ["-m", "cluster.cli", "eval", "--config", "tiny", "--out", "/data/s3"],
        "selfdistill": ["-m", "training", "selfdistill", "--config", "tiny"],
        "multiconcept": ["-m", "training", "multiconcept", "--config", "tiny"],
        "toyworld-train": ["-m", "training", "toyworld", "train", "--config", "tiny"],
        "toyworld-eval": ["-m", "cluster.cli", "toyworld", "eval", "--config", "tiny", "--out", "/data/s3"],
    }
    storage = ["cluster.storage.checkpoints=/data/runs", "toyworld.train.ship=null"]
    assert set(KINDS) == set(expected)
    for kind in KINDS:
        out = "/data/s3" if KINDS[kind].out_root else None
        request = build_request(kind, "tiny", storage, out=out)
        argv = shlex.split(request.entrypoint)
        assert argv[0] == "python" and argv[1 : 1 + len(expected[kind])] == expected[kind], kind


def test_every_app_module_is_runnable_with_python_dash_m():
    for module in sorted({kind.module for kind in KINDS.values()}):
        done = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"python -m {module} --help: {done.stderr[-2000:]}"


def test_every_job_writes_to_the_clusters_storage_roots():
    roots = ["cluster.storage.checkpoints=/mnt/runs", "cluster.storage.subjects=/mnt/subjects"]
    roots += ["cluster.storage.evaluations=/mnt/evals"]
    selfdistill = build_request("selfdistill", "tiny", roots).config
    assert (selfdistill.finetune.run.storage_path, selfdistill.finetune.store) == ("/mnt/runs", "/mnt/subjects")
    multiconcept = build_request("multiconcept", "tiny", roots).config
    assert multiconcept.multiconcept.run.storage_path == "/mnt/runs"
    toy = build_request("toyworld-train", "tiny", [*roots, "toyworld.train.ship=null"])
    assert toy.config.toyworld.train.out == "/mnt/runs/toyworld"
    assert build_request("toyworld-eval", "tiny", roots).out == "/mnt/evals/tiny-toyworld"
    assert build_request("eval", "tiny", roots).out == "/mnt/evals/tiny"
    with pytest.raises(JobSpecError, match="toyworld.train.ship: 'assets/toyworld' is relative"):
        build_request("toyworld-train", "tiny", roots)


def test_storage_roots_become_overrides_before_the_users_own():
    request = build_request(
        "finetune",
        "tiny",
        ["cluster.storage.checkpoints=/mnt/runs", "cluster.storage.subjects=s3://bucket/subjects", "seed=3"],
        job_args=["--subjects", "/mnt/in", "--method", "dreambooth"],
    )
    assert request.overrides[:2] == ("finetune.run.storage_path=/mnt/runs", "finetune.store=s3://bucket/subjects")
    assert request.config.finetune.run.storage_path == "/mnt/runs" and request.config.seed == 3
    assert shlex.split(request.entrypoint)[-4:] == ["--subjects", "/mnt/in", "--method", "dreambooth"]
    user_wins = build_request("train", "tiny", ["cluster.storage.checkpoints=/a", "train.jedi.run.storage_path=/b"])
    assert user_wins.config.train.jedi.run.storage_path == "/b"


def test_metadata_names_the_config_the_job_will_load():
    request = build_request("datagen", "tiny", ["seed=5", "cluster.storage.datasets=s3://bucket/sets"])
    assert request.out == "s3://bucket/sets/tiny"
    replayed = load_config("tiny", list(request.overrides))  # what the job does with its --set options
    assert request.metadata["s3jedi.config_hash"] == config_hash(replayed)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert request.metadata["s3jedi.git_commit"] == commit.strip()
    assert request.metadata["s3jedi.git_dirty"] in ("true", "false")
    assert request.submission_id.startswith("s3jedi-datagen-")


@pytest.mark.parametrize(
    ("kind", "overrides", "out", "message"),
    [
        ("datagen", [], "outputs/s3", "--out: 'outputs/s3' is relative"),
        ("datagen", [], None, "--out: required (or set cluster.storage.datasets)"),
        ("train", [], None, "train.jedi.run.storage_path: 'runs' is relative"),
        ("finetune", ["cluster.storage.checkpoints=/r", "finetune.store=subjects"], None, "finetune.store: 'subjects'"),
        ("train", ["cluster.storage.checkpoints=/r"], "/x", "--out: train takes no --out"),
    ],
)
def test_outputs_that_would_vanish_with_the_job_are_refused(kind, overrides, out, message):
    with pytest.raises(JobSpecError) as err:
        build_request(kind, "tiny", overrides, out=out)
    assert str(err.value).startswith(message)


def test_a_config_typo_fails_on_the_submitting_machine():
    with pytest.raises(ConfigError, match="datagen.shard_sise: unknown field"):
        build_request("datagen", "tiny", ["datagen.shard_sise=2"], out="/data/s3")


def test_config_files_are_named_by_their_path_inside_the_shipped_repo(tmp_path):
    assert config_reference("tiny", "preinstalled") == "tiny"
    assert config_reference(str(REPO / "configs" / "sd14.yaml"), "pip") == "configs/sd14.yaml"
    outside = tmp_path / "mine.yaml"
    outside.write_text("profile: mine\n")
    with pytest.raises(JobSpecError, match="outside the repository"):
        config_reference(str(outside), "preinstalled")
    with pytest.raises(JobSpecError, match="cluster.packages=image"):
        config_reference("configs/sd14.yaml", "image")


def test_preinstalled_ships_the_repo_without_local_state():
    cfg = load_config("tiny", ["cluster.storage.models=/mnt/home", "cluster.storage.hf_home=/mnt/hf"])
    env = runtime_env(cfg)
    assert env["working_dir"] == str(REPO) and "pip" not in env
    assert {".git", ".venv", ".cache", "outputs", "runs", "benchmarks/results"} <= set(env["excludes"])
    configured = {"S3JEDI_LOG_FORMAT": "json", "S3JEDI_HOME": "/mnt/home", "HF_HOME": "/mnt/hf"}
    assert env["env_vars"] == {**library_env(), **configured}
    assert env["worker_process_setup_hook"] == "core.logs.quiet_ray_worker"


def test_a_verbose_submission_keeps_every_library_line(monkeypatch):
    monkeypatch.setenv("S3JEDI_VERBOSE", "1")
    env = runtime_env(load_config("tiny", ["cluster.env_vars={TQDM_DISABLE: '0'}"]))
    assert env["env_vars"] == {"S3JEDI_VERBOSE": "1", "TQDM_DISABLE": "0"}


def test_pip_pins_every_requirement_to_the_lock_and_leaves_ray_to_the_cluster():
    pins = constraint_pins(REPO / "constraints.txt")
    cfg = load_config("tiny", ["cluster.packages=pip", "cluster.extras=[mlflow]"])
    packages = runtime_env(cfg)["pip"]["packages"]
    assert f"torch=={pins['torch']}" in packages and f"diffusers=={pins['diffusers']}" in packages
    assert not any(p.lower().startswith("ray") for p in packages)
    assert any(p.startswith("mlflow") for p in packages)
    locked = [p for p in packages if "==" in p]
    assert len(locked) >= len(packages) - 1, f"unpinned: {[p for p in packages if '==' not in p]}"
    with pytest.raises(ValueError, match=r"cluster.extras: unknown extra\(s\) \['cuda'\]"):
        pinned_requirements(["cuda"])


def test_image_runs_the_image_code_only():
    cfg = load_config("tiny", ["cluster.packages=image", "cluster.image=registry.example/s3jedi:1"])
    env = runtime_env(cfg)
    assert env["image_uri"] == "registry.example/s3jedi:1" and "working_dir" not in env
    RuntimeEnv(**env)
    with pytest.raises(ValueError, match="image_uri"):
        RuntimeEnv(**env, working_dir=str(REPO))  # why the code cannot travel with an image


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("cluster.storage.datasets=data/s3", "cluster.storage.datasets: Value error, must be an absolute path"),
        ("cluster.storage.models=s3://bucket/home", "cluster.storage.models: Value error, must be an absolute local"),
        ("cluster.env_vars={HF_TOKEN: x}", "cluster.env_vars: Value error, HF_TOKEN looks like a credential"),
        ("cluster.packages=conda", "cluster.packages: Input should be 'preinstalled', 'pip' or 'image'"),
        ("cluster.kubernetes.name=S3Jedi", "cluster.kubernetes.name: String should match pattern"),
        ("cluster.kubernetes.cpu_workers.min_replicas=5", "min_replicas (5) must be <= max_replicas (2)"),
        ("cluster.kubernetes.cpu_workers.gpus=1", "cpu_workers.gpus: must be 0"),
    ],
)
def test_cluster_config_errors_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert message in str(err.value)


def test_bad_address_is_refused_before_anything_is_sent(tmp_path):
    result = CliRunner().invoke(
        app,
        ["submit", "datagen", "--address", "auto", "--out", str(tmp_path)],
        env={"RAY_AUTH_TOKEN": "x" * 64},
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: --address: expected the dashboard URL of the head")


def test_an_installed_package_cannot_ship_itself_as_the_jobs_code(tmp_path):
    cfg = load_config("tiny")
    with pytest.raises(ValueError, match="runs from an installed package here"):
        runtime_env(cfg, repo=tmp_path)
    assert runtime_env(load_config("tiny", ["cluster.packages=image"]), repo=tmp_path)["image_uri"]
