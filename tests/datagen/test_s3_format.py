"""core.s3: the published format, its writer and its readers, on hand-made sets with known pixels."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.s3 import (
    SETS_SCHEMA,
    CorruptImageError,
    DatasetReadError,
    ImageSet,
    SchemaVersionError,
    decode_image,
    decode_mask,
    encode_mask,
    iter_sets,
    read_rejects,
    read_sets,
    read_training_sets,
    sets_table,
    write_sets,
    write_table,
)
from core.s3.reader import _training_columns
from core.s3.schema import PROVENANCE_KEY, VERSION_KEY


def _set(set_id: str, n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)) for _ in range(n)]
    masks = [rng.random((16, 24)) > 0.5 for _ in range(n)]
    return ImageSet(
        set_id=set_id,
        category="mug",
        subject=f"a mug number {set_id}",
        images=images,
        masks=masks,
        prompts=[f"{set_id} caption {i}" for i in range(n)],
        seeds=list(range(n)),
        seed=seed,
        consistency=0.97,
        style=None if seed % 2 else "make it pixel art",
    )


PROVENANCE = {"config_hash": "c", "models": {"sdxl": "tiny"}, "stage_versions": {"collages": "1", "extra": "3"}}


def test_round_trip_keeps_pixels_masks_captions_and_the_shards_provenance(tmp_path):
    sets = [_set("a", 2, 1), _set("b", 3, 2)]
    write_sets(sets, str(tmp_path), provenance=PROVENANCE)
    back = list(iter_sets(str(tmp_path)))
    assert [s.set_id for s in back] == ["a", "b"]
    for want, got in zip(sets, back, strict=True):
        assert len(got) == len(want) and got.prompts == want.prompts and got.style == want.style
        for wi, gi, wm, gm in zip(want.images, got.images, want.masks, got.masks, strict=True):
            assert np.array_equal(np.asarray(wi), np.asarray(gi))
            assert gm.dtype == bool and np.array_equal(wm, gm)
        assert got.provenance == PROVENANCE, "stage versions are a map: any stage name travels"
    assert not list(tmp_path.rglob("*.tmp")), "atomic writes leave no temporary file"


def test_image_set_checks_parallel_lists():
    s = _set("a", 2, 1)
    with pytest.raises(ValueError, match="2 images, 2 masks, 1 prompts"):
        ImageSet("x", "mug", "m", s.images, s.masks, s.prompts[:1])
    with pytest.raises(ValueError, match="mask 0 is"):
        ImageSet("x", "mug", "m", s.images, [np.zeros((3, 3), bool)] * 2, s.prompts)


def test_rows_of_a_wrong_type_or_without_a_required_value_are_refused_at_write_time():
    row = _set("a", 2, 1).to_row()
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        sets_table([{**row, "seed": "seven"}])
    with pytest.raises(ValueError, match=r"S3 sets: subject: a value is required"):
        sets_table([{**row, "subject": None}])
    images = [dict(im) for im in row["images"]]
    images[1]["mask"] = {"bytes": None, "path": "a/1-mask.png"}
    with pytest.raises(ValueError, match=r"images\[\]\.mask\.bytes: a value is required"):
        sets_table([{**row, "images": images}])
    assert sets_table([{**row, "style": None}]).num_rows == 1, "style is optional"


def test_readers_refuse_another_schema_version(tmp_path):
    table = sets_table([_set("a", 2, 1).to_row()])
    meta = dict(table.schema.metadata)
    meta[VERSION_KEY] = b"999"
    write_table(table.replace_schema_metadata(meta), str(tmp_path / "sets" / "shard-00000.parquet"))
    with pytest.raises(SchemaVersionError, match="version 999; this code reads versions 1, 2"):
        list(iter_sets(str(tmp_path)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        list(iter_sets(str(empty)))


def test_codec_refuses_corrupt_and_non_png_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="JPEG")
    for blob, match in ((b"", "empty"), (b"\x89PNG garbage", "unreadable"), (buf.getvalue(), "expected PNG")):
        with pytest.raises(CorruptImageError, match=match):
            decode_image(blob)
    big = encode_mask(np.ones((100, 100), bool))
    with pytest.raises(CorruptImageError, match="exceeds 100 pixels"):
        decode_mask(big, max_pixels=100)


def test_training_columns_are_aligned_lists_even_for_sliced_batches():
    sets = [_set(f"s{i}", 2 + i % 2, i) for i in range(5)]
    batch = sets_table(s.to_row() for s in sets).slice(2, 3)  # Ray hands map_batches slices like this
    rows = _training_columns(batch).to_pylist()
    assert [r["set_id"] for r in rows] == ["s2", "s3", "s4"]
    for row, s in zip(rows, sets[2:], strict=True):
        assert len(row["images"]) == len(row["masks"]) == len(row["captions"]) == len(s)
        assert row["captions"] == s.prompts
        assert np.array_equal(np.asarray(decode_image(row["images"][-1])), np.asarray(s.images[-1]))
        assert np.array_equal(decode_mask(row["masks"][0]), s.masks[0])


def test_rejects_reader_on_a_dataset_without_rejects(tmp_path):
    assert read_rejects(str(tmp_path)).num_rows == 0
    schema = pq.read_schema(write_sets([_set("a", 2, 1)], str(tmp_path)))
    assert schema.equals(SETS_SCHEMA)
    assert {k: v for k, v in schema.metadata.items() if k != PROVENANCE_KEY} == SETS_SCHEMA.metadata


def test_a_corrupt_image_is_named_by_its_set_and_index(tmp_path):
    row = _set("mug-7", 2, 1).to_row()
    row["images"][1]["image"]["bytes"] = b"\x89PNG truncated"
    write_table(sets_table([row]), str(tmp_path / "sets" / "shard-00000.parquet"))
    with pytest.raises(CorruptImageError, match=r"set mug-7: image 1: unreadable PNG"):
        list(iter_sets(str(tmp_path)))


def _damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "cut":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # noise over the image pages: the footer still parses, the pages do not
        rng = np.random.default_rng(0)
        start, end = len(data) // 4, len(data) // 2
        data[start:end] = rng.integers(0, 256, end - start, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "reason"),
    [("cut", "not a readable Parquet file (footer: ArrowInvalid"), ("scramble", "unreadable (OSError: Corrupt")],
)
def test_a_damaged_shard_is_named_with_its_reason(ray_local, tmp_path, how, reason):
    write_sets([_set("a", 2, 1)], str(tmp_path), "shard-00000")
    write_sets([_set(f"b{i}", 3, i) for i in range(4)], str(tmp_path), "shard-00001")
    bad = tmp_path / "sets" / "shard-00001.parquet"
    _damage(bad, how)
    with pytest.raises(DatasetReadError, match=re.escape(f"{bad}: {reason}")):
        list(iter_sets(str(tmp_path)))
    # the same error, name and reason from inside Ray Data's read tasks (training reads this way)
    with pytest.raises(DatasetReadError, match=re.escape(f"{bad}: {reason}")):
        read_training_sets(str(tmp_path)).take_all()


V1_BUILD = Path(__file__).parent / "data" / "s3-v1"


def test_shards_of_the_previous_builder_read_alone_and_beside_current_ones(ray_local, tmp_path):
    """``data/s3-v1`` was written by the builder of schema version 1 (images as bare PNG bytes, a
    provenance struct in every row): every reader hands it out in the current version."""
    old = {s.set_id: s for s in iter_sets(str(V1_BUILD))}
    assert len(old) == 3 and all(s.provenance["models"]["sdxl"] == "tiny" for s in old.values())
    training = {r["set_id"]: r for r in read_training_sets(str(V1_BUILD)).take_all()}
    assert training.keys() == old.keys()
    for sid, row in training.items():
        assert [np.asarray(decode_image(b)).tobytes() for b in row["images"]] == [
            np.asarray(im).tobytes() for im in old[sid].images
        ]
        assert row["captions"] == old[sid].prompts and decode_mask(row["masks"][0]).any()
    mixed = tmp_path / "mixed"
    shutil.copytree(V1_BUILD / "sets", mixed / "sets")
    write_sets([_set("new", 2, 5)], str(mixed), "shard-00002", provenance=PROVENANCE)
    rows = read_sets(str(mixed)).take_all()
    assert sorted(r["set_id"] for r in rows) == sorted([*old, "new"])
    for row in rows:
        first = row["images"][0]
        assert (
            first["image"]["path"] == f"{row['set_id']}/0.png"
            and first["mask"]["path"] == f"{row['set_id']}/0-mask.png"
        )
        assert ImageSet.from_row(row).set_id == row["set_id"]
