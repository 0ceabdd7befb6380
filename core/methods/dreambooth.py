"""DreamBooth (Ruiz et al. 2023): fine-tune the UNet (full or LoRA, optionally the text encoder) on
"a [V] [class]" photos, with prior preservation on class images the base model drew.

Self-distillation's student is the same method on the photos plus gold samples (``selfdistill``),
registered here under its own name so its subjects say what made them."""

from __future__ import annotations

from dataclasses import replace

from core.config.finetune import FinetuneSection
from core.methods.plan import TEXT_ENCODER, UNET, MethodPlan, Stage
from core.methods.registry import Method, register


def plan(settings: FinetuneSection) -> MethodPlan:
    cfg = settings.dreambooth
    trains = frozenset({UNET, TEXT_ENCODER} if cfg.train_text_encoder else {UNET})
    stage = Stage(
        "dreambooth", cfg.train.steps, cfg.train.optim, trains, prior=cfg.prior if cfg.prior.enabled else None
    )
    return MethodPlan("dreambooth", cfg.token, None, cfg.prompt_template, cfg.unet, (stage,))


def student_plan(settings: FinetuneSection) -> MethodPlan:
    return replace(plan(settings), method="selfdistill")


register(Method("dreambooth", "DreamBooth", plan))
register(Method("selfdistill", "self-distilled DreamBooth", student_plan, selectable=False))
