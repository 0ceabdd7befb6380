"""JeDi, finetuning-free: the first k photos of the subject are the references of every image."""

from __future__ import annotations

from functools import cached_property

from PIL import Image

from core import zoo
from core.config import S3JediConfig
from core.zoo.families.jedi import read_spec
from evaluation.benchmark import fill
from evaluation.generators.interface import DTYPES, SubjectInput, seeded


class JeDiGenerator:
    def __init__(self, cfg: S3JediConfig, method: str = "jedi", device: str = "cpu"):
        self.cfg, self.method, self.device = cfg, method, device
        self.settings = cfg.evaluation.generation

    @cached_property
    def pipe(self):
        pipe = zoo.load(
            "jedi", self.cfg.models.jedi, home=self.cfg.home, device=self.device, dtype=DTYPES[self.settings.dtype]
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def prompt(self, subject: SubjectInput, template: str) -> str:
        return fill(template, "", subject.class_name)

    def inputs(self, subject: SubjectInput) -> list[str]:
        k = self.settings.references
        if len(subject.photos) < k:
            raise ValueError(
                f"evaluation.generation.references: {k} references wanted, "
                f"subject {subject.name!r} has {len(subject.photos)} photos"
            )
        most = read_spec(self.cfg.models.jedi, self.cfg.home).max_set_size - 1
        if k > most:
            raise ValueError(
                f"evaluation.generation.references: {k} references wanted, models.jedi takes at most {most}"
            )
        return [name for name, _ in subject.photos[:k]]

    def load(self, subject: SubjectInput) -> None:
        self.pipe  # noqa: B018 (the cached property loads the model)

    def generate(self, subject: SubjectInput, templates: list[str], seeds: list[int]) -> list[Image.Image]:
        s = self.settings
        return self.pipe(
            subject.images(s.references),
            [self.prompt(subject, t) for t in templates],
            num_inference_steps=s.steps,
            guidance=s.guidance,
            image_guidance_scale=s.image_guidance_scale,
            guidance_scale=s.guidance_scale if s.guidance == "decomposed" else None,
            joint_targets=s.joint_targets,
            height=s.resolution,
            width=s.resolution,
            generator=seeded(seeds),
        ).images

    def describe(self) -> dict:
        unused = {"guidance_scale"} if self.settings.guidance != "decomposed" else set()  # Eq. 3 has one scale
        return {"model": self.cfg.models.jedi, **self.settings.model_dump(mode="json", exclude=unused)}
