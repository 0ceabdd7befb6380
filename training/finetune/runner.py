"""Driver side: many subjects, one Ray Train run each, scheduled concurrently; a report at the end.

Scheduling: one Ray task per (subject, method) runs that subject's recipe (``recipe.SubjectRecipe``)
through the training shell (``training.shell.trainer.fit``) and waits for it, at most
``finetune.concurrency`` at a time (Ray Train V2 runs a trainer from any task, which is also how Ray
Tune drives Train runs; a plain task needs no Tune experiment state for a fixed list). Failures are
handled where they arise:

- a worker that dies is restarted from the subject's last checkpoint, up to
  ``finetune.run.max_failures`` times; one that raises an error no rerun can fix (bad data, a bad
  setting) fails the subject at once;
- a lost task process (a node going away) is retried by Ray with the same budget, and its rerun
  resumes the subject's run from storage;
- a subject that cannot be trained as given (unreadable photo, no class word) fails on the driver,
  before anything is scheduled for it, with the reason; it never stops the others.

Class images for prior preservation are drawn before any subject starts (``class_images``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from core import storage
from core.config import S3JediConfig
from core.logs import get_logger
from core.methods import method_plan
from core.progress import Progress
from core.ray_runtime import init_ray
from core.subjects import make_subject_id
from training.finetune.class_images import ensure_class_images
from training.finetune.recipe import SubjectJob, SubjectRecipe, subject_run
from training.finetune.subjects import SubjectDataError, discover, load_subject
from training.shell.ray_run import run_dir
from training.shell.trainer import failure_reason, fit

log = get_logger("finetune")


@dataclass
class SubjectOutcome:
    subject: str
    method: str
    subject_id: str
    status: str  # "done" | "failed"
    run_dir: str | None = None
    published: str | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class FinetuneReport:
    run: str
    report_path: str
    outcomes: list[SubjectOutcome]

    @property
    def failed(self) -> list[SubjectOutcome]:
        return [o for o in self.outcomes if o.status != "done"]

    def to_dict(self) -> dict:
        return {
            "run": self.run,
            "report": self.report_path,
            "done": len(self.outcomes) - len(self.failed),
            "failed": len(self.failed),
            "subjects": [asdict(o) for o in self.outcomes],
        }


def plan_jobs(cfg: S3JediConfig, methods: list[str], subjects: str) -> tuple[list[SubjectJob], list[SubjectOutcome]]:
    """Jobs for every (subject, method); subjects that cannot run come back as failed outcomes.

    Every photo is decoded here, on the driver, so a subject with an unreadable photo fails at once,
    with the file named, and no class images are drawn for it."""
    jobs, failed = [], []
    for spec in discover(subjects, cfg.finetune):
        error = spec.error
        if error is None:
            try:
                load_subject(spec.source, cfg.finetune.resolution)
            except SubjectDataError as exc:
                error = str(exc)
        for method in methods:
            sid = make_subject_id(cfg.finetune.subject_id, spec.name, method)
            if error:
                failed.append(SubjectOutcome(spec.name, method, sid, "failed", error=error))
            else:
                jobs.append(SubjectJob(spec.name, spec.source, spec.class_word, method, sid))
    ids = [j.subject_id for j in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"finetune.subject_id: {cfg.finetune.subject_id!r} gives the same id to several jobs: {ids}")
    return jobs, failed


def train_subject(config: dict, job_fields: dict) -> dict:
    """Train one subject to the end (the body of the per-subject Ray task); never raises for the
    subject's own failures, so one subject cannot stop the others."""
    cfg = S3JediConfig.model_validate(config)
    job = SubjectJob(**job_fields)
    outcome = SubjectOutcome(
        job.subject, job.method, job.subject_id, "failed", run_dir(subject_run(cfg, job.subject_id))
    )
    start = time.perf_counter()
    try:
        result = fit(SubjectRecipe.of(cfg, job))
    except Exception as exc:  # the run failed, after the restarts a failure is worth
        outcome.error = failure_reason(exc)
    else:
        outcome.status = "done"
        outcome.metrics = result.metrics
        outcome.published = result.export_dir
    outcome.seconds = round(time.perf_counter() - start, 3)
    return asdict(outcome)


def _attach_class_images(cfg: S3JediConfig, jobs: list[SubjectJob]) -> list[SubjectJob]:
    needs: dict[str, int] = {}
    for job in jobs:
        count = method_plan(cfg.finetune, job.method).class_images()
        if count:
            needs[job.class_word] = max(needs.get(job.class_word, 0), count)
    if not needs:
        return jobs
    dirs = ensure_class_images(cfg, needs)
    return [
        replace(job, class_images=dirs[job.class_word]) if method_plan(cfg.finetune, job.method).class_images() else job
        for job in jobs
    ]


def finetune(
    cfg: S3JediConfig,
    methods: list[str],
    subjects: str,
    extra_instances: Mapping[str, str] | None = None,
    extra_share: float = 0.0,
) -> FinetuneReport:
    """Fine-tune every subject with every method; returns (and writes) the report.

    ``extra_instances`` maps a subject name to a Parquet file of more instance images with their own
    prompts (``SubjectJob.extra_instances``), drawn with probability ``extra_share``."""
    import ray

    jobs, outcomes = plan_jobs(cfg, methods, subjects)
    extras = extra_instances or {}
    jobs = [
        replace(j, extra_instances=extras[j.subject], extra_share=extra_share) if j.subject in extras else j
        for j in jobs
    ]
    for o in outcomes:
        log.warning("subject failed", subject=o.subject_id, error=o.error)
    init_ray(cfg.ray)
    jobs = _attach_class_images(cfg, jobs)
    config = cfg.model_dump(mode="json")
    task = ray.remote(train_subject).options(num_cpus=0, max_retries=cfg.finetune.run.max_failures)
    queue, pending = list(jobs), {}
    with Progress(total=len(jobs), desc="fine-tune subjects", unit="subject") as bar:
        while queue or pending:
            while queue and len(pending) < cfg.finetune.concurrency:
                job = queue.pop(0)
                pending[task.remote(config, asdict(job))] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    outcome = SubjectOutcome(**ray.get(ref))
                except ray.exceptions.RayError as exc:  # the task itself was lost more often than retried
                    outcome = SubjectOutcome(job.subject, job.method, job.subject_id, "failed", error=str(exc)[:500])
                outcomes.append(outcome)
                level = log.info if outcome.status == "done" else log.warning
                level("subject " + outcome.status, subject=outcome.subject_id, error=outcome.error)
                bar.update(1)
    run = cfg.finetune.run
    report = FinetuneReport(run.name, storage.join(run.storage_path, run.name, "report.json"), outcomes)
    fs, path = storage.filesystem(report.report_path)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(report.to_dict(), indent=1, default=str).encode())
    return report
