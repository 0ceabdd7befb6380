"""Counting stage outcomes: the live table, the early stop and summary.json are built from these."""

from __future__ import annotations

import pyarrow as pa

from core.s3 import REJECTS_SCHEMA
from datagen.summary import Tally, reasons_by_stage, steady_rate, summary_dict


def _status(outcomes: list[tuple[str, str]], rejected: bool, details: str | None = None) -> dict:
    trace = [{"stage": s, "outcome": o, "seconds": 0.5, "items_in": 2, "items_out": 1} for s, o in outcomes]
    return {"rejected": rejected, "images": 0 if rejected else 3, "trace": trace, "details": details}


def test_tally_counts_each_stage_and_finds_a_stage_failing_every_row():
    tally = Tally()
    tally.add_subjects(requested=4, accepted=3, errors=0, seconds=1.0, first_error=None)
    ok = [("collages", "passed"), ("instances", "passed"), ("consistency", "passed"), ("backgrounds", "error")]
    tally.add(_status(ok, True, "RuntimeError: CUDA out of memory\n  frame"))
    assert tally.failed_stage(at_least=2) is None, "one row is not enough to call the stage broken"
    assert tally.failed_stage(at_least=1) == "backgrounds"
    tally.add(_status([("collages", "passed"), ("instances", "rejected")], True))
    tally.add(_status([*ok[:3], ("backgrounds", "passed"), ("stylize", "passed")], False))
    assert tally.failed_stage() is None
    assert (tally.sets, tally.images, tally.rows) == (1, 3, 3)
    st = tally.stages["backgrounds"]
    assert (st.entered, st.passed, st.errors, st.rate()) == (2, 1, 1, 0.5)
    assert st.first_error.startswith("RuntimeError: CUDA out of memory")
    assert tally.stages["instances"].rejected == 1 and tally.stages["collages"].throughput() == 2.0
    bad = Tally()
    bad.add(_status(ok, True, "RuntimeError: CUDA out of memory\n  frame"))
    assert bad.failure_message("backgrounds") == (
        "stage backgrounds failed on every row that reached it (1 of 1); first error: RuntimeError: CUDA out of memory"
    )


def test_summary_lists_reject_reasons_per_stage():
    rejects = pa.Table.from_pylist(
        [
            {"row_id": "a", "stage": "instances", "reason": "too-small", "details": "d", "item": "collage 0 box 1"},
            {"row_id": "a", "stage": "instances", "reason": "too-small", "details": "d", "item": "collage 0 box 2"},
            {"row_id": "b", "stage": "consistency", "reason": "inconsistent", "details": "d", "item": None},
        ],
        schema=REJECTS_SCHEMA,
    )
    assert reasons_by_stage(rejects) == {"instances": {"too-small": 2}, "consistency": {"inconsistent": 1}}
    tally = Tally()
    tally.add_subjects(requested=2, accepted=2, errors=0, seconds=1.0, first_error=None)
    summary = summary_dict(tally, rejects, {"out": "x"})
    assert (
        summary["out"] == "x"
        and summary["acceptance_rate"] == 0.0
        and summary["stages"]["subjects"]["acceptance"] == 1.0
    )


def test_steady_rate_leaves_out_start_up_and_drain():
    stamps = [30.0, 31.0, 32.0, 33.0, 34.0, 35.0, 36.0, 36.1]  # 30 s of model loading, a burst at the end
    assert steady_rate(stamps) == 60.0  # indices 2..5: 3 subjects in 3 s
    assert steady_rate([5.0, 7.0]) == 30.0 and steady_rate([5.0]) is None and steady_rate([1.0, 1.0]) is None


def test_dropped_items_are_counted_apart_from_rejected_rows():
    """A box too small is an item the stage drops from a row it passes on: 0 rows rejected, 2 items dropped."""
    tally = Tally()
    ok = [("collages", "passed"), ("instances", "passed")]
    tally.add({**_status(ok, False), "dropped": ["instances", "instances"]})
    tally.add(_status(ok, False))  # a marker of an older builder: no "dropped"
    st = tally.stages["instances"]
    assert (st.entered, st.passed, st.rejected, st.items_dropped) == (2, 2, 0, 2)
    rejects = pa.Table.from_pylist(
        [
            {"row_id": "a", "stage": "instances", "reason": "too-small", "details": "d", "item": "collage 0 box 1"},
            {"row_id": "b", "stage": "instances", "reason": "too-small", "details": "d", "item": "collage 1 box 0"},
            {"row_id": "b", "stage": "instances", "reason": "too-small", "details": "d", "item": "collage 1 box 2"},
            {"row_id": "c", "stage": "consistency", "reason": "inconsistent", "details": "d", "item": None},
        ],
        schema=REJECTS_SCHEMA,
    )
    tally.count_dropped(rejects)  # the rejects table is the record for every shard
    assert tally.stages["instances"].items_dropped == 3 and tally.stages["consistency"].items_dropped == 0
    summary = summary_dict(tally, rejects, {})
    again = Tally.from_summary({**summary, "stages": {**summary["stages"], "added": {"entered": 1, "new_field": 0}}})
    assert again.stages["instances"] == tally.stages["instances"] and again.stages["added"].entered == 1
    assert again.sets == tally.sets == 2
