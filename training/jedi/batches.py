"""Turning decoded sets into training micro-batches: which source, how many images per set.

Every worker draws the source and the set size of micro-batch (step, micro) from the same key, so
all ranks train on sets of one shape per step and a step's gradient does not depend on how the
sets were split among workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from training.jedi.sampling import choose_set_size, choose_source, crop_set, set_rng, step_rng


@dataclass
class SourceCursor:
    """Where a worker is in one source: epoch and rows consumed in it (the resumable data position)."""

    name: str
    kind: str
    epoch: int = 0
    consumed: int = 0
    skipped: int = 0

    def state(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "skipped": self.skipped}


@dataclass
class MicroBatch:
    set_ids: list[str]
    set_size: int
    captions: list[str]  # B·N, sets contiguous
    pixels: np.ndarray | None = None  # (B·N, R, R, 3) uint8
    latent_mean: np.ndarray | None = None  # (B·N, C, h, w) for precomputed latents
    latent_std: np.ndarray | None = None
    source: str = ""
    skipped: list[str] = field(default_factory=list)


def endless_rows(shard, cursor: SourceCursor) -> Iterator[dict]:
    """Rows of a dataset shard forever, epoch after epoch, resuming at ``cursor``."""
    skip = cursor.consumed
    while True:
        seen = 0
        for i, row in enumerate(shard.iter_rows()):
            seen += 1
            if i < skip:
                continue
            cursor.consumed = i + 1
            yield row
        if seen == 0:
            raise ValueError(f"data.sources: source {cursor.name} has no rows for this worker")
        skip = 0
        cursor.epoch += 1
        cursor.consumed = 0


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
) -> MicroBatch:
    rng = step_rng(seed, step, micro)
    src = choose_source(rng, weights)
    wanted = choose_set_size(rng, min_set_size, max_set_size)
    cursor = cursors[src]
    picked, skipped = [], []
    while len(picked) < sets:
        row = next(rows[src])
        if row.get("error"):
            cursor.skipped += 1
            skipped.append(f"{row['set_id']}: {row['error']}")
            continue
        picked.append(row)
    sizes = [len(r["captions"]) for r in picked]
    n = 1 if cursor.kind == "captions" else max(1, min(wanted, *sizes))
    batch = MicroBatch(
        set_ids=[str(r["set_id"]) for r in picked], set_size=n, captions=[], source=cursor.name, skipped=skipped
    )
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
