"""Turning decoded sets into training micro-batches: which source, how many images per set.

**Set sizes as in the paper (§4): uniform over ``min_set_size..max_set_size`` for every multi-image
source, 1 for captioned singles.** Every worker draws the source and the set size of micro-batch
(step, micro) from the same keys, so all ranks train on sets of one shape per step and a step's
gradient does not depend on how the sets were split among workers. Sizes are balanced, not merely
random: each run of ``max − min + 1`` consecutive micro-batches holds every size once, in a keyed
random order, so the shares are exact instead of drifting by the binomial noise of a few thousand
draws.

**Grouping by size.** A set with fewer images than the micro-batch's size is not cut down with the
whole micro-batch (one 2-image set would force every set of it to 2); it waits in the source's
*waiting list* for a micro-batch it fits, and each micro-batch first takes the waiting sets that fit
most tightly (a 2-image set serves a size-2 batch before a 4-image set is spent on it). Only when a
source cannot supply its size — the waiting list is full (``WAITING_PER_SET`` × sets) — does a
micro-batch fall back to the largest size it can fill, counted in ``SourceCursor.size_fallbacks``.
The waiting list is not checkpointed: a resumed run starts it empty, and the sets that were waiting
come back in the next epoch.

**Unusable sets** (a corrupt image, a video too short to sample) are skipped as they stream past,
counted per reason and logged the first time a worker meets each one; a source whose whole pass
yields nothing usable stops the run with one line naming the source and the reasons, instead of
cycling its epochs forever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from core.logs import get_logger
from training.jedi.sampling import balanced_set_size, choose_source, crop_set, set_rng, step_rng

log = get_logger("train.jedi.data")

WAITING_PER_SET = 4
"""Sets a source may hold back per set of a micro-batch before sizes fall back."""


@dataclass
class SourceCursor:
    """Where a worker is in one source: epoch and rows consumed in it (the resumable data position),
    what it skipped and why, and the sets waiting for a micro-batch of their size."""

    name: str
    kind: str
    path: str = ""
    epoch: int = 0
    consumed: int = 0
    skipped: int = 0
    skip_reasons: Counter = field(default_factory=Counter)
    size_fallbacks: int = 0
    waiting: list[dict] = field(default_factory=list)
    logged: set[str] = field(default_factory=set)

    def state(self) -> dict:
        return {
            "epoch": self.epoch,
            "consumed": self.consumed,
            "skipped": self.skipped,
            "skip_reasons": dict(self.skip_reasons),
            "size_fallbacks": self.size_fallbacks,
        }

    def restore(self, state: dict) -> None:
        self.epoch, self.consumed = state.get("epoch", 0), state.get("consumed", 0)
        self.skipped, self.size_fallbacks = state.get("skipped", 0), state.get("size_fallbacks", 0)
        self.skip_reasons = Counter(state.get("skip_reasons", {}))

    def metrics(self) -> dict[str, int]:
        """Skip counts per reason and size fallbacks, for the run's metrics."""
        out = {f"skipped/{self.name}/{reason}": n for reason, n in self.skip_reasons.items()}
        return {**out, f"size_fallbacks/{self.name}": self.size_fallbacks}

    def describe(self) -> str:
        return f"{self.name} ({self.kind} {self.path})" if self.path else f"{self.name} ({self.kind})"


@dataclass
class MicroBatch:
    set_ids: list[str]
    set_size: int
    captions: list[str]  # B·N, sets contiguous
    pixels: np.ndarray | None = None  # (B·N, R, R, 3) uint8
    latent_mean: np.ndarray | None = None  # (B·N, C, h, w) for precomputed latents
    latent_std: np.ndarray | None = None
    source: str = ""


def skip_reason(error: str) -> str:
    """The reason class of a row's error (``"UnidentifiedImageError: cannot identify ..."`` →
    ``"UnidentifiedImageError"``), the key its skips are counted under."""
    return error.split(":", 1)[0].strip() or "error"


