"""The S3 dataset format, defined once: Arrow schemas of the sets and rejects tables, and their version.

A *set* is several images of one subject (the same object in different scenes, possibly stylized),
each with the subject's mask and a caption. The schema is versioned in the Parquet metadata
(``s3jedi.schema_version``): a reader refuses a version it does not know instead of misreading columns.
Bump ``SCHEMA_VERSION`` on any change to a column's name, type or meaning.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_NAME = "s3-sets"
SCHEMA_VERSION = 1
NAME_KEY = b"s3jedi.schema"
VERSION_KEY = b"s3jedi.schema_version"

MODEL_ROLES = ("llm", "sdxl", "detector", "segmenter", "clip", "inpaint", "pix2pix")
"""The models that make a set, in the order they act (``models.<role>`` references)."""

STAGES = ("subjects", "collages", "instances", "consistency", "backgrounds", "stylize")
"""The builder's stages, in order; each records its version with every set."""

IMAGE_TYPE = pa.struct(
    [
        pa.field("image", pa.binary(), nullable=False),  # PNG, RGB
        pa.field("mask", pa.binary(), nullable=False),  # PNG, 1-bit: white = the subject
        pa.field("prompt", pa.string(), nullable=False),  # caption of this image (subject, scene, style)
        pa.field("seed", pa.int64(), nullable=False),  # seed of the generation that made it
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
    ]
)

PROVENANCE_TYPE = pa.struct(
    [
        pa.field("config_hash", pa.string(), nullable=False),  # core.config.config_hash of the run
        pa.field("fingerprint", pa.string(), nullable=False),  # hash of the settings that decide the data
        pa.field("models", pa.struct([pa.field(r, pa.string(), nullable=False) for r in MODEL_ROLES])),
        pa.field("stage_versions", pa.struct([pa.field(s, pa.string(), nullable=False) for s in STAGES])),
    ]
)


def _with_metadata(fields: list[pa.Field], name: str) -> pa.Schema:
    return pa.schema(fields, metadata={NAME_KEY: name.encode(), VERSION_KEY: str(SCHEMA_VERSION).encode()})


SETS_SCHEMA = _with_metadata(
    [
        pa.field("set_id", pa.string(), nullable=False),  # stable: the subject id
        pa.field("category", pa.string(), nullable=False),  # the object category ("teapot")
        pa.field("subject", pa.string(), nullable=False),  # the detailed description the LLM wrote
        pa.field("seed", pa.int64(), nullable=False),  # the subject's seed (every stage derives from it)
        pa.field("collage_prompt", pa.string(), nullable=False),
        pa.field("consistency", pa.float32(), nullable=False),  # mean pairwise CLIP similarity of the instances
        pa.field("style", pa.string(), nullable=True),  # InstructPix2Pix instruction applied; null = none
        pa.field("images", pa.list_(IMAGE_TYPE), nullable=False),
        pa.field("provenance", PROVENANCE_TYPE, nullable=False),
    ],
    SCHEMA_NAME,
)

REJECTS_SCHEMA = _with_metadata(
    [
        pa.field("row_id", pa.string(), nullable=False),  # subject id, or "category:<name>" before ids exist
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # short, groupable ("too-small", "error", ...)
        pa.field("details", pa.string(), nullable=False),  # the numbers or the exception
        pa.field("item", pa.string(), nullable=True),  # which image/instance of the row, if not all of it
    ],
    "s3-rejects",
)


class SchemaVersionError(ValueError):
    """A file written with a schema this code does not read."""


def check_schema(schema: pa.Schema, where: str, expected: str = SCHEMA_NAME) -> None:
    """Refuse files of another format or version, naming the file and both versions."""
    meta = schema.metadata or {}
    name = meta.get(NAME_KEY, b"").decode()
    version = meta.get(VERSION_KEY, b"").decode()
    if name != expected:
        raise SchemaVersionError(f"{where}: not an {expected} file (schema name {name or 'missing'!r})")
    if version != str(SCHEMA_VERSION):
        raise SchemaVersionError(
            f"{where}: {expected} schema version {version or 'missing'}; this code reads version {SCHEMA_VERSION}"
        )
