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


def test_a_small_set_waits_for_a_batch_of_its_size_instead_of_shrinking_the_batch():
    """One 2-image set used to cut every set of its micro-batch to 2."""
    rows = [_set("small", 2)] + [_set(f"big{i}", 5) for i in range(20)]
    cursor = SourceCursor("source0", "folder")
    it = endless_rows(Shard(rows), cursor)
    args = dict(seed=0, sets=2, min_set_size=2, max_set_size=4, resolution=8, min_scale=0.8, flip=True)
    used = {}
    for step in range(12):
        mb = next_micro_batch([it], [cursor], [1.0], step=step, micro=0, **args)
        assert mb.pixels.shape[0] == 2 * mb.set_size
        used.update(dict.fromkeys(mb.set_ids, mb.set_size))
    assert used["small"] == 2 and cursor.size_fallbacks == 0


def test_set_sizes_are_uniform_over_two_to_four_from_a_mixed_source():
    """§4: set sizes uniform over 2-4; here ≥ 1,000 sets from a source with 2- to 6-image sets."""
    rows = [_set(f"s{i}", 2 + i % 5, size=8) for i in range(60)]
    cursor = SourceCursor("source0", "folder")
    it = endless_rows(Shard(rows), cursor)
    args = dict(seed=3, sets=2, min_set_size=2, max_set_size=4, resolution=8, min_scale=1.0, flip=False)
    sizes = []
    for step in range(600):
        mb = next_micro_batch([it], [cursor], [1.0], step=step, micro=0, **args)
        sizes += [mb.set_size] * len(mb.set_ids)
    assert len(sizes) >= 1000
    shares = {n: sizes.count(n) / len(sizes) for n in (2, 3, 4)}
    assert all(abs(share - 1 / 3) <= 0.03 for share in shares.values()), shares
    assert cursor.size_fallbacks == 0 and len(cursor.waiting) <= 4 * 2


def test_sizes_are_balanced_in_every_block_of_micro_batches():
    from training.jedi.sampling import balanced_set_size

    drawn = [balanced_set_size(0, i, 2, 4) for i in range(30)]
    assert all(sorted(drawn[j : j + 3]) == [2, 3, 4] for j in range(0, 30, 3))
    assert drawn[:6] != [2, 3, 4, 2, 3, 4], "a keyed random order, not a fixed cycle"


def test_a_source_that_cannot_supply_a_size_falls_back_and_counts_it():
    rows = [_set(f"p{i}", 2) for i in range(10)]
    cursor = SourceCursor("source0", "folder")
    it = endless_rows(Shard(rows), cursor)
    args = dict(seed=0, sets=2, min_set_size=2, max_set_size=4, resolution=8, min_scale=0.8, flip=True)
    for step in range(9):
        mb = next_micro_batch([it], [cursor], [1.0], step=step, micro=0, **args)
        assert mb.set_size == 2 and len(mb.set_ids) == 2
    assert cursor.size_fallbacks == 6, "the size-3 and size-4 micro-batches fell back"


def test_source_weights_are_respected():
    a, b = [_set("a", 3)], [_set("b", 3)]
    picks = [_batch([a, b], ["folder", "folder"], [3.0, 1.0], step)[0].source for step in range(400)]
    share = picks.count("source0") / len(picks)
    assert 0.68 < share < 0.82


def test_corrupt_rows_are_skipped_counted_by_reason_and_logged_as_they_pass(caplog):
    rows = [_set("good1", 3), _set("bad", 3, error="OSError: truncated"), _set("good2", 3)]
    with caplog.at_level("WARNING", logger="s3jedi.train.jedi.data"):
        mb, cursors = _batch([rows], ["folder"], [1.0], 0)
    assert mb.set_ids == ["good1", "good2"]
    assert cursors[0].skipped == 1 and cursors[0].skip_reasons == {"OSError": 1}
    assert cursors[0].metrics() == {"skipped/source0/OSError": 1, "size_fallbacks/source0": 0}
    assert [r.fields["set_id"] for r in caplog.records if "unusable" in r.getMessage()] == ["bad"]
    restored = SourceCursor("source0", "folder")
    restored.restore(cursors[0].state())
    assert restored.state() == cursors[0].state()


def test_a_pass_without_one_usable_set_is_an_error_naming_source_and_reasons():
    rows = [
        _set("a", 3, error="UnidentifiedImageError: cannot identify image file"),
        _set("b", 2, error="too-short: 1 frame"),
    ]
    cursor = SourceCursor("source1", "video", path="/data/clips")
    with pytest.raises(ValueError) as caught:
        next(endless_rows(Shard(rows), cursor))
    assert str(caught.value) == (
        "data.sources: source source1 (video /data/clips) has no usable set in a whole pass over its 2 sets "
        "(1 × UnidentifiedImageError, 1 × too-short); fix or remove the source"
    )
    # A resumed pass counts the rows before its position too: one usable row there is enough.
    rows = [_set("ok", 3), _set("a", 3, error="OSError: x")]
    resumed = SourceCursor("s", "folder", consumed=1)
    assert next(endless_rows(Shard(rows), resumed))["set_id"] == "ok"  # the next epoch's first row


def test_endless_rows_resume_at_the_saved_position():
    rows = [_set(str(i), 2) for i in range(5)]
    cursor = SourceCursor("s", "folder")
    it = endless_rows(Shard(rows), cursor)
    first = [next(it)["set_id"] for _ in range(7)]
    assert first == ["0", "1", "2", "3", "4", "0", "1"] and (cursor.epoch, cursor.consumed) == (1, 2)
    resumed = SourceCursor("s", "folder", epoch=1, consumed=2)
    again = endless_rows(Shard(rows), resumed)
    assert [next(again)["set_id"] for _ in range(4)] == ["2", "3", "4", "0"]
    with pytest.raises(ValueError, match=r"source empty \(folder\) has no rows"):
        next(endless_rows(Shard([]), SourceCursor("empty", "folder")))
