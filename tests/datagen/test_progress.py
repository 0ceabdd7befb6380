"""The build's live view: it redraws while subjects are in flight, counts each finished subject, and
leaves the final table to the build (printed once)."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from datagen.progress import Display
from datagen.summary import Tally


def finished_row(images: int = 3) -> dict:
    trace = [{"stage": "collages", "seconds": 0.5, "items_in": 1, "items_out": 1, "outcome": "passed"}]
    return {"rejected": False, "images": images, "trace": trace}


def test_the_live_view_moves_with_the_clock_and_counts_finished_subjects():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    tally = Tally()
    with Display(tally, total=3, enabled=True, console=console) as display:
        assert display.live is not None
        first = display.counts()
        assert first["subjects"] == "0/3" and first["eta"] == "-"
        tally.add(finished_row())
        display.update()
        counts = display.counts()
        assert counts["subjects"] == "1/3" and counts["sets"] == "1" and counts["images"] == "3"
        assert counts["eta"] != "-" and counts["rate"].endswith(("sets/s", "sets/min"))
        assert not counts["rate"].startswith("-")
        assert "subjects 1/3" in out.getvalue()
    assert "S3 build (this run)" in out.getvalue()
    assert display.live.transient  # erased when stopped: the build prints the final table, once


def test_outside_a_terminal_progress_is_paced_log_lines(caplog):
    console = Console(file=io.StringIO(), force_terminal=False)
    tally = Tally()
    with caplog.at_level(logging.INFO), Display(tally, total=4, enabled=True, console=console) as display:
        assert display.live is None
        for _ in range(4):
            tally.add(finished_row())
            display.update()
    lines = [r for r in caplog.records if r.name == "s3jedi.datagen" and r.getMessage() == "image stages"]
    assert [r.fields["subjects"] for r in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert lines[-1].fields["eta"] == "0s"
