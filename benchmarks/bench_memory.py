"""Peak working memory of the production shapes at production sizes, measured on a CPU.

A GPU reports its own peak (``torch.cuda.max_memory_allocated``, which ``bench_production`` prints on
one). Without a GPU the same computation runs here in float32 at 512², and the process's resident-set
high-water mark (``VmHWM``, reset before each call through ``/proc/self/clear_refs``) rises by the call's
working memory: activations, attention workspace, gradients. CPU SDPA uses a flash kernel like the
GPU's (no N·L × N·L score matrix), so this carries over to a GPU up to allocator and cuDNN workspace
differences; float16/bf16 activations take half. Weights and optimizer states are counted from the
parameter count, not measured. Linux only (``/proc``). About 5 minutes on 2 cores.

    python -m benchmarks.run memory
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from pathlib import Path

import torch

from core import zoo

SIDE = 512
GB = 1e9


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} (peak memory is measured on Linux only)")


def _resident_is_live() -> None:
    """Make the resident set track live memory: glibc otherwise raises its mmap threshold after large
    frees and keeps freed heap pages, so a second measurement would start from a set inflated by the
    first one's cache (measured: 0.8 GB instead of 4 GB for the next training step)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD fixed (no dynamic raise): big blocks are mmap'ed, unmapped on free
    libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD: give freed heap tops back
    libc.malloc_trim(0)


def peak_working_bytes(fn: Callable[[], object]) -> int:
    """How far the resident set's high-water mark rises above its level before ``fn()`` while it runs."""
    _resident_is_live()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _status("VmRSS")
    fn()
    return _status("VmHWM") - before


def _unet_call(unet, batch: int, layout, train: bool = False) -> Callable[[], None]:
    h = SIDE // 8
    x = torch.randn(batch, unet.config.in_channels, h, h)
    t, text = torch.full((batch,), 500), torch.randn(batch, 77, unet.config.cross_attention_dim)

    def call() -> None:
        with torch.set_grad_enabled(train):
            out = unet(x, t, text, cross_attention_kwargs={"set_size": layout}).sample
            if train:
                out.pow(2).mean().backward()

    return call


def sampling(unet) -> dict:
    """One denoising step's UNet call: JeDi's set of N with both guidances vs N plain images with text guidance."""
    out = {}
    for n in (2, 3, 4):
        jedi = peak_working_bytes(_unet_call(unet, 2 * n + 1, [(2, n), (1, 1)])) / GB
        plain = peak_working_bytes(_unet_call(unet, 2 * n, 1)) / GB
        out[n] = {"jedi_gb": jedi, "plain_gb": plain, "ratio": jedi / plain}
        print(
            f"   sampling step, set of {n}, {SIDE}², fp32: JeDi {jedi:.2f} GB vs plain {plain:.2f} GB ({jedi / plain:.2f}x)"
        )
    return out


def training(unet) -> dict:
    """A training step on a set of 3 (forward + backward into existing gradients), with and without
    gradient checkpointing."""
    params = sum(p.numel() for p in unet.parameters())
    states = {"weights_fp32_gb": params * 4 / GB, "grads_fp32_gb": params * 4 / GB, "adamw_fp32_gb": params * 8 / GB}
    out = {"parameters": params, **states}
    unet.train()
    for p in unet.parameters():  # gradients exist before the step, as in a training loop: not working memory
        p.grad = torch.zeros_like(p)
    for checkpointing in (False, True):
        unet.enable_gradient_checkpointing() if checkpointing else unet.disable_gradient_checkpointing()
        key = "checkpointing" if checkpointing else "plain"
        out[key] = peak_working_bytes(_unet_call(unet, 3, 3, train=True)) / GB
        print(f"   training step, set of 3, {SIDE}², fp32, {key}: {out[key]:.2f} GB working memory")
    static = sum(states.values())
    out["ratio_checkpointing"] = out["checkpointing"] / out["plain"]
    print(
        f"   + {static:.1f} GB of fp32 weights, gradients and AdamW states ({params / 1e6:.0f}M parameters); "
        f"gradient checkpointing keeps {out['ratio_checkpointing']:.2f}x the working memory"
    )
    return out


def run() -> dict:
    start = time.perf_counter()
    unet = zoo.load("jedi", "shape").unet.eval()
    result = {"side": SIDE, "dtype": "float32", "sampling": sampling(unet), "training": training(unet)}
    result["wall_s"] = time.perf_counter() - start
    return result
