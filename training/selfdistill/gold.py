"""The gold filter: which mined samples a student may learn from, and how often identity and text conflict.

Per subject and round, over its ``n`` samples:

- a score's **threshold** is the value of its ``ceil(k% · n)``-th best sample (ties at the threshold
  all pass, so more than k% may pass when scores repeat — NegCLIP-T takes few values). Samples
  without a score (NaN: no subject mask found for a masked score) count in ``n`` and never pass;
- **gold** = at least the image threshold AND at least the text threshold (the intersection of the
  two top-k% sets);
- a prompt **conflicts** when its best sample by the image score is below the image threshold or its
  best sample by the text score is below the text threshold: even the teacher's best draw for it
  fails one criterion. The **conflict rate** is the fraction of the subject's prompts that conflict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GoldSelection:
    gold: np.ndarray  # (n,) bool
    image_threshold: float
    text_threshold: float
    conflicted_prompts: list[int]
    conflict_rate: float

    @property
    def count(self) -> int:
        return int(self.gold.sum())


def top_threshold(scores: np.ndarray, percent: float) -> float:
    """The smallest score among the best ``ceil(percent% · n)`` (NaN when no sample has a score)."""
    finite = np.sort(scores[np.isfinite(scores)])[::-1]
    if not finite.size:
        return float("nan")
    keep = max(1, math.ceil(round(percent * scores.size / 100.0, 9)))  # round: 30% of 10 is 3, not 3.0000000000000004
    return float(finite[min(keep, finite.size) - 1])


def _passes(scores: np.ndarray, threshold: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(scores) & (scores >= threshold)


def select_gold(
    image_scores: np.ndarray, text_scores: np.ndarray, prompt_ids: np.ndarray, percent: float
) -> GoldSelection:
    """Gold samples and conflicts of one subject's samples (``prompt_ids[i]``: the prompt of sample i)."""
    image_scores = np.asarray(image_scores, dtype=np.float64)
    text_scores = np.asarray(text_scores, dtype=np.float64)
    prompt_ids = np.asarray(prompt_ids)
    if not (image_scores.shape == text_scores.shape == prompt_ids.shape) or image_scores.ndim != 1:
        raise ValueError(
            f"select_gold: scores and prompt ids must be equal-length vectors, got shapes "
            f"{image_scores.shape}, {text_scores.shape}, {prompt_ids.shape}"
        )
    t_image, t_text = top_threshold(image_scores, percent), top_threshold(text_scores, percent)
    image_ok, text_ok = _passes(image_scores, t_image), _passes(text_scores, t_text)
    prompts = sorted(set(prompt_ids.tolist()))
    conflicted = []
    for pid in prompts:
        mine = prompt_ids == pid
        # The prompt's best sample by a score passes that score iff any of its samples does.
        if not (image_ok[mine].any() and text_ok[mine].any()):
            conflicted.append(int(pid))
    rate = len(conflicted) / len(prompts) if prompts else float("nan")
    return GoldSelection(image_ok & text_ok, t_image, t_text, conflicted, rate)
