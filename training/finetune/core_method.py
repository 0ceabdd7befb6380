"""CoRe (Wu et al. 2024): textual inversion regularized by the prompt context (``context_reg``), with
embedding-norm rescaling in a middle window; then the UNet with the embedding frozen and prior
preservation. Test-time optimization before sampling is in ``tto``."""

from __future__ import annotations

from core.config.finetune import CoReSection
from training.finetune.plan import TOKENS, UNET, MethodPlan, Stage


def plan(cfg: CoReSection) -> MethodPlan:
    stages = (
        Stage("token", cfg.stage1.steps, cfg.stage1.optim, frozenset({TOKENS}), context_reg=cfg),
        Stage(
            "unet",
            cfg.stage2.steps,
            cfg.stage2.optim,
            frozenset({UNET}),
            prior=cfg.prior if cfg.prior.enabled else None,
        ),
    )
    return MethodPlan("core", None, cfg.token, cfg.prompt_template, cfg.unet, stages)
