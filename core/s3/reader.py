"""Reading S3 datasets: as a Ray Dataset for training at scale, or as ``ImageSet`` objects in a loop.

Every reader opens each shard's footer first (in the calling process), so a truncated or foreign file
fails at once with ``DatasetReadError`` naming the file and the reason, not as an ``ArrowInvalid``
from deep inside a Ray task. Damage past the footer (a scrambled page) is found while reading and
raises the same error, still naming the file. Shards of every readable schema version are read and
handed out in the current one (``schema.upgrade``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core import storage
from core.s3.layout import rejects_path, sets_path, summary_path
from core.s3.schema import (
    REJECTS_SCHEMA,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    file_provenance,
    schema_version,
    upgrade,
)
from core.s3.sets import ImageSet


class DatasetReadError(ValueError):
    """A file of an S3 dataset cannot be read; the message names the file and why. Deterministic: reading
    the same file again fails the same way."""


@dataclass(frozen=True)
class Shard:
    """One Parquet file of a dataset, as its footer describes it."""

    path: str
    version: int
    rows: int
    size: int


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}"


def _parquet_files(path: str) -> tuple[pafs.FileSystem, list[str]]:
    fs, p = storage.filesystem(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.File:
        return fs, [p]
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"S3 dataset: no such file or directory: {path}")
    listing = fs.get_file_info(pafs.FileSelector(p, recursive=True))
    return fs, sorted(f.path for f in listing if f.type == pafs.FileType.File and f.path.endswith(".parquet"))


def shard_info(fs: pafs.FileSystem, path: str, expected: str = SCHEMA_NAME) -> Shard:
    """Read one file's footer: its schema version and row count. Raises ``DatasetReadError`` for a file
    that is not a complete Parquet file and ``SchemaVersionError`` for another format or version."""
    try:
        size = fs.get_file_info(path).size
        with fs.open_input_file(path) as f:
            meta = pq.ParquetFile(f).metadata
            schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise DatasetReadError(f"{path}: not a readable Parquet file (footer: {_reason(exc)})") from None
    return Shard(path, schema_version(schema, path, expected), meta.num_rows, size)


def _shards(path: str, expected: str = SCHEMA_NAME) -> tuple[pafs.FileSystem, list[Shard]]:
    fs, files = _parquet_files(path)
    if not files:
        raise FileNotFoundError(f"S3 dataset: no Parquet files under {path}")
    return fs, [shard_info(fs, f, expected) for f in files]


def _v1_columns(columns: list[str] | None, version: int) -> list[str] | None:
    """The columns to read from a shard of ``version`` to give ``columns`` of the current schema."""
    if columns is None or version == SCHEMA_VERSION:
        return columns
    return [*columns, "set_id"] if "images" in columns and "set_id" not in columns else columns


def read_shard(
    fs: pafs.FileSystem, shard: Shard, columns: list[str] | None = None, batch_size: int = 16
) -> Iterator[pa.Table]:
    """A shard's sets in the current schema, ``batch_size`` rows at a time, the file's provenance in each
    table's metadata. Damage found while reading raises ``DatasetReadError`` naming the file."""
    try:
        with fs.open_input_file(shard.path) as f:
            parquet = pq.ParquetFile(f)
            for batch in parquet.iter_batches(batch_size=batch_size, columns=_v1_columns(columns, shard.version)):
                table = upgrade(pa.Table.from_batches([batch]), shard.version)
                if shard.version == SCHEMA_VERSION:
                    table = table.replace_schema_metadata(parquet.schema_arrow.metadata)
                yield table.select(columns) if columns is not None else table
    except (pa.ArrowException, OSError) as exc:
        raise DatasetReadError(f"{shard.path}: unreadable ({_reason(exc)})") from None


def read_sets(path_or_uri: str, columns: list[str] | None = None):
    """The sets of a dataset as a ``ray.data.Dataset``, one row per set, columns of ``SETS_SCHEMA``.

    ``path_or_uri`` is a dataset root (with ``sets/``), a directory of shards or one shard file.
    ``ImageSet.from_row(row)`` decodes a row's images and masks.
    """
    import ray.data

    from core.s3.ray_source import SetsDatasource

    fs, shards = _shards(sets_path(path_or_uri))
    return ray.data.read_datasource(SetsDatasource(fs, shards, columns))


def _training_columns(batch: pa.Table) -> pa.Table:
    """set_id plus the per-image fields of ``images`` as parallel lists (no pixel is decoded here)."""
    images = batch.column("images").combine_chunks()

    def per_image(*path: str) -> pa.Array:
        values = images.values
        for name in path:
            values = values.field(name)
        # .values and .offsets are both absolute, so this is right for sliced arrays too
        return pa.ListArray.from_arrays(images.offsets, values)

    return pa.table(
        {
            "set_id": batch.column("set_id"),
            "images": per_image("image", "bytes"),
            "masks": per_image("mask", "bytes"),
            "captions": per_image("prompt"),
        }
    )


def read_training_sets(path_or_uri: str):
    """A ``ray.data.Dataset`` with the columns a trainer needs: ``set_id`` (str), ``images`` (list of PNG
    bytes), ``masks`` (list of 1-bit PNG bytes, white = subject) and ``captions`` (list of str), one entry
    per image of the set, in the same order."""
    return read_sets(path_or_uri, columns=["set_id", "images"]).map_batches(
        _training_columns, batch_format="pyarrow", batch_size=None
    )


def iter_sets(path_or_uri: str, batch_size: int = 16) -> Iterator[ImageSet]:
    """Every set of a dataset as a decoded ``ImageSet``, shard by shard in file order; no Ray needed.

    A damaged file raises ``DatasetReadError`` naming it; a corrupt image ``CorruptImageError`` naming
    the set."""
    fs, shards = _shards(sets_path(path_or_uri))
    for shard in shards:
        for table in read_shard(fs, shard, batch_size=batch_size):
            provenance = file_provenance(table.schema)
            for row in table.to_pylist():
                yield ImageSet.from_row(row, provenance)


def read_rejects(path_or_uri: str) -> pa.Table:
    """Every reject of a build (row id, stage, reason, details, item) as one table; empty if there are none."""
    root = rejects_path(path_or_uri)
    if not storage.exists(root):
        return REJECTS_SCHEMA.empty_table()
    fs, files = _parquet_files(root)
    tables = []
    for f in files:
        shard_info(fs, f, "s3-rejects")
        try:
            tables.append(pq.read_table(f, filesystem=fs, schema=REJECTS_SCHEMA))
        except (pa.ArrowException, OSError) as exc:
            raise DatasetReadError(f"{f}: unreadable ({_reason(exc)})") from None
    return pa.concat_tables(tables) if tables else REJECTS_SCHEMA.empty_table()


def read_summary(path_or_uri: str) -> dict:
    """The build's ``summary.json`` (counts per stage, acceptance rates, throughput, time)."""
    fs, p = storage.filesystem(summary_path(path_or_uri))
    with fs.open_input_stream(p) as f:
        return json.loads(f.read())
