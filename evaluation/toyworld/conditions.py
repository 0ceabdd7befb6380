"""The rows of the ToyWorld experiment and how each one generates its images.

Every condition generates its images per trial with the trial's own sampler noise (image ``j`` of a
trial: seed ``trial.seed + j``), so conditions are compared on identical noise, references and
prompts — only the condition differs — and their per-trial scores can be compared in pairs.
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
    k: int = 0
    guidance: str = "decomposed"
    lam: float = 1.0
    text_scale: float | None = None
    """The text scale ``s`` of ``decomposed`` guidance and of the plain pipelines (None for paper guidance)."""
    coupled: bool = True
    joint: bool = False
    images: int = 1
    """Images per trial: the prompt's scene, then scenes no reference shows (joint-target rows)."""
    loss_gap: bool = False
    """Whether the row reports its own loss gap (guidance only changes sampling, not the loss)."""
    method: str | None = None
    """The fine-tuning method of a ``finetuned`` row."""

    @property
    def settings(self) -> str:
        return settings_label(self.guidance, self.lam, self.text_scale)


def settings_label(guidance: str, lam: float, text_scale: float | None) -> str:
    if guidance == "decomposed":
        return f"decomposed λ = {lam:g}, s = {text_scale:g}"
    return f"{guidance} λ = {lam:g}"


def _effect(guidance: str, lam: float) -> tuple[str, float]:
    """Settings that sample identically share an effect: at λ = 1 both readings of the paper's
    guidance are the plain conditional prediction."""
    return ("conditional", 1.0) if lam == 1.0 and guidance != "decomposed" else (guidance, lam)


def default_k(ev: ToyWorldEvalSection) -> int:
    """The reference count of the sweeps and ablations: 2 (the target's K) when measured."""
    return 2 if 2 in ev.references else ev.references[0]


def _jedi(ev: ToyWorldEvalSection, key: str, label: str, k: int, guidance: str, lam: float, **kw) -> Condition:
    s = ev.guidance_scale if guidance == "decomposed" else None
    return Condition(key, label, "jedi", k, guidance, lam, s, **kw)


def conditions(ev: ToyWorldEvalSection, max_set_size: int) -> list[Condition]:
    """Floor; JeDi at the default settings for each K; at K = 2 every (guidance, λ) of the sweep; the
    joint-target pair; coupling off; then, with fine-tuning methods, the converted base's own floor and
    one row per method."""
    k2, default = default_k(ev), (ev.guidance, ev.image_guidance_scale)
    settings = settings_label(*default, ev.guidance_scale)
    rows = [
        Condition(
            "floor",
            "base model, no references (floor)",
            "base",
            FLOOR_REFERENCES,
            text_scale=ev.guidance_scale,
            coupled=False,
        )
    ]
    rows += [
        _jedi(
            ev, f"jedi-k{k}", f"JeDi, {k} reference{'s' * (k > 1)} (defaults: {settings})", k, *default, loss_gap=True
        )
        for k in sorted(set(ev.references))
    ]
    seen = {_effect(*default)}
    for guidance in ev.guidance_modes:
        for lam in ev.image_guidance_scales:
            if _effect(guidance, lam) in seen:
                continue
            seen.add(_effect(guidance, lam))
            label = f"JeDi, {k2} references, {settings_label(guidance, lam, ev.guidance_scale)}"
            rows.append(_jedi(ev, f"jedi-k{k2}-{guidance}-l{lam:g}", label, k2, guidance, lam))
    images = max_set_size - k2
    if ev.joint_comparison and images > 1:
        for joint in (False, True):
            how = "drawn together in one set" if joint else "each in its own set"
            rows.append(
                _jedi(
                    ev,
                    f"jedi-k{k2}-{'joint' if joint else 'separate'}",
                    f"JeDi, {k2} references, {images} images {how} ({settings})",
                    k2,
                    *default,
                    joint=joint,
                    images=images,
                )
            )
    label = f"JeDi, {k2} references, coupled attention off"
    rows.append(_jedi(ev, f"jedi-k{k2}-uncoupled", label, k2, *default, coupled=False, loss_gap=True))
    if ev.finetune_methods:
        rows.append(
            Condition(
                "floor-plain",
                "base model as plain SD (the fine-tuning base), no references",
                "plain",
                text_scale=ev.guidance_scale,
                coupled=False,
            )
        )
    rows += [
        Condition(
            f"ft-{m}",
            f"{method(m).label} on the toy base, {ev.finetune_images} renders",
            "finetuned",
            text_scale=ev.guidance_scale,
            coupled=False,
            method=m,
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


def _seeds(chunk: list[Trial], images: int = 1) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(t.seed + j) for t in chunk for j in range(images)]


@torch.no_grad()
def generate(pipe, trials: list[Trial], cond: Condition, size: int, ev: ToyWorldEvalSection) -> list[np.ndarray]:
    """``cond.images`` ``size``×``size``×3 uint8 images per trial, trial-major."""
    pipe.set_progress_bar_config(disable=True)
    return _chunked(
        trials,
        lambda chunk: (
            pipe(
                [t.references(cond.k, size) for t in chunk],
                [t.prompts(cond.k, cond.images) for t in chunk],
                num_inference_steps=ev.steps,
                guidance=cond.guidance,
                guidance_scale=cond.text_scale,
                image_guidance_scale=cond.lam,
                joint_targets=cond.joint,
                coupled=cond.coupled,
                height=size,
                width=size,
                generator=_seeds(chunk, cond.images),
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
