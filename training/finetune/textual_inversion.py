"""Textual Inversion (Gal et al. 2023): learn only the embedding row(s) of a new token."""

from __future__ import annotations

from core.config.finetune import TextualInversionSection
from training.finetune.plan import TOKENS, MethodPlan, Stage


def plan(cfg: TextualInversionSection) -> MethodPlan:
    stage = Stage("ti", cfg.train.steps, cfg.train.optim, frozenset({TOKENS}))
    return MethodPlan("ti", None, cfg.token, cfg.prompt_template, None, (stage,))
