"""Filtered self-distillation on the tiny profile: where a subject's time goes, phase by phase.

One run of ``s3jedi selfdistill`` (``selfdistill()``, local Ray) on two DreamBooth subjects (dog,
cat) with the tiny profile's settings: a DreamBooth teacher per subject (400 steps, prior
preservation, every UNet weight trained), 2 template prompts × 2 images mined by the teacher in one Ray
Data job and scored (CLIP, NegCLIP, DINO, detector + segmenter), the gold filter, a student per subject.
Reported:

- per subject, the seconds its workers spent in each phase (teacher, prompts, generation, scoring,
  student) and the share of generation vs training vs scoring — the report's own accounting;
- per phase, the driver's wall time for both subjects together (worker and actor start-up, class
  images and model loading included: what the per-subject seconds leave out);
- the ratio of the whole run to its teacher phase, which *is* a plain DreamBooth fine-tune of the
  same subjects measured in the same run: what self-distillation costs on top of DreamBooth;
- the yield (gold of mined samples) and conflict rate of the run, and the gold filter at the paper's
  size (1,250 samples per subject): its time and the yield of ``selfdistill.gold.top_percent`` if the two
  scores were independent (paper 000 §4.1 reports 17 per subject).

A second mining round of the production size (25 × 50 images) is out of reach on 2 CPU cores; the
mining throughput measured here (images per second of generation and of scoring) is printed so the
production round can be estimated from it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from core.config import load_config
from core.paths import REPO_ROOT

PHOTOS = REPO_ROOT.parent / "shared" / "dreambooth" / "images"
SUBJECTS = ("dog", "cat")
PHASES = ("teacher", "prompts", "generation", "scoring", "student")
PAPER_SAMPLES = (25, 50)  # prompts x images per prompt of one subject's production round


def production_filter(percent: float, draws: int = 300) -> dict:
    """The gold filter on ``draws`` random production-size rounds with independent scores."""
    from training.selfdistill.gold import select_gold

    prompts, per_prompt = PAPER_SAMPLES
    n = prompts * per_prompt
    prompt_ids, samples = np.arange(n) // per_prompt, np.arange(n) % per_prompt
    rng = np.random.default_rng(0)
    counts, start = [], time.perf_counter()
    for _ in range(draws):
        picked = select_gold(rng.random(n), rng.random(n), prompt_ids, samples, percent, 0.5, 0.5)
        counts.append(picked.count)
    return {
        "samples": n,
        "keep": picked.keep,
        "gold_mean": float(np.mean(counts)),
        "gold_p5_p95": [float(v) for v in np.percentile(counts, [5, 95])],
        "filter_ms": 1000 * (time.perf_counter() - start) / draws,
    }


def run() -> dict:
    from training.selfdistill.runner import selfdistill

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cfg = load_config(
            "tiny",
            [
                f"finetune.run.storage_path={tmp / 'runs'}",
                f"finetune.store={tmp / 'store'}",
                "ray.num_cpus=2",
            ],
        )
        report = selfdistill(cfg, ",".join(str(PHOTOS / s) for s in SUBJECTS))
    failed = [s.error for s in report.failed]
    if failed:
        raise RuntimeError(f"self-distillation failed: {failed}")
    subjects = {}
    for rep in report.subjects:
        (summary,) = rep.rounds
        subjects[rep.subject] = {
            "seconds": {p: rep.seconds.get(p, 0.0) for p in PHASES},
            "shares": rep.shares(),
            "samples": summary["samples"],
            "gold": summary["gold"],
            "keep": summary["keep"],
            "conflict_rate": summary["conflict_rate"],
        }
    wall = dict(report.wall_s)
    total = sum(wall.values())
    samples = sum(s["samples"] for s in subjects.values())
    generation = sum(s["seconds"]["generation"] for s in subjects.values())
    scoring = sum(s["seconds"]["scoring"] for s in subjects.values())

    print("   subject  " + "  ".join(f"{p:>10s}" for p in PHASES) + "   gen/train/score shares   gold")
    for name, s in subjects.items():
        cells = "  ".join(f"{s['seconds'][p]:9.2f}s" for p in PHASES)
        sh = s["shares"]
        print(
            f"   {name:8s} {cells}   {sh['generation']:.3f}/{sh['training']:.3f}/{sh['scoring']:.3f}"
            f"        {s['gold']}/{s['samples']}"
        )
    print("   driver wall per phase (both subjects): " + ", ".join(f"{k} {v:.1f} s" for k, v in wall.items()))
    print(
        f"   whole run / DreamBooth teacher phase: {total / wall['teacher']:.2f}x "
        f"({total:.0f} s vs {wall['teacher']:.0f} s)"
    )
    print(
        f"   mining throughput in the actors: {samples / generation:.1f} images/s generated, "
        f"{samples / scoring:.1f} images/s scored ({samples} samples)"
    )
    gold = sum(s["gold"] for s in subjects.values())
    conflict = float(np.mean([s["conflict_rate"] for s in subjects.values()]))
    print(f"   yield: {gold} gold of {samples} samples; mean conflict rate {conflict:.2f}")
    paper = production_filter(cfg.selfdistill.gold.top_percent)
    print(
        f"   gold filter at 1,250 samples, k = {cfg.selfdistill.gold.top_percent:g}%: {paper['keep']} per score, "
        f"{paper['gold_mean']:.1f} gold if the scores were independent (5-95%: {paper['gold_p5_p95']}), "
        f"{paper['filter_ms']:.2f} ms per subject"
    )
    return {
        "subjects": subjects,
        "wall_s": wall,
        "total_wall_s": total,
        "ratio_total_over_teacher": total / wall["teacher"],
        "generation_images_per_s": samples / generation,
        "scoring_images_per_s": samples / scoring,
        "yield": {"gold": gold, "samples": samples, "mean_conflict_rate": conflict},
        "production_filter": paper,
        "settings": {
            "prompts": cfg.selfdistill.prompts.num_prompts,
            "images_per_prompt": cfg.selfdistill.mining.images_per_prompt,
            "mining_steps": cfg.selfdistill.mining.steps,
            "dreambooth_steps": cfg.finetune.dreambooth.train.steps,
            "unet": cfg.selfdistill.unet.mode,
            "top_percent": cfg.selfdistill.gold.top_percent,
            "resolution": cfg.finetune.resolution,
        },
    }
