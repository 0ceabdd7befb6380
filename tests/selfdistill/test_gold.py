"""The gold filter on score tables whose answer is known, and against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.selfdistill.gold import select_gold, top_count, top_set

NAN = float("nan")


def ids(n: int, per_prompt: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Prompt ids and sample numbers of ``n`` samples drawn ``per_prompt`` to a prompt."""
    return np.arange(n) // per_prompt, np.arange(n) % per_prompt


def pick(image, text, percent, min_image=0.0, min_text=0.0, per_prompt=2):
    image, text = np.asarray(image, dtype=float), np.asarray(text, dtype=float)
    return select_gold(image, text, *ids(image.size, per_prompt), percent, min_image, min_text)


def by_hand(scores: np.ndarray, percent: float, keys: list[tuple[int, int]]) -> set[int]:
    """The paper's top k% written out: sort (score desc, prompt, sample), keep the first ceil(k·n)."""
    n = len(scores)
    order = sorted((i for i in range(n) if not math.isnan(scores[i])), key=lambda i: (-scores[i], *keys[i]))
    return set(order[: math.ceil(round(percent / 100 * n, 9))])


def test_gold_is_exactly_the_intersection_of_the_two_top_sets():
    image = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    text = [0.1, 0.6, 0.5, 0.9, 0.8, 0.2]
    picked = pick(image, text, percent=50)
    # top 3 of 6 by image: samples {0, 1, 2} (lowest 0.7); by text: {3, 4, 1} (lowest 0.6)
    assert (picked.keep, picked.image_threshold, picked.text_threshold) == (3, 0.7, 0.6)
    assert np.flatnonzero(picked.gold).tolist() == [1] and picked.count == 1


def test_tied_scores_pass_exactly_k_percent_decided_by_prompt_then_sample():
    """Five samples tie at 0.5; ceil(40% of 10) = 4 pass, the tie is cut by (prompt, sample), not by
    the order the rows arrive in."""
    scores = np.array([0.5, 1.0, 0.5, 0.0, 0.5, 0.5, 0.2, 0.5, 0.1, 0.3])
    prompts = np.array([3, 0, 1, 0, 1, 2, 2, 0, 4, 4])
    samples = np.array([0, 0, 1, 1, 0, 0, 1, 2, 0, 1])
    picked = top_set(scores, 40, prompts, samples)
    # 1.0 (prompt 0), then the ties ordered by (prompt, sample): (0,2) (1,0) (1,1) (2,0) (3,0) -> first three
    assert picked.sum() == 4 and np.flatnonzero(picked).tolist() == [1, 2, 4, 7]
    shuffle = np.random.default_rng(0).permutation(10)
    again = top_set(scores[shuffle], 40, prompts[shuffle], samples[shuffle])
    assert sorted(shuffle[again].tolist()) == [1, 2, 4, 7], "the rows' order must not matter"


@pytest.mark.parametrize("percent", [1, 12, 30, 50, 99, 100])
def test_top_sets_and_gold_match_a_plain_sort(percent):
    """Random scores with heavy ties and missing values, against ``by_hand``."""
    rng = np.random.default_rng(percent)
    n = 200
    image = rng.integers(0, 8, n) / 8.0
    text = rng.integers(0, 5, n) / 5.0
    image[rng.random(n) < 0.1] = NAN
    prompt_ids, samples = ids(n, per_prompt=8)
    keys = list(zip(prompt_ids.tolist(), samples.tolist(), strict=True))
    picked = select_gold(image, text, prompt_ids, samples, percent, 0.5, 0.4)
    want_image, want_text = by_hand(image, percent, keys), by_hand(text, percent, keys)
    assert set(np.flatnonzero(top_set(image, percent, prompt_ids, samples))) == want_image
    assert set(np.flatnonzero(picked.gold)) == want_image & want_text
    assert picked.keep == math.ceil(round(percent * n / 100, 9)) and len(want_text) == picked.keep
    want_conflicts = [math.isnan(i) or i < 0.5 or t < 0.4 for i, t in zip(image, text, strict=True)]
    assert picked.conflicted.tolist() == want_conflicts
    assert picked.conflict_rate == pytest.approx(sum(want_conflicts) / n)


def test_missing_scores_count_in_n_and_never_pass():
    picked = pick([NAN, 0.8, NAN, 0.6], [1.0, 1.0, 0.0, 0.0], percent=50, min_image=0.7, min_text=0.5)
    # 2 of 4 keep each score: the two finite image scores (0.8, 0.6) and the two texts at 1.0
    assert picked.image_threshold == 0.6 and picked.text_threshold == 1.0
    assert picked.gold.tolist() == [False, True, False, False]
    # §4: sample 0 has no identity score, 2 neither that nor text, 3 is below both minimums
    assert picked.conflicted.tolist() == [True, False, True, True] and picked.conflict_rate == 0.75
    few = pick([NAN, NAN, NAN, 0.1], [0.0, 0.0, 0.0, 1.0], percent=75)
    assert few.keep == 3 and few.image_threshold == 0.1 and few.count == 1, "fewer scored samples than k% all pass"


def test_percent_rounding_and_edge_sizes():
    assert top_count(10, 30) == 3, "30% of 10 keeps 3, not 4 (floating point)"
    assert (top_count(10, 100), top_count(10, 1), top_count(1250, 12), top_count(0, 50)) == (10, 1, 150, 0)
    nothing = pick([NAN, NAN], [1.0, 1.0], percent=50)
    assert nothing.count == 0 and math.isnan(nothing.image_threshold) and nothing.conflict_rate == 1.0


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="equal-length vectors"):
        select_gold(np.ones(3), np.ones(2), np.zeros(3), np.zeros(3), 50, 0.0, 0.0)
