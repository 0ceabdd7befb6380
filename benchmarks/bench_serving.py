"""Serving costs (issue: Serve finetuning-free personalization).

Requests/s and p50/p95 latency of ``/v1/personalize`` (3 DreamBooth photos, one prompt, one image)
at concurrency 1, 4 and 16, three ways, all in this run on the same machine:

1. **direct** — ``JeDiPipeline`` called in this process, one call at a time (the baseline: no HTTP,
   no decoding, no batching); concurrent callers queue on a lock, as a single worker would.
2. **serve** — over HTTP through the gateway and the ``Personalizer`` with ``@serve.batch``.
3. **serve, unbatched** — the same app redeployed with ``max_batch_size=1``, at concurrency 16.

On a GPU the model is the SD1.4-shaped JeDi (production architecture, random weights, fp16) at 512²;
on a CPU the tiny JeDi at 64², or with ``S3JEDI_BENCH_REHEARSE=1`` the GPU plan at CPU sizes
(``benchmarks.common.Target``).

Reported: the overhead ratio p50(serve) / p50(direct) at concurrency 1 (target ≤ 1.2; also without
the batch wait, which a lone request spends waiting for batch-mates and which dominates on the tiny
model), and the batching gain at 16: requests/s batched / unbatched. Clients send the same references (as one
user's session does) with distinct prompts and seeds, so a batch is one pipeline call (JeDiPipeline
takes one reference set per call). The replica and the direct baseline use the same torch threads.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Target, target
from core.paths import REPO_ROOT

PHOTOS = sorted((REPO_ROOT.parent / "shared" / "dreambooth" / "images" / "dog").glob("*.jpg"))[:3]
THREADS = 1  # CPU: torch threads of the replica (Ray sets OMP_NUM_THREADS from num_cpus=1) and of the baseline


@dataclass(frozen=True)
class Workload:
    model: str
    size: int
    steps: int
    levels: dict[int, int]  # concurrency -> requests sent

    @classmethod
    def on(cls, t: Target) -> Workload:
        if t.gpu:
            return cls("shape", 512, 10, {1: 4, 4: 8, 16: 32})  # ~5 min on one H100 (estimate)
        if t.rehearse:
            return cls("shape", 64, 1, {1: 1, 4: 4, 16: 8})  # fp16 on one CPU thread: ~10 s a request
        return cls("tiny", 64, 4, {1: 8, 4: 16, 16: 48})


def _summary(latencies: list[float], wall: float) -> dict:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rps": len(ordered) / wall,
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def _drive(call, concurrency: int, requests: int) -> dict:
    """Run ``call(i)`` ``requests`` times from ``concurrency`` threads; latency per call."""

    def timed(i: int) -> float:
        start = time.perf_counter()
        call(i)
        return time.perf_counter() - start

    call(-1)  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(timed, range(requests)))
    return _summary(latencies, time.perf_counter() - start)


def _direct(t: Target, w: Workload) -> dict:
    import torch
    from PIL import Image

    from core import zoo

    if not t.gpu:
        torch.set_num_threads(THREADS)
    pipe = zoo.load("jedi", w.model, device=t.device, dtype=t.half)
    pipe.set_progress_bar_config(disable=True)
    refs = [Image.open(p).convert("RGB") for p in PHOTOS]
    lock = threading.Lock()

    def call(i: int) -> None:
        with lock:
            generator = torch.Generator().manual_seed(i + 1)
            pipe(
                refs,
                f"a photo of the dog, take {i}",
                num_inference_steps=w.steps,
                height=w.size,
                width=w.size,
                generator=generator,
            )
            t.sync()

    return {c: _drive(call, c, n) for c, n in w.levels.items()}


def _serve(cfg, w: Workload, levels: dict[int, int]) -> tuple[dict, dict]:
    from ray import serve

    from serving.app import application
    from serving.client import Client

    serve.run(application(cfg), name=cfg.serving.app_name, route_prefix="/")
    client = Client(f"http://127.0.0.1:{cfg.serving.port}", timeout_s=600)
    client.wait_ready()
    photos = [p.read_bytes() for p in PHOTOS]
    batch_sizes: list[int] = []

    def call(i: int) -> None:
        reply = client.personalize(
            photos, [f"a photo of the dog, take {i}"], steps=w.steps, height=w.size, width=w.size, seed=i + 1
        )
        batch_sizes.append(reply["batch_size"])

    results = {}
    for c, n in levels.items():
        batch_sizes.clear()
        results[c] = {**_drive(call, c, n), "mean_batch_size": statistics.mean(batch_sizes)}
    info = serve.get_deployment_handle("Personalizer", app_name=cfg.serving.app_name).info.remote().result()
    return results, info


def run() -> dict:
    from ray import serve

    from core.config import load_config
    from core.ray_runtime import init_ray
    from core.zoo import build
    from serving.demo import free_port

    os.environ.pop("S3JEDI_API_KEYS", None)  # dev mode on loopback: auth is not what is measured
    t = target()
    w = Workload.on(t)
    # the app's Generator (text-to-image, not measured here) always serves the tiny SD
    build("tiny", ["sd", "jedi"] if w.model == "tiny" else ["sd"])
    direct = _direct(t, w)
    settings = [
        f"serving.port={free_port()}",
        f"models.jedi={w.model}",
        f"serving.limits.max_side={max(w.size, 256)}",
        f"serving.defaults.size={w.size}",
        f"serving.dtype={str(t.half).removeprefix('torch.') if t.half else 'float32'}",
        f"serving.personalizer.num_gpus={1 if t.gpu else 0}",
        "serving.personalizer.num_cpus=1",
        "serving.personalizer.max_ongoing_requests=32",
        "serving.batching.max_batch_size=16",
        "serving.auth.rate_limit_per_minute=1000000",  # the benchmark is one client sending fast
        "serving.auth.rate_limit_burst=100000",
    ]
    cfg = load_config("tiny", settings)
    init_ray(cfg.ray)
    serve.start(http_options={"host": "127.0.0.1", "port": cfg.serving.port})
    try:
        batched, info = _serve(cfg, w, w.levels)
        unbatched_cfg = load_config("tiny", [*settings, "serving.batching.max_batch_size=1"])
        unbatched, _ = _serve(unbatched_cfg, w, {16: w.levels[16]})
    finally:
        serve.shutdown()

    overhead = batched[1]["p50_s"] / direct[1]["p50_s"]
    wait = cfg.serving.batching.wait_timeout_s  # a lone request waits this long for batch-mates
    overhead_without_wait = (batched[1]["p50_s"] - wait) / direct[1]["p50_s"]
    gain = batched[16]["rps"] / unbatched[16]["rps"]
    for c in w.levels:
        d, s = direct[c], batched[c]
        print(
            f"   concurrency {c:2d}: direct {d['rps']:.2f} req/s p50 {d['p50_s']:.3f} p95 {d['p95_s']:.3f} | "
            f"serve {s['rps']:.2f} req/s p50 {s['p50_s']:.3f} p95 {s['p95_s']:.3f} (mean batch {s['mean_batch_size']:.1f})"
        )
    print(
        f"   overhead p50 serve/direct at concurrency 1: {overhead:.2f} (target <= 1.2); "
        f"{overhead_without_wait:.2f} without the {wait * 1000:.0f} ms batch wait (serving.batching.wait_timeout_s)"
    )
    print(
        f"   batching gain at concurrency 16: {gain:.2f}x req/s "
        f"({batched[16]['rps']:.2f} batched vs {unbatched[16]['rps']:.2f} with max_batch_size=1)"
    )
    return {
        "workload": {
            "references": [Path(p).name for p in PHOTOS],
            "model": w.model,
            "steps": w.steps,
            "size": w.size,
            "images": 1,
            "requests": w.levels,
        },
        "rehearsal": t.rehearse,
        "replica": {k: info[k] for k in ("device", "dtype", "torch_threads")},
        "direct": direct,
        "serve": batched,
        "serve_unbatched": unbatched,
        "batch_wait_s": wait,
        "overhead_p50_ratio_c1": overhead,
        "overhead_p50_ratio_c1_without_batch_wait": overhead_without_wait,
        "target_overhead_ratio": 1.2,
        "batching_gain_c16": gain,
    }
