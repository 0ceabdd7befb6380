"""The recipe end to end on a shrunk config (a few steps per stage), then a 2-trial experiment on its output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core import zoo
from core.config import load_config
from core.config.toyworld import ToyWorldSection
from training.jedi.recipe import EXPORT_META
from training.toyworld.recipe import BASE_RUN, CONTINUED_RUN, JEDI_RUN


def test_recipe_trains_every_stage_and_ships_standard_pipelines(smoke_recipe, smoke_config):
    tw = smoke_config.toyworld
    work, ship = Path(tw.train.out), Path(tw.train.ship)
    assert [smoke_recipe[s]["metrics"]["step"] for s in ("base", "jedi", "jedi_continued")] == [2, 2, 2]
    # The base pipeline is a plain diffusers SD directory: the zoo's `sd` loader opens it and it draws.
    sd = zoo.load("sd", str(work / "base-pipeline"))
    assert sd.vae.config.scaling_factor != 1.0 and len(sd.vae.config.block_out_channels) == 2
    image = sd("a thing on the sea", num_inference_steps=2, height=16, width=16, output_type="np").images[0]
    assert image.shape == (16, 16, 3)
    base, jedi = zoo.load("jedi", str(ship / "base")), zoo.load("jedi", str(ship / "jedi"))
    assert base.spec.max_set_size == jedi.spec.max_set_size == tw.train.max_set_size
    assert not (ship / "jedi" / EXPORT_META).exists() and (ship / "s3jedi-config.yaml").is_file()
    # The JeDi stage started from the base stage's export and moved away from it.
    moved = max(float((a - b).abs().max()) for a, b in zip(base.unet.parameters(), jedi.unet.parameters(), strict=True))
    assert moved > 0
    assert json.loads((work / "runs" / JEDI_RUN / "export" / EXPORT_META).read_text())["step"] == 2
    assert (work / "runs" / BASE_RUN / "export" / "unet" / "config.json").is_file()
    # What ships as the JeDi model is the continued stage's export.
    continued = zoo.load("jedi", str(work / "runs" / CONTINUED_RUN / "export"))
    for a, b in zip(continued.unet.parameters(), jedi.unet.parameters(), strict=True):
        np.testing.assert_allclose(a.detach().half().float().numpy(), b.detach().numpy())


def test_rerun_skips_finished_stages(smoke_recipe, smoke_config):
    from training.toyworld.recipe import run_recipe

    again = run_recipe(smoke_config)
    assert again["base"] == {"run": BASE_RUN, "skipped": True}
    assert again["jedi"] == {"run": JEDI_RUN, "skipped": True}
    assert again["jedi_continued"] == {"run": CONTINUED_RUN, "skipped": True}
    assert again["data"]["shards_written"] == 0


def test_two_trial_experiment_writes_the_report(smoke_recipe, smoke_config):
    from evaluation.toyworld.experiment import run_experiment
    from evaluation.toyworld.report import write_report

    result = run_experiment(smoke_config)
    assert len(result.trials) == 2
    keys = [r.condition.key for r in result.rows]
    assert keys == [
        "floor",
        "jedi-k1",
        "jedi-k2",
        "jedi-k2-paper-l1",  # paper at λ = 2 is the default row jedi-k2: not drawn twice
        "jedi-k2-decomposed-l1",
        "jedi-k2-decomposed-l2",
        "jedi-k2-separate",
        "jedi-k2-joint",
        "jedi-k2-uncoupled",
    ]
    for row in result.rows:
        assert row.metrics["identity"]["n"] == 2 and 0 <= row.metrics["scene"]["mean"] <= 1
        assert row.metrics["identity"]["mean"] <= row.metrics["identity_always"]["mean"]
        assert len(result.images[row.condition.key]) == 2 * row.condition.images
    assert result.row("jedi-k2-joint").condition.images == 2 and result.split == "eval"
    compared = {(c["a"], c["b"]) for c in result.comparisons}
    assert {("jedi-k2", "jedi-k1"), ("jedi-k2-joint", "jedi-k2-separate"), ("jedi-k2-paper-l1", "jedi-k2")} <= compared
    for c in result.comparisons:  # paired: the mean difference is the difference of the row means
        a, b = result.row(c["a"]).metrics[c["metric"]], result.row(c["b"]).metrics[c["metric"]]
        assert c["estimate"]["mean"] == pytest.approx(a["mean"] - b["mean"])
    assert result.row("jedi-k2-uncoupled").metrics["loss_gap"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert "loss_gap" in result.row("jedi-k1").metrics and "loss_gap" not in result.row("floor").metrics
    assert all(im.shape == (16, 16, 3) and im.dtype == np.uint8 for ims in result.images.values() for im in ims)
    report = write_report(smoke_config, result, Path(smoke_config.toyworld.eval.out))
    text = report.read_text()
    assert "| base model, no references (floor) |" in text and "loss gap" in text
    out = report.parent
    assert (out / "report.html").is_file() and len(list((out / "grids").glob("*.png"))) == 2
    assert json.loads((out / "results.json").read_text())["trials"] == 2


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unet_widths"):
        ToyWorldSection.model_validate({"model": {"unet_widths": [48]}})
    with pytest.raises(ValueError, match="min_set_size"):
        load_config("tiny", ["toyworld.train.min_set_size=4", "toyworld.train.max_set_size=3"])
