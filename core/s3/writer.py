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
from core.s3.schema import OPTIONAL, REJECTS_SCHEMA, SETS_SCHEMA, with_provenance
from core.s3.sets import ImageSet

TMP_SUFFIX = ".tmp"


def _tmp_and_parent(path: str):
    fs, p = storage.filesystem(path)
    parent = p.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    return fs, p, f"{p}.{uuid.uuid4().hex}{TMP_SUFFIX}"


def write_table(table: pa.Table, path: str) -> str:
    """Write ``table`` as one Parquet file at ``path`` (local or URI), atomically. An empty table is a file
    with no row group: ``pq.write_table`` would write one of 0 rows, which the ``datasets`` Parquet
    reader cannot read (it takes the first row group's size as its batch size)."""
    fs, final, tmp = _tmp_and_parent(path)
    if table.num_rows:
        pq.write_table(table, tmp, filesystem=fs)
    else:
        pq.ParquetWriter(tmp, table.schema, filesystem=fs).close()
    fs.move(tmp, final)
    return storage.resolve(path)


def write_bytes(data: bytes, path: str) -> str:
    """Write a small file (JSON markers, summaries) atomically."""
    fs, final, tmp = _tmp_and_parent(path)
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, final)
    return storage.resolve(path)


def _null_fields(name: str, array: pa.Array) -> list[str]:
    """Dotted names (``images[].image.bytes``) of the required fields under ``array`` that hold a null."""
    found = [] if name in OPTIONAL or array.null_count == 0 else [name]
    if pa.types.is_list(array.type):
        found += _null_fields(f"{name}[]", array.flatten())
    elif pa.types.is_struct(array.type):
        for field in array.type:
            found += _null_fields(f"{name}.{field.name}", array.field(field.name))
    return found


def sets_table(rows: Iterable[dict[str, Any]], provenance: dict[str, Any] | None = None) -> pa.Table:
    """Rows of the sets table (``ImageSet.to_row`` or the builder's own) as a table of ``SETS_SCHEMA``, with
    the shard's ``provenance`` map in its metadata. A wrong type or a missing required value raises here,
    naming the field, not in a reader later."""
    table = pa.Table.from_pylist(list(rows), schema=with_provenance(SETS_SCHEMA, provenance))
    for column, name in zip(table.columns, table.column_names, strict=True):
        missing = _null_fields(name, column.combine_chunks())
        if missing:
            raise ValueError(f"S3 sets: {', '.join(missing)}: a value is required")
    return table


def rejects_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=REJECTS_SCHEMA)


def write_sets(
    sets: Iterable[ImageSet], root: str, shard: str = "shard-00000", provenance: dict[str, Any] | None = None
) -> str:
    """Write in-memory sets as one shard of a dataset rooted at ``root`` (fixtures, imports)."""
    table = sets_table((s.to_row() for s in sets), provenance)
    return write_table(table, storage.join(root, SETS_DIR, f"{shard}.parquet"))
