"""Writing S3 tables: schema-checked, and atomic, so a killed writer never leaves a half file behind.

Every file is written under a temporary name beside its destination and then moved into place (a
rename on local disks; on object stores an object only becomes visible once complete). Readers list
``*.parquet`` only, so temporary ``*.tmp`` files are never read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core import storage
from core.s3.layout import SETS_DIR
from core.s3.schema import REJECTS_SCHEMA, SETS_SCHEMA
from core.s3.sets import ImageSet

TMP_SUFFIX = ".tmp"


def _tmp_and_parent(path: str):
    fs, p = storage.filesystem(path)
    parent = p.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    return fs, p, f"{p}.{uuid.uuid4().hex}{TMP_SUFFIX}"


def write_table(table: pa.Table, path: str) -> str:
    """Write ``table`` as one Parquet file at ``path`` (local or URI), atomically."""
    fs, final, tmp = _tmp_and_parent(path)
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, final)
    return storage.resolve(path)


def write_bytes(data: bytes, path: str) -> str:
    """Write a small file (JSON markers, summaries) atomically."""
    fs, final, tmp = _tmp_and_parent(path)
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, final)
    return storage.resolve(path)


def sets_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows of the sets table (``ImageSet.to_row`` or the builder's own) as a table of ``SETS_SCHEMA``;
    a missing field or a wrong type raises here, not in a reader later."""
    return pa.Table.from_pylist(list(rows), schema=SETS_SCHEMA)


def rejects_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=REJECTS_SCHEMA)


def write_sets(sets: Iterable[ImageSet], root: str, shard: str = "shard-00000") -> str:
    """Write in-memory sets as one shard of a dataset rooted at ``root`` (fixtures, imports)."""
    return write_table(sets_table(s.to_row() for s in sets), storage.join(root, SETS_DIR, f"{shard}.parquet"))
