"""Stage 6, stylization: with probability ``p`` InstructPix2Pix applies one style to every image of a set.

The whole set gets the same instruction, so a stylized set still shows one subject in one style.
Whether and which style is drawn from the subject's seed. Masks are kept: the edit changes
appearance, not layout.
"""

from __future__ import annotations

import dataclasses

from core import zoo
from core.config import S3JediConfig
from core.config.datagen import StylizeSection
from core.s3 import encode_image
from datagen.imaging import decode_items, model_dtype, output_problem
from datagen.rows import Reject, RejectRow, WorkRow
from datagen.seeds import derive_seed, generator, rng
from datagen.stage import Stage

NAME = "stylize"


class Stylizer:
    def __init__(self, pipe, cfg: StylizeSection, min_images: int = 1):
        # a set must keep at least consistency.min_set_size images when single ones fail here
        self.pipe = pipe
        self.cfg = cfg
        self.min_images = min_images

    def __call__(self, row: WorkRow) -> WorkRow:
        cfg = self.cfg
        r = rng(derive_seed(row.seed, NAME))
        if r.random() >= cfg.probability:
            return row
        style = cfg.styles[int(r.integers(len(cfg.styles)))]
        decoded, rejects = decode_items(row, NAME, with_masks=False)
        seeds = [derive_seed(row.seed, NAME, i) for i in range(len(decoded))]
        edited = self.pipe(
            prompt=[style.instruction] * len(decoded),
            image=[image for _, image, _ in decoded],
            num_inference_steps=cfg.steps,
            guidance_scale=cfg.guidance_scale,
            image_guidance_scale=cfg.image_guidance_scale,
            generator=[generator(s) for s in seeds],
            output_type="pil",
        ).images
        items = []
        for (item, image, _), out, seed in zip(decoded, edited, seeds, strict=True):
            problem = output_problem(out, image.size)
            if problem:
                rejects.append(Reject(NAME, "bad-output", problem, item.source))
                continue
            items.append(
                dataclasses.replace(
                    item, image=encode_image(out), prompt=style.caption.format(prompt=item.prompt), seed=seed
                )
            )
        if len(items) < self.min_images:
            raise RejectRow(
                "too-few-images", f"{len(items)} images survived {style.instruction!r} < {self.min_images}", rejects
            )
        return dataclasses.replace(row, items=items, style=style.instruction, rejects=[*row.rejects, *rejects])


def load(cfg: S3JediConfig, device: str) -> Stylizer:
    pipe = zoo.load(
        "pix2pix", cfg.models.pix2pix, device=device, dtype=model_dtype(cfg.datagen.precision, device), home=cfg.home
    )
    pipe.set_progress_bar_config(disable=True)
    return Stylizer(pipe, cfg.datagen.stylize, cfg.datagen.consistency.min_set_size)


STAGE = Stage(NAME, version="1", families=("pix2pix",), section=StylizeSection, load=load)
