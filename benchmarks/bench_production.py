"""Production-shaped models (random weights, real architectures): speed and memory.

On a GPU the sizes are the production ones (SDXL 1024² 30 steps fp16; SD1.4-shaped JeDi at 512²);
on a CPU the same code runs at reduced sizes so it never rots: JeDi and training on the SD1.4 shape at
64², and SDXL on the tiny profile (the SDXL shape is slow on a CPU). ``S3JEDI_BENCH_REHEARSE=1`` runs
the GPU plan on a CPU (SDXL shape, float16, bf16 autocast) at CPU sizes (``benchmarks.common.Target``).
Every entry prints a ratio against a baseline measured in the same run.

    python -m benchmarks.run production
    S3JEDI_BENCH_COMPILE=1 python -m benchmarks.run production    # also torch.compile the SDXL UNet
"""

from __future__ import annotations

import os
import time

import torch

from benchmarks.common import Target, target, timeit
from core import zoo

PAPER_STEPS, PAPER_BATCH = 140_000, 2048  # JeDi paper: 140K steps x batch 2048 on 32 A100 in 36 h
PUBLISHED_SDXL_S = 2.5  # s/image, optimized A100 (diffusers/PyTorch blog: 7.4 s plain -> 2.5 s)


def sdxl(t: Target) -> dict:
    model = "shape" if t.production else "tiny"
    pipe = zoo.load("sdxl", model, device=t.device, dtype=t.half)
    pipe.set_progress_bar_config(disable=True)
    compiled = os.environ.get("S3JEDI_BENCH_COMPILE") == "1"
    if compiled:
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=True)
    size, steps = t.pick((1024, 30), (128, 1) if t.rehearse else (64, 4))
    timing = timeit(
        lambda: (pipe("a photo of a teapot", height=size, width=size, num_inference_steps=steps), t.sync()),
        repeat=t.pick(3, 1),
        warmup=1,
    )
    seconds = timing["median_s"]
    print(
        f"   SDXL ({model}) {size}² {steps} steps on {t.device}: {seconds:.2f} s/image"
        + (f" ({seconds / PUBLISHED_SDXL_S:.2f}x the published optimized A100 figure)" if t.gpu else " (CPU)")
    )
    return {
        "size": size,
        "steps": steps,
        "s_per_image": seconds,
        "published_a100_optimized_s": PUBLISHED_SDXL_S,
        "ratio_vs_published": seconds / PUBLISHED_SDXL_S if t.gpu else None,
        "model": model,
        "dtype": str(t.half),
        "compiled": compiled,
    }


def jedi_sampling(t: Target) -> dict:
    from PIL import Image

    jedi = zoo.load("jedi", "shape", device=t.device, dtype=t.half)
    jedi.set_progress_bar_config(disable=True)
    from diffusers import StableDiffusionPipeline

    plain = StableDiffusionPipeline(
        vae=jedi.vae,
        text_encoder=jedi.text_encoder,
        tokenizer=jedi.tokenizer,
        unet=zoo.load("sd", "shape", device=t.device, dtype=t.half).unet,
        scheduler=jedi.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    plain.set_progress_bar_config(disable=True)
    size, steps = t.pick(512, 64), t.pick(10, 2)
    ref = Image.new("RGB", (size, size), (120, 90, 60))
    out = {}
    for n in (2, 3, 4):
        t.reset_peak()
        tj = timeit(
            lambda: (
                jedi(
                    [ref] * (n - 1),
                    "a dog",
                    num_inference_steps=steps,
                    height=size,
                    width=size,
                    image_guidance_scale=2.0,
                    output_type="latent",
                ),
                t.sync(),
            ),
            repeat=2,
            warmup=1,
        )
        mem_j = t.peak_gb()
        t.reset_peak()
        tp = timeit(
            lambda: (
                plain(
                    ["a dog"] * n,
                    num_inference_steps=steps,
                    height=size,
                    width=size,
                    guidance_scale=7.5,
                    output_type="latent",
                ),
                t.sync(),
            ),
            repeat=2,
            warmup=1,
        )
        mem_p = t.peak_gb()
        # JeDi's paper guidance runs 2 passes over the N set members (Eq. 3), the plain pipeline 2 passes
        # (CFG) over N images: the same image-passes. Both stop at latents: JeDi decodes 1 image where
        # the plain pipeline decodes N, which at CPU sizes and few steps would dominate and flatter JeDi
        # (measured 0.50x for N = 2 with decoding).
        ratio = tj["median_s"] / tp["median_s"]
        per_pass = ratio
        out[n] = {
            "jedi_s": tj["median_s"],
            "plain_s": tp["median_s"],
            "ratio": ratio,
            "ratio_per_image_pass": per_pass,
            "jedi_peak_gb": mem_j,
            "plain_peak_gb": mem_p,
        }
        print(
            f"   JeDi set of {n} vs plain batch of {n} ({size}², {steps} steps): {ratio:.2f}x, per image-pass "
            f"{per_pass:.2f}x (target <= 1.15)" + (f"; peak {mem_j:.1f} vs {mem_p:.1f} GiB" if t.gpu else "")
        )
    return {"size": size, "steps": steps, "dtype": str(t.half), "per_set_size": out, "target": 1.15}


def training_step(t: Target) -> dict:
    """One optimizer step of the JeDi loss on the SD1.4 shape, through the trainer's own precision
    context (``training.shell.precision.autocast``): bf16 autocast with and without gradient checkpointing."""
    from diffusers import DDPMScheduler

    from core.jedi import JeDiPipeline, jedi_loss
    from training.shell.precision import autocast

    pipe: JeDiPipeline = zoo.load("jedi", "shape", device=t.device)
    unet = pipe.unet.train()
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    size = t.pick(512, 64)
    n, sets = 3, t.pick(4, 1)
    device = torch.device(t.device)
    latents = torch.randn(sets * n, 4, size // 8, size // 8, device=device)
    text = torch.randn(sets * n, 77, 768, device=device)
    null = torch.zeros(1, 77, 768, device=device)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    results = {}
    for checkpointing in (False, True):
        for precision in ("bf16", "fp32") if t.production else ("fp32",):
            unet.enable_gradient_checkpointing() if checkpointing else unet.disable_gradient_checkpointing()

            def step():
                with autocast(precision, device):
                    loss = jedi_loss(unet, noise_sched, latents, text, null, set_size=n).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                t.sync()

            t.reset_peak()
            timing = timeit(step, repeat=t.pick(3, 1), warmup=1)
            ips = sets * n / timing["median_s"]
            hours = PAPER_STEPS * PAPER_BATCH / ips / 3600
            key = f"{precision}{'+ckpt' if checkpointing else ''}"
            results[key] = {
                "images_per_s": ips,
                "peak_gb": t.peak_gb(),
                "implied_device_hours_for_paper_schedule": hours,
            }
            print(
                f"   JeDi training step ({size}², set of 3, {key}): {ips:.2f} img/s on {t.device}; "
                f"paper schedule would take {hours:,.0f} {t.device.upper()}-hours (paper: 32 A100 x 36 h = 1,152)"
            )
    return {"size": size, "sets": sets, "set_size": n, "results": results, "paper_gpu_hours": 32 * 36}


def run() -> dict:
    t = target()
    start = time.perf_counter()
    out = {
        "device": t.device,
        "rehearsal": t.rehearse,
        "sdxl": sdxl(t),
        "jedi_sampling": jedi_sampling(t),
        "training_step": training_step(t),
    }
    out["wall_s"] = time.perf_counter() - start
    print("   S3 stage throughput and Serve latency: see benchmarks/bench_datagen.py and bench_serving.py")
    return out
