"""S3 builder throughput (issue: S3 dataset builder).

1. Sets per minute on the tiny profile: the Ray Data pipeline (separate actor pools per stage, and the
   fused layout) against a plain sequential loop in this process calling the same stage functions
   (``rows.apply_stage`` over ``stages.IMAGE_STAGES``). Reported end to end (model loading and Ray
   start-up included) and in steady state (``summary.steady_rate``: the middle half of the subjects,
   once every model is loaded), with the steady-state ratio Ray / sequential as the headline; target
   >= 1.0 on 2 cores. Tiny models compute in milliseconds, so start-up dominates end to end.
2. Per-stage share of worker time, from the build's own stage traces.
3. GPU only: one SDXL 1024² 30-step collage with ``models.sdxl`` of the sdxl profile (or, when it is not
   in the Hugging Face cache, the ``shape`` model: the same architecture at random init, which takes the
   same time), against the published 2.5 s/image of an optimized A100 (ratio = ours / 2.5; lower is better).

``S3JEDI_BENCH_SUBJECTS`` sets the number of subjects (default 32).
"""

from __future__ import annotations

import os
import tempfile
import time

from core.config import load_config
from core.config.runtime import RayConfig

PUBLISHED_SDXL_A100_S = 2.5


def _config(subjects: int, *extra: str):
    per_category = 2
    return load_config(
        "tiny",
        [
            "datagen.progress=false",
            f"datagen.subjects.num_categories={max(1, subjects // per_category)}",
            f"datagen.subjects.subjects_per_category={per_category}",
            "datagen.shard_size=4",
            *extra,
        ],
    )


def sequential(cfg) -> dict:
    """The baseline: every stage function called in order, one subject at a time, in this process."""
    from datagen import stages, subjects
    from datagen.rows import WorkRow, apply_stage
    from datagen.summary import steady_rate

    start = time.perf_counter()
    fns = {name: module.load(cfg, "cpu") for name, module in stages.IMAGE_STAGES.items()}
    loaded = time.perf_counter()
    requests, _ = subjects.requests(cfg)
    parsed = [
        subjects.parse(r, subjects.template_answer(r, cfg.datagen.subjects), None, cfg.datagen.subjects)
        for r in requests
    ]
    chosen, _ = subjects.select(parsed, [r["subject_id"] for r in requests])
    seconds = dict.fromkeys(fns, 0.0)
    sets = 0
    stamps = []
    for s in chosen:
        row = WorkRow(s.subject_id, 0, s.category, s.subject, s.scenes, s.seed)
        for name, fn in fns.items():
            row = apply_stage(name, fn, row)
        for t in row.trace:
            seconds[t.stage] += t.seconds
        sets += 0 if row.rejected else 1
        stamps.append(time.perf_counter() - loaded)
    end = time.perf_counter()
    steady = steady_rate(stamps)
    return {
        "sets": sets,
        "subjects": len(chosen),
        "load_s": loaded - start,
        "wall_s": end - start,
        "sets_per_min": 60 * sets / (end - start),
        "steady_sets_per_min": steady * sets / len(chosen) if steady else None,
        "stage_share": _share(seconds),
    }


def _share(seconds: dict[str, float]) -> dict[str, float]:
    total = sum(seconds.values()) or 1.0
    return {k: round(v / total, 3) for k, v in seconds.items()}


def ray_build(cfg) -> dict:
    from datagen.pipeline import build

    with tempfile.TemporaryDirectory() as out:
        summary = build(cfg, out).summary
    run = summary["this_run"]
    accepted = run["sets"] / run["subjects"] if run["subjects"] else 0.0
    stage_s = {k: v["seconds"] for k, v in summary["stages"].items() if k != "subjects"}
    return {
        "sets": run["sets"],
        "subjects": run["subjects"],
        "wall_s": run["wall_s"],
        "first_subject_s": run["first_subject_s"],
        "sets_per_min": run["sets_per_min"],
        "steady_sets_per_min": (run["steady_subjects_per_min"] or 0.0) * accepted,
        "stage_share": _share(stage_s),
    }


def gpu_collage() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU"}
    from core import zoo
    from datagen.seeds import generator

    ref = load_config("sdxl").models.sdxl
    try:
        pipe = zoo.load("sdxl", ref, device="cuda", dtype=torch.float16)
    except zoo.ZooError:  # not in the HF cache: the same architecture at random init times the same
        ref = "shape"
        pipe = zoo.load("sdxl", ref, device="cuda", dtype=torch.float16)
    pipe.set_progress_bar_config(disable=True)

    def one() -> None:
        pipe(
            "a collage of photos of the same red teapot",
            num_inference_steps=30,
            height=1024,
            width=1024,
            generator=generator(0),
        )
        torch.cuda.synchronize()

    one()
    start = time.perf_counter()
    one()
    seconds = time.perf_counter() - start
    return {
        "model": ref,
        "seconds_per_image": seconds,
        "published_a100_s": PUBLISHED_SDXL_A100_S,
        "ratio_vs_published": seconds / PUBLISHED_SDXL_A100_S,
        "gpu": torch.cuda.get_device_name(0),
    }


def run() -> dict:
    from core.ray_runtime import init_ray

    n = int(os.environ.get("S3JEDI_BENCH_SUBJECTS", "32"))
    cpus = os.cpu_count() or 2
    init_ray(RayConfig(num_cpus=cpus))
    seq = sequential(_config(n))
    # 4 subjects per actor call amortise Ray's per-call cost over the tiny models' millisecond stages
    batches = [
        f"datagen.{s}.resources.batch_size=4"
        for s in ("collages", "instances", "consistency", "backgrounds", "stylize")
    ]
    writer = [f"datagen.writer.concurrency={cpus}", "datagen.writer.batch_size=4"]
    pools = ray_build(_config(n, *batches, *writer))
    fused = ray_build(
        _config(
            n, "datagen.execution=fused", f"datagen.fused.concurrency={cpus}", "datagen.fused.batch_size=4", *writer
        )
    )
    result = {
        "subjects": n,
        "cpus": cpus,
        "sequential": seq,
        "ray_pools": pools,
        "ray_fused": fused,
        "ratio_steady_pools_vs_sequential": pools["steady_sets_per_min"] / seq["steady_sets_per_min"],
        "ratio_steady_fused_vs_sequential": fused["steady_sets_per_min"] / seq["steady_sets_per_min"],
        "ratio_end_to_end_pools_vs_sequential": pools["sets_per_min"] / seq["sets_per_min"],
        "ratio_end_to_end_fused_vs_sequential": fused["sets_per_min"] / seq["sets_per_min"],
        "gpu_sdxl_collage": gpu_collage(),
    }
    print(
        f"   sets/min steady: sequential {seq['steady_sets_per_min']:.1f}, Ray pools {pools['steady_sets_per_min']:.1f} "
        f"(x{result['ratio_steady_pools_vs_sequential']:.2f}), Ray fused {fused['steady_sets_per_min']:.1f} "
        f"(x{result['ratio_steady_fused_vs_sequential']:.2f})"
    )
    print(
        f"   sets/min end to end: sequential {seq['sets_per_min']:.1f}, Ray pools {pools['sets_per_min']:.1f} "
        f"(x{result['ratio_end_to_end_pools_vs_sequential']:.2f}), Ray fused {fused['sets_per_min']:.1f}"
    )
    print(f"   stage share (pools): {pools['stage_share']}")
    return result
