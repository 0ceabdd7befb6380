"""Reading S3 datasets: as a Ray Dataset for training at scale, or as ``ImageSet`` objects in a loop."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core import storage
from core.s3.layout import rejects_path, sets_path, summary_path
from core.s3.schema import REJECTS_SCHEMA, check_schema
from core.s3.sets import ImageSet


def _parquet_files(path: str) -> tuple[pafs.FileSystem, list[str]]:
    fs, p = storage.filesystem(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.File:
        return fs, [p]
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"S3 dataset: no such file or directory: {path}")
    listing = fs.get_file_info(pafs.FileSelector(p, recursive=True))
    return fs, sorted(f.path for f in listing if f.type == pafs.FileType.File and f.path.endswith(".parquet"))


def _checked_files(path: str, expected: str = "s3-sets") -> tuple[pafs.FileSystem, list[str]]:
    fs, files = _parquet_files(path)
    if not files:
        raise FileNotFoundError(f"S3 dataset: no Parquet files under {path}")
    check_schema(pq.read_schema(files[0], filesystem=fs), files[0], expected)
    return fs, files


def read_sets(path_or_uri: str, columns: list[str] | None = None):
    """The sets of a dataset as a ``ray.data.Dataset``, one row per set, columns of ``SETS_SCHEMA``.

    ``path_or_uri`` is a dataset root (with ``sets/``), a directory of shards or one shard file.
    ``ImageSet.from_row(row)`` decodes a row's images and masks.
    """
    import ray.data

    path = sets_path(path_or_uri)
    fs, files = _checked_files(path)
    return ray.data.read_parquet(files, filesystem=fs, columns=columns)


def _training_columns(batch: pa.Table) -> pa.Table:
    """set_id plus the per-image fields of ``images`` as parallel lists (no pixel is decoded here)."""
    images = batch.column("images").combine_chunks()

    def per_image(name: str) -> pa.Array:
        # .values and .offsets are both absolute, so this is right for sliced arrays too
        return pa.ListArray.from_arrays(images.offsets, images.values.field(name))

    return pa.table(
        {
            "set_id": batch.column("set_id"),
            "images": per_image("image"),
            "masks": per_image("mask"),
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
    """Every set of a dataset as a decoded ``ImageSet``, shard by shard in file order; no Ray needed."""
    fs, files = _checked_files(sets_path(path_or_uri))
    for file in files:
        with fs.open_input_file(file) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size):
                for row in batch.to_pylist():
                    yield ImageSet.from_row(row)


def read_rejects(path_or_uri: str) -> pa.Table:
    """Every reject of a build (row id, stage, reason, details, item) as one table; empty if there are none."""
    root = rejects_path(path_or_uri)
    if not storage.exists(root):
        return REJECTS_SCHEMA.empty_table()
    fs, files = _parquet_files(root)
    if not files:
        return REJECTS_SCHEMA.empty_table()
    check_schema(pq.read_schema(files[0], filesystem=fs), files[0], "s3-rejects")
    return pa.concat_tables([pq.read_table(f, filesystem=fs, schema=REJECTS_SCHEMA) for f in files])


def read_summary(path_or_uri: str) -> dict:
    """The build's ``summary.json`` (counts per stage, acceptance rates, throughput, time)."""
    fs, p = storage.filesystem(summary_path(path_or_uri))
    with fs.open_input_stream(p) as f:
        return json.loads(f.read())
