"""The fine-tuning rows of ``s3jedi toyworld eval``: training data in the world's words, a smoke run of
the command on the smoke recipe's checkpoints (a few steps per method, one subject, one trial)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from core.config import load_config
from core.toyworld.oracle import read
from core.toyworld.world import novel_subjects
from evaluation.toyworld.experiment import run_experiment
from training.toyworld.finetuned import write_subject_data

FEW_STEPS = {
    "toyworld.eval.finetune.core.stage1.steps": 2,
    "toyworld.eval.finetune.core.rescale_start": 1,
    "toyworld.eval.finetune.core.rescale_end": 1,
    "toyworld.eval.finetune.core.stage2.steps": 1,
    "toyworld.eval.finetune.core.tto_steps": 1,
}


def test_training_renders_are_captioned_with_their_scene_and_the_method_template(tmp_path):
    cfg = load_config("tiny", ["toyworld.eval.finetune_methods=[dreambooth, ti]"])
    subjects = novel_subjects()[:2]
    data = write_subject_data(cfg, subjects, 16, tmp_path)
    for subject in subjects:
        scenes = data["scenes"][subject.slug]
        assert len(set(scenes)) == len(scenes) == cfg.toyworld.eval.finetune_images
        assert len(list((tmp_path / "subjects" / subject.slug).glob("*.png"))) == len(scenes)
        for method, template in (("dreambooth", "a {0} {1}"), ("ti", "a {0}")):
            rows = pq.read_table(data["extras"][method][subject.slug]).to_pylist()
            assert [r["prompt"] for r in rows] == [f"{template} on the {s}" for s in scenes]
            for row, scene in zip(rows, scenes, strict=True):
                reading = read(np.asarray(Image.open(io.BytesIO(row["image"]))))
                assert reading.is_subject(subject) and reading.scene == scene
    # Deterministic in the seed: a rerun draws the same renders.
    assert data["scenes"] == write_subject_data(cfg, subjects, 16, tmp_path / "again")["scenes"]


def test_experiment_without_a_finetuner_names_the_field():
    cfg = load_config("tiny", ["toyworld.eval.finetune_methods=[ti]"])
    with pytest.raises(ValueError, match="toyworld.eval.finetune_methods"):
        run_experiment(cfg)


def test_eval_command_adds_the_fine_tuning_rows(smoke_recipe, smoke_config, tmp_path):
    from cluster.toyworld_cli import app

    ev = smoke_config.toyworld.eval
    settings = {
        "toyworld.eval.jedi": ev.jedi,
        "toyworld.eval.base": ev.base,
        "toyworld.eval.subjects": 1,
        "toyworld.eval.steps": 2,
        "toyworld.eval.loss_timesteps": 1,
        "toyworld.eval.references": "[1, 2]",
        "toyworld.eval.image_guidance_scales": "[1.0]",
        "toyworld.eval.resamples": 100,
        # CoRe covers the most: a new token, two stages, context regularization, test-time optimization.
        "toyworld.eval.finetune_methods": "[core]",
        **FEW_STEPS,
    }
    args = ["eval", "--trials", "1", "--out", str(tmp_path / "eval")]
    for key, value in settings.items():
        args += ["-s", f"{key}={value}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "eval" / "results.json").read_text())
    rows = {r["key"]: r for r in out["rows"]}
    assert list(rows)[-2:] == ["floor-plain", "ft-core"]
    for key in ("floor-plain", "ft-core"):
        assert rows[key]["metrics"]["identity"]["n"] == 1 and "loss_gap" not in rows[key]["metrics"]
        assert 0 <= rows[key]["metrics"]["scene"]["mean"] <= 1
    assert set(out["finetune"]["seconds"]) == {"core"}
    assert out["finetune"]["prompts"]["core"].startswith("a {0} on the ")
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| CoRe on the toy base, 3 renders | – |" in report and "| base model as plain SD" in report
    assert "## Fine-tuning rows" in report
    # The method comparison is the DreamBooth benchmark's table: JeDi the reference, CoRe paired with it.
    comparison = report.split("## Method comparison")[1].split("## Fine-tuning rows")[0]
    assert (
        "| JeDi, 2 references (defaults: paper λ = 2) (reference) |" in comparison
        and "Δ identity (oracle) ↑" in comparison
    )
    assert "| CoRe on the toy base, 3 renders |" in comparison and "fine-tuning s / subject" in comparison
    # The subjects were published to the experiment's own store, on the converted base.
    cards = list((tmp_path / "eval" / "finetune").glob("*/store/*/card.json"))
    assert [json.loads(c.read_text())["method"] for c in cards] == ["core"]
    assert all(json.loads(c.read_text())["base_model"].endswith("/base") for c in cards)
