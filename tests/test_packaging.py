"""A built wheel carries what an installed s3jedi needs beyond its packages, and runs from a fresh venv.

The fresh venv reuses this environment's third-party packages (a ``.pth`` line) so that nothing is
downloaded; s3jedi itself is installed from the wheel, non-editable, and run from a directory that is
not the checkout, with no project path on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

SOURCES = ["pyproject.toml", "README.md", "core", "datagen", "training", "serving", "evaluation", "cluster"]
DATA = ["configs", "manifests", "assets"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (a build writes into the tree it builds)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES + DATA:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, src],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("s3jedi-*.whl"))


def test_the_wheel_ships_profiles_manifests_and_checkpoints(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        *(str(p.relative_to(REPO)) for d in DATA for p in (REPO / d).rglob("*") if p.is_file()),
        "datagen/categories.txt",
        "serving/static/demo.js",
    }
    assert not expected - names, sorted(expected - names)
    assert "configs/tiny.yaml" in names and "assets/toyworld/jedi/model_index.json" in names


@pytest.mark.slow
def test_an_installed_wheel_runs_from_anywhere(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "third-party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["S3JEDI_HOME"] = str(tmp_path / "home")

    def s3jedi(*args: str) -> str:
        proc = subprocess.run(
            [venv / "bin" / "s3jedi", *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    where = subprocess.run([python, "-c", "import core; print(core.__file__)"], cwd=work, env=env, capture_output=True)
    assert where.stdout.decode().startswith(site), "s3jedi was not imported from the installed wheel"
    assert "CompVis/stable-diffusion-v1-4" in s3jedi("config", "show", "-c", "sd14")
    s3jedi("toyworld", "demo", "--out", "toy")
    assert (work / "toy").is_dir() and list((work / "toy").glob("toyworld-*.png"))
