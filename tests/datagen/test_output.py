"""The output directory's resume mechanics without Ray: parts, compaction, markers, clean-up, identity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.s3 import encode_image, encode_mask, iter_sets, read_rejects
from datagen.output import OutputDir, ResumeMismatchError
from datagen.rows import Item, Reject, Trace, WorkRow

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
