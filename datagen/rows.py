"""The row that flows through the image stages, and the one rule for applying a stage to it.

Every subject is one ``WorkRow`` from the collage stage to the writer. A stage replaces the row's
``items`` (collages → instances → the kept instances → composites → stylized images) and may add
``rejects``. A row rejected by one stage still flows on untouched, so every subject reaches the
writer and is recorded as done: a resumed run never redoes a subject that was already rejected.

``apply_stage`` is the error boundary: a ``RejectRow`` from a stage is a reasoned rejection, any
other exception becomes a reject with reason ``error`` and the exception text. Either way the run
goes on with the next row.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

MAX_DETAILS = 2000


@dataclass(frozen=True)
class Item:
    """One image in flight, with the subject mask once one exists."""

    image: bytes  # PNG
    mask: bytes | None  # 1-bit PNG, None before the instance stage
    prompt: str
    seed: int
    source: str  # where it came from within the row, e.g. "collage 1 box 0"
    score: float = 0.0  # the stage's score of it (detection score, ...)


@dataclass(frozen=True)
class Reject:
    stage: str
    reason: str
    details: str
    item: str | None = None


@dataclass(frozen=True)
class Trace:
    """What one stage did to one row: the summary and the live display are built from these."""

    stage: str
    outcome: str  # "passed" | "rejected" | "error"
    seconds: float
    items_in: int
    items_out: int
    at: float  # wall-clock time (epoch seconds) the stage finished the row


@dataclass
class WorkRow:
    subject_id: str
    shard: int
    category: str
    subject: str
    scenes: list[str]
    seed: int
    collage_prompt: str = ""
    items: list[Item] = field(default_factory=list)
    consistency: float | None = None
    style: str | None = None
    rejected: bool = False
    rejects: list[Reject] = field(default_factory=list)
    trace: list[Trace] = field(default_factory=list)


class RejectRow(Exception):
    """Raised by a stage to reject the whole row with a reason (and the item rejects gathered so far)."""

    def __init__(self, reason: str, details: str, item_rejects: list[Reject] | None = None):
        super().__init__(f"{reason}: {details}")
        self.reason = reason
        self.details = details
        self.item_rejects = item_rejects or []


_ITEM = pa.struct(
    [
        ("image", pa.binary()),
        ("mask", pa.binary()),
        ("prompt", pa.string()),
        ("seed", pa.int64()),
        ("source", pa.string()),
        ("score", pa.float64()),
    ]
)
_REJECT = pa.struct([("stage", pa.string()), ("reason", pa.string()), ("details", pa.string()), ("item", pa.string())])
TRACE_TYPE = pa.struct(
    [
        ("stage", pa.string()),
        ("outcome", pa.string()),
        ("seconds", pa.float64()),
        ("items_in", pa.int32()),
        ("items_out", pa.int32()),
        ("at", pa.float64()),
    ]
)
WORK_SCHEMA = pa.schema(
    [
        ("subject_id", pa.string()),
        ("shard", pa.int32()),
        ("category", pa.string()),
        ("subject", pa.string()),
        ("scenes", pa.list_(pa.string())),
        ("seed", pa.int64()),
        ("collage_prompt", pa.string()),
        ("items", pa.list_(_ITEM)),
        ("consistency", pa.float64()),
        ("style", pa.string()),
        ("rejected", pa.bool_()),
        ("rejects", pa.list_(_REJECT)),
        ("trace", pa.list_(TRACE_TYPE)),
    ]
)
"""In-flight format (Arrow, between Ray Data operators and in part files); not the published schema."""


def to_table(rows: list[WorkRow]) -> pa.Table:
    return pa.Table.from_pylist([dataclasses.asdict(r) for r in rows], schema=WORK_SCHEMA)


def from_table(table: pa.Table) -> list[WorkRow]:
    rows = []
    for d in table.to_pylist():
        d["items"] = [Item(**i) for i in d["items"]]
        d["rejects"] = [Reject(**r) for r in d["rejects"]]
        d["trace"] = [Trace(**t) for t in d["trace"]]
        rows.append(WorkRow(**d))
    return rows


def error_details(exc: BaseException) -> str:
    """The exception and the last frames of its traceback, bounded, for a rejects table."""
    text = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:])
    return text[:MAX_DETAILS]


def apply_stage(name: str, fn: Callable[[WorkRow], WorkRow], row: WorkRow) -> WorkRow:
    """Run one stage on one row; rejected rows pass through, failures become rejects with a reason."""
    if row.rejected:
        return row
    start = time.perf_counter()
    items_in = len(row.items)
    try:
        out = fn(row)
    except RejectRow as rej:
        trace = Trace(name, "rejected", time.perf_counter() - start, items_in, 0, time.time())
        rejects = [*row.rejects, *rej.item_rejects, Reject(name, rej.reason, rej.details[:MAX_DETAILS])]
        return dataclasses.replace(row, items=[], rejected=True, rejects=rejects, trace=[*row.trace, trace])
    except Exception as exc:
        trace = Trace(name, "error", time.perf_counter() - start, items_in, 0, time.time())
        rejects = [*row.rejects, Reject(name, "error", error_details(exc))]
        return dataclasses.replace(row, items=[], rejected=True, rejects=rejects, trace=[*row.trace, trace])
    trace = Trace(name, "passed", time.perf_counter() - start, items_in, len(out.items), time.time())
    return dataclasses.replace(out, trace=[*out.trace, trace])
