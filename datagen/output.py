"""The output directory of a build and how a build resumes: per-shard completion markers.

Layout under the root (local directory or URI)::

    _run.json                     the data-deciding settings; a rerun with other settings is refused
    s3jedi-config.yaml            the resolved config
    subjects.parquet              stage 1's result: the subjects, each with its shard
    _parts/shard-00003/<id>.parquet  one finished row (accepted or rejected) per subject, until compacted
    sets/shard-00003.parquet      the shard's sets (core.s3.SETS_SCHEMA)
    rejects/shard-00003.parquet   the shard's rejects; rejects/subjects.parquet for stage 1
    _done/shard-00003.json        written last: the shard is complete (per-row stage traces; rows,
                                  size and sha256 of its two files)
    summary.json
    README.md                     the dataset card (core.s3.card)

Why markers and not Ray Data's checkpointing: Ray Data (2.60) filters checkpointed ids only at file
``Read`` operators and records them only at a single ``Write`` sink, while a build has two outputs
(sets and rejects) and rows that end as rejects half-way. Here every subject ends as a part file
(written atomically by a Ray task), the driver turns a shard's parts into its final files and then
writes the marker. A killed run leaves at worst temporary files and parts; the rerun deletes the
temporaries, skips shards with a marker and subjects with a part, and recomputes the rest with the
same seeds, so the result has no duplicates and no gaps.

A marker is trusted only as far as the files still match it: a resumed build checks every finished
shard (``verify``: the Parquet footer, the row count and the checksum the marker recorded) and rebuilds
the damaged ones from their subjects; ``s3jedi datagen show --verify`` runs the same check. Shards
written by an older version of the builder (no checksums in their marker) are read through once to
be checked, then rewritten in the current format with a current marker (``upgrade``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core import storage
from core.s3 import (
    REJECTS_DIR,
    SCHEMA_VERSION,
    SETS_DIR,
    SUMMARY_FILE,
    CorruptImageError,
    DatasetReadError,
    ImageSet,
    image_record,
    rejects_table,
    sets_table,
    write_bytes,
    write_table,
)
from core.s3.card import CARD_FILE, dataset_card
from core.s3.reader import read_shard, shard_info
from core.s3.schema import file_provenance
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
        ("dropped", pa.list_(pa.string())),
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
        "dropped": [r.stage for r in row.rejects if r.item is not None],  # the stage of each item dropped
        "finished_at": max((t.at for t in row.trace), default=None),
    }


def set_row(row: WorkRow) -> dict[str, Any]:
    """An accepted work row as a row of ``core.s3.SETS_SCHEMA``."""
    images = [image_record(i.image, i.mask, i.prompt, i.seed, row.subject_id, k) for k, i in enumerate(row.items)]
    return {
        "set_id": row.subject_id,
        "category": row.category,
        "subject": row.subject,
        "seed": row.seed,
        "collage_prompt": row.collage_prompt,
        "consistency": row.consistency,
        "style": row.style,
        "images": images,
    }


def reject_rows(row_id: str, rejects) -> list[dict[str, Any]]:
    return [
        {"row_id": row_id, "stage": r.stage, "reason": r.reason, "details": r.details, "item": r.item} for r in rejects
    ]


def _reason(exc: BaseException, path: str, rel: str) -> str:
    """An error about a file, as a reason naming it relative to the root."""
    text = str(exc).replace(path, rel)
    return text if text.startswith(rel) else f"{rel}: {text}"


def needs_upgrade(marker: dict) -> bool:
    """A marker written by an older builder: no checksums, its sets possibly in an older schema."""
    return "files" not in marker


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

    def upgrade_rejects(self, name: str) -> None:
        """Rewrite ``rejects/<name>.parquet`` in the current format if an older builder wrote it."""
        rel = f"{REJECTS_DIR}/{name}.parquet"
        if self.exists(rel) and shard_info(self.fs, self._inner(rel), "s3-rejects").version != SCHEMA_VERSION:
            self.write_rejects(pq.read_table(self._inner(rel), filesystem=self.fs).to_pylist(), name)

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

    def _describe(self, rel: str, rows: int) -> dict[str, Any]:
        """What a shard's marker records of one of its files: rows, size and checksum."""
        digest = hashlib.sha256()
        with self.fs.open_input_stream(self._inner(rel)) as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
        return {"rows": rows, "bytes": self.fs.get_file_info(self._inner(rel)).size, "sha256": digest.hexdigest()}

    def _finish(self, shard: int, sets: pa.Table, rejects: pa.Table, rows: list[dict]) -> dict:
        """Write a shard's two files, then its marker (last: the shard is done)."""
        name = shard_name(shard)
        files = {}
        for directory, table in ((SETS_DIR, sets), (REJECTS_DIR, rejects)):
            rel = f"{directory}/{name}.parquet"
            write_table(table, self.path(rel))
            files[rel] = self._describe(rel, table.num_rows)
        images = sum(pc.list_value_length(sets.column("images")).to_pylist()) if sets.num_rows else 0
        marker = {"shard": shard, "sets": sets.num_rows, "images": images, "rows": rows, "files": files}
        self.write_json(marker, DONE_DIR, f"{name}.json")
        return marker

    def compact(self, shard: int, subject_ids: list[str], provenance: dict[str, Any]) -> dict:
        """A shard's parts → its sets and rejects files → its marker (last) → parts deleted."""
        name = shard_name(shard)
        sets, rejects, rows = [], [], []
        for sid in subject_ids:
            table = pq.read_table(self._inner(PARTS_DIR, name, f"{sid}.parquet"), filesystem=self.fs)
            (row,) = from_table(table)
            rejects.extend(reject_rows(sid, row.rejects))
            if not row.rejected:
                sets.append(set_row(row))
            rows.append(status_row(row))
        marker = self._finish(shard, sets_table(sets, provenance), rejects_table(rejects), rows)
        self.fs.delete_dir(self._inner(PARTS_DIR, name))
        return marker

    # -- checking finished shards ----------------------------------------------------------------------
    def verify(self, marker: dict) -> str | None:
        """Why a finished shard's files no longer match its marker (missing, not Parquet, other row count,
        other checksum), or None when they do. A marker without checksums (an older builder's) is checked
        by reading its files through, every image and mask decoded."""
        name = shard_name(int(marker["shard"]))
        files = marker.get("files") or {
            f"{SETS_DIR}/{name}.parquet": {"rows": marker["sets"]},
            f"{REJECTS_DIR}/{name}.parquet": {},
        }
        for rel, want in files.items():
            kind = "s3-sets" if rel.startswith(SETS_DIR) else "s3-rejects"
            if not self.exists(rel):
                return f"{rel} is missing"
            try:
                info = shard_info(self.fs, self._inner(rel), kind)
            except (DatasetReadError, ValueError) as exc:
                return _reason(exc, self._inner(rel), rel)
            if "rows" in want and info.rows != want["rows"]:
                return f"{rel} has {info.rows} rows, its marker says {want['rows']}"
            if "sha256" in want:
                if self._describe(rel, info.rows) != want:
                    return f"{rel} differs from the checksum in its marker"
                continue
            try:
                if kind == "s3-sets":
                    for table in read_shard(self.fs, info):
                        for row in table.to_pylist():
                            ImageSet.from_row(row)
                else:
                    pq.read_table(info.path, filesystem=self.fs)
            except (DatasetReadError, CorruptImageError, pa.ArrowException, OSError) as exc:
                return _reason(exc, self._inner(rel), rel)
        return None

    def discard(self, shard: int) -> None:
        """Forget a finished shard (marker first, so a kill half-way leaves it merely unfinished)."""
        name = shard_name(shard)
        for rel in (f"{DONE_DIR}/{name}.json", f"{SETS_DIR}/{name}.parquet", f"{REJECTS_DIR}/{name}.parquet"):
            if self.exists(rel):
                self.fs.delete_file(self._inner(rel))

    def upgrade(self, marker: dict) -> dict:
        """Rewrite a verified shard of an older builder in the current format, with a current marker:
        its sets in schema version 2 (provenance from its rows into the file's metadata), and the
        per-row counts of dropped items its rows did not record, from its rejects."""
        name = shard_name(int(marker["shard"]))
        info = shard_info(self.fs, self._inner(SETS_DIR, f"{name}.parquet"))
        tables = list(read_shard(self.fs, info))
        provenance = file_provenance(tables[0].schema) if tables else {}
        sets = pa.concat_tables(tables) if tables else sets_table([])
        rejects = pq.read_table(self._inner(REJECTS_DIR, f"{name}.parquet"), filesystem=self.fs)
        dropped: dict[str, list[str]] = {}
        for r in rejects.to_pylist():
            if r["item"] is not None:
                dropped.setdefault(r["row_id"], []).append(r["stage"])
        rows = [{**row, "dropped": dropped.get(row["subject_id"], [])} for row in marker["rows"]]
        return self._finish(
            int(marker["shard"]), sets_table(sets.to_pylist(), provenance), rejects_table(rejects.to_pylist()), rows
        )

    def write_summary(self, summary: dict) -> None:
        self.write_json(summary, SUMMARY_FILE)

    def write_card(self, summary: dict, provenance: dict, rejects: int) -> None:
        write_bytes(dataset_card(summary, provenance, rejects).encode(), self.path(CARD_FILE))


# -- Ray task bodies (see ray_stages / pipeline) ---------------------------------------------------


def write_parts(batch: pa.Table, root: str) -> pa.Table:
    """Write every finished row as its part file; return the small status rows the driver tracks."""
    out = OutputDir(root)
    statuses = []
    for row in from_table(batch):
        out.write_part(row)
        statuses.append(status_row(row))
    return pa.Table.from_pylist(statuses, schema=STATUS_SCHEMA)


def check_shard(root: str, marker: dict) -> str | None:
    """Ray task body: verify a finished shard; discard it if damaged (returning why), else bring it to the
    current format if an older builder wrote it (see ``output``)."""
    out = OutputDir(root)
    reason = out.verify(marker)
    if reason:
        out.discard(int(marker["shard"]))
    elif needs_upgrade(marker):
        out.upgrade(marker)
    return reason


def compact_shard(root: str, shard: int, subject_ids: list[str], provenance: dict) -> dict:
    """Ray task body: turn a complete shard's parts into its final files and marker (see ``output``)."""
    return OutputDir(root).compact(shard, subject_ids, provenance)
