"""The rows of the ToyWorld experiment and how each one generates its images.

Every condition generates one image per trial with the trial's own sampler noise, so conditions are
compared on identical noise, references and prompts (only the condition differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.config.toyworld import ToyWorldEvalSection
from core.methods import get as method
from evaluation.toyworld.finetuned import FinetunedSubjects
from evaluation.toyworld.trials import Trial

PROMPTS_PER_CALL = 16
FLOOR_REFERENCES = 1
"""The floor row passes one reference that its pipeline cannot see (coupling off): plain text-to-image."""


@dataclass(frozen=True)
class Condition:
    key: str
    label: str
    model: str
    """``jedi`` (the recipe's JeDi export), ``base`` (the base stage's export), ``plain`` (the base
    converted to a plain SD pipeline, what the fine-tuning methods start from) or ``finetuned``."""
    k: int
    lam: float
    coupled: bool
    loss_gap: bool
    """Whether the row reports its own loss gap (λ only changes sampling, not the loss)."""
    method: str | None = None
    """The fine-tuning method of a ``finetuned`` row."""


def conditions(ev: ToyWorldEvalSection) -> list[Condition]:
    """Floor, JeDi with each K (λ = 1), JeDi K = 2 with each λ ≠ 1, JeDi K = 2 with coupling off; with
    fine-tuning methods, the converted base's own floor, then one row per method."""
    k2 = 2 if 2 in ev.references else ev.references[0]
    rows = [Condition("floor", "base model, no references (floor)", "base", FLOOR_REFERENCES, 1.0, False, False)]
    rows += [
        Condition(f"jedi-k{k}", f"JeDi, {k} reference{'s' * (k > 1)}, λ = 1", "jedi", k, 1.0, True, True)
        for k in sorted(set(ev.references))
    ]
    rows += [
        Condition(f"jedi-k{k2}-l{lam:g}", f"JeDi, {k2} references, λ = {lam:g}", "jedi", k2, lam, True, False)
        for lam in ev.image_guidance_scales
        if lam != 1.0
    ]
    rows.append(
        Condition(
            f"jedi-k{k2}-uncoupled", f"JeDi, {k2} references, coupled attention off", "jedi", k2, 1.0, False, True
        )
    )
    if ev.finetune_methods:
        rows.append(
            Condition(
                "floor-plain",
                "base model as plain SD (the fine-tuning base), no references",
                "plain",
                0,
                1.0,
                False,
                False,
            )
        )
    rows += [
        Condition(
            f"ft-{m}",
            f"{method(m).label} on the toy base, {ev.finetune_images} renders",
            "finetuned",
            0,
            1.0,
            False,
            False,
            m,
        )
        for m in ev.finetune_methods
    ]
    return rows


def _chunked(trials: list[Trial], draw) -> list[np.ndarray]:
    """``draw(chunk)`` → PIL images for up to ``PROMPTS_PER_CALL`` trials at a time, as RGB arrays."""
    images: list[np.ndarray] = []
    for start in range(0, len(trials), PROMPTS_PER_CALL):
        images += [np.asarray(im.convert("RGB")) for im in draw(trials[start : start + PROMPTS_PER_CALL])]
    return images


def _seeds(chunk: list[Trial]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(t.seed) for t in chunk]


@torch.no_grad()
def generate(pipe, trials: list[Trial], cond: Condition, size: int, ev: ToyWorldEvalSection) -> list[np.ndarray]:
    """One ``size``×``size``×3 uint8 image per trial."""
    pipe.set_progress_bar_config(disable=True)
    return _chunked(
        trials,
        lambda chunk: (
            pipe(
                [t.references(cond.k, size) for t in chunk],
                [t.prompt for t in chunk],
                num_inference_steps=ev.steps,
                guidance_scale=ev.guidance_scale,
                image_guidance_scale=cond.lam,
                coupled=cond.coupled,
                height=size,
                width=size,
                generator=_seeds(chunk),
            ).images
        ),
    )


@torch.no_grad()
def generate_plain(pipe, trials: list[Trial], size: int, ev: ToyWorldEvalSection) -> list[np.ndarray]:
    """The trials' prompts through a plain SD pipeline (no references), one image per trial."""
    pipe.set_progress_bar_config(disable=True)
    return _chunked(
        trials,
        lambda chunk: (
            pipe(
                [t.prompt for t in chunk],
                num_inference_steps=ev.steps,
                guidance_scale=ev.guidance_scale,
                height=size,
                width=size,
                generator=_seeds(chunk),
            ).images
        ),
    )


def generate_finetuned(
    finetuned: FinetunedSubjects, trials: list[Trial], cond: Condition, ev: ToyWorldEvalSection
) -> list[np.ndarray]:
    """Each trial's subject as fine-tuned by ``cond.method``, in the trial's target scene, with its seed."""
    images: dict[str, np.ndarray] = {}
    for subject in dict.fromkeys(t.subject for t in trials):
        mine = [t for t in trials if t.subject == subject]
        drawn = finetuned.sample(
            cond.method,
            subject,
            [t.target_scene for t in mine],
            [t.seed for t in mine],
            steps=ev.steps,
            guidance_scale=ev.guidance_scale,
        )
        images.update({t.id: im for t, im in zip(mine, drawn, strict=True)})
    return [images[t.id] for t in trials]
