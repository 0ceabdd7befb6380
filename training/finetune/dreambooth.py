"""DreamBooth (Ruiz et al. 2023): fine-tune the UNet (full or LoRA, optionally the text encoder) on
"a [V] [class]" photos, with prior preservation on class images the base model drew."""

from __future__ import annotations

from core.config.finetune import DreamBoothSection
from training.finetune.plan import TEXT_ENCODER, UNET, MethodPlan, Stage


def plan(cfg: DreamBoothSection) -> MethodPlan:
    trains = frozenset({UNET, TEXT_ENCODER} if cfg.train_text_encoder else {UNET})
    stage = Stage(
        "dreambooth", cfg.train.steps, cfg.train.optim, trains, prior=cfg.prior if cfg.prior.enabled else None
    )
    return MethodPlan("dreambooth", cfg.token, None, cfg.prompt_template, cfg.unet, (stage,))
