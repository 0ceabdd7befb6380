"""Pure pieces of the JeDi data path: crops, source mixing, set sizes, skipping of bad sets."""

from __future__ import annotations

import numpy as np
import pytest

from training.jedi.batches import SourceCursor, endless_rows, next_micro_batch
from training.jedi.sampling import crop_set, set_rng, step_rng


def _set(set_id: str, k: int, size: int = 20, error: str = "") -> dict:
    rng = np.random.default_rng(abs(hash(set_id)) % 2**32)
    pixels = (
        rng.integers(0, 255, (k, size, size, 3), dtype=np.uint8)
        if not error
        else np.zeros((0, size, size, 3), np.uint8)
    )
    return {"set_id": set_id, "pixels": pixels, "captions": [f"{set_id} {i}" for i in range(k)], "error": error}


class Shard:
    """A dataset shard's iteration interface over in-memory rows (the data, not our code, is fake)."""

    def __init__(self, rows):
        self.rows = rows

    def iter_rows(self):
        yield from self.rows


def test_crop_is_consistent_across_the_set():
    base = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    pixels = np.stack([base, base, base])
    _, out = crop_set(pixels, 3, np.random.default_rng(1), resolution=8, min_scale=0.5, flip=True)
    assert out.shape == (3, 8, 8, 3)
    assert (out[0] == out[1]).all() and (out[1] == out[2]).all(), "same crop and flip for every member"
    with pytest.raises(ValueError, match="cannot take 4 images from a set of 3"):
        crop_set(pixels, 4, np.random.default_rng(1), 8, 0.5, True)


def test_randomness_is_keyed_not_stateful():
    assert step_rng(0, 5, 0).integers(1 << 30) == step_rng(0, 5, 0).integers(1 << 30)
    assert set_rng(0, 5, 0, "a").integers(1 << 30) != set_rng(0, 5, 0, "b").integers(1 << 30)


def _batch(rows_per_source, kinds, weights, step, **kw):
    cursors = [SourceCursor(f"source{i}", k) for i, k in enumerate(kinds)]
    its = [endless_rows(Shard(r), c) for r, c in zip(rows_per_source, cursors, strict=True)]
    args = dict(seed=0, micro=0, sets=2, min_set_size=2, max_set_size=4, resolution=8, min_scale=0.8, flip=True)
    args.update(kw)
    return next_micro_batch(its, cursors, weights, step=step, **args), cursors


def test_mixed_sources_and_set_sizes_give_correct_shapes():
    folders = [_set(f"f{i}", 5) for i in range(3)]
    singles = [_set(f"c{i}", 1) for i in range(3)]
    seen_sources, seen_sizes = set(), set()
    for step in range(30):
        mb, _ = _batch([folders, singles], ["folder", "captions"], [1.0, 1.0], step)
        n = mb.set_size
        assert mb.pixels.shape == (2 * n, 8, 8, 3) and len(mb.captions) == 2 * n
        if mb.source == "source1":
            assert n == 1, "captioned single images are sets of one"
        else:
            assert 2 <= n <= 4
        seen_sources.add(mb.source)
        seen_sizes.add(n)
    assert seen_sources == {"source0", "source1"} and seen_sizes >= {1, 2, 3, 4}


def test_set_size_shrinks_to_the_smallest_set_of_the_batch():
    rows = [_set("a", 2), _set("b", 5)]
    for step in range(10):
        mb, _ = _batch([rows], ["folder"], [1.0], step)
        assert mb.set_size == 2


def test_source_weights_are_respected():
    a, b = [_set("a", 3)], [_set("b", 3)]
    picks = [_batch([a, b], ["folder", "folder"], [3.0, 1.0], step)[0].source for step in range(400)]
    share = picks.count("source0") / len(picks)
    assert 0.68 < share < 0.82


def test_corrupt_rows_are_skipped_and_counted():
    rows = [_set("good1", 3), _set("bad", 3, error="OSError: truncated"), _set("good2", 3)]
    mb, cursors = _batch([rows], ["folder"], [1.0], 0)
    assert mb.set_ids == ["good1", "good2"]
    assert cursors[0].skipped == 1 and mb.skipped == ["bad: OSError: truncated"]


def test_endless_rows_resume_at_the_saved_position():
    rows = [_set(str(i), 2) for i in range(5)]
    cursor = SourceCursor("s", "folder")
    it = endless_rows(Shard(rows), cursor)
    first = [next(it)["set_id"] for _ in range(7)]
    assert first == ["0", "1", "2", "3", "4", "0", "1"] and (cursor.epoch, cursor.consumed) == (1, 2)
    resumed = SourceCursor("s", "folder", epoch=1, consumed=2)
    again = endless_rows(Shard(rows), resumed)
    assert [next(again)["set_id"] for _ in range(4)] == ["2", "3", "4", "0"]
    with pytest.raises(ValueError, match="source empty has no rows"):
        next(endless_rows(Shard([]), SourceCursor("empty", "folder")))
