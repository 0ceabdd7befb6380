"""The S3 dataset format, defined once: Arrow schemas of the sets and rejects tables, and their version.

A *set* is several images of one subject (the same object in different scenes, possibly stylized),
each with the subject's mask and a caption. The schema is versioned in the Parquet metadata
(``s3jedi.schema_version``): a reader refuses a version it does not know instead of misreading columns.
Bump ``SCHEMA_VERSION`` on any change to a column's name, type or meaning, and teach ``upgrade`` the
previous one.

Version 2 is what the Hugging Face ``datasets`` library reads as it is: every image and mask is a
``datasets.Image`` struct (``bytes`` + ``path``), the ``huggingface`` metadata key carries the
features (so ``load_dataset("parquet", ...)`` decodes them to PIL images), and every field is
nullable as ``datasets`` writes them (the writer checks the required ones itself). The provenance of a
shard (config hash, data fingerprint, the model of every role, the version of every stage) is one JSON
map in the file's metadata (``s3jedi.provenance``): stages and model roles are whatever the builder
declares, not a fixed struct. Version 1 (per-row provenance struct, images as bare PNG bytes) still
reads: ``upgrade`` turns its tables into version 2.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_NAME = "s3-sets"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
NAME_KEY = b"s3jedi.schema"
VERSION_KEY = b"s3jedi.schema_version"
PROVENANCE_KEY = b"s3jedi.provenance"
HF_KEY = b"huggingface"

IMAGE_FILE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
"""An encoded image as ``datasets.Image`` stores it: the file's bytes and a name (``<set id>/<i>.png``)."""

IMAGE_TYPE = pa.struct(
    [
        pa.field("image", IMAGE_FILE),  # PNG, RGB
        pa.field("mask", IMAGE_FILE),  # PNG, 1-bit: white = the subject
        pa.field("prompt", pa.string()),  # caption of this image (subject, scene, style)
        pa.field("seed", pa.int64()),  # seed of the generation that made it
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
    ]
)

SETS_FIELDS = [
    pa.field("set_id", pa.string()),  # stable: the subject id
    pa.field("category", pa.string()),  # the object category ("teapot")
    pa.field("subject", pa.string()),  # the detailed description the LLM wrote
    pa.field("seed", pa.int64()),  # the subject's seed (every stage derives from it)
    pa.field("collage_prompt", pa.string()),
    pa.field("consistency", pa.float32()),  # mean pairwise CLIP similarity of the instances
    pa.field("style", pa.string()),  # InstructPix2Pix instruction applied; null = none
    pa.field("images", pa.list_(IMAGE_TYPE)),
]
OPTIONAL = {"style", "images[].image.path", "images[].mask.path"}
"""Fields that may be null; every other field, nested ones included, must hold a value."""

REJECTS_FIELDS = [
    pa.field("row_id", pa.string(), nullable=False),  # subject id, or "category:<name>" before ids exist
    pa.field("stage", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),  # short, groupable ("too-small", "error", ...)
    pa.field("details", pa.string(), nullable=False),  # the numbers or the exception
    pa.field("item", pa.string(), nullable=True),  # which image/instance of the row, if not all of it
]

_DTYPES = {
    pa.string(): "string",
    pa.int64(): "int64",
    pa.int32(): "int32",
    pa.float32(): "float32",
    pa.float64(): "float64",
    pa.bool_(): "bool",
    pa.binary(): "binary",
}


def hf_feature(dtype: pa.DataType) -> Any:
    """The ``datasets`` feature of an Arrow type, in the serialized form ``datasets.Features.from_dict`` reads."""
    if dtype == IMAGE_FILE:
        return {"_type": "Image"}
    if pa.types.is_list(dtype):
        return {"feature": hf_feature(dtype.value_type), "_type": "List"}
    if pa.types.is_struct(dtype):
        return {f.name: hf_feature(f.type) for f in dtype}
    return {"dtype": _DTYPES[dtype], "_type": "Value"}


def hf_features(fields: list[pa.Field]) -> dict[str, Any]:
    return {f.name: hf_feature(f.type) for f in fields}


