"""``run_evaluation``: the DreamBooth benchmark as a resumable Ray Data job.

1. Plan every case (subject × prompt × seed) of the selection; drop the ids already scored in the
   run directory (a killed run resumes here).
2. Ray Data: cases → generation actor pool → scoring actor pool → the driver, which writes each
   scored batch (images, then one Parquet part) as it arrives.
3. Consolidate the per-image Parquet, summarise (mean and bootstrap CI per subject and overall),
   draw the grids and write the HTML report.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from core.config import S3JediConfig, config_hash, save_config
from core.logs import get_logger
from core.progress import Progress
from core.ray_runtime import init_ray
from evaluation.benchmark import (
    Benchmark,
    Case,
    eval_prompt,
    load_benchmark,
    plan,
    readable_photos,
    select_subjects,
)
from evaluation.generators import GENERATORS, SubjectInput
from evaluation.grids import write_grid
from evaluation.report import write_report
from evaluation.scoring import describe_scoring
from evaluation.statistics import flat, summarize
from evaluation.store import RunStore

log = get_logger("evaluation")
GRID_SAMPLES = 8
"""Samples per prompt shown in a grid (the simple protocol has 64)."""


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    planned: int
    scored_now: int
    """Cases generated and scored by this call (the rest were already in the run directory)."""
    summary: list[dict]
    report: Path
    seconds: float


def fingerprint(cfg: S3JediConfig) -> dict:
    """What decides a per-image score's meaning: the generator (model and sampling) and the scoring."""
    method = cfg.evaluation.generation.method
    return {"generator": GENERATORS[method].describe(cfg), "scoring": describe_scoring(cfg)}


def fingerprint_hash(cfg: S3JediConfig) -> str:
    canonical = json.dumps(fingerprint(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def default_out(cfg: S3JediConfig) -> Path:
    """``outputs/eval/<method>[-k<refs>]-<fingerprint>``: the same settings resume the same run."""
    gen = cfg.evaluation.generation
    name = gen.method + (f"-k{gen.references}" if gen.method == "jedi" else "")
    return Path("outputs") / "eval" / f"{name}-{fingerprint_hash(cfg)[:8]}"


def subject_inputs(benchmark: Benchmark, names: list[str], skip_bad: bool) -> tuple[dict[str, SubjectInput], list]:
    """Every selected subject's photos, each decoded once here in the driver, before any model loads:
    a bad photo stops the run with one line, or with ``skip_bad`` is left out and returned."""
    inputs, skipped = {}, []
    for name in names:
        photos, bad = readable_photos(benchmark.subjects[name], skip_bad)
        inputs[name] = SubjectInput(name, benchmark.subjects[name].class_name, tuple(photos))
        skipped += bad
    for photo in skipped:
        log.warning("skipped an unreadable benchmark photo", file=photo.file, reason=photo.reason)
    return inputs, skipped


def _execute(cfg: S3JediConfig, todo: list[Case], subjects: dict[str, SubjectInput], prompt_lists, store) -> int:
    import ray
    from ray.data import ActorPoolStrategy

    from evaluation.actors import GenerateBatch, ScoreBatch

    init_ray(cfg.ray)
    comp = cfg.evaluation.compute
    run = {"method": cfg.evaluation.generation.method, "fingerprint": fingerprint_hash(cfg)}
    rows = [{"id": c.id, **asdict(c), **run} for c in todo]
    # One input block per generation batch, so results stream back batch by batch (and are
    # checkpointed as they arrive) instead of as one block at the end.
    ds = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / comp.generation_batch))
    ds = ds.map_batches(
        GenerateBatch,
        fn_constructor_kwargs={"cfg": cfg, "subjects": subjects},
        batch_size=comp.generation_batch,
        compute=ActorPoolStrategy(size=comp.generation_actors),
        num_cpus=comp.cpus_per_actor,
        num_gpus=comp.gpus_per_generator,
    )
    ds = ds.map_batches(
        ScoreBatch,
        fn_constructor_kwargs={"cfg": cfg, "subjects": subjects, "prompt_lists": prompt_lists},
        batch_size=comp.scoring_batch,
        compute=ActorPoolStrategy(size=comp.scoring_actors),
        num_cpus=comp.cpus_per_actor,
        num_gpus=comp.gpus_per_scorer,
    )
    written = 0
    with Progress(total=len(rows), desc="generate + score", unit="img") as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            scorers = json.loads(batch.pop("scorers")[0])
            if not written:
                store.update(scorers=scorers)
            n = store.write_batch(batch)
            written += n
            bar.update(n)
    return written


