"""`s3jedi submit` against a real local Ray head with token auth (``ray start --head``), end to end.

One private head per module (about 10–20 s to start); the datagen job is the tiny profile cut to one
subject in one shard with all stages in one actor, so the whole module stays around a minute or two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cluster.cli import app
from core.s3 import iter_sets, read_summary
from tests.cluster.local_head import run_cli
from tests.conftest import REPO

TINY_JOB = (
    "--set",
    "datagen.progress=false",
    "--set",
    "datagen.subjects.num_categories=1",
    "--set",
    "datagen.shard_size=1",
    "--set",
    "datagen.execution=fused",
)


def job_options(head, zoo_home: Path) -> list[str]:
    return [
        "--address",
        head.address,
        "-c",
        "tiny",
        *TINY_JOB,
        "--set",
        f"cluster.storage.models={zoo_home}",  # the job's S3JEDI_HOME: the session's built tiny zoo
        "--set",
        f"cluster.python={sys.executable}",  # the interpreter that has the project installed
    ]


def invoke(head, *args: str, **env: str):
    """The inspection commands in-process (they only talk HTTP); submissions run as real processes."""
    unset = {name: None for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "RAY_API_SERVER_ADDRESS")}
    return CliRunner().invoke(
        app, [*args, "--address", head.address], env={**unset, "RAY_AUTH_TOKEN_PATH": str(head.token_path), **env}
    )


def status_of(head, job_id: str) -> dict:
    done = invoke(head, "submit", "status", job_id)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def datagen_job(ray_head, zoo_home, tmp_path_factory):
    out = tmp_path_factory.mktemp("submitted") / "s3"
    done = run_cli(
        "submit", "datagen", *job_options(ray_head, zoo_home), "--out", str(out), "--follow", env=ray_head.client_env()
    )
    return done, out


def test_datagen_job_runs_to_completion_and_writes_the_dataset(ray_head, datagen_job):
    done, out = datagen_job
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    job_id = done.stdout.splitlines()[0]
    assert job_id.startswith("s3jedi-datagen-")
    assert f"S3 dataset {out}" in done.stdout, "the job's own output is streamed by --follow"
    assert f"job {job_id} succeeded" in done.stderr
    summary = read_summary(str(out))
    assert summary["subjects_requested"] == 1 and summary["shards"] == {"total": 1, "done": 1}
    assert len(list(iter_sets(str(out)))) == summary["sets"]


def test_job_records_its_provenance(ray_head, datagen_job):
    done, out = datagen_job
    info = status_of(ray_head, done.stdout.splitlines()[0])
    assert info["status"] == "SUCCEEDED"
    meta = info["metadata"]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert meta["s3jedi.git_commit"] == commit.strip()
    assert meta["s3jedi.job"] == "datagen" and meta["s3jedi.out"] == str(out)
    saved = (out / "s3jedi-config.yaml").read_text().splitlines()[0]
    assert saved == f"# config hash {meta['s3jedi.config_hash']}", "the hash submitted is the hash the job ran with"
    assert info["entrypoint"].startswith(f"{sys.executable} -m datagen --config tiny --out {out}")


def test_logs_and_list_show_the_job(ray_head, datagen_job):
    job_id = datagen_job[0].stdout.splitlines()[0]
    logs = invoke(ray_head, "submit", "logs", job_id)
    assert logs.exit_code == 0 and "S3 dataset" in logs.stdout
    listed = invoke(ray_head, "submit", "list", COLUMNS="250")
    assert listed.exit_code == 0 and job_id in listed.stdout


def test_a_failing_job_reports_its_error_and_exits_nonzero(ray_head, zoo_home, tmp_path):
    done = run_cli(
        "submit",
        "datagen",
        *job_options(ray_head, zoo_home),
        "--set",
        "models.sdxl=/nonexistent/sdxl",  # valid config, but the model is missing on the cluster
        "--out",
        str(tmp_path / "s3"),
        "--follow",
        env=ray_head.client_env(),
    )
    assert done.returncode == 1, done.stderr
    job_id = done.stdout.splitlines()[0]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: job {job_id} failed: Job entrypoint command failed with exit code 2")
    assert "models.sdxl: no such directory or file: /nonexistent/sdxl" in last
    assert status_of(ray_head, job_id)["status"] == "FAILED"


def test_stop_ends_a_running_job(ray_head, zoo_home, tmp_path):
    options = job_options(ray_head, zoo_home)
    options[options.index("datagen.subjects.num_categories=1")] = "datagen.subjects.num_categories=3"
    done = run_cli("submit", "datagen", *options, "--out", str(tmp_path / "s3"), env=ray_head.client_env())
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    stopped = invoke(ray_head, "submit", "stop", job_id)
    assert stopped.exit_code == 0 and "stop requested" in stopped.stdout, stopped.output
    deadline = time.monotonic() + 60
    while (state := status_of(ray_head, job_id)["status"]) != "STOPPED" and time.monotonic() < deadline:
        time.sleep(1)
    assert state == "STOPPED"
    followed = invoke(ray_head, "submit", "logs", job_id, "--follow")
    assert followed.exit_code == 1 and f"error: job {job_id} stopped" in followed.stderr


def test_a_wrong_token_is_refused_in_one_line(ray_head):
    done = invoke(ray_head, "submit", "list", RAY_AUTH_TOKEN="0" * 64)
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {ray_head.address}: ") and "Invalid" in lines[0]
