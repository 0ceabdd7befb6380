"""``s3jedi eval --methods jedi,dreambooth,ti`` end to end on the tiny profile: 2 subjects × 3 methods ×
2 prompts. The run fine-tunes each subject with each fine-tuning method (one Ray Train run per pair),
draws them through the subject contract and scores them; killed while scoring, the rerun neither
re-trains nor re-scores what was finished; a second run reuses the first one's subject store."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cluster.eval_training import train_subjects
from evaluation.job import run_evaluation
from tests.evaluation.conftest import TINY_RUN, kill_at_first_checkpoint, render, tiny_config
from tests.finetune.conftest import FAST

METHODS = ["jedi", "dreambooth", "ti"]
RUN = [
    *FAST,
    f"evaluation.methods={json.dumps(METHODS)}",
    "evaluation.selection.samples=1",
    "evaluation.compute.cpus_per_actor=0.5",
    "evaluation.compute.generation_batch=1",
    "evaluation.compute.scoring_batch=1",
]
CASES = 2 * 3 * 2  # subjects × methods × prompts, one sample each


@pytest.mark.slow
def test_three_methods_fine_tune_draw_score_and_resume(zoo_home, ray_local, tmp_path):
    out = tmp_path / "run"
    done = kill_at_first_checkpoint(["cluster.cli", "eval"], out, [*TINY_RUN, *RUN], 900)
    trained = json.loads((out / "finetune.json").read_text())
    assert [(o["method"], o["subject"], o["status"]) for o in trained] == [
        (m, s, "done") for m in ("dreambooth", "ti") for s in ("cat", "dog")
    ]
    assert all(o["seconds"] > 0 for o in trained)
    assert 0 < len(done) < CASES, f"the kill must land mid-run, {len(done)} of {CASES} were scored"

    cfg = tiny_config(*RUN)
    result = run_evaluation(cfg, out, train_subjects)
    assert result.scored_now == CASES - len(done) and result.planned == CASES
    assert json.loads((out / "finetune.json").read_text()) == trained, "nothing was trained again"
    frame = pd.read_parquet(out / "scores.parquet")
    assert len(frame) == CASES and frame["id"].is_unique
    tuned = frame[frame["method"] != "jedi"]
    assert (tuned["inputs"] == "").all() and tuned["prompt"].str.contains("sks").all(), "drawn with the learned token"
    assert frame["clip_i"].between(-1, 1).all()

    costs = result.summary["costs"]
    assert costs["jedi"]["finetune_s"] == 0 and costs["dreambooth"]["finetune_s"] > 0
    assert costs["ti"]["first_image_s"] > costs["jedi"]["first_image_s"]
    (protocol,) = result.summary["protocols"]
    assert set(protocol["differences"]) == {"dreambooth", "ti"}
    assert protocol["differences"]["ti"]["clip_t"]["n"] == 4 and protocol["differences"]["ti"]["clip_t"]["paired"]

    shown = render(result.report)
    assert shown["errors"] == [] and sorted(i["src"] for i in shown["images"]) == ["grids/cat.jpg", "grids/dog.jpg"]
    assert all(i["w"] > 0 for i in shown["images"]), "every image of the report loads"
    for text in ("JeDi (reference)", "DreamBooth", "Textual Inversion", "time to first image, s", "Fine-tuning"):
        assert text in shown["text"], text

    again = run_evaluation(cfg, out, train_subjects)
    assert again.scored_now == 0 and json.loads((out / "finetune.json").read_text()) == trained

    reused = run_evaluation(
        tiny_config(*RUN, f"evaluation.finetuned.store={out / 'subjects'}", "evaluation.selection.subjects=[dog]"),
        tmp_path / "reused",
    )
    assert reused.scored_now == 6 and not (tmp_path / "reused" / "finetune.json").exists()
    again_dog = frame[frame["subject"] == "dog"].set_index("id").sort_index()
    redrawn = pd.read_parquet(reused.out_dir / "scores.parquet").set_index("id").sort_index()
    pd.testing.assert_series_equal(redrawn["clip_i"], again_dog["clip_i"], atol=1e-4)


@pytest.mark.slow
def test_self_distillation_is_fine_tuned_and_drawn_in_the_run(zoo_home, ray_local, tmp_path):
    """Self-distillation trains through its own runner (teacher, mining, student), not the
    fine-tuning runner: its student is published into the run and drawn like any subject."""
    from tests.selfdistill.conftest import FAST as SELFDISTILL_FAST

    cfg = tiny_config(
        *SELFDISTILL_FAST,
        'evaluation.methods=["jedi", "selfdistill"]',
        "evaluation.selection.subjects=[dog]",
        "evaluation.selection.prompts=1",
        "evaluation.selection.samples=1",
        "evaluation.compute.cpus_per_actor=0.5",
    )
    result = run_evaluation(cfg, tmp_path / "run", train_subjects)
    (outcome,) = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert (outcome["method"], outcome["subject_id"], outcome["status"]) == ("selfdistill", "dog-selfdistill", "done")
    assert outcome["seconds"] > 0
    card = json.loads((tmp_path / "run" / "subjects" / "dog-selfdistill" / "card.json").read_text())
    assert card["method"] == "selfdistill"
    frame = pd.read_parquet(tmp_path / "run" / "scores.parquet")
    assert sorted(frame["method"]) == ["jedi", "selfdistill"] and result.scored_now == 2
    assert frame.loc[frame["method"] == "selfdistill", "prompt"].str.contains("sks").all()
    assert result.summary["costs"]["selfdistill"]["finetune_s"] > 0


@pytest.mark.slow
def test_a_method_that_fails_is_recorded_and_the_others_are_scored(zoo_home, ray_local, tmp_path):
    """Textual inversion cannot start (its initializer word encodes to no token): its fine-tuning is
    recorded as failed with the reason, nothing is drawn for it, and DreamBooth and JeDi are scored."""
    cfg = tiny_config(
        *RUN,
        "finetune.ti.token.initializer=' '",
        "evaluation.selection.subjects=[dog]",
        "evaluation.selection.prompts=1",
    )
    result = run_evaluation(cfg, tmp_path / "run", train_subjects)
    outcomes = {o["method"]: o for o in json.loads((tmp_path / "run" / "finetune.json").read_text())}
    assert outcomes["dreambooth"]["status"] == "done"
    assert outcomes["ti"]["status"] == "failed" and "encodes to no token" in outcomes["ti"]["error"]
    frame = pd.read_parquet(tmp_path / "run" / "scores.parquet")
    assert sorted(frame["method"]) == ["dreambooth", "jedi"] and result.scored_now == 2
    assert [(o["method"], o["status"]) for o in result.summary["finetuning"] if o["status"] != "done"] == [
        ("ti", "failed")
    ]
