"""The plain text-to-image base model: the floor every personalization method must beat.

It sees only the class word ("a dog in the snow"), never the subject's photos, so its CLIP-I/DINO
say how much identity a method adds beyond drawing the right class.
"""

from __future__ import annotations

from functools import cached_property

from PIL import Image

from core import zoo
from core.config import S3JediConfig
from evaluation.benchmark import fill
from evaluation.generators.interface import DTYPES, SubjectInput, seeded

IGNORED = ("references", "guidance", "image_guidance_scale", "joint_targets")
"""Generation settings that do not apply to a text-only model (left out of its description)."""


class BaseModelGenerator:
    def __init__(self, cfg: S3JediConfig, method: str = "base", device: str = "cpu"):
        self.cfg, self.method, self.device = cfg, method, device
        self.settings = cfg.evaluation.generation

    @cached_property
    def pipe(self):
        pipe = zoo.load(
            "sd", self.cfg.models.sd, home=self.cfg.home, device=self.device, dtype=DTYPES[self.settings.dtype]
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def prompt(self, subject: SubjectInput, template: str) -> str:
        return fill(template, "", subject.class_name)

    def inputs(self, subject: SubjectInput) -> list[str]:
        return []

    def load(self, subject: SubjectInput) -> None:
        self.pipe  # noqa: B018 (the cached property loads the model)

    def generate(self, subject: SubjectInput, templates: list[str], seeds: list[int]) -> list[Image.Image]:
        s = self.settings
        return self.pipe(
            prompt=[self.prompt(subject, t) for t in templates],
            num_inference_steps=s.steps,
            guidance_scale=s.guidance_scale,
            height=s.resolution,
            width=s.resolution,
            generator=seeded(seeds),
        ).images

    def describe(self) -> dict:
        return {"model": self.cfg.models.sd, **self.settings.model_dump(mode="json", exclude=set(IGNORED))}
