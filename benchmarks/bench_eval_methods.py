"""Comparing methods (issue 20): what one ``s3jedi eval --methods`` job saves, and how much sooner JeDi
gets to a personalized image than fine-tune-then-generate.

1. **Time to first image, production shapes, in FLOPs** (no GPU needed: the SD1.4-sized UNets built on
   ``meta``, counted as ``bench_flops`` does, 512², the sd14 profile's plans and 50 sampling steps):
   JeDi's first image is 50 JeDi steps with k = 3 references (a set of 4, text and image guidance). A
   fine-tuning method's is its training (each stage's steps × one training step: forward and backward
   through the UNet, weight gradients only where the stage trains the UNet in full; prior preservation
   doubles the batch and first draws its class images), then one sampled image (and CoRe's test-time
   steps). Target: JeDi ≥ 100× less compute to the first image.
2. **The comparison job vs plain loops, tiny profile, one run**: ``run_evaluation`` with JeDi and
   fine-tuning methods on one subject (fine-tuning in parallel Ray Train runs, then the Ray Data pools),
   against the same work one method after another: ``finetune`` for each method alone, then an
   in-process loop that draws and scores its images one call per case.

    python -m benchmarks.run eval_methods
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_flops import unet_flops
from core import zoo
from core.config import load_config

SIDE = 512
SAMPLING_STEPS = 50
REFERENCES = 3
TINY_METHODS = ["ti", "dreambooth"]
TINY_RUN = [
    "evaluation.selection.subjects=[dog]",
    "evaluation.selection.prompts=2",
    "evaluation.selection.samples=1",
    "evaluation.compute.cpus_per_actor=0.5",
    "finetune.resolution=32",
    "finetune.scaling.cpus_per_worker=0.5",
    "finetune.class_images.steps=2",
    "finetune.class_images.batch_size=2",
    "finetune.dreambooth.prior.num_images=2",
    "finetune.dreambooth.train.steps=3",
    "finetune.ti.train.steps=3",
]


def _train_step_flops(unet, batch: int, full: bool) -> float:
    """One training step on ``batch`` latents: forward and backward, with weight gradients only when the
    UNet trains in full (a token or LoRA stage back-propagates to the text embeddings alone)."""
    unet.requires_grad_(full)
    h = SIDE // 8
    x = torch.randn(batch, unet.config.in_channels, h, h, device="meta")
    context = torch.randn(batch, 77, unet.config.cross_attention_dim, device="meta", requires_grad=not full)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        unet(x, torch.ones(batch, device="meta"), context).sample.float().pow(2).mean().backward()
    unet.requires_grad_(False)
    return float(counter.get_total_flops())


def first_image_flops() -> dict:
    cfg = load_config("sd14")
    from core.methods import get, method_plan

    jedi_unet = zoo.load("jedi", "shape", device="meta").unet
    n = REFERENCES + 1
    jedi_step = unet_flops(jedi_unet, 2 * n + 1, SIDE, layout=[(2, n), (1, 1)])["flops"]
    jedi_image = jedi_step * SAMPLING_STEPS
    sd_unet = zoo.load("sd", "shape", device="meta").unet
    sample_step = unet_flops(sd_unet, 2, SIDE)["flops"]  # both text-guidance branches
    image = sample_step * SAMPLING_STEPS
    batch = cfg.finetune.batch_size
    steps_cache: dict[tuple[int, bool], float] = {}

    def train_step(b: int, full: bool) -> float:
        if (b, full) not in steps_cache:
            steps_cache[(b, full)] = _train_step_flops(sd_unet, b, full)
        return steps_cache[(b, full)]

    out = {
        "side": SIDE,
        "sampling_steps": SAMPLING_STEPS,
        "jedi_references": REFERENCES,
        "jedi_first_image_tflops": jedi_image / 1e12,
        "methods": {},
    }
    for method in ("dreambooth", "ti", "two-stage", "core"):
        plan = method_plan(cfg.finetune, method).settings()
        training, class_images = 0.0, 0
        full_unet = (plan["unet"] or {}).get("mode") == "full"
        for stage in plan["stages"]:
            prior = bool(stage["prior"] and stage["prior"]["enabled"])
            class_images = max(class_images, stage["prior"]["num_images"] if prior else 0)
            full = full_unet and "unet" in stage["trains"]
            training += stage["steps"] * train_step(batch * (2 if prior else 1), full)
        inference = get(method).inference_step
        tto = inference.default_steps(cfg.finetune) if inference else 0
        total = training + class_images * image + tto * train_step(batch, False) + image
        ratio = total / jedi_image
        out["methods"][method] = {
            "training_tflops": training / 1e12,
            "class_images": class_images,
            "test_time_steps": tto,
            "first_image_tflops": total / 1e12,
            "over_jedi": ratio,
        }
        print(
            f"   {method:10s} first image {total / 1e15:8.2f} PFLOP (training {training / 1e15:.2f}, "
            f"{class_images} class images) vs JeDi {jedi_image / 1e15:.3f} PFLOP: JeDi x{ratio:,.0f} less "
            f"(target >= 100: {'yes' if ratio >= 100 else 'no'})"
        )
    return out


def _plain_loops(cfg, methods: list[str], folder: str) -> float:
    """Each method alone: fine-tune it (``finetune``, one method), then draw and score its cases in this
    process, one call per case."""
    from benchmarks.bench_evaluation import draw_and_score
    from evaluation.generators import FINETUNING_FREE
    from training.finetune.runner import finetune

    start = time.perf_counter()
    for method in methods:
        if method not in FINETUNING_FREE:
            (outcome,) = finetune(cfg, [method], folder).outcomes
            if outcome.status != "done":
                raise RuntimeError(f"{method}: {outcome.error}")
        draw_and_score(cfg, method, store=cfg.finetune.store)
    return time.perf_counter() - start


def job_vs_loops() -> dict:
    from cluster.eval_training import train_subjects
    from core.ray_runtime import init_ray
    from evaluation.benchmark import load_benchmark
    from evaluation.job import run_evaluation

    zoo.build("tiny")
    methods = ["jedi", *TINY_METHODS]
    with tempfile.TemporaryDirectory() as tmp:
        loops_cfg = load_config(
            "tiny",
            [
                *TINY_RUN,
                f"evaluation.methods={methods}",
                f"finetune.store={Path(tmp) / 'store'}",
                f"finetune.run.storage_path={Path(tmp) / 'runs'}",
            ],
        )
        init_ray(loops_cfg.ray)  # started once, outside the timings: a cluster is already up when a job runs
        job = run_evaluation(loops_cfg, Path(tmp) / "job", train_subjects)
        folder = str(load_benchmark(None).root / "images" / "dog")
        loops_s = _plain_loops(loops_cfg, methods, folder)
    ratio = job.seconds / loops_s
    first = {m: job.summary["costs"][m]["first_image_s"] for m in methods}
    print(
        f"   {'+'.join(methods)} on 1 subject x 2 prompts: one eval job {job.seconds:.1f} s vs the methods one "
        f"after another in plain loops {loops_s:.1f} s (x{ratio:.2f}); time to first image in the job: "
        + ", ".join(f"{m} {s:.2f} s" for m, s in first.items())
    )
    return {
        "methods": methods,
        "cases": job.planned,
        "job_s": job.seconds,
        "loops_s": loops_s,
        "job_over_loops": ratio,
        "first_image_s": first,
    }


def run() -> dict:
    return {"first_image_flops": first_image_flops(), "tiny_job_vs_loops": job_vs_loops()}
