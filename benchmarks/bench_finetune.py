"""Fine-tuning speed per method on the tiny model, and what Ray Train costs on top of the same loop.

Each method trains the DreamBooth dog twice with identical settings: through ``s3jedi finetune``
(one Ray Train worker per subject, subjects one after another) and through Ray Train's local mode,
which runs the *same* per-worker loop (the training shell's) in this process without workers (single-threaded, as a Ray
worker with half a CPU is). Speeds come from the loop's own reporting windows (TensorBoard
``steps_per_s``), the first window of every stage dropped as warm-up and the best of the others
kept, so the ratio measures the steady-state overhead of running under Ray (target >= 0.9);
start-up (workers, model loading) is reported separately as wall time per subject. Methods run one
after another, each first in-process then on Ray, so changes in machine load hit both sides alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from core.config import load_config
from core.paths import REPO_ROOT

STAGE_STEPS, WINDOW = 200, 50
DOG = REPO_ROOT.parent / "shared" / "dreambooth" / "images" / "dog"
METHODS = ("dreambooth", "ti", "two-stage", "core")


def _cfg(tmp: Path, name: str):
    s = STAGE_STEPS
    return load_config(
        "tiny",
        [
            f"finetune.run.storage_path={tmp / 'runs'}",
            f"finetune.store={tmp / 'store'}",
            f"finetune.run.name={name}",
            "finetune.resolution=32",
            "finetune.scaling.cpus_per_worker=0.5",
            "finetune.concurrency=1",
            f"finetune.run.log_every={WINDOW}",
            f"finetune.run.checkpoint_every={s}",
            "finetune.class_images.steps=2",
            "finetune.dreambooth.prior.num_images=4",
            "finetune.core.prior.num_images=4",
            f"finetune.dreambooth.train.steps={s}",
            f"finetune.ti.train.steps={s}",
            f"finetune.two_stage.stage1.steps={s}",
            f"finetune.two_stage.stage2.steps={s}",
            f"finetune.core.stage1.steps={s}",
            f"finetune.core.stage2.steps={s}",
            f"finetune.core.rescale_start={s // 3}",
            f"finetune.core.rescale_end={2 * s // 3}",
        ],
    )


def _stage_speeds(run_dir: Path, stage_ends: list[int]) -> list[float]:
    """Each stage's best steps/s over its reporting windows after the first: on a shared machine the
    fastest window is the one least disturbed by other load (as ``min`` in ``timeit``)."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(run_dir / "tensorboard"))
    mux.Reload()
    windows = sorted((e.step, e.value) for run in mux.Runs() for e in mux.Scalars(run, "train/steps_per_s"))
    speeds, start = [], 0
    for end in stage_ends:
        inside = [v for step, v in windows if start < step <= end]
        speeds.append(max(inside[1:] or inside))
        start = end
    return speeds


def _in_process(cfg, job) -> float:
    """Wall seconds of the subject's loop in this process (Ray Train local mode), single-threaded as
    a Ray worker holding half a CPU is."""
    from training.finetune.recipe import SubjectRecipe
    from training.shell.trainer import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        fit(SubjectRecipe.of(cfg, job), in_process=True)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def run() -> dict:
    from core.methods import method_plan
    from core.ray_runtime import init_ray
    from training.finetune.class_images import ensure_class_images
    from training.finetune.runner import finetune, plan_jobs

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        plain_cfg, ray_cfg = _cfg(tmp, "plain"), _cfg(tmp, "ray")
        init_ray(num_cpus=2)
        classes = ensure_class_images(plain_cfg, {"dog": 4})["dog"]
        for method in METHODS:  # interleaved, so a change of machine load hits both sides alike
            (job,), _ = plan_jobs(plain_cfg, [method], str(DOG))
            plain_wall = _in_process(plain_cfg, replace(job, class_images=classes))
            (outcome,) = finetune(ray_cfg, [method], str(DOG)).outcomes
            assert outcome.status == "done", outcome.error
            plan = method_plan(ray_cfg.finetune, method)
            ends = [plan.stage_start(i + 1) for i in range(len(plan.stages))]
            plain = _stage_speeds(tmp / "runs" / "plain" / outcome.subject_id, ends)
            ray = _stage_speeds(tmp / "runs" / "ray" / outcome.subject_id, ends)
            results[method] = {
                "stages": [s.name for s in plan.stages],
                "plain_s_per_100_steps": [100 / v for v in plain],
                "ray_s_per_100_steps": [100 / v for v in ray],
                "ratio_ray_over_plain": [r / p for r, p in zip(ray, plain, strict=True)],
                "plain_wall_s": plain_wall,
                "ray_wall_s": outcome.seconds,
            }
    for method, r in results.items():
        stages = ", ".join(
            f"{name}: {p:.1f} s/100 plain, {q:.1f} s/100 Ray (ratio {x:.2f})"
            for name, p, q, x in zip(
                r["stages"],
                r["plain_s_per_100_steps"],
                r["ray_s_per_100_steps"],
                r["ratio_ray_over_plain"],
                strict=True,
            )
        )
        print(f"   {method:10s} {stages}; wall {r['plain_wall_s']:.1f} s in-process vs {r['ray_wall_s']:.1f} s on Ray")
    ratios = [x for r in results.values() for x in r["ratio_ray_over_plain"]]
    worst, mean = min(ratios), statistics.geometric_mean(ratios)
    print(f"   steady-state ratio Ray/plain: geometric mean {mean:.2f}, worst stage {worst:.2f} (target >= 0.9)")
    print(
        "   GPU entry (SD2.1-base 512², two-stage 100+400 steps): not run here - needs a GPU machine "
        "and the stabilityai/stable-diffusion-2-1-base checkpoint (models.sd)"
    )
    return {
        "methods": results,
        "mean_ratio_ray_over_plain": mean,
        "worst_ratio_ray_over_plain": worst,
        "target_ratio": 0.9,
        "stage_steps": STAGE_STEPS,
        "window": WINDOW,
        "gpu_entry": "not run (no GPU)",
    }
