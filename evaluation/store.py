"""A run directory: the checkpoint a killed run resumes from, and the files people look at.

::

    <run>/
      run.json              what was evaluated and how (the resume fingerprint, per method)
      s3jedi-config.yaml    the resolved config
      finetune.json         each (method, subject) fine-tuned by the run: status, seconds, GPU-seconds
      subjects/, runs/      the subjects the run fine-tuned (a subject store) and their Ray Train runs
      images/<method>/<subject>/<prompt_id>-s<seed>.png
      parts/part-*.parquet  per-image scores, one file per scored batch (the checkpoint)
      scores.parquet        all per-image scores of the run's cases (rewritten at the end)
      summary.json, summary.csv, grids/<subject>.jpg, report.html, report.md, report.json

A batch's images are written before its part, and a part appears by atomic rename, so after a kill
every id in ``parts/`` has its image and no id is half-written; a rerun skips exactly those ids.
A fine-tuned subject is published (its card written last) before ``finetune.json`` records it, and a
rerun trains only the (method, subject) pairs that file does not record as done. A lock file keeps
two runs from writing into one directory at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

RUN_FILE = "run.json"
SCORES_FILE = "scores.parquet"
FINETUNE_FILE = "finetune.json"
SUBJECTS_DIR = "subjects"
RUNS_DIR = "runs"
METADATA_KEY = b"s3jedi.run"


def image_path(method: str, subject: str, prompt_id: str, seed: int) -> str:
    """Where a case's image lives, relative to the run directory."""
    return f"images/{method}/{subject}/{prompt_id}-s{seed}.png"


def first_difference(old, new, where: str = "") -> str | None:
    """The dotted path of the first value that differs between two JSON-like trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if old == new else f"{where} ({old!r} -> {new!r})"


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.parts = self.root / "parts"

    @contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"--out {self.root}: another evaluation is writing into this directory") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def open(self, fingerprint: dict, info: dict) -> None:
        """Start a run or check that the directory holds the same one: results made with other
        scoring settings, or a method's images made with other settings, must not be mixed in (the
        error names the first difference). A method the directory does not have yet is added."""
        path = self.root / RUN_FILE
        old = json.loads(path.read_text()) if path.exists() else {}
        known = old.get("fingerprint", {})
        if known:
            diff = first_difference(known["scoring"], fingerprint["scoring"], "scoring")
            for method, settings in fingerprint["generators"].items():
                if diff is None and method in known["generators"]:
                    diff = first_difference(known["generators"][method], settings, f"generators.{method}")
            if diff:
                raise ValueError(
                    f"--out {self.root}: holds a run made with different settings ({diff}); "
                    "use another --out or restore the setting to resume"
                )
        generators = {**known.get("generators", {}), **fingerprint["generators"]}
        self._write_info({**old, **info, "fingerprint": {**fingerprint, "generators": generators}})

    def _write_info(self, info: dict) -> None:
        path = self.root / RUN_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=1, default=str) + "\n")
        os.replace(tmp, path)

    def update(self, **fields) -> dict:
        """Add fields to run.json (e.g. the scorers' description, known once a scoring actor ran)."""
        info = {**json.loads((self.root / RUN_FILE).read_text()), **fields}
        self._write_info(info)
        return info

    def finetuning(self) -> dict[tuple[str, str], dict]:
        """(method, subject) → the outcome of its fine-tuning in this run (the latest attempt)."""
        path = self.root / FINETUNE_FILE
        rows = json.loads(path.read_text()) if path.exists() else []
        return {(r["method"], r["subject"]): r for r in rows}

    def record_finetuning(self, outcomes: list[dict]) -> dict[tuple[str, str], dict]:
        """Add fine-tuning outcomes (a retried pair's new outcome replaces the old); returns them all."""
        rows = {**self.finetuning(), **{(o["method"], o["subject"]): o for o in outcomes}}
        path = self.root / FINETUNE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(rows.values(), key=lambda r: (r["method"], r["subject"])), indent=1) + "\n")
        os.replace(tmp, path)
        return rows

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet"))

    def done_ids(self) -> set[str]:
        ids: set[str] = set()
        for part in self._part_files():
            ids.update(pq.read_table(part, columns=["id"]).column("id").to_pylist())
        return ids

    def write_batch(self, batch: dict[str, np.ndarray]) -> int:
        """Write a scored batch's images, then its Parquet part; returns the number of rows."""
        paths = []
        for method, subject, prompt_id, seed, png in zip(
            batch["method"], batch["subject"], batch["prompt_id"], batch["seed"], batch["image_png"], strict=True
        ):
            rel = image_path(str(method), str(subject), str(prompt_id), int(seed))
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png)
            paths.append(rel)
        columns = {k: list(v) if v.dtype == object else v for k, v in batch.items() if k != "image_png"}
        table = pa.table({**columns, "image": paths})
        self.parts.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.parts / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.parts / name)
        return len(paths)

    def read(self, ids: list[str] | None = None) -> pd.DataFrame:
        """Per-image rows (all, or those of ``ids`` in that order)."""
        files = self._part_files()
        if not files:
            return pd.DataFrame()
        frame = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
        if frame["id"].duplicated().any():
            raise ValueError(f"{self.parts}: duplicate ids {frame['id'][frame['id'].duplicated()].tolist()[:5]}")
        if ids is not None:
            frame = frame.set_index("id").loc[ids].reset_index()
        return frame

    def write_scores(self, frame: pd.DataFrame, run_info: dict) -> Path:
        """The consolidated per-image Parquet, carrying the run description in its schema metadata."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(run_info, default=str).encode()}
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / SCORES_FILE
        tmp = path.with_suffix(".tmp")
        pq.write_table(table.replace_schema_metadata(meta), tmp)
        os.replace(tmp, path)
        return path


def read_scores(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    """A finished run's per-image scores and its description (for ``eval compare``)."""
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {SCORES_FILE} (not a finished evaluation run)")
    table = pq.read_table(path)
    info = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    return table.to_pandas(), info
