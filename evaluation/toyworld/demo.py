"""The ToyWorld demo: references of a novel subject in, that subject in the other scenes out, read by the oracle.

It takes seconds on a CPU with the shipped checkpoints, which makes it the README's proof that the
JeDi model personalizes: the prompts (``a thing on the sea``) never name the subject, and the subject's
shape-colour combination was never in any training data.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from core.config import S3JediConfig
from core.threads import torch_threads
from core.toyworld.dataset import item_rng
from core.toyworld.oracle import read
from core.toyworld.render import random_layout, render
from core.toyworld.world import SCENES, Subject, caption, novel_subjects
from evaluation.toyworld.experiment import load_pipeline, pipeline_size

SCALE = 6


def run_demo(cfg: S3JediConfig, subject: Subject | None, references: int, out: Path) -> dict:
    """The subject in every scene its references do not show, with the guidance settings of
    ``toyworld.eval`` (guidance, image_guidance_scale, joint_targets)."""
    ev = cfg.toyworld.eval
    start = time.perf_counter()
    subject = subject or novel_subjects()[0]
    pipe = load_pipeline(ev.jedi, cfg.home)
    pipe.set_progress_bar_config(disable=True)
    size = pipeline_size(pipe)
    if not 1 <= references <= min(pipe.max_references, len(SCENES) - 1):
        raise ValueError(f"references: must lie in [1, {min(pipe.max_references, len(SCENES) - 1)}], got {references}")
    rng = item_rng(cfg.seed, f"demo/{subject.slug}", 0)
    scenes = [list(SCENES)[i] for i in rng.permutation(len(SCENES))]
    ref_scenes, new_scenes = scenes[:references], scenes[references:]
    refs = [Image.fromarray(render(subject, s, random_layout(rng, size), size)[0]) for s in ref_scenes]
    prompts = [caption(subject, s, generic=True) for s in new_scenes]
    with torch_threads(ev.threads):
        images = pipe(
            refs,
            prompts,
            num_inference_steps=ev.steps,
            guidance=ev.guidance,
            guidance_scale=ev.guidance_scale if ev.guidance == "decomposed" else None,
            image_guidance_scale=ev.image_guidance_scale,
            joint_targets=ev.joint_targets,
            height=size,
            width=size,
            generator=[torch.Generator().manual_seed(cfg.seed + i) for i in range(len(prompts))],
        ).images
    readings = [read(np.asarray(im.convert("RGB"))) for im in images]
    out.mkdir(parents=True, exist_ok=True)
    grid_path = out / f"toyworld-{subject.slug}.png"
    _grid(refs, ref_scenes, images, new_scenes, size).save(grid_path)
    results = [
        {
            "prompt": p,
            "oracle": f"{r.colour} {r.shape} on the {r.scene}",
            "identity": r.is_subject(subject),
            "readable": r.readable,
            "scene": r.scene == s,
        }
        for p, r, s in zip(prompts, readings, new_scenes, strict=True)
    ]
    return {
        "subject": subject.name,
        "novel": subject in novel_subjects(),
        "guidance": {k: getattr(ev, k) for k in ("guidance", "image_guidance_scale", "joint_targets")},
        "references": ref_scenes,
        "images": results,
        "identity": float(np.mean([r["identity"] for r in results])),
        "scene_accuracy": float(np.mean([r["scene"] for r in results])),
        "grid": str(grid_path),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _grid(refs, ref_scenes, images, scenes, size: int) -> Image.Image:
    """Top row: the references; bottom row: the generated images; each labelled with its scene."""
    side, label = size * SCALE, 14
    columns = max(len(refs), len(images))
    grid = Image.new("RGB", (columns * (side + 4), 2 * (side + label + 4)), (255, 255, 255))
    draw, font = ImageDraw.Draw(grid), ImageFont.load_default(size=11)
    for r, (row, names, kind) in enumerate(((refs, ref_scenes, "ref"), (images, scenes, "new"))):
        y = r * (side + label + 4)
        for c, (image, name) in enumerate(zip(row, names, strict=True)):
            draw.text((c * (side + 4) + 2, y), f"{kind}: {name}", fill=(20, 20, 20), font=font)
            grid.paste(image.resize((side, side), Image.Resampling.NEAREST), (c * (side + 4), y + label))
    return grid
