"""``run_evaluation``: every method of ``evaluation.methods`` on the DreamBooth benchmark, as one
resumable job.

1. Check the selection and every finetuning-free method's needs before anything runs.
2. Fine-tune: each fine-tuning method on each subject, one Ray Train run per pair, concurrently, into
   the run directory (``evaluation.finetuning``; skipped for pairs done before, and entirely when the
   run reuses a subject store). A failed pair is recorded and left out; the others go on.
3. Plan every case (method × subject × prompt × seed) of the chosen protocols; drop the ids already
   scored in the run directory (a killed run resumes here).
4. Ray Data: cases → generation actor pool → scoring actor pool → the driver, which writes each
   scored batch (images, then one Parquet part) as it arrives.
5. Consolidate the per-image Parquet, summarise (per protocol: each method's means with bootstrap
   intervals, paired differences from the reference method, costs), draw the grids and write the
   report (HTML, Markdown, JSON).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from core.config import S3JediConfig, config_hash, save_config
from core.logs import get_logger
from core.methods import METHODS
from core.methods.registry import import_plugins
from core.progress import Progress
from core.ray_runtime import init_ray
from evaluation.benchmark import Benchmark, Case, eval_prompt, load_benchmark, plan, readable_photos, select_subjects
from evaluation.finetuning import Trainer, fine_tune
from evaluation.generators import FINETUNING_FREE, Generator, SubjectInput, make_generator
from evaluation.grids import write_grid
from evaluation.report import method_label, write_report
from evaluation.scoring import describe_scoring
from evaluation.statistics import flat
from evaluation.store import SUBJECTS_DIR, RunStore
from evaluation.summary import summarize_run

log = get_logger("evaluation")
GRID_COLUMNS = 8
"""(prompt, seed) columns of a subject's grid: each prompt's first sample, then the second, ..."""


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    planned: int
    scored_now: int
    """Cases generated and scored by this call (the rest were already in the run directory)."""
    summary: dict
    """``evaluation.summary.summarize_run``'s tree (also ``summary.json``)."""
    report: Path
    seconds: float


def check_methods(cfg: S3JediConfig) -> list[str]:
    """Every name JeDi, the base model, or a fine-tuning method of the registry (``core.methods``,
    with ``finetune.plugins``)."""
    import_plugins(cfg.finetune.plugins)
    methods = cfg.evaluation.methods
    tunable = [name for name, m in METHODS.items() if m.plan is not None]
    for name in methods:
        if name not in FINETUNING_FREE and name not in tunable:
            raise ValueError(f"evaluation.methods: {name!r} is not one of {', '.join([*FINETUNING_FREE, *tunable])}")
    return methods


def fingerprint(cfg: S3JediConfig, generators: dict[str, Generator]) -> dict:
    """What decides a per-image score's meaning: each method's generator (model, training, sampling) and the scoring."""
    return {"generators": {m: g.describe() for m, g in generators.items()}, "scoring": describe_scoring(cfg)}


