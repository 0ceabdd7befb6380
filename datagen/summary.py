"""Counting what each stage did, for the live display, the early stop and ``summary.json``.

Everything is derived from the per-row stage traces (``rows.Trace``) that travel with each finished
row and are kept in the shard markers, so a resumed build reports on the whole dataset, not only on
the part made by its last run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import pyarrow as pa
from rich.table import Table

from datagen import stages as pipeline_stages


class StageFailedError(RuntimeError):
    """A stage failed on every row that reached it: the run stops with the stage and the first error."""


@dataclass
class StageCount:
    entered: int = 0
    passed: int = 0
    rejected: int = 0
    errors: int = 0
    seconds: float = 0.0
    items_in: int = 0
    items_out: int = 0
    items_dropped: int = 0  # single images or instances the stage rejected, in rows it passed on
    first_error: str | None = None

    def rate(self) -> float | None:
        return self.passed / self.entered if self.entered else None

    def throughput(self) -> float | None:
        """Rows per worker-second (the stage's own time, summed over its actors)."""
        return self.entered / self.seconds if self.seconds > 0 else None


@dataclass
class Tally:
    stages: dict[str, StageCount] = field(default_factory=lambda: {s: StageCount() for s in pipeline_stages.names()})
    sets: int = 0
    images: int = 0
    rows: int = 0

    def add_subjects(self, requested: int, accepted: int, errors: int, seconds: float, first_error: str | None) -> None:
        st = self.stages["subjects"]
        st.entered, st.passed, st.errors = requested, accepted, errors
        st.rejected = requested - accepted - errors
        st.seconds, st.first_error = seconds, first_error

    def add(self, status: dict) -> None:
        """Count one finished row (a ``output.status_row``)."""
        self.rows += 1
        if not status["rejected"]:
            self.sets += 1
            self.images += status["images"]
        for stage in status.get("dropped") or []:  # markers of older builders lack it: see count_dropped
            self.stages.setdefault(stage, StageCount()).items_dropped += 1
        for t in status["trace"]:
            st = self.stages.setdefault(t["stage"], StageCount())
            st.entered += 1
            st.seconds += t["seconds"]
            st.items_in += t["items_in"]
            st.items_out += t["items_out"]
            if t["outcome"] == "passed":
                st.passed += 1
            elif t["outcome"] == "rejected":
                st.rejected += 1
            else:
                st.errors += 1
                if st.first_error is None and status.get("details"):
                    st.first_error = status["details"]

    def count_dropped(self, rejects: pa.Table) -> None:
        """Set every stage's dropped items from a build's rejects table (those with an ``item``), the
        record that also covers shards whose markers did not count them."""
        for st in self.stages.values():
            st.items_dropped = 0
        for stage, item in zip(rejects.column("stage").to_pylist(), rejects.column("item").to_pylist(), strict=True):
            if item is not None:
                self.stages.setdefault(stage, StageCount()).items_dropped += 1

    @classmethod
    def from_summary(cls, summary: dict) -> Tally:
        """The tally a ``summary.json`` was written from (any builder's: unknown fields are left out)."""
        known = set(StageCount.__dataclass_fields__)
        stages = {
            name: StageCount(**{k: v for k, v in st.items() if k in known}) for name, st in summary["stages"].items()
        }
        return cls(stages=stages, sets=summary["sets"], images=summary["images"])

    def failed_stage(self, at_least: int = 1) -> str | None:
        """The first stage that at least ``at_least`` rows reached and that failed on every one of them."""
        for name, st in self.stages.items():
            if st.entered >= at_least and st.errors == st.entered:
                return name
        return None

    def failure_message(self, stage: str) -> str:
        st = self.stages[stage]
        first = (st.first_error or "").splitlines()[0] if st.first_error else "no details"
        return f"stage {stage} failed on every row that reached it ({st.errors} of {st.entered}); first error: {first}"


def steady_rate(stamps: list[float]) -> float | None:
    """Items per minute between the first and the last quarter of completion times (seconds, sorted).

    Start-up (actors loading models) and the drain at the end are left out: what remains is the rate a
    long build runs at. With fewer than 4 items it is first to last."""
    n = len(stamps)
    if n < 2:
        return None
    lo, hi = (n // 4, n - 1 - n // 4) if n >= 4 else (0, n - 1)
    span = stamps[hi] - stamps[lo]
    return 60 * (hi - lo) / span if span > 0 else None


def reasons_by_stage(rejects: pa.Table) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = {}
    for stage, reason in zip(rejects.column("stage").to_pylist(), rejects.column("reason").to_pylist(), strict=True):
        counts.setdefault(stage, Counter())[reason] += 1
    return {stage: dict(c.most_common()) for stage, c in counts.items()}


def summary_dict(tally: Tally, rejects: pa.Table, extra: dict) -> dict:
    stages = {}
    for name, st in tally.stages.items():
        d = asdict(st)
        d["acceptance"] = st.rate()
        d["rows_per_worker_s"] = st.throughput()
        stages[name] = d
    requested = tally.stages["subjects"].entered
    return {
        **extra,
        "sets": tally.sets,
        "images": tally.images,
        "subjects_requested": requested,
        "acceptance_rate": tally.sets / requested if requested else None,
        "stages": stages,
        "rejects_by_reason": reasons_by_stage(rejects),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def stage_table(tally: Tally, title: str) -> Table:
    """Per stage: rows that entered it, passed, were rejected whole, failed; single items it dropped from
    rows it passed on (boxes too small, unusable images: the ``item`` rejects); pass rate and time."""
    table = Table(title=title, title_justify="left")
    for col in ("stage", "entered", "passed", "rejected", "dropped items", "errors", "pass rate", "worker s", "rows/s"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, st in tally.stages.items():
        table.add_row(
            name,
            str(st.entered),
            str(st.passed),
            str(st.rejected),
            str(st.items_dropped),
            f"[red]{st.errors}[/red]" if st.errors else "0",
            _fmt(None if st.rate() is None else 100 * st.rate(), ".0f") + ("%" if st.rate() is not None else ""),
            f"{st.seconds:.1f}",
            _fmt(st.throughput(), ".2f"),
        )
    return table
