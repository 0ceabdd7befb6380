"""Stage 5, backgrounds: each instance is pasted on a blank canvas and inpainting paints a new scene.

Position and scale are drawn per image from the subject's seed. The inpainting mask is everything
but the subject; afterwards the subject's own pixels are pasted back, because the pipeline re-encodes
the whole image through the VAE: this way the subject is pixel-identical to the instance and the
stored mask is exact.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from core import zoo
from core.config import S3JediConfig
from core.config.datagen import BackgroundsSection
from core.s3 import encode_image, encode_mask
from datagen.imaging import decode_items, model_dtype, output_problem
from datagen.rows import Item, Reject, RejectRow, WorkRow
from datagen.seeds import derive_seed, generator, rng
from datagen.stage import Stage

NAME = "backgrounds"


def compose(
    crop: Image.Image,
    mask: np.ndarray,
    size: int,
    scale: float,
    position: tuple[float, float],
    color: tuple[int, int, int],
) -> tuple[Image.Image, np.ndarray]:
    """The instance resized so its longer side is ``scale * size``, pasted at ``position`` (fractions of
    the free space) on a ``size``² canvas of ``color``; returns the canvas and the subject mask on it."""
    factor = max(1, round(scale * size)) / max(crop.size)
    w, h = max(1, round(crop.width * factor)), max(1, round(crop.height * factor))
    small = crop.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    small_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 0
    x, y = round(position[0] * (size - w)), round(position[1] * (size - h))
    canvas = Image.new("RGB", (size, size), tuple(color))
    canvas.paste(small, (x, y), Image.fromarray(small_mask.astype(np.uint8) * 255))
    full = np.zeros((size, size), dtype=bool)
    full[y : y + h, x : x + w] = small_mask
    return canvas, full


def paste_subject(painted: Image.Image, composite: Image.Image, mask: np.ndarray) -> Image.Image:
    out = np.asarray(painted.convert("RGB")).copy()
    out[mask] = np.asarray(composite)[mask]
    return Image.fromarray(out)


class BackgroundPainter:
    def __init__(self, pipe, cfg: BackgroundsSection, min_images: int = 1):
        # a set must keep at least consistency.min_set_size images when single ones fail here
        self.pipe = pipe
        self.cfg = cfg
        self.min_images = min_images

    def __call__(self, row: WorkRow) -> WorkRow:
        cfg = self.cfg
        decoded, rejects = decode_items(row, NAME, with_masks=True)
        jobs = []  # (item, composite, mask, prompt, seed)
        for i, (item, crop, mask) in enumerate(decoded):
            r = rng(derive_seed(row.seed, NAME, "layout", i))
            scale = float(r.uniform(cfg.scale_min, cfg.scale_max))
            composite, full = compose(
                crop, mask, cfg.size, scale, (float(r.random()), float(r.random())), cfg.canvas_color
            )
            if not full.any():
                rejects.append(Reject(NAME, "empty-mask", f"no subject pixel left at scale {scale:.3f}", item.source))
                continue
            scene = row.scenes[i % len(row.scenes)]
            prompt = cfg.prompt_template.format(subject=row.subject, scene=scene)
            jobs.append((item, composite, full, prompt, derive_seed(row.seed, NAME, i)))
        if not jobs:
            raise RejectRow("no-images", "no instance could be placed on a canvas", rejects)
        painted = self.pipe(
            prompt=[j[3] for j in jobs],
            negative_prompt=[cfg.negative_prompt] * len(jobs),
            image=[j[1] for j in jobs],
            mask_image=[Image.fromarray((~j[2]).astype(np.uint8) * 255) for j in jobs],
            height=cfg.size,
            width=cfg.size,
            num_inference_steps=cfg.steps,
            guidance_scale=cfg.guidance_scale,
            generator=[generator(j[4]) for j in jobs],
            output_type="pil",
        ).images
        items = []
        for (item, composite, full, prompt, seed), image in zip(jobs, painted, strict=True):
            problem = output_problem(image, (cfg.size, cfg.size))
            if problem:
                rejects.append(Reject(NAME, "bad-output", problem, item.source))
                continue
            final = paste_subject(image, composite, full)
            items.append(Item(encode_image(final), encode_mask(full), prompt, seed, item.source, item.score))
        if len(items) < self.min_images:
            raise RejectRow("too-few-images", f"{len(items)} usable images < {self.min_images}", rejects)
        return dataclasses.replace(row, items=items, rejects=[*row.rejects, *rejects])


def load(cfg: S3JediConfig, device: str) -> BackgroundPainter:
    pipe = zoo.load(
        "inpaint", cfg.models.inpaint, device=device, dtype=model_dtype(cfg.datagen.precision, device), home=cfg.home
    )
    pipe.set_progress_bar_config(disable=True)
    return BackgroundPainter(pipe, cfg.datagen.backgrounds, cfg.datagen.consistency.min_set_size)


STAGE = Stage(NAME, version="1", families=("inpaint",), section=BackgroundsSection, load=load)
