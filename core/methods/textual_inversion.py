"""Textual Inversion (Gal et al. 2023): learn only the embedding row(s) of a new token, each photo
captioned by one of the method's caption templates drawn per step."""

from __future__ import annotations

from core.config.finetune import FinetuneSection
from core.methods.plan import TOKENS, MethodPlan, Stage
from core.methods.registry import Method, register


def plan(settings: FinetuneSection) -> MethodPlan:
    cfg = settings.ti
    stage = Stage("ti", cfg.train.steps, cfg.train.optim, frozenset({TOKENS}))
    return MethodPlan("ti", None, cfg.token, cfg.prompt_template, None, (stage,), captions=tuple(cfg.captions))


register(Method("ti", "Textual Inversion", plan))
