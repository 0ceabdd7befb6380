"""The tiny end-to-end benchmark run (2 subjects × 2 prompts × 2 samples) in the test run's Ray:
per-image Parquet, summaries, grids, and an HTML report that renders in headless Chromium."""

from __future__ import annotations

import json
import shutil

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
    expected = [f"jedi/{s}/p0{p}/{seed}" for s in ("dog", "cat") for p in (0, 1) for seed in (0, 1)]
    assert sorted(frame["id"]) == sorted(expected)
    assert frame["id"].is_unique and set(frame["method"]) == {"jedi"}
    for metric in SCORES:
        assert frame[metric].between(-1, 1).all(), metric
    assert frame["mask_found"].all(), "box threshold 0 always finds the subject"
    assert (frame["inputs"] == "00.jpg,01.jpg,02.jpg").all() and (frame["generation_s"] > 0).all()
    dog = frame[frame["subject"] == "dog"].sort_values("id").iloc[0]
    assert (dog["prompt"], dog["eval_prompt"]) == ("a dog in the jungle", "a dog in the jungle")
    for path in frame["image"]:
        assert Image.open(out / path).size == (64, 64)
    meta = json.loads(pq.read_schema(out / "scores.parquet").metadata[METADATA_KEY])
    assert meta["generators"]["jedi"]["references"] == 3 and meta["scorers"]["clip"]["library"] == "open_clip"


def test_the_summary_has_each_subject_and_all_with_intervals(jedi_run):
    out = jedi_run.out_dir
    summary = json.loads((out / "summary.json").read_text())
    (protocol,) = summary["protocols"]
    assert protocol["name"] == "dreambooth" and protocol["metrics"] == ["clip_t", "clip_i", "mclip_i", "dino", "mdino"]
    assert [(r["method"], r["subject"], r["images"]) for r in protocol["rows"]] == [
        ("jedi", "cat", 4),
        ("jedi", "dog", 4),
        ("jedi", "all", 8),
    ]
    frame = pd.read_parquet(out / "scores.parquet")
    overall = protocol["rows"][-1]["metrics"]
    for metric in SCORES:
        est = overall[metric]
        assert est["mean"] == pytest.approx(frame[metric].mean()) and est["n"] == 8
        assert est["lo"] <= est["mean"] <= est["hi"]
    assert summary["costs"]["jedi"]["finetune_s"] == 0.0 and summary["costs"]["jedi"]["s_per_image"] > 0
    table = pd.read_csv(out / "summary.csv")
    assert list(table["subject"]) == ["cat", "dog", "all"] and {"clip_t", "clip_t_lo", "clip_t_hi"} <= set(
        table.columns
    )


def test_grids_show_the_photos_and_every_sample(jedi_run):
    grid = Image.open(jedi_run.out_dir / "grids" / "dog.jpg")
    side = 128  # evaluation.report.thumbnail; 5 dog photos are the widest row, plus 2 label columns
    assert grid.size == ((2 + 5) * side, (1 + 1) * side + side // 2)  # photos, captions, one row per method
    assert np.asarray(grid.convert("L"))[side + side // 2 :, 2 * side : 6 * side].std() > 0, "generated images"


def test_the_html_report_renders_in_headless_chromium(jedi_run):
    shown = render(jedi_run.report)
    assert shown["errors"] == []
    assert shown["title"] == "s3jedi evaluation: jedi"
    assert sorted(i["src"] for i in shown["images"]) == ["grids/cat.jpg", "grids/dog.jpg"]
    assert all(i["w"] > 0 for i in shown["images"]), "every grid image must load (relative paths)"
    for text in ("CLIP-T ↑", "MCLIP-I", "MDINO", "95% CI", "Per subject", "JeDi (reference)", "0.9011", "s / image"):
        assert text in shown["text"], text
    assert len(shown["screenshot"]) > 10_000
    assert "Tiny random models" in shown["text"] and "Published, not measured here" in shown["text"]


def test_rerunning_a_finished_run_scores_nothing_and_keeps_the_scores(jedi_run):
    before = pd.read_parquet(jedi_run.out_dir / "scores.parquet")
    again = run_evaluation(tiny_config(), jedi_run.out_dir)
    assert again.scored_now == 0 and again.planned == 8
    pd.testing.assert_frame_equal(before, pd.read_parquet(jedi_run.out_dir / "scores.parquet"))


def test_a_run_directory_refuses_other_generation_settings(jedi_run):
    with pytest.raises(ValueError, match=r"generators\.jedi\.steps \(2 -> 3\)"):
        run_evaluation(tiny_config("evaluation.generation.steps=3"), jedi_run.out_dir)


def test_a_method_added_to_a_run_draws_only_its_images_and_compares_paired(jedi_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(jedi_run.out_dir, out)
    both = run_evaluation(tiny_config("evaluation.methods=[jedi, base]", "evaluation.selection.subjects=[dog]"), out)
    assert both.planned == 8 and both.scored_now == 4, "only the base model's dog images are new"
    frame = pd.read_parquet(out / "scores.parquet")
    base = frame[frame["method"] == "base"]
    assert len(base) == 4 and (base["inputs"] == "").all()
    result = CliRunner().invoke(app, ["eval", "compare", str(out), "--json"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)
    assert report["paired"] and report["common_cases"] == 4 and report["b"].endswith(":base")
    jedi = frame[frame["method"] == "jedi"].set_index("case")
    expected = (base.set_index("case")["clip_i"] - jedi.loc[base["case"], "clip_i"]).mean()
    by_metric = {d["metric"]: d for d in report["differences"]}
    assert by_metric["clip_i"]["diff"]["mean"] == pytest.approx(expected)
    table = CliRunner().invoke(
        app, ["eval", "compare", f"{jedi_run.out_dir}:jedi", f"{out}:base"], env={"COLUMNS": "200"}
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


@pytest.mark.slow
def test_every_protocol_in_one_run(zoo_home, ray_local, tmp_path):
    protocols = "evaluation.protocols=[dreambooth, simple, core, selfdistill]"
    cfg = tiny_config(protocols, "evaluation.selection.subjects=[dog]", "evaluation.selection.prompts=1")
    result = run_evaluation(cfg, tmp_path / "all")
    assert result.planned == 4, "p00 and the simple prompt, 2 seeds each: the protocols share images"
    frame = pd.read_parquet(result.out_dir / "scores.parquet")
    assert frame["negclip_t"].between(-1, 1).all() and frame["conflict_rate"].astype(float).isin([0.0, 1.0]).all()
    by_name = {p["name"]: p for p in result.summary["protocols"]}
    assert list(by_name) == ["dreambooth", "simple", "core", "selfdistill"]
    counts = {n: next(r["images"] for r in p["rows"] if r["subject"] == "all") for n, p in by_name.items()}
    assert counts == {"dreambooth": 2, "simple": 2, "core": 2, "selfdistill": 2}
    selfdistill = next(r for r in by_name["selfdistill"]["rows"] if r["subject"] == "all")["metrics"]
    assert set(selfdistill) >= {"mclip_i", "negclip_t", "conflict_rate"}
    page = render(result.report)
    assert page["errors"] == [] and "CLIP-MI ↑" in page["text"] and "conflict rate ↓" in page["text"]
    assert "Protocol simple" in page["text"] and "Published, not measured here: Stable Diffusion 1.5" in page["text"]
