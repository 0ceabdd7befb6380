"""The ``s3jedi`` command line as a user runs it: help everywhere, one-line errors, working commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cluster.cli import app
from cluster.demo import STEPS
from tests.conftest import REPO

runner = CliRunner()
DEMO_MAX_LINES = 80


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["zoo"],
        ["config"],
        ["zoo", "build"],
        ["doctor"],
        ["demo"],
        ["datagen"],
        ["train"],
        ["train", "jedi"],
        ["finetune"],
        ["eval"],
        ["serve"],
        ["submit"],
        ["manifests"],
    ],
)
def test_help_everywhere(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_the_command_line_starts_without_the_heavy_libraries():
    """``s3jedi --help`` must not wait for torch: the commands import their libraries when they run."""
    heavy = ("torch", "diffusers", "transformers", "ray", "open_clip")
    code = f"import sys, cluster.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_bad_override_is_one_line_and_exit_code_2():
    result = runner.invoke(app, ["config", "show", "--set", "ray.num_cpus=zero"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error:") and "ray.num_cpus" in lines[0]


def test_config_show_prints_the_resolved_yaml():
    result = runner.invoke(app, ["config", "show", "-c", "sd14", "--set", "seed=5"])
    assert result.exit_code == 0
    assert "seed: 5" in result.output and "CompVis/stable-diffusion-v1-4" in result.output


def test_zoo_build_and_list(tmp_path, monkeypatch):
    monkeypatch.setenv("S3JEDI_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["zoo", "build", "--family", "llm"])
    assert result.exit_code == 0, result.output
    assert "llm" in result.output and "built" in result.output
    again = runner.invoke(app, ["zoo", "build", "--family", "llm"])
    assert "up to date" in again.output
    listing = runner.invoke(app, ["zoo", "list"])
    assert listing.exit_code == 0
    assert "Qwen/Qwen2.5-1.5B-Instruct" in listing.output
    bad = runner.invoke(app, ["zoo", "build", "--family", "nope"])
    assert bad.exit_code == 2 and "unknown model family 'nope'" in bad.output


def test_doctor_reports_versions_and_missing_models(tmp_path, monkeypatch):
    monkeypatch.setenv("S3JEDI_HOME", str(tmp_path / "empty"))
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["versions"]["torch"].startswith("2.14")
    assert "cuda available" in report["accelerators"]
    assert "run `s3jedi zoo build --profile tiny`" in report["models (tiny)"]["sd"]


def test_demo_runs_end_to_end_through_the_console_script(zoo_home, tmp_path):
    env = {**os.environ, "S3JEDI_HOME": str(zoo_home)}
    exe = os.path.join(os.path.dirname(sys.executable), "s3jedi")
    proc = subprocess.run(
        [exe, "demo", "--out", str(tmp_path), "--train-steps", "3"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # A calm terminal: the project's lines and a few of Ray's warnings, no library chatter (it was 451
    # lines, a quarter of them the project's, before the libraries were quieted).
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) <= DEMO_MAX_LINES, "\n".join(lines)
    chatter = [line for line in lines if "it/s]" in line or "PlacementGroupCleaner" in line or " INFO " in line]
    assert not chatter, "\n".join(chatter)
    assert [line.split("s3jedi.demo: ")[1].split(" seconds=")[0] for line in lines if "s3jedi.demo: " in line] == [
        f"demo {i}/8: {name}" for i, name in enumerate(STEPS, 1)
    ]
    # the project's own lines from Ray workers still come through (here a Ray Train worker's)
    assert any("RayTrainWorker" in line and "s3jedi.train: exported run=" in line for line in lines)
    summary = json.loads((tmp_path / "demo-summary.json").read_text())
    assert list(summary["steps"]) == list(STEPS) and len(STEPS) == 8  # every step ran, in order
    assert summary["steps"]["S3 dataset build"]["sets"] >= 1
    toy = summary["steps"]["ToyWorld personalization (shipped checkpoints)"]
    assert toy["novel"] and Path(toy["grid"]).is_file()
    assert summary["steps"]["JeDi training"]["steps"] == 3
    for name in ("personalized.png", "finetuned.png", "s3jedi-config.yaml", "served-0.png", "eval/report.html"):
        assert (tmp_path / name).is_file(), name


def test_demo_with_missing_references_fails_clearly(zoo_home, tmp_path):
    empty = tmp_path / "no-photos"
    empty.mkdir()
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "out"), "--references", str(empty)])
    assert result.exit_code == 2
    assert "--references: no .jpg/.png images" in result.output
