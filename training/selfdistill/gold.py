"""The gold filter (paper 000, §3.2): which mined samples a student may learn from.

Per subject and round, over its ``n`` samples:

- a score's **top set** is exactly ``ceil(k% · n)`` samples: the highest scores, ties broken by the
  sample's stable id (prompt, then sample number), so a tied score cannot let more than k% pass and
  the same scores always pick the same samples. A sample without a score (NaN: no subject mask for
  a masked score) counts in ``n`` and is never picked; when fewer than ``ceil(k% · n)`` samples have a
  score, all of them are picked;
- **gold** = in the top set of the image score AND in the top set of the text score;
- beside it, the round's **conflict rate** (§4, ``core.metrics.conflict_rate``): the share of samples
  whose image score or text score is below its minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.metrics.conflict_rate import conflict_rate, conflicted


@dataclass(frozen=True)
class GoldSelection:
    gold: np.ndarray  # (n,) bool
    keep: int  # ceil(k% · n): the size of each top set (fewer when fewer samples have the score)
    image_threshold: float  # the lowest image score in its top set (NaN: empty)
    text_threshold: float
    conflicted: np.ndarray  # (n,) bool
    conflict_rate: float

    @property
    def count(self) -> int:
        return int(self.gold.sum())


def top_count(n: int, percent: float) -> int:
    """``ceil(percent% · n)``; rounded first, so 30% of 10 is 3 and not 3.0000000000000004 → 4."""
    return math.ceil(round(percent * n / 100.0, 9))


def top_set(scores: np.ndarray, percent: float, prompt_ids: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """(n,) bool: the ``top_count(n, percent)`` best finite scores, ties to the lower (prompt, sample)."""
    finite = np.flatnonzero(np.isfinite(scores))
    ranked = finite[np.lexsort((samples[finite], prompt_ids[finite], -scores[finite]))]
    picked = np.zeros(scores.shape, dtype=bool)
    picked[ranked[: top_count(scores.size, percent)]] = True
    return picked


def _lowest(scores: np.ndarray, picked: np.ndarray) -> float:
    return float(scores[picked].min()) if picked.any() else float("nan")


def select_gold(
    image_scores: np.ndarray,
    text_scores: np.ndarray,
    prompt_ids: np.ndarray,
    samples: np.ndarray,
    percent: float,
    min_image: float,
    min_text: float,
) -> GoldSelection:
    """Gold samples and the conflict rate of one subject's samples (sample i: ``samples[i]`` of prompt
    ``prompt_ids[i]``)."""
    image_scores = np.asarray(image_scores, dtype=np.float64)
    text_scores = np.asarray(text_scores, dtype=np.float64)
    prompt_ids, samples = np.asarray(prompt_ids), np.asarray(samples)
    shapes = {image_scores.shape, text_scores.shape, prompt_ids.shape, samples.shape}
    if len(shapes) != 1 or image_scores.ndim != 1:
        raise ValueError(
            f"select_gold: scores, prompt ids and sample numbers must be equal-length vectors, got shapes "
            f"{image_scores.shape}, {text_scores.shape}, {prompt_ids.shape}, {samples.shape}"
        )
    image_top = top_set(image_scores, percent, prompt_ids, samples)
    text_top = top_set(text_scores, percent, prompt_ids, samples)
    return GoldSelection(
        gold=image_top & text_top,
        keep=top_count(image_scores.size, percent),
        image_threshold=_lowest(image_scores, image_top),
        text_threshold=_lowest(text_scores, text_top),
        conflicted=conflicted(image_scores, text_scores, min_image, min_text),
        conflict_rate=conflict_rate(image_scores, text_scores, min_image, min_text),
    )
