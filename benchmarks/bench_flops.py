"""Exact compute of the production shapes, counted on the meta device: no weights, no GPU.

Timings need a GPU; FLOPs do not. ``torch.utils.flop_counter.FlopCounterMode`` counts every matmul,
convolution and attention of one UNet call of the production architecture built on ``meta`` (the zoo's
``shape`` entries), so on any machine this answers:

1. **JeDi sampling vs the plain pipeline, per image-pass, at 512²** (issue 13's ≤ 1.15× target in
   compute terms): a JeDi step runs the set of N twice (text guidance) and the target alone once (image
   guidance), the plain pipeline N images twice. Coupled self-attention attends over all N·L tokens of a
   set, so its cost grows with N² where independent images grow with N: the "≈ N× one image" limit holds
   for everything but attention, and at 64×64 latent tokens attention is not small.
2. **SDXL at 1024²**: FLOPs of a 30-step image (UNet, both guidance branches), the throughput the published
   A100 figures imply (7.4 s plain, 2.5 s optimized) as a fraction of the A100's peak (MFU), and the
   s/image the same MFU gives on other GPUs.
3. **JeDi training at 512²** (a set of 3, forward + backward): FLOPs per image × the paper's schedule
   (140K steps × 2048 images), the A100 utilisation that the paper's 32 A100 × 36 h implies, and the
   GPU-hours at a typical 40 % MFU.

Only the UNet is counted (text encoders and the VAE run once per image, not per step).

    python -m benchmarks.run flops
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from core import zoo

# Dense fp16/bf16 tensor-core peaks, TFLOP/s (NVIDIA A100 and H100 SXM datasheets; sparsity not counted).
PEAK_TFLOPS = {"A100 SXM": 312.0, "H100 SXM": 989.0}
SDXL_A100_S = {"plain": 7.4, "optimized": 2.5}  # s/image, 1024² 30 steps (diffusers/PyTorch blog)
SDXL_STEPS = 30
PAPER = {"steps": 140_000, "batch_images": 2048, "gpus": 32, "hours": 36, "gpu": "A100 SXM"}  # JeDi paper
TYPICAL_MFU = 0.40


def unet_flops(unet, batch: int, side: int, *, layout=None, context: int = 768, added=None, train=False) -> dict:
    """FLOPs of one UNet call on ``batch`` latents of ``side``/8, split into attention and the rest."""
    h = side // 8
    x = torch.randn(batch, unet.config.in_channels, h, h, device="meta")
    kwargs = {"cross_attention_kwargs": {"set_size": layout}} if layout is not None else {}
    if added is not None:
        kwargs["added_cond_kwargs"] = added(batch)
    with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(train):
        out = unet(x, torch.ones(batch, device="meta"), torch.randn(batch, 77, context, device="meta"), **kwargs)
        if train:
            out.sample.float().pow(2).mean().backward()
    ops = counter.get_flop_counts().get("Global", {})
    # On meta, SDPA runs its math path (batched matmuls); linear layers are mm/addmm, so bmm is attention.
    attention = sum(v for op, v in ops.items() if "scaled_dot_product" in str(op) or str(op) == "aten.bmm")
    return {"flops": counter.get_total_flops(), "attention_flops": attention}


def jedi_vs_plain(side: int = 512) -> dict:
    unet = zoo.load("jedi", "shape", device="meta").unet
    one = unet_flops(unet, 1, side, layout=1)["flops"]
    out = {"side": side, "one_image_pass_tflops": one / 1e12, "per_set_size": {}}
    for n in (2, 3, 4):
        jedi = unet_flops(unet, 2 * n + 1, side, layout=[(2, n), (1, 1)])
        plain = unet_flops(unet, 2 * n, side, layout=1)
        per_pass = (jedi["flops"] / (2 * n + 1)) / (plain["flops"] / (2 * n))
        out["per_set_size"][n] = {
            "jedi_step_tflops": jedi["flops"] / 1e12,
            "plain_step_tflops": plain["flops"] / 1e12,
            "ratio_per_image_pass": per_pass,
            "attention_share_jedi": jedi["attention_flops"] / jedi["flops"],
            "attention_share_plain": plain["attention_flops"] / plain["flops"],
        }
        print(
            f"   JeDi set of {n} vs plain, {side}²: {per_pass:.2f}x the FLOPs per image-pass (target <= 1.15); "
            f"attention {jedi['attention_flops'] / jedi['flops']:.0%} of JeDi's step, "
            f"{plain['attention_flops'] / plain['flops']:.0%} of plain's"
        )
    return out


def sdxl(side: int = 1024) -> dict:
    unet = zoo.load("sdxl", "shape", device="meta").unet

    def added(batch: int) -> dict:
        return {
            "text_embeds": torch.randn(batch, 1280, device="meta"),
            "time_ids": torch.randn(batch, 6, device="meta"),
        }

    step = unet_flops(unet, 2, side, context=2048, added=added)["flops"]  # both guidance branches
    image = step * SDXL_STEPS
    out = {"side": side, "steps": SDXL_STEPS, "image_tflops": image / 1e12, "published_a100": {}}
    for name, seconds in SDXL_A100_S.items():
        achieved = image / seconds / 1e12
        mfu = achieved / PEAK_TFLOPS["A100 SXM"]
        at_same_mfu = {gpu: image / (mfu * peak * 1e12) for gpu, peak in PEAK_TFLOPS.items()}
        out["published_a100"][name] = {
            "s": seconds,
            "achieved_tflops": achieved,
            "mfu": mfu,
            "s_at_same_mfu": at_same_mfu,
        }
        print(
            f"   SDXL {side}² {SDXL_STEPS} steps = {image / 1e12:.0f} TFLOP (UNet); the {name} A100 figure "
            f"({seconds} s) is {achieved:.0f} TFLOP/s, MFU {mfu:.0%}; the same MFU on an H100: "
            f"{at_same_mfu['H100 SXM']:.2f} s/image"
        )
    return out


def training(side: int = 512, set_size: int = 3) -> dict:
    unet = zoo.load("jedi", "shape", device="meta").unet
    step = unet_flops(unet, set_size, side, layout=set_size, train=True)["flops"]
    per_image = step / set_size
    total = per_image * PAPER["steps"] * PAPER["batch_images"]
    paper_seconds = PAPER["gpus"] * PAPER["hours"] * 3600
    implied = total / paper_seconds / 1e12
    peak = PEAK_TFLOPS[PAPER["gpu"]]
    hours_typical = total / (TYPICAL_MFU * peak * 1e12) / 3600
    print(
        f"   JeDi training, {side}², set of {set_size}: {per_image / 1e12:.2f} TFLOP per image (forward + backward); "
        f"the paper's schedule is {total / 1e21:.2f} ZFLOP: 32 A100 x 36 h means {implied:.0f} TFLOP/s per A100 "
        f"(MFU {implied / peak:.0%}); at {TYPICAL_MFU:.0%} MFU it takes {hours_typical:,.0f} A100-hours (paper: 1,152)"
    )
    return {
        "side": side,
        "set_size": set_size,
        "tflops_per_image": per_image / 1e12,
        "paper_schedule_zflops": total / 1e21,
        "paper_implied_tflops_per_gpu": implied,
        "paper_implied_mfu": implied / peak,
        "a100_hours_at_typical_mfu": hours_typical,
        "typical_mfu": TYPICAL_MFU,
        "paper_a100_hours": PAPER["gpus"] * PAPER["hours"],
    }


def run() -> dict:
    start = time.perf_counter()
    out = {"jedi_vs_plain": jedi_vs_plain(), "sdxl": sdxl(), "training": training(), "peak_tflops": PEAK_TFLOPS}
    out["wall_s"] = time.perf_counter() - start
    return out
