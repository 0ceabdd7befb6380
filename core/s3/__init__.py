"""The S3 dataset (same-subject image sets): its format, and how to read and write it.

``s3jedi datagen`` writes it; training and anything else read it through this module only.

Layout of a dataset root (a local directory or a URI such as ``s3://bucket/s3-v1``)::

    sets/shard-00000.parquet      the sets (SETS_SCHEMA), one row per set
    rejects/*.parquet             what was dropped, why (REJECTS_SCHEMA)
    summary.json                  counts per stage, acceptance rates, throughput, time
    s3jedi-config.yaml            the resolved config the dataset was built with
    README.md                     the dataset card (Hugging Face format: configs, features, provenance)

Reading (pick one)::

    from core.s3 import read_training_sets, read_sets, iter_sets, ImageSet

    ds = read_training_sets(root)   # ray.data.Dataset: set_id, images (list[PNG bytes]),
                                    #   masks (list[1-bit PNG bytes]), captions (list[str])
    ds = read_sets(root, columns=None)  # ray.data.Dataset with every SETS_SCHEMA column
    s = ImageSet.from_row(row)      # decode one row of read_sets: PIL images, bool masks
    for s in iter_sets(root): ...   # decoded ImageSet objects in a plain loop, no Ray
    read_rejects(root), read_summary(root)

Without s3jedi, ``datasets.load_dataset(root)`` (the card's configs) or
``load_dataset("parquet", data_files=f"{root}/sets/*.parquet")`` gives the sets with every image and
mask decoded to a PIL image.

``decode_image`` / ``decode_mask`` turn the bytes of ``read_training_sets`` into a PIL image and a
boolean (H, W) array. Writing: ``write_sets(sets, root)`` writes ``ImageSet`` objects as one shard
(fixtures, imports); the builder writes its own shards from PNG bytes through ``image_record``,
``sets_table`` and ``write_table``, and the card through ``core.s3.card.dataset_card``.

Files carry ``s3jedi.schema_version`` in their Parquet metadata; readers refuse a version they do not
know (``SchemaVersionError``) rather than misread it, and read older ones as the current one. A damaged
file fails with ``DatasetReadError`` naming it; a corrupt image with ``CorruptImageError`` naming its set.
"""

from core.s3.codec import CorruptImageError, decode_image, decode_mask, encode_image, encode_mask
from core.s3.layout import REJECTS_DIR, SETS_DIR, SUMMARY_FILE
from core.s3.reader import DatasetReadError, iter_sets, read_rejects, read_sets, read_summary, read_training_sets
from core.s3.schema import REJECTS_SCHEMA, SCHEMA_VERSION, SETS_SCHEMA, SchemaVersionError
from core.s3.sets import ImageSet, image_record
from core.s3.writer import rejects_table, sets_table, write_bytes, write_sets, write_table

__all__ = [
    "REJECTS_DIR",
    "REJECTS_SCHEMA",
    "SCHEMA_VERSION",
    "SETS_DIR",
    "SETS_SCHEMA",
    "SUMMARY_FILE",
    "CorruptImageError",
    "DatasetReadError",
    "ImageSet",
    "SchemaVersionError",
    "decode_image",
    "decode_mask",
    "encode_image",
    "encode_mask",
    "image_record",
    "iter_sets",
    "read_rejects",
    "read_sets",
    "read_summary",
    "read_training_sets",
    "rejects_table",
    "sets_table",
    "write_bytes",
    "write_sets",
    "write_table",
]
