"""JeDi, finetuning-free: the first k photos of the subject are the references of every image."""

from __future__ import annotations

from PIL import Image

from core import zoo
from core.config import S3JediConfig
from core.zoo.families.jedi import read_spec
from evaluation.benchmark import fill
from evaluation.generators.interface import DTYPES, SubjectInput, seeded


class JeDiGenerator:
    def __init__(self, cfg: S3JediConfig, device: str):
        self.ref = cfg.models.jedi
        self.settings = cfg.evaluation.generation
        self.pipe = zoo.load("jedi", self.ref, home=cfg.home, device=device, dtype=DTYPES[self.settings.dtype])
        self.pipe.set_progress_bar_config(disable=True)

    def prompt(self, subject: SubjectInput, template: str) -> str:
        return fill(template, "", subject.class_name)

    @classmethod
    def inputs(cls, cfg: S3JediConfig, subject: SubjectInput) -> list[str]:
        k = cfg.evaluation.generation.references
        if len(subject.photos) < k:
            raise ValueError(
                f"evaluation.generation.references: {k} references wanted, "
                f"subject {subject.name!r} has {len(subject.photos)} photos"
            )
        most = read_spec(cfg.models.jedi, cfg.home).max_set_size - 1
        if k > most:
            raise ValueError(
                f"evaluation.generation.references: {k} references wanted, models.jedi takes at most {most}"
            )
        return [name for name, _ in subject.photos[:k]]

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

    @classmethod
    def describe(cls, cfg: S3JediConfig) -> dict:
        g = cfg.evaluation.generation
        unused = {"subject_id"} | ({"guidance_scale"} if g.guidance != "decomposed" else set())
        return {"model": cfg.models.jedi, **g.model_dump(mode="json", exclude=unused)}
