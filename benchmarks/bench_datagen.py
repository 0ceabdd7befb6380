"""S3 builder throughput (issues: S3 dataset builder; production shapes, issue 13).

1. Sets per minute on the tiny profile: the Ray Data pipeline (separate actor pools per stage, and the
   fused layout) against a plain sequential loop in this process calling the same stage functions
   (``rows.apply_stage`` over ``stages.image_stages()``). Reported end to end (model loading and Ray
   start-up included) and in steady state (``summary.steady_rate``: the middle half of the subjects,
   once every model is loaded), with the steady-state ratio Ray / sequential as the headline; target
   >= 1.0 on 2 cores. Tiny models compute in milliseconds, so start-up dominates end to end.
2. Per-stage share of worker time, from the build's own stage traces.
3. S3 stage throughput on production-shaped models (``s3_stages``): the real build (``datagen.pipeline.build``
   through Ray Data, one actor pool per stage) on the sdxl profile with every model family ``shape``
   (production architecture, random weights: the same speed as the real checkpoint). On a GPU all five
   pools share it at the profile's production sizes (collages 1024² 30 steps, backgrounds 512² 30 steps,
   stylize 20 steps) in fp16; per stage images/s, the GPU busy fraction of the build (goal >= 0.8, ratio
   printed) and per stage, and the bottleneck stage; anchors: Ray Data ~900 images/s per L4 on ResNet-18,
   SDXL 2.5 s/image on an optimized A100. Without a GPU (``S3JEDI_BENCH_REHEARSE=1``: only this part) the same
   function runs on CPU at 64 px and 1 step, ``shape`` where memory allows (``REHEARSAL_SHAPE``), so the
   GPU entry never rots. Subjects come from the template backend (a random-weight LLM writes garbage), and
   the filters random models cannot pass are opened (``LET_THROUGH``) so every subject reaches every stage.

    python -m benchmarks.run datagen                               # 1, 2 and 3 (3 on the GPU if present)
    S3JEDI_BENCH_REHEARSE=1 python -m benchmarks.run datagen       # only 3, CPU rehearsal
    S3JEDI_BENCH_GPU_ONLY=1 python -m benchmarks.run datagen       # only 3, GPU entry

``S3JEDI_BENCH_SUBJECTS`` sets the number of subjects of 1 (default 32); ``S3JEDI_BENCH_GPU_SUBJECTS`` (6) and
``S3JEDI_BENCH_REHEARSE_SUBJECTS`` (2) those of 3; ``S3JEDI_BENCH_REHEARSE_SHAPE`` the rehearsal's shape families;
``S3JEDI_BENCH_DATAGEN_SET`` extra config overrides for 3 (``;``-separated ``key=value``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import nullcontext

from benchmarks.common import target
from core.config import load_config
from core.config.runtime import RayConfig


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
    fns = {stage.name: stage.load(cfg, "cpu") for stage in stages.image_stages()}
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


# -- 3. S3 stage throughput on production-shaped models (issue 13) ------------------------------------

RAY_DATA_ANCHOR = {
    "images_per_s_per_l4": 900,
    "what": "Ray Data batch inference of ResNet-18 on one L4 (the anchor cited in issue 13)",
}
SDXL_A100_ANCHOR = {"s_per_image": 2.5, "what": "SDXL 1024² 30 steps, optimized A100 (diffusers/PyTorch blog)"}
BUSY_GOAL = 0.8
REHEARSAL_SHAPE = ("clip", "detector")
"""Families the CPU rehearsal runs as ``shape`` by default: the ones that fit next to other work on a
23 GB, 2-core machine (measured in fp32 on CPU: CLIP ViT-L/14 2.5 GB, Grounding DINO Swin-T 1.2 GB).
The others run as ``tiny``: SDXL (3.47B parameters, 12.9 GiB of fp32 weights), SAM ViT-H (3.2 GB, 33 s
per image and ~34 MB per box prompt, up to ``instances.max_detections`` prompts), SD2 inpainting
(5.9 GB) and InstructPix2Pix (5.0 GB). ``S3JEDI_BENCH_REHEARSE_SHAPE`` changes the list."""
REHEARSAL_SIZES = (
    "datagen.collages.size=64",
    "datagen.collages.steps=1",
    "datagen.collages.images_per_subject=2",
    "datagen.backgrounds.size=64",
    "datagen.backgrounds.steps=1",
    "datagen.stylize.steps=1",
)
LET_THROUGH = (
    # random weights: random boxes and random CLIP embeddings. Every filter a random model cannot pass is
    # opened, so that every subject reaches every stage and each stage does its full work
    "datagen.instances.min_area=0",
    "datagen.instances.max_area=1",
    "datagen.instances.border_margin=0",
    "datagen.instances.max_overlap=1",
    "datagen.instances.min_mask_fill=0",
    "datagen.consistency.threshold=-1",
    "datagen.stylize.probability=1",
)


def _model_families() -> list[str]:
    from datagen.stages import image_stages

    return [f for s in image_stages() for f in s.families]


def _shape_ref(family: str) -> str:
    # the sdxl profile's consistency filter is CLIP ViT-L/14; the shape entry defaults to ViT-B/32
    return "shape:ViT-L-14" if family == "clip" else "shape"


def stages_config(device: str, subjects: int, shape: set[str]):
    """The sdxl profile with every model family in ``shape`` at random init (the rest ``tiny``), subjects
    from the template backend, the let-through filters, and one actor per stage: on ``cuda`` all five
    share one GPU at the profile's production sizes; on ``cpu`` the sizes are reduced."""
    from datagen.stages import image_stages

    names = [s.name for s in image_stages()]
    unknown = set(shape) - set(_model_families())
    if unknown:
        raise ValueError(f"S3JEDI_BENCH_REHEARSE_SHAPE: unknown families {sorted(unknown)}; known: {_model_families()}")
    gpu = device == "cuda"
    # One GPU split evenly, so every pool gets its actor at once; a quarter CPU each (their CPU work, PNG
    # coding and resizing, is small) keeps all five schedulable on any Ray, the tests' 2-CPU one included.
    share = 1.0 / len(names) if gpu else 0
    resources = [
        f"datagen.{stage}.resources={{num_gpus: {share}, num_cpus: 0.25, concurrency: 1, batch_size: 1}}"
        for stage in names
    ]
    models = [f"models.{f}={_shape_ref(f) if f in shape else 'tiny'}" for f in _model_families()]
    # the profile's detection thresholds on the shape detector (a random one still scores hundreds of its
    # 900 boxes above them; SAM gets the best instances.max_detections); the tiny detector's scores stay
    # below 0.25, so 0 there
    thresholds = (
        [] if "detector" in shape else ["datagen.instances.box_threshold=0", "datagen.instances.text_threshold=0"]
    )
    return load_config(
        "sdxl",
        [
            "ray.address=null",
            "datagen.progress=false",
            "datagen.precision=fp16",
            "datagen.subjects.backend=template",
            f"datagen.subjects.num_categories={subjects}",
            "datagen.subjects.subjects_per_category=1",
            "datagen.subjects.resources={num_gpus: 0, num_cpus: 0.25}",
            "datagen.writer={num_cpus: 0.25, concurrency: 2, batch_size: 1}",
            *models,
            *resources,
            *thresholds,
            *LET_THROUGH,
            *([] if gpu else REHEARSAL_SIZES),
            *_extra_overrides(),
        ],
    )


