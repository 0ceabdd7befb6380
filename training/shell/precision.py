"""Mixed precision: bf16/fp16 autocast on GPU, plain fp32 on CPU."""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 on CUDA, fp32 elsewhere; half precision on CPU is refused (slow and lossy)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision != "fp32" and device.type != "cuda":
        raise ValueError(f"precision: {precision} needs GPU workers (scaling.use_gpu=true); use fp32 or auto on CPU")
    return precision


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str) -> torch.amp.GradScaler:
    """fp16 needs loss scaling; bf16 and fp32 do not (a disabled scaler is a no-op)."""
    return torch.amp.GradScaler("cuda", enabled=precision == "fp16")
