"""The EM loop end to end through ``python -m training multiconcept`` on local Ray (one Ray Train worker)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from core import zoo
from core.subjects import EMBEDDINGS_FILE, UNET_DIR, apply_subject, read_card
from tests.multiconcept.conftest import settings
from training.cli import app as training_app
from training.shell import checkpoint as ckpt


def invoke(args: list[str], overrides: list[str]):
    result = CliRunner().invoke(training_app, [*args, *[a for s in overrides for a in ("--set", s)]])
    return result


@pytest.fixture(scope="module")
def run(ray_local, zoo_home, scene_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("em")
    result = invoke(["multiconcept", "--scene", str(scene_dir)], settings(tmp))
    assert result.exit_code == 0, result.output[-3000:]
    text = result.stdout
    return tmp, json.JSONDecoder().raw_decode(text[text.index("{\n") :])[0]


def outputs(tmp):
    return tmp / "runs" / "multiconcept-tiny" / "duo-multiconcept" / "outputs"


def test_em_alternates_and_writes_masks_history_and_iou_curve(run):
    tmp, summary = run
    out = outputs(tmp)
    assert summary["subject_id"] == "duo-multiconcept" and summary["history"] == [0, 2, 4]
    for step in ("step-000000", "step-000002", "step-000004"):
        names = sorted(p.name for p in (out / "masks" / step).iterdir())
        assert names == [f"{m}-c{k}.png" for m in ("00", "01") for k in range(3)]
        mask = np.asarray(Image.open(out / "masks" / step / "00-c0.png"))
        assert mask.shape == (64, 64) and mask.dtype == bool
        assert Image.open(out / "history" / f"{step}.png").size == (4 * 64, 2 * 64)
    iou = json.loads((out / "iou.json").read_text())
    assert [p["step"] for p in iou["curve"]] == [0, 2, 4] and iou["baseline"] == iou["curve"][0]["mean_iou"]
    assert iou["final"] == iou["curve"][-1]["mean_iou"] and all(0 <= p["mean_iou"] <= 1 for p in iou["curve"])
    table = pq.read_table(out / "iou.parquet")
    assert table.num_rows == 3 * 2 * 3 and set(table["token"].to_pylist()) == {"<c0>", "<c1>", "<c2>"}
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["00.png", "01.png"]


def test_tokens_and_unet_load_into_plain_diffusers_and_draw_combined_prompts(run):
    tmp, _ = run
    subject = tmp / "store" / "duo-multiconcept"
    card = read_card(subject)
    assert (card.method, card.tokens, card.steps) == ("multiconcept", ["<c0>", "<c1>", "<c2>"], 6)
    assert card.weights.present() == {"unet": UNET_DIR, "embeddings": EMBEDDINGS_FILE}, "the UNet itself (phase 2)"
    assert card.metrics["mask_iou_baseline"] >= 0 and "mask_iou" in card.metrics
    rows = load_file(str(subject / EMBEDDINGS_FILE))
    assert sorted(rows) == card.tokens and all(v.shape == (1, 32) for v in rows.values())
    run_dir = tmp / "runs" / "multiconcept-tiny" / "duo-multiconcept"
    (last,) = run_dir.glob("checkpoint-*")
    assert last.name == "checkpoint-0000006" and ckpt.read_json(last, "meta")["history"][-1]["step"] == 4
    trained = ckpt.read_weights(last, "tokens")["rows"]
    pipe = apply_subject(zoo.load("sd", "tiny"), subject)
    pipe.set_progress_bar_config(disable=True)
    for k, token in enumerate(card.tokens):
        row = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids(token)]
        assert torch.equal(row.detach(), trained[k])
    image = pipe(
        "<c0> shaking hands with <c1> in <c2>",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_a_rerun_of_the_finished_run_restores_it_without_training(run, scene_dir):
    tmp, summary = run
    stamp = (outputs(tmp) / "summary.json").stat().st_mtime_ns
    result = invoke(["multiconcept", "--scene", str(scene_dir)], settings(tmp))
    assert result.exit_code == 0, result.output[-3000:]
    assert (outputs(tmp) / "summary.json").stat().st_mtime_ns == stamp, "nothing is exported again"
    text = result.stdout
    assert json.JSONDecoder().raw_decode(text[text.index("{\n") :])[0] == summary


def test_a_bad_scene_fails_with_one_line(tmp_path, scene_dir):
    result = invoke(
        ["multiconcept", "--scene", str(scene_dir)], settings(tmp_path, "multiconcept.sample_prompts=['{c7}']")
    )
    assert result.exit_code == 2 and "uses {c7} but the scene has 3 concepts" in result.output
