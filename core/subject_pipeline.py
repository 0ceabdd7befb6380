"""Drawing with a fine-tuned subject: the one contract every consumer of a published subject uses.

``s3jedi finetune sample``, serving's ``/v1/generate``, the DreamBooth benchmark's ``finetuned``
generator and ToyWorld's fine-tuning rows all load a subject with ``SubjectPipeline.load`` (the base
model its card names, with the subject's weights applied: ``core.subjects.apply_subject``) and draw
with ``SubjectPipeline.draw``. Drawing renders the prompts with the subject's tokens and applies the
inference step of the method that made it (``core.methods``: CoRe optimises the embedding for each
prompt before drawing it), so no consumer can skip a method's inference step by drawing on its own.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.config import S3JediConfig
from core.config.finetune import FinetuneSection
from core.paths import s3jedi_home
from core.subjects import SubjectCard, SubjectNotFoundError, SubjectStore, apply_subject, read_card


def store_location(cfg: S3JediConfig) -> str:
    """Where subjects are published: ``finetune.store``, else where serving looks for them."""
    return str(cfg.finetune.store or cfg.serving.subjects_store or (cfg.home or s3jedi_home()) / "subjects")


def published(cfg: S3JediConfig, subject_id: str, method: str, steps: int) -> bool:
    """Whether the configured store holds ``subject_id`` as a run of ``method`` for ``steps`` steps
    would publish it (a finished run that is rerun does not publish again)."""
    try:
        card = SubjectStore(store_location(cfg)).card(subject_id)
    except SubjectNotFoundError:
        return False
    return card.method == method and card.steps == steps


def locate(cfg: S3JediConfig, subject: str) -> Path:
    """``subject`` is a subject directory, or an id in the configured store (fetched when remote)."""
    if Path(subject).is_dir():
        return Path(subject)
    home = cfg.home or s3jedi_home()
    return SubjectStore(store_location(cfg), cache_dir=home / "cache" / "subjects").local_dir(subject)


@dataclass(frozen=True)
class Drawing:
    images: list
    """One per prompt: PIL images, or ``H×W×3`` float arrays in [0, 1] with ``output_type="np"``."""
    prompts: list[str]
    """The prompts as the model saw them (the subject's tokens in place of ``{0}``)."""
    tto_steps: int
    """Steps of the method's inference step run for each distinct prompt before drawing it (0 = none)."""


@dataclass
class SubjectPipeline:
    """A base pipeline holding one subject: load once, draw many."""

    pipe: Any
    card: SubjectCard
    directory: Path
    """Where the subject's files are (a method's inference step may read more than the weights)."""

    @classmethod
    def load(
        cls, subject_dir: Path, base: Any = None, *, home: Path | None = None, device: str = "cpu", dtype=None
    ) -> SubjectPipeline:
        """The subject in ``subject_dir`` applied to ``base`` (modified in place), or to a fresh load of
        the base model its card names."""
        from core import zoo

        card = read_card(subject_dir)
        if base is None:
            base = zoo.load("sd", card.base_model, home=home, device=device, dtype=dtype)
        pipe = apply_subject(base, subject_dir)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, card, Path(subject_dir))

    def draw(
        self,
        prompts: list[str],
        seeds: list[int],
        *,
        settings: FinetuneSection,
        steps: int,
        guidance_scale: float,
        height: int,
        width: int | None = None,
        negative_prompts: list[str] | None = None,
        tto_steps: int | None = None,
        output_type: str = "pil",
        callback=None,
    ) -> Drawing:
        """One image per (prompt, seed); prompts are templates with ``{0}`` for the subject's token(s)
        and ``{1}`` for its class word. Image ``i`` starts from a CPU generator seeded with ``seeds[i]``
        (the same noise on any device, whatever else is drawn with it).

        ``tto_steps``: steps of the method's inference step (``settings`` holds its hyperparameters;
        None = the method's default there, 0 = skip it). A prompt's images share one run of it, seeded
        with the prompt's first seed; the subject's trained weights come back after each prompt."""
        from core.methods import get

        if len(prompts) != len(seeds) or (negative_prompts is not None and len(negative_prompts) != len(prompts)):
            raise ValueError(f"seeds: {len(seeds)} seeds (and negative prompts) for {len(prompts)} prompts")
        inference = get(self.card.method).inference_step
        if inference is None:
            if tto_steps:
                raise ValueError(f"tto_steps: {self.card.method} subjects have no test-time step")
            runs = 0
        else:
            runs = inference.default_steps(settings) if tto_steps is None else tto_steps
        width = width or height
        rendered = [self.card.render_prompt(p) for p in prompts]
        if runs:  # each distinct prompt with the subject adapted to it
            groups = [(p, [i for i, q in enumerate(prompts) if q == p]) for p in dict.fromkeys(prompts)]
        else:
            groups = [(None, list(range(len(prompts))))]
        images: list = [None] * len(prompts)
        for prompt, rows in groups:
            adapted = (
                inference.applied(self.pipe, self.card, self.directory, prompt, settings, runs, seeds[rows[0]])
                if prompt is not None
                else nullcontext()
            )
            with adapted:
                out = self.pipe(
                    prompt=[rendered[i] for i in rows],
                    negative_prompt=[negative_prompts[i] for i in rows] if negative_prompts is not None else None,
                    num_inference_steps=steps,
                    guidance_scale=guidance_scale,
                    height=height,
                    width=width,
                    generator=[torch.Generator().manual_seed(int(seeds[i])) for i in rows],
                    output_type=output_type,
                    callback_on_step_end=callback,
                ).images
            for i, image in zip(rows, out, strict=True):
                images[i] = image
        return Drawing(images, rendered, runs)
