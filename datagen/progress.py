"""The live view of a build: subjects done of all, sets, rate and ETA over a per-stage table.

In a terminal it is a ``rich`` live display that redraws itself (the clock, the rate and the ETA move
while subjects are in flight) and counts each subject as it leaves the last stage. Ray Data's own
progress bars are switched off so the two do not overwrite each other; the display is transient
because the build prints the final stage table itself. Elsewhere (``ray job logs``, CI) the same
counts are a few log lines (``core.progress.LogPacer``) and one line per finished shard.
"""

from __future__ import annotations

import logging
import time

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from core.logs import get_logger
from core.progress import LogPacer, duration_text, eta, rate_text
from core.progress import console as shared_console
from datagen.summary import Tally, stage_table

log = get_logger("datagen")


class Display:
    def __init__(self, tally: Tally, total: int, enabled: bool, console: Console | None = None):
        self.tally = tally
        self.total = total
        self.console = console or shared_console()
        self.live_enabled = enabled and self.console.is_terminal
        self.start = time.perf_counter()
        self.live: Live | None = None
        self.pacer = LogPacer(total)

    def counts(self) -> dict[str, str]:
        elapsed = time.perf_counter() - self.start
        return {
            "subjects": f"{self.tally.rows}/{self.total}",
            "sets": str(self.tally.sets),
            "images": str(self.tally.images),
            "elapsed": duration_text(elapsed),
            "rate": rate_text(self.tally.sets, elapsed, "sets"),
            "eta": duration_text(eta(self.tally.rows, self.total, elapsed)),
        }

    def render(self) -> Group:
        head = Text("  ".join(f"{k} {v}" for k, v in self.counts().items()))
        return Group(head, stage_table(self.tally, "S3 build (this run)"))

    def __enter__(self) -> Display:
        self.start = time.perf_counter()
        if self.live_enabled:
            import ray.data

            ray.data.DataContext.get_current().enable_progress_bars = False
            logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled" notice
            self.live = Live(get_renderable=self.render, console=self.console, refresh_per_second=2, transient=True)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()

    def update(self) -> None:
        """A subject finished (the tally holds it)."""
        if self.live is not None:
            self.live.refresh()
        elif self.pacer.due(self.tally.rows):
            log.info("image stages", **self.counts())


def shard_done(marker: dict, shards_done: int, shards_total: int) -> None:
    log.info(
        "shard complete",
        shard=marker["shard"],
        sets=marker["sets"],
        subjects=len(marker["rows"]),
        shards=f"{shards_done}/{shards_total}",
    )
