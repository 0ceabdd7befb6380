"""Fine-tuned subjects: each benchmark subject is drawn by its own subject from the subject store.

Subjects are found by ``evaluation.generation.subject_id`` (``{subject}-dreambooth`` finds what
``s3jedi finetune --method dreambooth`` published for each benchmark folder) in the store the
fine-tuning published to (``finetune.store``). They are drawn through the subject contract
(``core.subject_pipeline``), so the method's inference step (CoRe's test-time optimization, with the
settings of ``finetune.core``) is part of what is scored, exactly as serving draws them.
"""

from __future__ import annotations

from PIL import Image

from core.config import S3JediConfig
from core.paths import s3jedi_home
from core.subject_pipeline import SubjectPipeline, store_location
from core.subjects import SubjectCard, SubjectNotFoundError, SubjectStore, make_subject_id
from evaluation.generators.interface import DTYPES, SubjectInput

IGNORED = ("references", "guidance", "image_guidance_scale", "joint_targets")
"""Generation settings that do not apply to a text-to-image subject (left out of its description)."""


def subject_id(cfg: S3JediConfig, subject: SubjectInput) -> str:
    return make_subject_id(cfg.evaluation.generation.subject_id, subject.name, "")


def _store(cfg: S3JediConfig) -> SubjectStore:
    return SubjectStore(store_location(cfg), cache_dir=(cfg.home or s3jedi_home()) / "cache" / "subjects")


class FinetunedGenerator:
    def __init__(self, cfg: S3JediConfig, device: str):
        from core.methods.registry import import_plugins

        import_plugins(cfg.finetune.plugins)  # actors get the config as an object, never validated here
        self.cfg, self.device = cfg, device
        self.settings = cfg.evaluation.generation
        self.store = _store(cfg)
        self.cards: dict[str, SubjectCard] = {}
        self.loaded: SubjectPipeline | None = None  # one subject at a time: each is a whole pipeline

    def card(self, subject: SubjectInput) -> SubjectCard:
        sid = subject_id(self.cfg, subject)
        if sid not in self.cards:
            self.cards[sid] = self.store.card(sid)
        return self.cards[sid]

    def prompt(self, subject: SubjectInput, template: str) -> str:
        return " ".join(self.card(subject).render_prompt(template).split())

    @classmethod
    def inputs(cls, cfg: S3JediConfig, subject: SubjectInput) -> list[str]:
        """No photo at generation time (the subject learned them); the subject must be in the store."""
        sid = subject_id(cfg, subject)
        try:
            _store(cfg).card(sid)
        except SubjectNotFoundError:
            raise ValueError(
                f"evaluation.generation.subject_id: no subject {sid!r} for {subject.name!r} in {store_location(cfg)}"
            ) from None
        return []

    def generate(self, subject: SubjectInput, templates: list[str], seeds: list[int]) -> list[Image.Image]:
        sid = subject_id(self.cfg, subject)
        if self.loaded is None or self.loaded.card.subject_id != sid:
            self.loaded = None  # the previous subject's pipeline goes before the next one loads
            self.loaded = SubjectPipeline.load(
                self.store.local_dir(sid), home=self.cfg.home, device=self.device, dtype=DTYPES[self.settings.dtype]
            )
        s = self.settings
        drawing = self.loaded.draw(
            templates,
            seeds,
            settings=self.cfg.finetune,
            steps=s.steps,
            guidance_scale=s.guidance_scale,
            height=s.resolution,
        )
        return drawing.images

    @classmethod
    def describe(cls, cfg: S3JediConfig) -> dict:
        from core.methods import METHODS

        inference = {
            name: m.inference_step.default_steps(cfg.finetune) for name, m in METHODS.items() if m.inference_step
        }
        generation = cfg.evaluation.generation.model_dump(mode="json", exclude=set(IGNORED))
        return {"store": store_location(cfg), "inference_steps": inference, **generation}
