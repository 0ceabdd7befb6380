"""The fine-tuning phase of a run: each fine-tuning method on each subject, published into the run.

Evaluation may not import training, so the job takes a *trainer* (``Trainer``): a callable that
fine-tunes subjects with methods, one Ray Train run per (subject, method) as ``s3jedi finetune``
schedules them, and publishes them to the store its config names. ``s3jedi eval`` (in ``cluster``,
the one package that sees both apps) passes training's. A failed (method, subject) is recorded with
its reason and left out of generation; the others go on.

The subjects train on the photos the evaluation scores against (the readable ones, written to
``<run>/photos``), with the benchmark's class words, into the run's own store (``<run>/subjects``)
and Ray Train storage (``<run>/runs``): a run directory holds everything it measured. A rerun
trains only the pairs ``finetune.json`` does not record as done and published; an interrupted
subject resumes from its last checkpoint (the same Ray Train run name and storage).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from core.config import S3JediConfig
from core.logs import get_logger
from core.subjects import SubjectNotFoundError, SubjectStore
from evaluation.generators import SubjectInput
from evaluation.store import RUNS_DIR, SUBJECTS_DIR, RunStore

log = get_logger("evaluation.finetuning")
PHOTOS_DIR = "photos"


@dataclass(frozen=True)
class FineTuning:
    """How one (method, subject) fine-tuning ended."""

    method: str
    subject: str
    subject_id: str
    status: str
    """``done`` or ``failed``."""
    seconds: float = 0.0
    """Wall time of the subject's fine-tuning where it ran (start-up of its Ray Train run included)."""
    gpu_seconds: float = 0.0
    """``seconds`` × the GPUs it held (0 on CPU workers)."""
    error: str | None = None


class Trainer(Protocol):
    def __call__(self, cfg: S3JediConfig, methods: list[str], folders: dict[str, str]) -> list[FineTuning]:
        """Fine-tune every subject of ``folders`` (name → folder of its photos) with every method and
        publish them to ``cfg.finetune.store``; a subject's failure is its outcome, never an exception."""
        ...


def training_config(cfg: S3JediConfig, run_dir: Path, class_words: dict[str, str]) -> S3JediConfig:
    """The config the trainer runs with: the run's store, Ray Train storage and subject ids, and the
    benchmark's class words."""
    data = cfg.model_dump(mode="json")
    template = cfg.evaluation.finetuned.subject_id
    ft = data["finetune"]
    ft.update(store=str(run_dir / SUBJECTS_DIR), subject_id=template, class_words={**ft["class_words"], **class_words})
    ft["run"].update(storage_path=str(run_dir / RUNS_DIR), name="finetune")
    data["selfdistill"].update(name="selfdistill", subject_id=template.replace("{method}", "selfdistill"))
    return S3JediConfig.model_validate(data)


def _photo_folders(run_dir: Path, subjects: dict[str, SubjectInput]) -> dict[str, str]:
    folders = {}
    for name, subject in subjects.items():
        folder = run_dir / PHOTOS_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, data in subject.photos:
            if not (folder / file_name).exists():
                (folder / file_name).write_bytes(data)
        folders[name] = str(folder)
    return folders


def _published(store: SubjectStore, subject_id: str, method: str) -> bool:
    try:
        return store.card(subject_id).method == method
    except SubjectNotFoundError:
        return False


def fine_tune(
    cfg: S3JediConfig,
    run: RunStore,
    methods: list[str],
    subjects: dict[str, SubjectInput],
    trainer: Trainer | None,
) -> dict[tuple[str, str], dict]:
    """Fine-tune what the run has not yet; returns (method, subject) → outcome (``FineTuning`` fields)
    for every pair of ``methods`` × ``subjects``."""
    if not methods:
        return {}
    root = run.root.resolve()
    published = SubjectStore(root / SUBJECTS_DIR)
    recorded = run.finetuning()

    def finished(method: str, name: str) -> bool:
        outcome = recorded.get((method, name))
        return bool(outcome) and outcome["status"] == "done" and _published(published, outcome["subject_id"], method)

    todo = {m: tuple(n for n in subjects if not finished(m, n)) for m in methods}
    groups: dict[tuple[str, ...], list[str]] = {}
    for method, names in todo.items():
        if names:
            groups.setdefault(names, []).append(method)
    if groups and trainer is None:
        raise ValueError(
            f"evaluation.methods: fine-tuning {', '.join(sorted({m for ms in groups.values() for m in ms}))} needs "
            "the training app: run `s3jedi eval` (python -m cluster.cli eval), or draw subjects fine-tuned "
            "before from a store (evaluation.finetuned.store)"
        )
    if groups:
        train_cfg = training_config(cfg, root, {n: s.class_name for n, s in subjects.items()})
        folders = _photo_folders(root, subjects)
    for names, group in groups.items():
        start = time.perf_counter()
        log.info("fine-tuning", methods=",".join(group), subjects=len(names))
        outcomes = trainer(train_cfg, group, {n: folders[n] for n in names})
        recorded = run.record_finetuning([asdict(o) for o in outcomes])
        for o in outcomes:
            if o.status != "done":
                log.warning("fine-tuning failed", method=o.method, subject=o.subject, error=o.error)
        log.info("fine-tuned", methods=",".join(group), seconds=round(time.perf_counter() - start, 1))
    missing = [(m, n) for m in methods for n in subjects if (m, n) not in recorded]
    if missing:
        raise RuntimeError(f"the trainer returned no outcome for {missing[:3]}")
    return {(m, n): recorded[(m, n)] for m in methods for n in subjects}