def _schema(fields: list[pa.Field], name: str) -> pa.Schema:
    meta = {NAME_KEY: name.encode(), VERSION_KEY: str(SCHEMA_VERSION).encode()}
    meta[HF_KEY] = json.dumps({"info": {"features": hf_features(fields)}}).encode()
    return pa.schema(fields, metadata=meta)


SETS_SCHEMA = _schema(SETS_FIELDS, SCHEMA_NAME)
REJECTS_SCHEMA = _schema(REJECTS_FIELDS, "s3-rejects")


class SchemaVersionError(ValueError):
    """A file written with a schema this code does not read."""


def schema_version(schema: pa.Schema, where: str, expected: str = SCHEMA_NAME) -> int:
    """The version of a file's schema; refuses files of another format or an unknown version, naming
    the file and the versions."""
    meta = schema.metadata or {}
    name = meta.get(NAME_KEY, b"").decode()
    version = meta.get(VERSION_KEY, b"").decode()
    if name != expected:
        raise SchemaVersionError(f"{where}: not an {expected} file (schema name {name or 'missing'!r})")
    if not version.isdigit() or int(version) not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise SchemaVersionError(
            f"{where}: {expected} schema version {version or 'missing'}; this code reads versions {readable}"
        )
    return int(version)


def file_provenance(schema: pa.Schema) -> dict[str, Any]:
    """The provenance a version-2 sets file carries in its metadata; ``{}`` if it has none."""
    raw = (schema.metadata or {}).get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def with_provenance(schema: pa.Schema, provenance: dict[str, Any] | None) -> pa.Schema:
    meta = dict(schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(provenance or {}, sort_keys=True).encode()
    return schema.with_metadata(meta)


def image_path(set_id: str, index: int, mask: bool = False) -> str:
    """The name an image of a set carries in its ``datasets.Image`` struct."""
    return f"{set_id}/{index}{'-mask' if mask else ''}.png"


def upgrade(table: pa.Table, version: int) -> pa.Table:
    """A sets table of ``version`` as a version-2 table (columns as read: a subset of the sets' columns).

    Version 1 held the images as bare PNG bytes and the provenance as a per-row struct: the bytes move
    into ``datasets.Image`` structs (named when ``set_id`` was read), the provenance of the first row
    (the builder wrote one per shard) into the metadata."""
    if version == SCHEMA_VERSION:
        return table
    provenance: dict[str, Any] = {}
    if "provenance" in table.column_names:
        rows = table.column("provenance").to_pylist()
        provenance = rows[0] if rows else {}
        table = table.drop_columns(["provenance"])
    if "images" in table.column_names:
        images = table.column("images").combine_chunks()
        values = images.flatten()  # the items of these rows only, also for a slice
        offsets = pc.subtract(images.offsets, images.offsets[0])
        counts = images.value_lengths().to_pylist()
        ids = table.column("set_id").to_pylist() if "set_id" in table.column_names else [None] * len(counts)
        names = [(sid, i) for sid, n in zip(ids, counts, strict=True) for i in range(n or 0)]

        def image_file(field: str, mask: bool) -> pa.StructArray:
            paths = [None if sid is None else image_path(sid, i, mask) for sid, i in names]
            return pa.StructArray.from_arrays(
                [values.field(field), pa.array(paths, pa.string())], fields=list(IMAGE_FILE)
            )

        fields = [image_file("image", False), image_file("mask", True)]
        fields += [values.field(f.name).cast(f.type) for f in list(IMAGE_TYPE)[2:]]
        structs = pa.StructArray.from_arrays(fields, fields=list(IMAGE_TYPE))
        table = table.set_column(
            table.column_names.index("images"), "images", pa.ListArray.from_arrays(offsets, structs)
        )
    wanted = pa.schema([SETS_SCHEMA.field(n) for n in table.column_names], metadata=SETS_SCHEMA.metadata)
    return table.cast(wanted).replace_schema_metadata(with_provenance(wanted, provenance).metadata)
