"""Optimizer and learning-rate schedule from the config."""

from __future__ import annotations

import torch

from core.config.training import OptimSection


def build_optimizer(params, cfg: OptimSection, on_gpu: bool) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.adam_8bit:
        if not on_gpu:
            raise ValueError("optim.adam_8bit: needs GPU workers (scaling.use_gpu=true)")
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise ValueError("optim.adam_8bit: bitsandbytes is not installed (pip install -e '.[gpu]')") from exc
        return bnb.optim.AdamW8bit(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def build_lr_schedule(optimizer: torch.optim.Optimizer, cfg: OptimSection, total_steps: int):
    from diffusers.optimization import get_scheduler

    return get_scheduler(cfg.schedule, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total_steps)
