"""``s3jedi eval`` and ``python -m evaluation``: help, one-line errors, and ``compare``'s checks."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from cluster.cli import app
from evaluation.store import RunStore
from tests.conftest import REPO

runner = CliRunner()


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.parametrize("args", [["eval"], ["eval", "compare"]])
def test_help(args):
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Usage" in result.output


def test_python_dash_m_is_the_same_app():
    out = subprocess.run([sys.executable, "-m", "evaluation", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "--refs" in out.stdout and "compare" in out.stdout


def test_bad_input_is_one_line_naming_the_field(tmp_path):
    error = one_line_error(runner.invoke(app, ["eval", "--subjects", "dog,unicorn", "--out", str(tmp_path)]))
    assert "evaluation.selection.subjects: 'unicorn'" in error
    error = one_line_error(runner.invoke(app, ["eval", "--set", "evaluation.generation.resolution=60"]))
    assert "evaluation.generation.resolution" in error and "multiple of 8" in error
    error = one_line_error(runner.invoke(app, ["eval", "--method", "dreambooth"]))
    assert "evaluation.generation.method" in error
    error = one_line_error(runner.invoke(app, ["eval", "--refs", "6", "--subjects", "cat", "--out", str(tmp_path)]))
    assert "evaluation.generation.references: 6 references wanted, subject 'cat' has 5 photos" in error
    error = one_line_error(runner.invoke(app, ["eval", "--refs", "4", "--subjects", "cat", "--out", str(tmp_path)]))
    assert "evaluation.generation.references: 4 references wanted, models.jedi takes at most 3" in error
    assert not (tmp_path / "run.json").exists(), "nothing is written for a run that cannot start"


def test_jedi_guidance_options_are_checked_as_config_fields():
    error = one_line_error(runner.invoke(app, ["eval", "--guidance", "classifier"]))
    assert "evaluation.generation.guidance" in error and "decomposed" in error
    error = one_line_error(runner.invoke(app, ["eval", "--image-guidance", "-1"]))
    assert "evaluation.generation.image_guidance_scale" in error


def fake_run(root, scoring: dict, protocol: str = "prompts"):
    """A finished run directory as ``compare`` reads it (scores + run description)."""
    frame = pd.DataFrame(
        {"id": ["dog/p00/0", "dog/p00/1"], "protocol": protocol, "subject": "dog", "clip_t": [0.2, 0.3]}
    )
    RunStore(root).write_scores(frame, {"fingerprint": {"generator": {}, "scoring": scoring}})
    return root


def test_compare_refuses_runs_scored_differently(tmp_path):
    a = fake_run(tmp_path / "a", {"backbones": {"clip": "ViT-B-32/openai"}})
    b = fake_run(tmp_path / "b", {"backbones": {"clip": "ViT-L-14/openai"}})
    error = one_line_error(runner.invoke(app, ["eval", "compare", str(a), str(b)]))
    assert "scored differently (backbones.clip ('ViT-B-32/openai' -> 'ViT-L-14/openai'))" in error
    error = one_line_error(runner.invoke(app, ["eval", "compare", str(a), str(a), "--protocol", "simple"]))
    assert "has no 'simple' images (it has: prompts)" in error
    error = one_line_error(runner.invoke(app, ["eval", "compare", str(a), str(tmp_path / "nope")]))
    assert "no scores.parquet" in error