def fingerprint_hash(print_: dict) -> str:
    canonical = json.dumps(print_, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def default_out(cfg: S3JediConfig, print_: dict) -> Path:
    """``outputs/eval/<method>+<method>...-<fingerprint>``: the same settings resume the same run."""
    return Path("outputs") / "eval" / f"{'+'.join(cfg.evaluation.methods)}-{fingerprint_hash(print_)[:8]}"


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


def _execute(
    cfg: S3JediConfig, todo: list[Case], subjects, prompt_lists, store: RunStore, drawn_from: str | None
) -> int:
    import ray
    from ray.data import ActorPoolStrategy

    from evaluation.actors import GenerateBatch, ScoreBatch

    init_ray(cfg.ray)
    comp = cfg.evaluation.compute
    rows = [{"id": c.id, "case": c.case, **asdict(c)} for c in todo]
    # One input block per generation batch, so results stream back batch by batch (and are
    # checkpointed as they arrive) instead of as one block at the end.
    ds = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / comp.generation_batch))
    ds = ds.map_batches(
        GenerateBatch,
        fn_constructor_kwargs={"cfg": cfg, "subjects": subjects, "store": drawn_from},
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


def grid_columns(frame: pd.DataFrame) -> list[tuple[str, int, str]]:
    """(prompt_id, seed, prompt) of a subject's grid columns: every prompt's first sample, then its second, ..."""
    cases = frame.drop_duplicates("case").sort_values(["sample", "prompt_id"])
    return list(zip(cases["prompt_id"], cases["seed"], cases["eval_prompt"], strict=True))[:GRID_COLUMNS]


def _grids(cfg: S3JediConfig, store: RunStore, frame, subjects: dict[str, SubjectInput], methods) -> dict[str, str]:
    grids = {}
    for name, group in frame.groupby("subject", sort=True):
        columns = grid_columns(group)
        keys = zip(group["method"], group["prompt_id"], group["seed"], strict=True)
        images = dict(zip(keys, group["image"], strict=True))
        rows = [
            (
                method_label(m),
                [Image.open(store.root / images[(m, p, s)]) if (m, p, s) in images else None for p, s, _ in columns],
            )
            for m in methods
        ]
        labels = [f"{prompt} (seed {seed})" for _, seed, prompt in columns]
        path = write_grid(
            store.root / "grids" / f"{name}.jpg", subjects[name].images(), labels, rows, cfg.evaluation.report.thumbnail
        )
        grids[name] = path.relative_to(store.root).as_posix()
    return grids


def _finish(cfg: S3JediConfig, store: RunStore, cases: list[Case], subjects, methods, finetuning):
    """Consolidate the scores of this run's cases; write summaries, grids and the report."""
    frame = store.read([c.id for c in cases])
    info = store.update(finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    store.write_scores(frame, info)
    summary = summarize_run(cfg, frame, methods, finetuning)
    (store.root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    tables = [flat(p["rows"]).assign(protocol=p["name"]) for p in summary["protocols"] if p["rows"]]
    pd.concat(tables, ignore_index=True).to_csv(store.root / "summary.csv", index=False)
    grids = _grids(cfg, store, frame, subjects, methods)
    return summary, write_report(store.root, info, summary, grids)


def run_evaluation(cfg: S3JediConfig, out_dir: Path | None = None, trainer: Trainer | None = None) -> RunResult:
    """Run (or resume) the benchmark into ``out_dir`` (default: ``default_out``). ``trainer``
    fine-tunes the subjects of the fine-tuning methods (``evaluation.finetuning``); without one the
    run can only draw subjects from ``evaluation.finetuned.store``."""
    start = time.perf_counter()
    ev = cfg.evaluation
    methods = check_methods(cfg)
    benchmark = load_benchmark(ev.benchmark)
    names = [s.name for s in select_subjects(benchmark, ev.selection.subjects)]
    subjects, skipped = subject_inputs(benchmark, names, ev.selection.skip_bad_photos)
    tuned = [m for m in methods if m not in FINETUNING_FREE]
    train_here = ev.finetuned.store is None
    print_ = fingerprint(cfg, {m: make_generator(cfg, m) for m in methods})
    out_dir = Path(out_dir or default_out(cfg, print_))
    drawn_from = str((out_dir / SUBJECTS_DIR).resolve()) if train_here else None
    generators = {m: make_generator(cfg, m, store=drawn_from) for m in methods}
    for method in methods:
        if method in FINETUNING_FREE or not train_here:  # what the run trains is checked once it is trained
            for subject in subjects.values():
                generators[method].inputs(subject)
    prompt_lists = {
        n: [eval_prompt(t, subjects[n].class_name) for t in benchmark.templates(benchmark.subjects[n])] for n in names
    }
    store = RunStore(out_dir)
    with store.lock():
        info = {
            "generators": print_["generators"],
            "benchmark": str(benchmark.root),
            "subjects": names,
            "protocols": ev.protocols,
            "selection": ev.selection.model_dump(mode="json"),
            "reference": ev.reference_method,
            "out": str(out_dir),
            "config_hash": config_hash(cfg),
            "fingerprint_hash": fingerprint_hash(print_),
            "skipped_photos": [asdict(p) for p in skipped],
        }
        store.open(print_, info)
        save_config(cfg, out_dir)
        finetuning = fine_tune(cfg, store, tuned if train_here else [], subjects, trainer)
        ready = {
            (m, n) for m in methods for n in names if finetuning.get((m, n), {"status": "done"})["status"] == "done"
        }
        for method, name in sorted(ready):
            if method in tuned and train_here:
                generators[method].inputs(subjects[name])
        cases = [c for c in plan(benchmark, ev, cfg.seed) if (c.method, c.subject) in ready]
        if not cases:
            raise RuntimeError(f"nothing to evaluate: every fine-tuning failed (see {store.root / 'finetune.json'})")
        done = store.done_ids()
        todo = [c for c in cases if c.id not in done]
        log.info("evaluation planned", out=str(out_dir), cases=len(cases), done=len(cases) - len(todo), todo=len(todo))
        scored = _execute(cfg, todo, subjects, prompt_lists, store, drawn_from) if todo else 0
        summary, report = _finish(cfg, store, cases, subjects, methods, finetuning)
    seconds = time.perf_counter() - start
    log.info("evaluation finished", out=str(out_dir), scored_now=scored, seconds=round(seconds, 1))
    return RunResult(out_dir, len(cases), scored, summary, report, seconds)
