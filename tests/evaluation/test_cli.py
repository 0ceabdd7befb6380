"""``s3jedi eval`` and ``python -m evaluation``: help, one-line errors, and ``compare``'s checks."""

from __future__ import annotations

import json
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
    error = one_line_error(runner.invoke(app, ["eval", "--methods", "jedi,magic", "--out", str(tmp_path)]))
    assert "evaluation.methods: 'magic' is not one of jedi, base, dreambooth" in error
    error = one_line_error(runner.invoke(app, ["eval", "--methods", "jedi", "--reference", "base"]))
    assert "reference: 'base' is not one of the methods (jedi)" in error
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


def fake_run(root, scoring: dict, methods=("jedi",)):
    """A finished run directory as ``compare`` reads it (scores + run description)."""
    frame = pd.DataFrame(
        [
            {
                "id": f"{m}/dog/p00/{seed}",
                "case": f"dog/p00/{seed}",
                "method": m,
                "subject": "dog",
                "prompt_id": "p00",
                "template": "a {0} {1}",
                "sample": seed,
                "clip_t": 0.2 + 0.1 * seed + 0.05 * i,
            }
            for i, m in enumerate(methods)
            for seed in (0, 1)
        ]
    )
    info = {
        "fingerprint": {"generators": {}, "scoring": scoring},
        "protocols": ["dreambooth"],
        "selection": {"prompts": 2, "samples": 2},
        "reference": methods[0],
        "out": str(root),
    }
    RunStore(root).write_scores(frame, info)
    return root


def test_compare_refuses_runs_scored_differently(tmp_path):
    a = fake_run(tmp_path / "a", {"backbones": {"clip": "ViT-B-32/openai"}})
    b = fake_run(tmp_path / "b", {"backbones": {"clip": "ViT-L-14/openai"}})
    error = one_line_error(runner.invoke(app, ["eval", "compare", str(a), str(b)]))
    assert "scored differently (backbones.clip ('ViT-B-32/openai' -> 'ViT-L-14/openai'))" in error
    error = one_line_error(runner.invoke(app, ["eval", "compare", str(a), str(a), "--protocol", "simple"]))
    assert "did not evaluate 'simple' (it has: dreambooth)" in error
    error = one_line_error(runner.invoke(app, ["eval", "compare", f"{a}:base", str(a)]))
    assert "the run has no 'base' images (it has: jedi)" in error
    error = one_line_error(runner.invoke(app, ["eval", "compare", str(a), str(tmp_path / "nope")]))
    assert "no scores.parquet" in error


def test_compare_methods_of_one_run_and_across_runs(tmp_path):
    backbones = {"backbones": {"clip": "ViT-B-32/openai"}}
    both = fake_run(tmp_path / "both", backbones, methods=("jedi", "dreambooth"))
    result = runner.invoke(app, ["eval", "compare", str(both), "--json"])
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.output)
    assert (found["a"], found["b"]) == (f"{both}:jedi", f"{both}:dreambooth") and found["paired"]
    assert found["differences"][0]["diff"]["mean"] == pytest.approx(0.05)
    error = one_line_error(runner.invoke(app, ["eval", "compare", str(both), str(both)]))
    assert f"holds 2 methods; name one: {both}:jedi, {both}:dreambooth" in error
    other = fake_run(tmp_path / "other", backbones, methods=("dreambooth",))
    result = runner.invoke(app, ["eval", "compare", f"{both}:dreambooth", str(other)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "B − A" in result.output and "CLIP-T" in result.output
