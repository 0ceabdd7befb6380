"""The output directory's resume mechanics without Ray: parts, compaction, markers, clean-up, identity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.s3 import encode_image, encode_mask, iter_sets, read_rejects
from datagen.output import OutputDir, ResumeMismatchError, needs_upgrade
from datagen.rows import Item, Reject, Trace, WorkRow

V1_BUILD = Path(__file__).parent / "data" / "s3-v1"

PROV = {
    "config_hash": "c",
    "fingerprint": "f",
    "models": dict.fromkeys(("llm", "sdxl", "detector", "segmenter", "clip", "inpaint", "pix2pix"), "tiny"),
    "stage_versions": dict.fromkeys(
        ("subjects", "collages", "instances", "consistency", "backgrounds", "stylize"), "1"
    ),
}


def _row(sid: str, shard: int, accepted: bool) -> WorkRow:
    image = encode_image(Image.new("RGB", (8, 6), (10, 20, 30)))
    mask = encode_mask(np.eye(6, 8, dtype=bool))
    items = [Item(image, mask, f"{sid} caption {i}", i, f"collage {i}") for i in range(2)] if accepted else []
    rejects = [Reject("instances", "too-small", "box area 0.001", "collage 0 box 3")]
    if not accepted:
        rejects.append(Reject("consistency", "inconsistent", "best pair 0.5"))
    trace = [
        Trace("collages", "passed", 0.1, 0, 2, 1.0),
        Trace("consistency", "passed" if accepted else "rejected", 0.1, 2, 2, 2.0),
    ]
    return WorkRow(
        sid,
        shard,
        "mug",
        f"a mug {sid}",
        ["on a desk"],
        7,
        "collage prompt",
        items,
        0.97 if accepted else None,
        None,
        not accepted,
        rejects,
        trace,
    )


def test_parts_become_a_shard_then_a_marker(tmp_path):
    out = OutputDir(str(tmp_path))
    out.write_part(_row("mug-000", 0, True))
    out.write_part(_row("mug-001", 0, False))
    assert out.parts(0) == {"mug-000", "mug-001"} and out.done() == {}
    marker = out.compact(0, ["mug-000", "mug-001"], PROV)
    assert (
        marker["sets"] == 1
        and marker["images"] == 2
        and [r["subject_id"] for r in marker["rows"]] == ["mug-000", "mug-001"]
    )
    assert out.done() == {0: marker} and out.parts(0) == set()
    (s,) = iter_sets(str(tmp_path))
    assert s.set_id == "mug-000" and s.prompts == ["mug-000 caption 0", "mug-000 caption 1"] and s.provenance == PROV
    assert s.masks[0].shape == (6, 8) and s.masks[0].sum() == 6
    reasons = [(r["row_id"], r["reason"]) for r in read_rejects(str(tmp_path)).to_pylist()]
    assert reasons == [("mug-000", "too-small"), ("mug-001", "too-small"), ("mug-001", "inconsistent")]


def test_clean_removes_what_a_killed_run_left(tmp_path):
    out = OutputDir(str(tmp_path))
    out.write_part(_row("mug-000", 0, True))
    out.write_part(_row("mug-002", 1, True))
    out.compact(0, ["mug-000"], PROV)
    out.write_part(_row("mug-000", 0, True))  # a part written again after the marker, as a killed rerun could
    half = tmp_path / "_parts" / "shard-00001" / "mug-003.parquet.1234abcd.tmp"
    half.write_bytes(b"half a parquet file")
    assert out.clean({0}) == 1
    assert not half.exists() and out.parts(0) == set() and out.parts(1) == {"mug-002"}


def test_claim_refuses_other_data_settings_naming_them(tmp_path):
    out = OutputDir(str(tmp_path))
    settings = {"seed": 0, "datagen": {"collages": {"steps": 2, "size": 64}}}
    assert out.claim(settings, "aaaa") is False
    assert out.claim(settings, "aaaa") is True
    other = {"seed": 1, "datagen": {"collages": {"steps": 3, "size": 64}}}
    with pytest.raises(ResumeMismatchError, match=r"\(datagen.collages.steps, seed differ\)"):
        out.claim(other, "bbbb")


def test_a_marker_records_its_files_and_verify_finds_every_kind_of_damage(tmp_path):
    out = OutputDir(str(tmp_path))
    for shard in (0, 1, 2, 3):
        out.write_part(_row(f"mug-{shard}", shard, True))
        out.compact(shard, [f"mug-{shard}"], PROV)
    markers = out.done()
    assert markers[0]["files"]["sets/shard-00000.parquet"]["rows"] == 1
    assert markers[0]["files"]["rejects/shard-00000.parquet"]["rows"] == 1
    assert markers[0]["rows"][0]["dropped"] == ["instances"], "the item rejects of the row, by stage"
    assert all(out.verify(m) is None for m in markers.values())

    sets1 = tmp_path / "sets" / "shard-00001.parquet"
    sets1.write_bytes(sets1.read_bytes()[: sets1.stat().st_size // 2])
    rejects2 = tmp_path / "rejects" / "shard-00002.parquet"
    data = bytearray(rejects2.read_bytes())
    data[100] ^= 0xFF  # one flipped byte: same size, footer intact
    rejects2.write_bytes(bytes(data))
    (tmp_path / "sets" / "shard-00003.parquet").unlink()
    assert out.verify(markers[0]) is None
    assert out.verify(markers[1]).startswith("sets/shard-00001.parquet: not a readable Parquet file (footer:")
    assert out.verify(markers[2]) == "rejects/shard-00002.parquet differs from the checksum in its marker"
    assert out.verify(markers[3]) == "sets/shard-00003.parquet is missing"

    out.discard(1)
    assert set(out.done()) == {0, 2, 3} and not sets1.exists()
    assert not (tmp_path / "rejects" / "shard-00001.parquet").exists()


def test_a_shard_of_the_previous_builder_is_verified_then_upgraded(tmp_path):
    """``tests/datagen/data/s3-v1``: a build made by the builder before schema version 2 (markers without
    checksums, provenance in every row, images as bare PNG bytes)."""
    root = tmp_path / "old"
    shutil.copytree(V1_BUILD, root)
    out = OutputDir(str(root))
    before = {s.set_id: s for s in iter_sets(str(root))}
    old = out.done()
    assert all(needs_upgrade(m) and out.verify(m) is None for m in old.values())
    new = out.upgrade(old[0])
    assert not needs_upgrade(new) and out.verify(new) is None and out.done()[0] == new
    assert pq.read_schema(root / "sets" / "shard-00000.parquet").metadata[b"s3jedi.schema_version"] == b"2"
    rejects = pq.read_table(root / "rejects" / "shard-00000.parquet").to_pylist()
    assert sum(len(r["dropped"]) for r in new["rows"]) == sum(1 for r in rejects if r["item"]) == 23
    after = {s.set_id: s for s in iter_sets(str(root))}
    assert after.keys() == before.keys()
    for sid, s in after.items():
        assert s.provenance == before[sid].provenance and s.provenance["stage_versions"]["stylize"] == "1"
        assert [im.tobytes() for im in s.images] == [im.tobytes() for im in before[sid].images]

    damaged = dict(old[1])
    sets1 = root / "sets" / "shard-00001.parquet"
    data = bytearray(sets1.read_bytes())
    data[len(data) // 4 : len(data) // 2] = bytes(len(data) // 2 - len(data) // 4)  # zeros over the pages
    sets1.write_bytes(bytes(data))
    reason = out.verify(damaged)  # no checksum: read through, every image decoded
    assert reason == "sets/shard-00001.parquet: set jewelry-box-000: image 1: empty image bytes"
