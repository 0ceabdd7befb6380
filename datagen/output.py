"""The output directory of a build and how a build resumes: per-shard completion markers.

Layout under the root (local directory or URI)::

    _run.json                     the data-deciding settings; a rerun with other settings is refused
    s3jedi-config.yaml            the resolved config
    subjects.parquet              stage 1's result: the subjects, each with its shard
    _parts/shard-00003/<id>.parquet  one finished row (accepted or rejected) per subject, until compacted
    sets/shard-00003.parquet      the shard's sets (core.s3.SETS_SCHEMA)
    rejects/shard-00003.parquet   the shard's rejects; rejects/subjects.parquet for stage 1
    _done/shard-00003.json        written last: the shard is complete (with the per-row stage traces)
    summary.json

Why markers and not Ray Data's checkpointing: Ray Data (2.60) filters checkpointed ids only at file
``Read`` operators and records them only at a single ``Write`` sink, while a build has two outputs
(sets and rejects) and rows that end as rejects half-way. Here every subject ends as a part file
(written atomically by a Ray task), the driver turns a shard's parts into its final files and then
writes the marker. A killed run leaves at worst temporary files and parts; the rerun deletes the
temporaries, skips shards with a marker and subjects with a part, and recomputes the rest with the
same seeds, so the result has no duplicates and no gaps.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core import storage
from core.s3 import (
    REJECTS_DIR,
    SETS_DIR,
    SUMMARY_FILE,
    image_record,
    rejects_table,
    sets_table,
    write_bytes,
    write_table,
)
from core.s3.writer import TMP_SUFFIX
from datagen.rows import TRACE_TYPE, WORK_SCHEMA, WorkRow, from_table, to_table

RUN_FILE = "_run.json"
PARTS_DIR = "_parts"
DONE_DIR = "_done"
SUBJECTS_FILE = "subjects.parquet"
_STATS_KEY = b"s3jedi.stage_stats"

STATUS_SCHEMA = pa.schema(
    [
        ("subject_id", pa.string()),
        ("shard", pa.int32()),
        ("rejected", pa.bool_()),
        ("reason", pa.string()),
        ("details", pa.string()),
        ("images", pa.int32()),
        ("trace", pa.list_(TRACE_TYPE)),
        ("finished_at", pa.float64()),
    ]
)
SUBJECTS_SCHEMA = pa.schema(list(WORK_SCHEMA)[:6])
"""A subject as stage 1 writes it: the leading fields of a work row (id, shard, category, text, scenes, seed)."""


class ResumeMismatchError(ValueError):
    """The output directory was started with settings that would make different data."""


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def status_row(row: WorkRow) -> dict[str, Any]:
    """What the driver needs to know about a finished row (no pixels). ``finished_at`` is when its last
    stage finished it: the driver receives rows in bursts, so it cannot time them itself."""
    terminal = row.rejects[-1] if row.rejected and row.rejects else None
    return {
        "subject_id": row.subject_id,
        "shard": row.shard,
        "rejected": row.rejected,
        "reason": terminal.reason if terminal else None,
        "details": terminal.details[:500] if terminal else None,
        "images": 0 if row.rejected else len(row.items),
        "trace": [t.__dict__ for t in row.trace],
        "finished_at": max((t.at for t in row.trace), default=None),
    }


def set_row(row: WorkRow, provenance: dict[str, Any]) -> dict[str, Any]:
    """An accepted work row as a row of ``core.s3.SETS_SCHEMA``."""
    images = [image_record(i.image, i.mask, i.prompt, i.seed) for i in row.items]
    return {
        "set_id": row.subject_id,
        "category": row.category,
        "subject": row.subject,
        "seed": row.seed,
        "collage_prompt": row.collage_prompt,
        "consistency": row.consistency,
        "style": row.style,
        "images": images,
        "provenance": provenance,
    }


def reject_rows(row_id: str, rejects) -> list[dict[str, Any]]:
    return [
        {"row_id": row_id, "stage": r.stage, "reason": r.reason, "details": r.details, "item": r.item} for r in rejects
    ]


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


class OutputDir:
    def __init__(self, root: str):
        self.root = storage.resolve(root)
        self.fs, self._path = storage.filesystem(self.root)

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    def _inner(self, *parts: str) -> str:
        return storage.filesystem(self.path(*parts))[1]

    def _files(self, *parts: str) -> list[str]:
        listing = self.fs.get_file_info(pafs.FileSelector(self._inner(*parts), allow_not_found=True, recursive=True))
        return sorted(f.path for f in listing if f.type == pafs.FileType.File)

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self._inner(*parts)).type != pafs.FileType.NotFound

    def read_json(self, *parts: str) -> dict:
        with self.fs.open_input_stream(self._inner(*parts)) as f:
            return json.loads(f.read())

    def write_json(self, data: dict, *parts: str) -> None:
        write_bytes(json.dumps(data, indent=1, default=str).encode(), self.path(*parts))

    # -- the run's identity --------------------------------------------------------------------------
    def claim(self, settings: dict[str, Any], fingerprint: str) -> bool:
        """Record the settings of a new build, or check a resumed one against them; True if resuming."""
        if self.exists(RUN_FILE):
            saved = self.read_json(RUN_FILE)
            if saved["fingerprint"] != fingerprint:
                changed = _diff(saved["settings"], settings)
                raise ResumeMismatchError(
                    f"{self.root} was built with other settings ({', '.join(changed[:5]) or 'unknown'} differ); "
                    "rerun with the same config to resume, or choose a new --out"
                )
            return True
        self.write_json({"fingerprint": fingerprint, "settings": settings}, RUN_FILE)
        return False

    # -- stage 1 -------------------------------------------------------------------------------------
    def read_subjects(self) -> tuple[list[dict], dict] | None:
        """Stage 1's subjects and its statistics, or None if stage 1 has not completed."""
        if not self.exists(SUBJECTS_FILE):
            return None
        table = pq.read_table(self._inner(SUBJECTS_FILE), filesystem=self.fs)
        stats = json.loads(table.schema.metadata[_STATS_KEY])
        return table.cast(SUBJECTS_SCHEMA).to_pylist(), stats

    def write_rejects(self, rejects: list[dict], name: str) -> None:
        write_table(rejects_table(rejects), self.path(REJECTS_DIR, f"{name}.parquet"))

    def write_subjects(self, subjects: list[dict], stats: dict) -> None:
        """The subjects file, with stage 1's statistics in its metadata: its presence means stage 1 is done."""
        table = pa.Table.from_pylist(subjects, schema=SUBJECTS_SCHEMA.with_metadata({_STATS_KEY: json.dumps(stats)}))
        write_table(table, self.path(SUBJECTS_FILE))

    # -- image stages --------------------------------------------------------------------------------
    def write_part(self, row: WorkRow) -> None:
        write_table(to_table([row]), self.path(PARTS_DIR, shard_name(row.shard), f"{row.subject_id}.parquet"))

    def parts(self, shard: int) -> set[str]:
        files = self._files(PARTS_DIR, shard_name(shard))
        return {f.rsplit("/", 1)[-1].removesuffix(".parquet") for f in files if f.endswith(".parquet")}

    def done(self) -> dict[int, dict]:
        """Markers of the completed shards."""
        markers = {}
        for f in self._files(DONE_DIR):
            if f.endswith(".json"):
                with self.fs.open_input_stream(f) as stream:
                    marker = json.loads(stream.read())
                markers[int(marker["shard"])] = marker
        return markers

    def clean(self, done: set[int]) -> int:
        """Delete what a killed run left: temporary files, and parts of shards that are complete."""
        removed = 0
        for f in self._files():
            if f.endswith(TMP_SUFFIX):
                self.fs.delete_file(f)
                removed += 1
        for shard in done:
            if self.exists(PARTS_DIR, shard_name(shard)):
                self.fs.delete_dir(self._inner(PARTS_DIR, shard_name(shard)))
        return removed

    def compact(self, shard: int, subject_ids: list[str], provenance: dict[str, Any]) -> dict:
        """A shard's parts → its sets and rejects files → its marker (last) → parts deleted."""
        name = shard_name(shard)
        sets, rejects, rows = [], [], []
        for sid in subject_ids:
            table = pq.read_table(self._inner(PARTS_DIR, name, f"{sid}.parquet"), filesystem=self.fs)
            (row,) = from_table(table)
            rejects.extend(reject_rows(sid, row.rejects))
            if not row.rejected:
                sets.append(set_row(row, provenance))
            rows.append(status_row(row))
        write_table(sets_table(sets), self.path(SETS_DIR, f"{name}.parquet"))
        write_table(rejects_table(rejects), self.path(REJECTS_DIR, f"{name}.parquet"))
        marker = {"shard": shard, "sets": len(sets), "images": sum(len(s["images"]) for s in sets), "rows": rows}
        self.write_json(marker, DONE_DIR, f"{name}.json")
        self.fs.delete_dir(self._inner(PARTS_DIR, name))
        return marker

    def write_summary(self, summary: dict) -> None:
        self.write_json(summary, SUMMARY_FILE)


# -- Ray task bodies (see ray_stages / pipeline) ---------------------------------------------------


def write_parts(batch: pa.Table, root: str) -> pa.Table:
    """Write every finished row as its part file; return the small status rows the driver tracks."""
    out = OutputDir(root)
    statuses = []
    for row in from_table(batch):
        out.write_part(row)
        statuses.append(status_row(row))
    return pa.Table.from_pylist(statuses, schema=STATUS_SCHEMA)


def compact_shard(root: str, shard: int, subject_ids: list[str], provenance: dict) -> dict:
    """Ray task body: turn a complete shard's parts into its final files and marker (see ``output``)."""
    return OutputDir(root).compact(shard, subject_ids, provenance)
