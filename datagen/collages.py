"""Stage 2, collages: SDXL draws several "photos of the same <subject>" images per subject.

One pipeline call per subject with one generator per image (seeded from the subject), so a subject's
collages do not depend on which other subjects share its Ray batch.
"""

from __future__ import annotations

import dataclasses

from core import zoo
from core.config import S3JediConfig
from core.config.datagen import CollagesSection
from core.s3 import encode_image
from datagen.imaging import model_dtype, output_problem
from datagen.rows import Item, Reject, RejectRow, WorkRow
from datagen.seeds import derive_seed, generator
from datagen.stage import Stage

NAME = "collages"


class CollageMaker:
    def __init__(self, pipe, cfg: CollagesSection):
        self.pipe = pipe
        self.cfg = cfg

    def __call__(self, row: WorkRow) -> WorkRow:
        cfg = self.cfg
        prompt = cfg.prompt_template.format(subject=row.subject)
        n = cfg.images_per_subject
        seeds = [derive_seed(row.seed, NAME, i) for i in range(n)]
        images = self.pipe(
            prompt=[prompt] * n,
            negative_prompt=[cfg.negative_prompt] * n,
            num_inference_steps=cfg.steps,
            guidance_scale=cfg.guidance_scale,
            height=cfg.size,
            width=cfg.size,
            generator=[generator(s) for s in seeds],
            output_type="pil",
        ).images
        items, rejects = [], []
        for i, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            problem = output_problem(image, (cfg.size, cfg.size))
            if problem:
                rejects.append(Reject(NAME, "bad-output", problem, f"collage {i}"))
            else:
                items.append(Item(encode_image(image), None, prompt, seed, f"collage {i}"))
        if not items:
            raise RejectRow("no-collages", f"all {n} collages unusable", rejects)
        return dataclasses.replace(row, collage_prompt=prompt, items=items, rejects=[*row.rejects, *rejects])


def load(cfg: S3JediConfig, device: str) -> CollageMaker:
    pipe = zoo.load(
        "sdxl", cfg.models.sdxl, device=device, dtype=model_dtype(cfg.datagen.precision, device), home=cfg.home
    )
    pipe.set_progress_bar_config(disable=True)
    return CollageMaker(pipe, cfg.datagen.collages)


STAGE = Stage(NAME, version="1", families=("sdxl",), section=CollagesSection, load=load)
