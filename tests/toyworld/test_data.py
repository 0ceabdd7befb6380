"""The Ray Data job: S3-schema sets and captioned singles, held-out subjects absent, resumable, deterministic."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from core.config.toyworld import ToyWorldDataSection
from core.s3 import iter_sets, read_summary, read_training_sets
from core.toyworld.dataset import SINGLES_DIR, subject_of, write_dataset
from core.toyworld.oracle import read
from core.toyworld.world import GENERIC_WORD, SCENES, novel_subjects

DATA = ToyWorldDataSection(sets=12, set_size=3, singles=10, shard_size=5, generic_fraction=0.5)


def test_sets_and_singles_carry_the_answer_key_and_no_novel_subject(ray_local, tmp_path):
    summary = write_dataset(str(tmp_path), DATA, seed=3)
    assert summary["shards_written"] == 3 + 2 and read_summary(str(tmp_path))["sets"] == 12
    novel = set(novel_subjects())
    sets = list(iter_sets(str(tmp_path)))
    assert len(sets) == 12 and len({s.set_id for s in sets}) == 12
    generic = 0
    for s in sets:
        subject = subject_of(s.subject)
        assert subject not in novel
        scenes = [p.rsplit(" ", 1)[1] for p in s.prompts]
        assert len(set(scenes)) == DATA.set_size, "every image of a set is in its own scene"
        for image, mask, prompt, scene in zip(s.images, s.masks, s.prompts, scenes, strict=True):
            assert image.size == (DATA.size, DATA.size) and mask.any()
            reading = read(np.asarray(image))
            assert reading.is_subject(subject) and reading.scene == scene
            generic += GENERIC_WORD in prompt
            assert GENERIC_WORD in prompt or subject.name in prompt
    assert 0 < generic < 12 * DATA.set_size
    assert read_training_sets(str(tmp_path)).count() == 12

    singles = pq.read_table(tmp_path / SINGLES_DIR).to_pylist()
    assert len(singles) == 10
    for row in singles:
        reading = read(np.asarray(Image.open(io.BytesIO(row["image"])).convert("RGB")))
        assert (reading.shape, reading.colour, reading.scene) == (row["shape"], row["colour"], row["scene"])
        assert subject_of(f"{row['colour']} {row['shape']}") not in novel and row["scene"] in SCENES


def test_rerun_keeps_shards_and_a_lost_shard_comes_back_identical(ray_local, tmp_path):
    write_dataset(str(tmp_path), DATA, seed=3)
    shards = sorted(Path(tmp_path).rglob("shard-*.parquet"))
    before = {p: p.read_bytes() for p in shards}
    again = write_dataset(str(tmp_path), DATA, seed=3)
    assert again["shards_written"] == 0 and again["shards_skipped"] == len(shards)
    lost = tmp_path / "sets" / "shard-00001.parquet"
    lost.unlink()
    third = write_dataset(str(tmp_path), DATA, seed=3)
    assert third["shards_written"] == 1
    assert pq.read_table(lost).equals(pq.read_table(io.BytesIO(before[lost])))
    write_dataset(str(tmp_path / "other"), DATA, seed=4)
    assert not pq.read_table(tmp_path / "other" / "sets" / lost.name).equals(pq.read_table(lost))
