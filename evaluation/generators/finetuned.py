"""Fine-tuned subjects: each benchmark subject is drawn by its own subject from a subject store.

One generator per fine-tuning method. Its subjects are found by ``evaluation.finetuned.subject_id``
(``{subject}-{method}``) in the store the run fine-tuned them into (``<run>/subjects``), or in
``evaluation.finetuned.store`` when the run reuses subjects published before (``s3jedi finetune``
publishes ``dog-dreambooth`` for the benchmark folder ``dog``). They are drawn through the subject
contract (``core.subject_pipeline``), so the method's inference step (CoRe's test-time optimization,
with the settings of ``finetune.core``) is part of what is scored and timed, exactly as serving draws them.
"""

from __future__ import annotations

from functools import cached_property

from PIL import Image

from core.config import S3JediConfig
from core.methods import get as get_method
from core.methods import method_plan
from core.paths import s3jedi_home
from core.subject_pipeline import SubjectPipeline
from core.subjects import SubjectCard, SubjectNotFoundError, SubjectStore, make_subject_id
from evaluation.generators.interface import DTYPES, SubjectInput

IGNORED = ("references", "guidance", "image_guidance_scale", "joint_targets")
"""Generation settings that do not apply to a text-to-image subject (left out of its description)."""
TRAINING = ("resolution", "batch_size", "flip", "precision")
"""The ``finetune`` settings besides the method's plan that shape what a subject learns."""


def training_settings(cfg: S3JediConfig, method: str) -> dict:
    """What decides a subject that ``method`` fine-tunes in the run: its plan, the base model, the
    shared data settings and the seed (self-distillation adds its own section)."""
    settings = {
        "base_model": cfg.models.sd,
        "seed": cfg.seed,
        "plan": method_plan(cfg.finetune, method).settings(),
        **cfg.finetune.model_dump(mode="json", include=set(TRAINING)),
    }
    if method == "selfdistill":
        settings["selfdistill"] = cfg.selfdistill.model_dump(mode="json", exclude={"name", "subject_id"})
    return settings


class FinetunedGenerator:
    def __init__(self, cfg: S3JediConfig, method: str, device: str = "cpu", store: str | None = None):
        """``store``: where the run fine-tuned its subjects (None: ``evaluation.finetuned.store``)."""
        from core.methods.registry import import_plugins

        import_plugins(cfg.finetune.plugins)  # actors get the config as an object, never validated here
        self.cfg, self.method, self.device = cfg, method, device
        self.settings = cfg.evaluation.generation
        self.location = store or cfg.evaluation.finetuned.store
        self.cards: dict[str, SubjectCard] = {}
        self.loaded: SubjectPipeline | None = None  # one subject at a time: each is a whole pipeline

    @cached_property
    def store(self) -> SubjectStore:
        if self.location is None:
            raise ValueError(f"evaluation.finetuned.store: no subject store to draw {self.method!r} from")
        return SubjectStore(self.location, cache_dir=(self.cfg.home or s3jedi_home()) / "cache" / "subjects")

    def subject_id(self, subject: SubjectInput) -> str:
        return make_subject_id(self.cfg.evaluation.finetuned.subject_id, subject.name, self.method)

    def card(self, subject: SubjectInput) -> SubjectCard:
        sid = self.subject_id(subject)
        if sid not in self.cards:
            self.cards[sid] = self.store.card(sid)
        return self.cards[sid]

    def prompt(self, subject: SubjectInput, template: str) -> str:
        return " ".join(self.card(subject).render_prompt(template).split())

    def inputs(self, subject: SubjectInput) -> list[str]:
        """No photo at generation time (the subject learned them); the subject must be in the store,
        made by this method."""
        sid = self.subject_id(subject)
        try:
            card = self.card(subject)
        except SubjectNotFoundError:
            raise ValueError(
                f"evaluation.finetuned.subject_id: no subject {sid!r} for {subject.name!r} in {self.store.uri}"
            ) from None
        if card.method != self.method:
            raise ValueError(
                f"evaluation.finetuned.subject_id: {sid!r} in {self.store.uri} was made by {card.method!r}, "
                f"not {self.method!r}"
            )
        return []

    def load(self, subject: SubjectInput) -> None:
        sid = self.subject_id(subject)
        if self.loaded is None or self.loaded.card.subject_id != sid:
            self.loaded = None  # the previous subject's pipeline goes before the next one loads
            self.loaded = SubjectPipeline.load(
                self.store.local_dir(sid), home=self.cfg.home, device=self.device, dtype=DTYPES[self.settings.dtype]
            )

    def generate(self, subject: SubjectInput, templates: list[str], seeds: list[int]) -> list[Image.Image]:
        self.load(subject)
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

    def describe(self) -> dict:
        method = get_method(self.method)
        trained_here = self.cfg.evaluation.finetuned.store is None
        return {
            "method": self.method,
            "subjects": "fine-tuned in this run" if trained_here else self.cfg.evaluation.finetuned.store,
            "subject_id": self.cfg.evaluation.finetuned.subject_id,
            "inference_steps": method.inference_step.default_steps(self.cfg.finetune) if method.inference_step else 0,
            **({"training": training_settings(self.cfg, self.method)} if trained_here else {}),
            **self.settings.model_dump(mode="json", exclude=set(IGNORED)),
        }
