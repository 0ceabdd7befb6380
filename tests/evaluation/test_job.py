"""The tiny end-to-end benchmark run (2 subjects × 2 prompts × 2 samples) in the test run's Ray:
per-image Parquet, summaries, grids, and an HTML report that renders in headless Chromium."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from cluster.cli import app
from evaluation.job import run_evaluation
from evaluation.store import METADATA_KEY
from tests.evaluation.conftest import render, tiny_config

SCORES = ["clip_t", "clip_i", "mclip_i", "dino", "mdino", "hard_negative_acc"]


def test_the_run_writes_one_scored_row_and_image_per_case(jedi_run):
    out = jedi_run.out_dir
    assert jedi_run.planned == jedi_run.scored_now == 8
    frame = pd.read_parquet(out / "scores.parquet")
    assert sorted(frame["id"]) == sorted(f"{s}/p0{p}/{seed}" for s in ("dog", "cat") for p in (0, 1) for seed in (0, 1))
    assert frame["id"].is_unique and set(frame["method"]) == {"jedi"}
    for metric in SCORES:
        assert frame[metric].between(-1, 1).all(), metric
    assert frame["mask_found"].all(), "box threshold 0 always finds the subject"
    assert (frame["inputs"] == "00.jpg,01.jpg,02.jpg").all()
    dog = frame[frame["subject"] == "dog"].sort_values("id").iloc[0]
    assert (dog["prompt"], dog["eval_prompt"]) == ("a dog in the jungle", "a dog in the jungle")
    for path in frame["image"]:
        assert Image.open(out / path).size == (64, 64)
    meta = json.loads(pq.read_schema(out / "scores.parquet").metadata[METADATA_KEY])
    assert meta["generator"]["references"] == 3 and meta["scorers"]["clip"]["library"] == "open_clip"


def test_the_summary_has_each_subject_and_all_with_intervals(jedi_run):
    out = jedi_run.out_dir
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["protocol"], r["subject"], r["images"]) for r in summary] == [
        ("prompts", "cat", 4),
        ("prompts", "dog", 4),
        ("prompts", "all", 8),
    ]
    frame = pd.read_parquet(out / "scores.parquet")
    overall = summary[-1]["metrics"]
    for metric in SCORES:
        est = overall[metric]
        assert est["mean"] == pytest.approx(frame[metric].mean()) and est["n"] == 8
        assert est["lo"] <= est["mean"] <= est["hi"]
    table = pd.read_csv(out / "summary.csv")
    assert list(table["subject"]) == ["cat", "dog", "all"] and {"clip_t", "clip_t_lo", "clip_t_hi"} <= set(
        table.columns
    )


def test_grids_show_the_photos_and_every_sample(jedi_run):
    grid = Image.open(jedi_run.out_dir / "grids" / "dog.jpg")
    side = 128  # evaluation.report.thumbnail; 5 dog photos are the widest row, plus 2 label columns
    assert grid.size == ((2 + 5) * side, (1 + 2) * side)
    assert np.asarray(grid.convert("L"))[side:, 2 * side :].std() > 0, "generated thumbnails are pasted"


def test_the_html_report_renders_in_headless_chromium(jedi_run):
    shown = render(jedi_run.report)
    assert shown["errors"] == []
    assert shown["title"] == "s3jedi evaluation: jedi"
    assert shown["tables"] == 7  # run, overall, per subject, metrics, published numbers, generator, backbones
    assert sorted(i["src"] for i in shown["images"]) == ["grids/cat.jpg", "grids/dog.jpg"]
    assert all(i["w"] > 0 for i in shown["images"]), "every grid image must load (relative paths)"
    for text in ("CLIP-T ↑", "MCLIP-I", "MDINO", "95% CI", "Per subject", "JeDi, 3 references", "0.9011"):
        assert text in shown["text"], text
    assert len(shown["screenshot"]) > 10_000
    assert "Tiny random models" in shown["text"] and "conflict rate ↓" in shown["text"]


def test_rerunning_a_finished_run_scores_nothing_and_keeps_the_scores(jedi_run):
    before = pd.read_parquet(jedi_run.out_dir / "scores.parquet")
    again = run_evaluation(tiny_config(), jedi_run.out_dir)
    assert again.scored_now == 0 and again.planned == 8
    pd.testing.assert_frame_equal(before, pd.read_parquet(jedi_run.out_dir / "scores.parquet"))


def test_a_run_directory_refuses_other_generation_settings(jedi_run):
    with pytest.raises(ValueError, match=r"generator\.steps \(2 -> 3\)"):
        run_evaluation(tiny_config("evaluation.generation.steps=3"), jedi_run.out_dir)


def test_compare_jedi_with_the_base_model_floor(jedi_run, tmp_path):
    base_cfg = tiny_config("evaluation.generation.method=base", "evaluation.selection.subjects=[dog]")
    base = run_evaluation(base_cfg, tmp_path / "base")
    frame = pd.read_parquet(base.out_dir / "scores.parquet")
    assert set(frame["method"]) == {"base"} and (frame["inputs"] == "").all() and len(frame) == 4
    result = CliRunner().invoke(app, ["eval", "compare", str(jedi_run.out_dir), str(base.out_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["paired"] and report["common_ids"] == 4
    assert report["warnings"] == ["paired over the 4 ids both runs scored (A has 8, B has 4)"]
    jedi = pd.read_parquet(jedi_run.out_dir / "scores.parquet").set_index("id")
    by_metric = {d["metric"]: d for d in report["differences"]}
    expected = (frame.set_index("id")["clip_i"] - jedi.loc[frame["id"], "clip_i"].to_numpy()).mean()
    assert by_metric["clip_i"]["diff"]["mean"] == pytest.approx(expected)
    table = CliRunner().invoke(
        app, ["eval", "compare", str(jedi_run.out_dir), str(base.out_dir)], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0 and "B − A" in table.output and "CLIP-I" in table.output


@pytest.mark.gpu
def test_the_tiny_run_on_gpus_in_half_precision(zoo_home, ray_local, tmp_path):
    gpu = [
        "evaluation.compute.gpus_per_generator=0.5",
        "evaluation.compute.gpus_per_scorer=0.5",
        "evaluation.generation.dtype=float16",
    ]
    result = run_evaluation(tiny_config(*gpu), tmp_path / "gpu")
    frame = pd.read_parquet(result.out_dir / "scores.parquet")
    assert len(frame) == 8 and frame["clip_i"].between(-1, 1).all() and frame["dino"].between(-1, 1).all()