def endless_rows(shard, cursor: SourceCursor) -> Iterator[dict]:
    """Usable rows of a dataset shard forever, epoch after epoch, resuming at ``cursor``.

    Rows with an ``error`` are skipped and counted as they stream past; a pass over the shard with no
    usable row is an error naming the source and the skip reasons (nothing would ever train)."""
    skip = cursor.consumed
    while True:
        seen, usable, reasons = 0, 0, Counter()
        for i, row in enumerate(shard.iter_rows()):
            seen += 1
            error = row.get("error")
            if error:
                reasons[skip_reason(error)] += 1
            else:
                usable += 1
            if i < skip:
                continue
            cursor.consumed = i + 1
            if error:
                _skip(cursor, row, error)
                continue
            yield row
        if seen == 0:
            raise ValueError(f"data.sources: source {cursor.describe()} has no rows for this worker")
        if usable == 0:
            counts = ", ".join(f"{n} × {reason}" for reason, n in reasons.most_common())
            raise ValueError(
                f"data.sources: source {cursor.describe()} has no usable set in a whole pass over its {seen} "
                f"sets ({counts}); fix or remove the source"
            )
        skip = 0
        cursor.epoch += 1
        cursor.consumed = 0


def _skip(cursor: SourceCursor, row: dict, error: str) -> None:
    cursor.skipped += 1
    cursor.skip_reasons[skip_reason(error)] += 1
    set_id = str(row.get("set_id"))
    if set_id not in cursor.logged:
        cursor.logged.add(set_id)
        log.warning("skipped an unusable set", source=cursor.describe(), set_id=set_id, reason=error)


def _images(row: dict) -> int:
    return len(row["captions"])


def pick_sets(rows: Iterator[dict], cursor: SourceCursor, wanted: int, sets: int) -> tuple[list[dict], int]:
    """``sets`` rows with at least ``wanted`` images and the size they are cut to (``wanted``, or
    smaller when the source cannot supply it; see the module docstring)."""
    fits = sorted(
        (i for i, r in enumerate(cursor.waiting) if _images(r) >= wanted), key=lambda i: _images(cursor.waiting[i])
    )
    taken = sorted(fits[:sets])
    picked = [cursor.waiting[i] for i in taken]
    cursor.waiting = [r for i, r in enumerate(cursor.waiting) if i not in set(taken)]
    limit = WAITING_PER_SET * sets
    while len(picked) < sets and len(cursor.waiting) < limit:
        row = next(rows)
        if _images(row) >= wanted:
            picked.append(row)
        else:
            cursor.waiting.append(row)
    if len(picked) < sets:
        # The waiting list is full of sets smaller than ``wanted``: cut this micro-batch to the largest
        # size the oldest of them can fill.
        missing = sets - len(picked)
        wanted = sorted((_images(r) for r in cursor.waiting), reverse=True)[missing - 1]
        taken = [i for i, r in enumerate(cursor.waiting) if _images(r) >= wanted][:missing]
        picked += [cursor.waiting[i] for i in taken]
        cursor.waiting = [r for i, r in enumerate(cursor.waiting) if i not in set(taken)]
        cursor.size_fallbacks += 1
    return picked, wanted


def next_micro_batch(
    rows: list[Iterator[dict]],
    cursors: list[SourceCursor],
    weights: list[float],
    *,
    seed: int,
    step: int,
    micro: int,
    sets: int,
    min_set_size: int,
    max_set_size: int,
    resolution: int,
    min_scale: float,
    flip: bool,
    grad_accum: int = 1,
) -> MicroBatch:
    rng = step_rng(seed, step, micro)
    src = choose_source(rng, weights)
    cursor = cursors[src]
    wanted = (
        1
        if cursor.kind == "captions"
        else balanced_set_size(seed, step * grad_accum + micro, min_set_size, max_set_size)
    )
    picked, n = pick_sets(rows[src], cursor, wanted, sets)
    batch = MicroBatch(set_ids=[str(r["set_id"]) for r in picked], set_size=n, captions=[], source=cursor.name)
    if cursor.kind == "latents":
        means, stds = [], []
        for r in picked:
            rr = set_rng(seed, step, micro, r["set_id"])
            chosen = np.sort(rr.choice(len(r["captions"]), size=n, replace=False))
            means.append(np.asarray(r["latent_mean"])[chosen])
            stds.append(np.asarray(r["latent_std"])[chosen])
            batch.captions += [r["captions"][i] for i in chosen]
        batch.latent_mean, batch.latent_std = np.concatenate(means), np.concatenate(stds)
        return batch
    crops = []
    for r in picked:
        chosen, pixels = crop_set(
            np.asarray(r["pixels"]), n, set_rng(seed, step, micro, r["set_id"]), resolution, min_scale, flip
        )
        crops.append(pixels)
        batch.captions += [r["captions"][i] for i in chosen]
    batch.pixels = np.concatenate(crops)
    return batch
