"""Stage 4, consistency: keep a set only if its instances look like the same object to CLIP.

Each instance is embedded on a plain background (``core.metrics.similarity.foreground``), so the
collage's surroundings cannot make two instances agree. ``select_consistent`` then picks the largest
group (up to ``max_set_size``) in which *every* pair reaches the threshold, greedily: start from the
most similar pair, add the candidate whose weakest link to the group is strongest. Greedy is exact
for the pair and good enough beyond it; candidates are a handful per subject.
"""

from __future__ import annotations

import dataclasses

import torch

from core import zoo
from core.config import S3JediConfig
from core.config.datagen import ConsistencySection
from core.metrics.similarity import cosine_matrix, foreground, mean_pairwise
from datagen.imaging import decode_items
from datagen.rows import RejectRow, WorkRow
from datagen.stage import Stage

NAME = "consistency"


def select_consistent(sim: torch.Tensor, threshold: float, min_size: int, max_size: int) -> list[int] | None:
    """Indices (ascending) of a group whose pairwise similarities are all >= threshold, or None."""
    n = sim.shape[0]
    if n < max(2, min_size):
        return None
    off = sim.clone().float()
    off.fill_diagonal_(-float("inf"))
    best = int(torch.argmax(off))  # first maximum in row-major order: ties go to the lowest indices
    i, j = divmod(best, n)
    if off[i, j] < threshold:
        return None
    group = [i, j]
    while len(group) < max_size:
        rest = [k for k in range(n) if k not in group]
        if not rest:
            break
        links = [float(sim[k, group].min()) for k in rest]
        pick = max(range(len(rest)), key=lambda m: (links[m], -rest[m]))
        if links[pick] < threshold:
            break
        group.append(rest[pick])
    return sorted(group) if len(group) >= min_size else None


class ConsistencyFilter:
    def __init__(self, clip, cfg: ConsistencySection):
        self.clip = clip
        self.cfg = cfg

    def __call__(self, row: WorkRow) -> WorkRow:
        cfg = self.cfg
        decoded, rejects = decode_items(row, NAME, with_masks=True)
        if len(decoded) < cfg.min_set_size:
            raise RejectRow("too-few-instances", f"{len(decoded)} instances < min_set_size {cfg.min_set_size}", rejects)
        embeddings = self.clip.encode_images([foreground(image, mask) for _, image, mask in decoded])
        sim = cosine_matrix(embeddings)
        group = select_consistent(sim, cfg.threshold, cfg.min_set_size, cfg.max_set_size)
        if group is None:
            off = sim.clone()
            off.fill_diagonal_(-float("inf"))
            raise RejectRow(
                "inconsistent",
                f"no {cfg.min_set_size} of {len(decoded)} instances agree: best pair {float(off.max()):.4f}, "
                f"threshold {cfg.threshold}",
                rejects,
            )
        score = mean_pairwise(sim[group][:, group])
        items = [decoded[k][0] for k in group]
        return dataclasses.replace(row, items=items, consistency=score, rejects=[*row.rejects, *rejects])


def load(cfg: S3JediConfig, device: str) -> ConsistencyFilter:
    return ConsistencyFilter(zoo.load("clip", cfg.models.clip, device=device, home=cfg.home), cfg.datagen.consistency)


STAGE = Stage(NAME, version="1", families=("clip",), section=ConsistencySection, load=load)
