"""Benchmark photos are checked in the driver before any model loads: a bad one is one line naming the
file, or with ``--skip-bad-photos`` left out of the run and recorded in its report."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cluster.cli import app
from evaluation.benchmark import load_benchmark
from evaluation.job import subject_inputs
from tests.evaluation.test_cli import one_line_error

runner = CliRunner()


def _benchmark_with_a_truncated_photo(dreambooth, root):
    """The DreamBooth layout with one subject, ``dog``, whose 02.jpg is cut short."""
    (root / "images" / "dog").mkdir(parents=True)
    for photo in sorted((dreambooth / "images" / "dog").glob("*.jpg")):
        (root / "images" / "dog" / photo.name).write_bytes(photo.read_bytes())
    bad = root / "images" / "dog" / "02.jpg"
    bad.write_bytes(bad.read_bytes()[:3000])
    (root / "subjects.json").write_text(json.dumps([{"subject": "dog", "class": "dog", "live": True}]))
    (root / "prompts.json").write_text((dreambooth / "prompts.json").read_text())
    return root


def _args(benchmark, out, *extra):
    return ["eval", "--benchmark", str(benchmark), "--prompts", "1", "--samples", "1", "--out", str(out), *extra]


def test_a_truncated_photo_stops_the_run_before_anything_starts(dreambooth, tmp_path):
    benchmark = _benchmark_with_a_truncated_photo(dreambooth, tmp_path / "bench")
    error = one_line_error(runner.invoke(app, _args(benchmark, tmp_path / "run")))
    assert f"{benchmark / 'images' / 'dog' / '02.jpg'}: not a readable image" in error
    assert "--skip-bad-photos" in error
    assert not (tmp_path / "run").exists(), "nothing is written for a run that cannot start"


def test_skipping_keeps_the_readable_photos_and_names_the_bad_one(dreambooth, tmp_path):
    benchmark = load_benchmark(_benchmark_with_a_truncated_photo(dreambooth, tmp_path / "bench"))
    inputs, skipped = subject_inputs(benchmark, ["dog"], skip_bad=True)
    assert [name for name, _ in inputs["dog"].photos] == ["00.jpg", "01.jpg", "03.jpg", "04.jpg"]
    assert [(p.file, "truncated" in p.reason) for p in skipped] == [("dog/02.jpg", True)]
    with pytest.raises(ValueError, match="02.jpg: not a readable image"):
        subject_inputs(benchmark, ["dog"], skip_bad=False)


@pytest.mark.slow
def test_skip_bad_photos_leaves_it_out_and_says_so_in_the_report(dreambooth, zoo_home, ray_local, tmp_path):
    benchmark = _benchmark_with_a_truncated_photo(dreambooth, tmp_path / "bench")
    out = tmp_path / "run"
    result = runner.invoke(app, _args(benchmark, out, "--skip-bad-photos"))
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert [p["file"] for p in info["skipped_photos"]] == ["dog/02.jpg"]
    assert "truncated" in info["skipped_photos"][0]["reason"]
    frame = pd.read_parquet(out / "scores.parquet")
    assert len(frame) == 1 and "02.jpg" not in json.dumps(frame.drop(columns=["image"]).to_dict("records"), default=str)
    report = (out / "report.html").read_text()
    assert "skipped photos" in report and "dog/02.jpg" in report