def _grids(cfg: S3JediConfig, store: RunStore, frame, subjects: dict[str, SubjectInput]) -> dict[str, Path]:
    grids = {}
    for name, group in frame.groupby("subject", sort=True):
        rows = []
        for (_, prompt_id), by_prompt in group.groupby(["protocol", "prompt_id"], sort=True):
            shown = by_prompt.sort_values("seed")["image"][:GRID_SAMPLES]
            rows.append((f"{prompt_id}: {by_prompt['prompt'].iloc[0]}", [Image.open(store.root / p) for p in shown]))
        path = store.root / "grids" / f"{name}.jpg"
        grids[name] = write_grid(path, subjects[name].images(), rows, cfg.evaluation.report.thumbnail)
    return grids


def _finish(cfg: S3JediConfig, store: RunStore, cases: list[Case], subjects: dict[str, SubjectInput]):
    """Consolidate the scores of this run's cases; write summaries, grids and the report."""
    frame = store.read([c.id for c in cases])
    info = store.update(finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    store.write_scores(frame, info)
    rep = cfg.evaluation.report
    summary = summarize(frame, rep.bootstrap, rep.confidence, cfg.seed)
    (store.root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    flat(summary).to_csv(store.root / "summary.csv", index=False)
    grids = _grids(cfg, store, frame, subjects)
    return summary, write_report(store.root, info, summary, grids, rep.confidence)


def run_evaluation(cfg: S3JediConfig, out_dir: Path | None = None) -> RunResult:
    """Run (or resume) the benchmark into ``out_dir`` (default: ``default_out(cfg)``)."""
    start = time.perf_counter()
    ev = cfg.evaluation
    out_dir = Path(out_dir or default_out(cfg))
    benchmark = load_benchmark(ev.benchmark)
    cases = plan(benchmark, ev.selection, cfg.seed)
    names = [s.name for s in select_subjects(benchmark, ev.selection.subjects)]
    subjects, skipped = subject_inputs(benchmark, names, ev.selection.skip_bad_photos)
    generator = GENERATORS[ev.generation.method]
    for subject in subjects.values():
        generator.inputs(cfg, subject)
    prompt_lists = {
        n: [eval_prompt(t, subjects[n].class_name) for t in benchmark.templates(benchmark.subjects[n])] for n in names
    }
    store = RunStore(out_dir)
    with store.lock():
        info = {
            "generator": generator.describe(cfg),
            "benchmark": str(benchmark.root),
            "config_hash": config_hash(cfg),
            "fingerprint_hash": fingerprint_hash(cfg),
            "skipped_photos": [asdict(p) for p in skipped],
        }
        store.open(fingerprint(cfg), info)
        save_config(cfg, out_dir)
        done = store.done_ids()
        todo = [c for c in cases if c.id not in done]
        log.info("evaluation planned", out=str(out_dir), cases=len(cases), done=len(cases) - len(todo), todo=len(todo))
        scored = _execute(cfg, todo, subjects, prompt_lists, store) if todo else 0
        summary, report = _finish(cfg, store, cases, subjects)
    seconds = time.perf_counter() - start
    log.info("evaluation finished", out=str(out_dir), scored_now=scored, seconds=round(seconds, 1))
    return RunResult(out_dir, len(cases), scored, summary, report, seconds)
