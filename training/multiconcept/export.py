"""What a multi-concept run leaves behind, under ``<run dir>/outputs``:

- ``masks/step-NNNNNN/<image>-c<k>.png``: every E-step's mask of concept k in each image (1-bit PNG),
  and ``history/step-NNNNNN.png``: the same as one picture (rows = images; the image, then each
  concept's mask over it in red);
- ``iou.json`` (when the scene has ground truth): mean IoU at every E-step (the curve), the no-update
  baseline (the first E-step's masks, after the warm start, kept) and per-concept values; ``iou.parquet``
  holds every (step, image, concept) IoU;
- ``samples/NN.png``: images for ``multiconcept.sample_prompts`` drawn with the learned tokens;
- ``summary.json``, written last.

The subject itself (the K learned tokens in ``learned_embeds.safetensors`` and the UNet, or its LoRA) is
published to the subject store like any fine-tuned subject (method ``multiconcept``), so
``core.subjects.apply_subject`` loads it into a plain diffusers pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from core.subjects import EMBEDDINGS_FILE, UNET_DIR, SubjectCard, SubjectWeights, write_card
from training.multiconcept.masks import scene_iou
from training.multiconcept.scene import Scene, fill_concepts
from training.shell.lora import save_lora

if TYPE_CHECKING:
    from training.multiconcept.em import SceneRecipe

OVERLAY = np.array([230, 40, 40], dtype=np.float32)


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def history_entry(step: int, scene: Scene, masks: np.ndarray) -> dict:
    """One E-step of the history: its step and, with ground truth, the IoU of every (image, concept)."""
    entry: dict = {"step": step, "coverage": masks.mean(axis=(2, 3)).round(4).tolist()}
    if scene.truth is not None:
        ious = scene_iou(masks, scene.truth, scene.present)
        entry["iou"] = np.where(np.isnan(ious), None, ious.round(6)).tolist()
        entry["mean_iou"] = float(np.nanmean(ious))
        entry["per_concept"] = [float(np.nanmean(ious[:, k])) for k in range(ious.shape[1])]
    return entry


def mask_grid(scene: Scene, masks: np.ndarray) -> Image.Image:
    rows = []
    for m, image in enumerate(scene.images):
        panels = [image]
        for k in range(masks.shape[1]):
            tinted = image.astype(np.float32)
            tinted[masks[m, k]] = 0.45 * tinted[masks[m, k]] + 0.55 * OVERLAY
            panels.append(tinted.astype(np.uint8))
        rows.append(np.concatenate(panels, axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))


def write_masks(outputs: Path, step: int, scene: Scene, masks: np.ndarray) -> None:
    folder = outputs / "masks" / step_name(step)
    folder.mkdir(parents=True, exist_ok=True)
    for m, name in enumerate(scene.image_names):
        stem = name.rsplit(".", 1)[0]
        for k in range(masks.shape[1]):
            Image.fromarray(masks[m, k]).save(folder / f"{stem}-c{k}.png")
    (outputs / "history").mkdir(exist_ok=True)
    mask_grid(scene, masks).save(outputs / "history" / f"{step_name(step)}.png")


def iou_report(scene: Scene, history: list[dict]) -> dict | None:
    """The IoU curve over E-steps against the no-update baseline (None without ground truth)."""
    if scene.truth is None or not history:
        return None
    return {
        "tokens": scene.tokens,
        "baseline": history[0]["mean_iou"],
        "final": history[-1]["mean_iou"],
        "curve": [{"step": h["step"], "mean_iou": h["mean_iou"], "per_concept": h["per_concept"]} for h in history],
    }


def iou_table(scene: Scene, history: list[dict]) -> pa.Table:
    rows = [
        {"step": h["step"], "image": scene.image_names[m], "concept": k, "token": scene.tokens[k], "iou": value}
        for h in history
        for m, values in enumerate(h["iou"])
        for k, value in enumerate(values)
        if value is not None
    ]
    return pa.Table.from_pylist(rows)


def write_subject(
    recipe: SceneRecipe, out: Path, subject_id: str, steps: int, metrics: dict[str, float]
) -> SubjectCard:
    """The scene's tokens and UNet (or its LoRA) in the subject-store format (``out`` is named after the
    subject id)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    rows = recipe.token_rows().float().cpu()
    save_file({t.token: rows[k : k + 1].contiguous() for k, t in enumerate(recipe.tokens)}, str(out / EMBEDDINGS_FILE))
    if recipe.lora:
        weights = {"lora": save_lora(out, {"unet": recipe.models.unet})}
    else:
        recipe.models.unet.save_pretrained(str(out / UNET_DIR), safe_serialization=True)
        weights = {"unet": UNET_DIR}
    card = SubjectCard(
        subject_id=subject_id,
        method="multiconcept",
        base_model=recipe.cfg.models.sd,
        tokens=recipe.scene.tokens,
        class_word="scene",
        prompt_template=recipe.cfg.multiconcept.prompt_template.replace("{concepts}", "{0}"),
        weights=SubjectWeights(embeddings=EMBEDDINGS_FILE, **weights),
        steps=steps,
        metrics=metrics,
    )
    write_card(out, card)
    return card


def draw_samples(recipe: SceneRecipe, outputs: Path) -> list[str]:
    """One image per sample prompt, drawn by the trained parts themselves (tokens + UNet)."""
    mc = recipe.cfg.multiconcept
    pipe = recipe.models.sd_pipeline()
    recipe.models.unet.eval()
    folder = outputs / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, template in enumerate(mc.sample_prompts):
        generator = torch.Generator(recipe.device).manual_seed(recipe.cfg.seed + i)
        image = pipe(
            fill_concepts(template, recipe.scene.tokens),
            num_inference_steps=mc.sample_steps,
            guidance_scale=mc.sample_guidance,
            height=mc.resolution,
            width=mc.resolution,
            generator=generator,
        ).images[0]
        image.save(folder / f"{i:02d}.png")
        written.append(f"samples/{i:02d}.png")
    return written


def write_reports(outputs: Path, scene: Scene, history: list[dict], summary: dict) -> dict:
    """``iou.json``/``iou.parquet`` (with ground truth) and ``summary.json`` (last)."""
    report = iou_report(scene, history)
    if report is not None:
        (outputs / "iou.json").write_text(json.dumps(report, indent=1))
        pq.write_table(iou_table(scene, history), outputs / "iou.parquet")
    summary = {**summary, "iou": report, "history": [h["step"] for h in history]}
    (outputs / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
