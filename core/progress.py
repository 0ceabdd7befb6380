"""Progress of long work: one display per job with counts, rate and ETA, updated as work finishes.

In a terminal it is a ``rich`` progress bar on the shared stderr console (``console()``); displays
opened while another is live nest under it (``s3jedi demo`` shows its steps, the step shows its
own). Elsewhere (``ray job logs``, CI, a pipe) the same calls write a few log lines instead of
redrawing a bar: one at each quarter of the work and at least one a minute, so a log stays short
and still says how far a job is. The interface is the part of ``tqdm`` the jobs use (``update``,
``set_postfix``, iteration), because ``tqdm`` itself is switched off with the libraries' bars
(``core.logs.library_env``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from core.logs import get_logger

log = get_logger("progress")
LOG_EVERY_S = 60.0
LOG_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
_console: Console | None = None


def console() -> Console:
    """The stderr console every live display of this process shares (so that they nest)."""
    global _console
    if _console is None:
        _console = Console(stderr=True)
    return _console


def rate_text(done: float, seconds: float, unit: str) -> str:
    """``2.5 img/s`` or, for slow work, ``1.5 sets/min``."""
    if seconds <= 0 or done <= 0:
        return f"- {unit}/s"
    rate = done / seconds
    return f"{rate:.2f} {unit}/s" if rate >= 1 else f"{60 * rate:.2f} {unit}/min"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def eta(done: float, total: float | None, seconds: float) -> float | None:
    """Seconds left at the average rate so far; None before the first item or without a total."""
    if not total or done <= 0 or seconds <= 0:
        return None
    return max(0.0, (total - done) * seconds / done)


class LogPacer:
    """When a progress log line is due: at each of ``LOG_FRACTIONS`` and after ``LOG_EVERY_S``."""

    def __init__(self, total: float | None, every_s: float = LOG_EVERY_S):
        self.total = total
        self.every_s = every_s
        self.last = time.perf_counter()
        self.next_fraction = 0

    def due(self, done: float) -> bool:
        now = time.perf_counter()
        crossed = False
        while self.total and self.next_fraction < len(LOG_FRACTIONS):
            if done < LOG_FRACTIONS[self.next_fraction] * self.total:
                break
            self.next_fraction += 1
            crossed = True
        if crossed or now - self.last >= self.every_s:
            self.last = now
            return True
        return False


class Progress:
    """``with Progress(total=n, desc="generate + score", unit="img") as bar: ... bar.update(k)``."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        live: bool | None = None,
        log_lines: bool = True,
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.done = 0.0
        self.postfix = ""
        self.start = time.perf_counter()
        self.live = console().is_terminal if live is None else live
        self.log_lines = log_lines  # off where the caller logs each finished item itself
        self._bar: RichProgress | None = None
        self._task = None
        self._pacer = LogPacer(total)

    def __enter__(self) -> Progress:
        self.start = time.perf_counter()
        if self.live:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[postfix]}"),
                console=console(),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.desc, total=self.total, rate="", postfix="")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._refresh()
            self._bar.stop()
            self._bar = None

    def __iter__(self) -> Iterator:
        with self:
            for item in self.iterable or ():
                yield item
                self.update()

    def update(self, n: float = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._refresh()
        elif self.log_lines and self._pacer.due(self.done):
            self._log()

    def set_postfix(self, **fields) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in fields.items())
        if self._bar is not None:
            self._refresh()

    def set_description(self, desc: str) -> None:
        self.desc = desc
        if self._bar is not None:
            self._bar.update(self._task, description=desc)

    def _refresh(self) -> None:
        rate = rate_text(self.done, time.perf_counter() - self.start, self.unit)
        self._bar.update(self._task, completed=self.done, rate=rate, postfix=self.postfix)

    def _log(self) -> None:
        seconds = time.perf_counter() - self.start
        of = f"/{self.total:g}" if self.total else ""
        fields = {
            "done": f"{self.done:g}{of}",
            "rate": rate_text(self.done, seconds, self.unit),
            "elapsed": duration_text(seconds),
        }
        if self.total:
            fields["eta"] = duration_text(eta(self.done, self.total, seconds))
        log.info(self.desc + (f" {self.postfix}" if self.postfix else ""), **fields)
