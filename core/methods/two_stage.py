"""Two-stage adjective-token method: stage 1 learns an adjective-like token ("<rare>", from "rare") for
"a photo of <rare> [class]"; stage 2 fine-tunes the UNet on the same prompt with the token and the
text encoder frozen and no prior preservation (the class noun keeps the prior), scored every
``select_every`` steps; the best-scoring checkpoint is the one published (§4.1)."""

from __future__ import annotations

from core.config.finetune import FinetuneSection
from core.methods.plan import TOKENS, UNET, MethodPlan, Selection, Stage
from core.methods.registry import Method, register


def plan(settings: FinetuneSection) -> MethodPlan:
    cfg = settings.two_stage
    stages = (
        Stage("token", cfg.stage1.steps, cfg.stage1.optim, frozenset({TOKENS})),
        Stage(
            "unet",
            cfg.stage2.steps,
            cfg.stage2.optim,
            frozenset({UNET}),
            select=Selection(cfg.select_every, cfg.select_images) if cfg.select_every else None,
        ),
    )
    return MethodPlan("two-stage", None, cfg.token, cfg.prompt_template, cfg.unet, stages)


register(Method("two-stage", "two-stage TI→UNet", plan))
