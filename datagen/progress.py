"""The live view of a build: a per-stage table that updates as subjects finish.

In a terminal it is a ``rich`` live table (Ray Data's own progress bars are switched off so the two
do not overwrite each other); elsewhere (``ray job logs``, CI) each finished shard is one log
line and Ray Data's progress output stays as it is.
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from core.logs import get_logger
from datagen.summary import Tally, stage_table

log = get_logger("datagen")


class Display:
    def __init__(self, tally: Tally, total: int, enabled: bool, console: Console | None = None):
        self.tally = tally
        self.total = total
        self.console = console or Console(stderr=True)
        self.live_enabled = enabled and self.console.is_terminal
        self.start = time.perf_counter()
        self.live: Live | None = None

    def render(self) -> Group:
        elapsed = time.perf_counter() - self.start
        rate = 60 * self.tally.sets / elapsed if elapsed > 0 else 0.0
        head = Text(
            f"subjects {self.tally.rows}/{self.total}  sets {self.tally.sets}  images {self.tally.images}  "
            f"{elapsed:.0f}s  {rate:.1f} sets/min"
        )
        return Group(head, stage_table(self.tally, "S3 build (this run)"))

    def __enter__(self) -> Display:
        if self.live_enabled:
            import ray.data

            ray.data.DataContext.get_current().enable_progress_bars = False
            self.live = Live(self.render(), console=self.console, refresh_per_second=4)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.stop()

    def update(self) -> None:
        if self.live is not None:
            self.live.update(self.render())


def shard_done(marker: dict, shards_done: int, shards_total: int) -> None:
    log.info(
        "shard complete",
        shard=marker["shard"],
        sets=marker["sets"],
        subjects=len(marker["rows"]),
        shards=f"{shards_done}/{shards_total}",
    )
