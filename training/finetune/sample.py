"""Drawing images with a fine-tuned subject (``s3jedi finetune sample``): a quick look at a result, with
CoRe's test-time optimization applied per prompt for CoRe subjects."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from core import zoo
from core.config import S3JediConfig
from core.paths import s3jedi_home
from core.subjects import SubjectCard, SubjectStore, apply_subject, read_card
from training.finetune.export import store_location
from training.finetune.tto import optimized_for


def subject_dir(cfg: S3JediConfig, subject: str) -> Path:
    """``subject`` is a subject directory, or an id in the configured store."""
    if Path(subject).is_dir():
        return Path(subject)
    home = cfg.home or s3jedi_home()
    return SubjectStore(store_location(cfg), cache_dir=home / "cache" / "subjects").local_dir(subject)


def subject_pipeline(cfg: S3JediConfig, subject: str) -> tuple:
    """The base pipeline with ``subject`` applied, and the subject's card: load once, draw many."""
    where = subject_dir(cfg, subject)
    card = read_card(where)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = apply_subject(zoo.load("sd", card.base_model, home=cfg.home, device=device), where)
    pipe.set_progress_bar_config(disable=True)
    return pipe, card


def draw(
    cfg: S3JediConfig,
    pipe,
    card: SubjectCard,
    prompts: list[str],
    seeds: list[int],
    *,
    steps: int,
    guidance_scale: float,
    side: int,
    tto_steps: int | None = None,
) -> list:
    """One image per (prompt, seed) from ``subject_pipeline``'s pipeline (prompts use ``{0}``/``{1}`` for
    the subject's token and class word). ``tto_steps`` defaults to ``finetune.core.tto_steps`` for CoRe
    subjects and 0 otherwise."""
    if len(prompts) != len(seeds):
        raise ValueError(f"seeds: {len(seeds)} seeds for {len(prompts)} prompts")
    tto = (cfg.finetune.core.tto_steps if card.method == "core" else 0) if tto_steps is None else tto_steps
    if tto and not card.weights.embeddings:
        raise ValueError(f"--tto-steps: subject {card.subject_id} ({card.method}) has no learned embedding to optimise")
    device = pipe.device
    images = []
    for prompt, seed in zip(prompts, seeds, strict=True):
        optimised = (
            optimized_for(pipe, card, prompt, cfg.finetune.core, tto, side, seed) if tto else contextlib.nullcontext()
        )
        with optimised:
            images += pipe(
                card.render_prompt(prompt),
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                height=side,
                width=side,
                generator=torch.Generator(device).manual_seed(seed),
            ).images
    return images


def sample_subject(
    cfg: S3JediConfig,
    subject: str,
    prompts: list[str],
    *,
    steps: int,
    guidance_scale: float,
    side: int,
    seed: int,
    tto_steps: int | None = None,
) -> list:
    """One image per prompt, prompt ``i`` drawn with seed ``seed + i`` (see ``draw``)."""
    pipe, card = subject_pipeline(cfg, subject)
    seeds = [seed + i for i in range(len(prompts))]
    return draw(
        cfg, pipe, card, prompts, seeds, steps=steps, guidance_scale=guidance_scale, side=side, tto_steps=tto_steps
    )
