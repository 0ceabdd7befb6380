"""Evaluation costs (issue: DreamBooth benchmark as a Ray job).

1. Scoring throughput per scorer on real DreamBooth photos with the tiny backbones, one torch thread
   as in a scoring actor: images per second batched (one ``encode_images`` call, the way the scoring
   actors call it) against a plain loop of one image per call. Ratio = batched / loop throughput (the batching gain). The whole metric suite
   (every score incl. subject masks) is measured the same way.
2. Wall time of the tiny 2 subjects × 2 prompts × 2 samples run as the Ray Data job, against a plain
   in-process loop over the same cases with the same generator and suite (baseline: what Ray's actor
   start-up and streaming cost at this size), plus the rerun of the finished job (resume overhead).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.common import timeit
from core import zoo
from core.config import load_config
from core.paths import REPO_ROOT

PHOTOS = REPO_ROOT.parent / "shared" / "dreambooth" / "images"
N_IMAGES = 32
TINY_RUN = [
    "evaluation.selection.subjects=[dog, cat]",
    "evaluation.selection.prompts=2",
    "evaluation.selection.samples=2",
]


def _images() -> list[Image.Image]:
    photos = sorted(PHOTOS.glob("*/*.jpg"))
    return [Image.open(photos[i % len(photos)]).convert("RGB") for i in range(N_IMAGES)]


def _rate(seconds: float) -> float:
    return N_IMAGES / seconds


def _scorers_section() -> dict:
    from core.metrics.foregrounds import MaskSettings
    from core.metrics.suite import MetricSuite

    zoo.build("tiny", ["clip", "dino", "detector", "segmenter"])
    clip, dino = zoo.load("clip", "tiny"), zoo.load("dino", "tiny")
    suite = MetricSuite(
        clip,
        dino,
        detector=zoo.load("detector", "tiny"),
        segmenter=zoo.load("segmenter", "tiny"),
        mask_settings=MaskSettings(0.0, 0.0),
    )
    images = _images()
    prompts = [f"a photo number {i}" for i in range(N_IMAGES)]
    refs = suite.references(images[:5], "dog")
    cases = {
        "clip image": (lambda: clip.encode_images(images), lambda: [clip.encode_images([im]) for im in images]),
        "clip text": (lambda: clip.encode_texts(prompts), lambda: [clip.encode_texts([p]) for p in prompts]),
        "dino": (lambda: dino.encode_images(images), lambda: [dino.encode_images([im]) for im in images]),
        "suite (all scores + masks)": (
            lambda: suite.score(images, prompts, refs),
            lambda: [suite.score([im], [p], refs) for im, p in zip(images, prompts, strict=True)],
        ),
    }
    results = {}
    for name, (batched, loop) in cases.items():
        repeat = 1 if name.startswith("suite") else 3
        # Interleaved rounds, best of each side, so load from other processes hits both sides alike.
        rounds = [(timeit(batched, repeat=repeat), timeit(loop, repeat=repeat)) for _ in range(3)]
        b = min((r[0] for r in rounds), key=lambda t: t["median_s"])
        lp = min((r[1] for r in rounds), key=lambda t: t["median_s"])
        gain = lp["median_s"] / b["median_s"]
        results[name] = {
            "batched_per_s": _rate(b["median_s"]),
            "loop_per_s": _rate(lp["median_s"]),
            "batching_gain": gain,
            "batched": b,
            "loop": lp,
        }
        print(
            f"   {name:28s} {_rate(b['median_s']):8.1f} img/s batched vs {_rate(lp['median_s']):8.1f} loop: x{gain:.2f}"
        )
    return {"images": N_IMAGES, "per_scorer": results}


def draw_and_score(cfg, method: str, store: str | None = None) -> None:
    """Draw and score ``method``'s cases of the selection in this process, one call per case (the
    baseline the Ray Data job is measured against)."""
    from evaluation.benchmark import load_benchmark, plan
    from evaluation.generators import make_generator
    from evaluation.job import subject_inputs
    from evaluation.scoring import build_suite

    benchmark = load_benchmark(cfg.evaluation.benchmark)
    cases = plan(benchmark, cfg.evaluation, cfg.seed, [method])
    subjects, _ = subject_inputs(benchmark, sorted({c.subject for c in cases}), False)
    generator, suite = make_generator(cfg, method, store=store), build_suite(cfg)
    refs = {}
    for case in cases:
        subject = subjects[case.subject]
        image = generator.generate(subject, [case.template], [case.seed])[0]
        if case.subject not in refs:
            refs[case.subject] = suite.references(subject.images(), subject.class_name)
        suite.score([image], [case.eval_prompt], refs[case.subject])


def _plain_loop(cfg) -> float:
    start = time.perf_counter()
    draw_and_score(cfg, "jedi")
    return time.perf_counter() - start


def _job_section() -> dict:
    from core.ray_runtime import init_ray
    from evaluation.job import run_evaluation

    zoo.build("tiny")
    cfg = load_config("tiny", TINY_RUN)
    init_ray(cfg.ray)  # started once, outside the timings: a cluster is already up when a job runs
    loop_s = _plain_loop(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        first = run_evaluation(cfg, Path(tmp) / "run")
        again = run_evaluation(cfg, Path(tmp) / "run")
    ratio = first.seconds / loop_s
    print(
        f"   2x2x2 run: Ray Data job {first.seconds:.1f} s vs plain loop {loop_s:.1f} s (x{ratio:.2f}); "
        f"rerun of the finished run {again.seconds:.1f} s"
    )
    return {
        "cases": first.planned,
        "job_s": first.seconds,
        "plain_loop_s": loop_s,
        "job_over_loop": ratio,
        "resume_noop_s": again.seconds,
    }


def run() -> dict:
    import torch

    # A scoring actor reserves evaluation.compute.cpus_per_actor (1) CPU and Ray gives it as many
    # torch threads; measure the scorers the same way (and free of thread contention with other load).
    threads = torch.get_num_threads()
    torch.set_num_threads(int(load_config("tiny").evaluation.compute.cpus_per_actor))
    try:
        scorers = _scorers_section()
    finally:
        torch.set_num_threads(threads)
    return {"scorers": scorers, "tiny_run": _job_section()}