def _extra_overrides() -> list[str]:
    """``S3JEDI_BENCH_DATAGEN_SET``: further ``key=value`` overrides, ``;``-separated (YAML values may hold
    commas), applied last, so a GPU run can be adjusted (a threshold, a size) without editing code."""
    return [a.strip() for a in os.environ.get("S3JEDI_BENCH_DATAGEN_SET", "").split(";") if a.strip()]


class GpuSampler:
    """GPU 0's utilization (percent of time a kernel ran, as NVML reports it), sampled every
    ``interval`` seconds in a background thread with wall-clock stamps, so it can be matched to the stage
    traces (``rows.Trace.at`` is wall-clock too). NVML through ``pynvml`` when importable, else one
    ``nvidia-smi`` query per sample (a query per tick, not ``-lms``: a piped ``nvidia-smi`` may hold
    its output back)."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.source: str | None = None
        self._read = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._read = lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            self.source = "pynvml (NVML utilization.gpu)"
            return
        except Exception:  # not installed, or no NVML: fall back to the driver's command line tool
            pass
        if shutil.which("nvidia-smi"):
            cmd = ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            self._read = lambda: float(subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip())
            self.source = "nvidia-smi --query-gpu=utilization.gpu (one query per sample)"

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append((time.time(), self._read()))
            except Exception:  # a missed sample (a slow or failed query) is only a gap
                continue

    def __enter__(self) -> GpuSampler:
        self._open()
        if self._read is not None:
            self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def busy(self, intervals: list[tuple[float, float]]) -> float | None:
        """Mean utilization (0..1) of the samples inside any of ``intervals``; None without samples."""
        inside = [u for t, u in self.samples if any(a <= t <= b for a, b in intervals)]
        return sum(inside) / len(inside) / 100 if inside else None


def stage_stats(rows: list[dict]) -> dict[str, dict]:
    """Per image stage, from the rows' traces: images and seconds, and the steady rate that leaves out
    the stage's first row (one actor per stage: its first row also loads the stage's models)."""
    from datagen.stages import image_stages

    traces: dict[str, list[dict]] = {s.name: [] for s in image_stages()}
    for row in rows:
        for t in row["trace"]:
            traces[t["stage"]].append(t)
    out = {}
    for stage, ts in traces.items():
        ts.sort(key=lambda t: t["at"] - t["seconds"])
        key = "items_out" if stage == "collages" else "items_in"  # the images it draws, else those it reads
        steady = ts[1:] if len(ts) > 1 else ts
        seconds = sum(t["seconds"] for t in steady)
        images = sum(t[key] for t in steady)
        out[stage] = {
            "rows": len(ts),
            "passed": sum(t["outcome"] == "passed" for t in ts),
            "errors": sum(t["outcome"] == "error" for t in ts),
            "images": sum(t[key] for t in ts),
            "seconds": sum(t["seconds"] for t in ts),
            "first_row_s": ts[0]["seconds"] if ts else None,
            "includes_model_load": len(ts) == 1,
            "images_per_s": images / seconds if seconds > 0 else None,
            "seconds_per_subject": seconds / len(steady) if steady else None,
            "intervals": [(t["at"] - t["seconds"], t["at"]) for t in ts],
        }
    return out


def s3_stages(device: str, subjects: int, shape: set[str]) -> dict:
    """One S3 build through Ray Data (``datagen.pipeline.build``, actor pools) on ``stages_config``;
    per stage images/s and seconds, the GPU busy fraction of the build and per stage, the bottleneck."""
    import torch

    from datagen.output import OutputDir
    from datagen.pipeline import build
    from datagen.summary import StageFailedError

    cfg = stages_config(device, subjects, shape)
    failed = None
    with tempfile.TemporaryDirectory() as out, GpuSampler() if device == "cuda" else nullcontext() as sampler:
        start = time.time()
        try:
            build(cfg, out)
        except StageFailedError as exc:  # still report what every stage did, and which one failed
            failed = str(exc)
        end = time.time()
        rows = [row for marker in OutputDir(out).done().values() for row in marker["rows"]]
    stats = stage_stats(rows)
    timed = {s: v["seconds_per_subject"] for s, v in stats.items() if v["seconds_per_subject"]}
    total = sum(timed.values()) or 1.0
    for name, st in stats.items():
        st["share_of_stage_time"] = round(timed.get(name, 0.0) / total, 3)
        intervals = st.pop("intervals")
        st["gpu_busy"] = sampler.busy(intervals) if sampler and intervals else None
    spans = [t for row in rows for t in row["trace"]]
    image_window = [(min(t["at"] - t["seconds"] for t in spans), max(t["at"] for t in spans))] if spans else []
    busy = sampler.busy([(start, end)]) if sampler else None
    collage_s = stats["collages"]["images_per_s"]
    return {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "profile": cfg.profile,
        "models": {f: getattr(cfg.models, f) for f in _model_families()},
        "model_dtype": f"{cfg.datagen.precision} for SDXL, inpainting and pix2pix (datagen.precision); "
        "Grounding DINO, SAM and CLIP in fp32 as datagen loads them",
        "subjects": subjects,
        "subject_text": "template backend: a random-weight LLM would write garbage",
        "sizes": {
            "collages": {k: getattr(cfg.datagen.collages, k) for k in ("size", "steps", "images_per_subject")},
            "backgrounds": {k: getattr(cfg.datagen.backgrounds, k) for k in ("size", "steps")},
            "stylize": {"steps": cfg.datagen.stylize.steps},
        },
        "let_through": list(LET_THROUGH),
        "extra_overrides": _extra_overrides(),
        "box_threshold": cfg.datagen.instances.box_threshold,
        "sets": sum(not r["rejected"] for r in rows),
        "wall_s": end - start,
        "failed": failed,
        "stages": stats,
        "bottleneck": max(timed, key=timed.get) if timed else None,
        "busy_sampler": sampler.source if sampler else None,
        "busy_fraction": busy,
        "busy_fraction_image_stages": sampler.busy(image_window) if sampler and image_window else None,
        "busy_goal": BUSY_GOAL,
        "ratio_busy_vs_goal": busy / BUSY_GOAL if busy is not None else None,
        "anchor_ray_data": RAY_DATA_ANCHOR,
        "anchor_sdxl_a100": SDXL_A100_ANCHOR,
        "ratio_collage_s_per_image_vs_a100": 1 / collage_s / SDXL_A100_ANCHOR["s_per_image"]
        if collage_s and device == "cuda"
        else None,
    }


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def gpu_stages() -> dict:
    """The GPU entry: every family ``shape``, production sizes, ``S3JEDI_BENCH_GPU_SUBJECTS`` subjects
    (default 6: ~4 SDXL collages of 3–6 s each per subject on an H100 keep it to a few minutes)."""
    if not target().gpu:
        raise RuntimeError("the S3 stage benchmark's GPU entry needs a CUDA GPU (S3JEDI_BENCH_REHEARSE=1 on CPU)")
    return s3_stages("cuda", _env_int("S3JEDI_BENCH_GPU_SUBJECTS", 6), set(_model_families()))


def rehearsal() -> dict:
    """The GPU entry's code on CPU at reduced sizes, so it never rots: ``S3JEDI_BENCH_REHEARSE_SUBJECTS``
    subjects (default 2), ``shape`` for the families in ``S3JEDI_BENCH_REHEARSE_SHAPE`` (comma list;
    default ``REHEARSAL_SHAPE``), ``tiny`` for the rest."""
    raw = os.environ.get("S3JEDI_BENCH_REHEARSE_SHAPE", ",".join(REHEARSAL_SHAPE))
    shape = {f.strip() for f in raw.split(",") if f.strip()}
    return s3_stages("cpu", _env_int("S3JEDI_BENCH_REHEARSE_SUBJECTS", 2), shape)


def print_stages(result: dict) -> None:
    where = result["gpu"] or "CPU rehearsal, reduced sizes"
    print(f"   S3 stages on {where} ({result['subjects']} subjects, {result['sets']} sets, {result['wall_s']:.0f} s):")
    for name, st in result["stages"].items():
        rate = "-" if st["images_per_s"] is None else f"{st['images_per_s']:.2f}"
        busy = "" if st["gpu_busy"] is None else f", GPU busy {st['gpu_busy']:.0%}"
        load = " (incl. model load)" if st["includes_model_load"] else ""
        print(
            f"     {name:12s} {st['images']:4d} images, {rate} images/s{load}, "
            f"{st['share_of_stage_time']:.0%} of stage time{busy}"
        )
    busy = result["busy_fraction"]
    print(
        f"   bottleneck: {result['bottleneck']}; GPU busy "
        + (
            "not sampled" + ("" if result["gpu"] else " (CPU)")
            if busy is None
            else f"{busy:.0%} of the build (x{result['ratio_busy_vs_goal']:.2f} the 80% goal), "
            f"{result['busy_fraction_image_stages'] or 0:.0%} of the image stages' window ({result['busy_sampler']})"
        )
        + ("" if result["failed"] is None else f"; FAILED: {result['failed']}")
    )


def stages_entry() -> dict:
    """Part 3: the GPU entry where CUDA is present, else the CPU rehearsal (``benchmarks.common.Target``);
    ``S3JEDI_BENCH_GPU_ONLY=1`` without a GPU is an error, not a silent rehearsal."""
    gpu_only = os.environ.get("S3JEDI_BENCH_GPU_ONLY") == "1"
    result = gpu_stages() if target().gpu or gpu_only else rehearsal()
    print_stages(result)
    return result


def run() -> dict:
    from core.ray_runtime import init_ray

    if target().rehearse or os.environ.get("S3JEDI_BENCH_GPU_ONLY") == "1":
        return {"s3_stages": stages_entry()}
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
    result["s3_stages"] = stages_entry()
    return result
