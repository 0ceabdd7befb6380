"""Optimizer, learning-rate schedule and grad scaler from the config, and the end of every training step."""

from __future__ import annotations

from pathlib import Path

import torch

from core.config.training import OptimSection
from training.shell import checkpoint as ckpt
from training.shell.precision import grad_scaler


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


class Optimization:
    """An optimizer with its LR schedule and grad scaler, and the end every training step shares:
    unscale, clip, step, zero, schedule. ``guard`` keeps embedding rows other than the learned ones
    exactly as they were (see ``core.methods.tokens.RowGuard``)."""

    def __init__(self, params, cfg: OptimSection, total_steps: int, precision: str, device: torch.device):
        self.params = [p for p in params if p.requires_grad]
        self.optimizer = build_optimizer(self.params, cfg, device.type == "cuda")
        self.schedule = build_lr_schedule(self.optimizer, cfg, total_steps)
        self.scaler = grad_scaler(precision)
        self.max_grad_norm = cfg.max_grad_norm

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, guard=None) -> float:
        """Apply the accumulated gradients; returns the gradient norm before clipping."""
        if guard is not None:
            guard.mask_grad()
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        if guard is not None:
            guard.restore()
        return grad_norm

    @property
    def lr(self) -> float:
        return self.schedule.get_last_lr()[0]

    def save(self, directory: Path) -> None:
        ckpt.write_state(directory, "optimizer", self.optimizer.state_dict())
        ckpt.write_state(directory, "lr_schedule", self.schedule.state_dict())
        ckpt.write_state(directory, "grad_scaler", self.scaler.state_dict())

    def load(self, directory: Path) -> None:
        self.optimizer.load_state_dict(ckpt.read_state(directory, "optimizer"))
        self.schedule.load_state_dict(ckpt.read_state(directory, "lr_schedule"))
        self.scaler.load_state_dict(ckpt.read_state(directory, "grad_scaler"))
