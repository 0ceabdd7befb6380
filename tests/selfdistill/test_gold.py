"""The gold filter on score tables whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from training.selfdistill.gold import select_gold, top_threshold

NAN = float("nan")


def test_gold_is_exactly_the_intersection_of_the_two_top_sets():
    image = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    text = np.array([0.1, 0.6, 0.5, 0.9, 0.8, 0.2])
    prompts = np.array([0, 0, 1, 1, 2, 2])
    picked = select_gold(image, text, prompts, percent=50)
    # top 3 of 6 by image: samples {0, 1, 2} (threshold 0.7); by text: {3, 4, 1} (threshold 0.6)
    assert (picked.image_threshold, picked.text_threshold) == (0.7, 0.6)
    assert np.flatnonzero(picked.gold).tolist() == [1] and picked.count == 1
    # Hand computation of the conflicts: prompt 0: best image 0.9 >= 0.7, best text 0.6 >= 0.6 -> fine;
    # prompt 1: best image 0.7 >= 0.7, best text 0.9 >= 0.6 -> fine (though none of its samples is gold);
    # prompt 2: best image 0.5 < 0.7 -> conflict. Rate 1/3.
    assert picked.conflicted_prompts == [2] and picked.conflict_rate == pytest.approx(1 / 3)


def test_missing_scores_count_in_n_and_never_pass():
    image = np.array([NAN, 0.8, NAN, 0.6])
    text = np.array([1.0, 1.0, 0.0, 0.0])
    picked = select_gold(image, text, np.array([0, 0, 1, 1]), percent=50)
    # 2 of 4 keep each score: the two finite image scores (0.8, 0.6) and the two texts at 1.0
    assert picked.image_threshold == 0.6 and picked.text_threshold == 1.0
    assert picked.gold.tolist() == [False, True, False, False]
    assert picked.conflicted_prompts == [1], "prompt 1: its best sample by text (0.0) is below 1.0"
    assert picked.conflict_rate == 0.5


def test_ties_at_the_threshold_all_pass():
    scores = np.array([1.0, 0.5, 0.5, 0.5, 0.0])
    assert top_threshold(scores, 40) == 0.5  # ceil(40% of 5) = 2nd best = 0.5
    picked = select_gold(scores, np.ones(5), np.arange(5), percent=40)
    assert picked.count == 4


def test_percent_rounding_and_edge_sizes():
    ten = np.arange(10, dtype=float)
    assert top_threshold(ten, 30) == 7.0, "30% of 10 keeps 3, not 4 (floating point)"
    assert top_threshold(ten, 100) == 0.0 and top_threshold(ten, 1) == 9.0, "at least one sample passes"
    assert np.isnan(top_threshold(np.array([NAN, NAN]), 50))


def test_a_subject_without_any_score_has_no_gold_and_every_prompt_conflicts():
    picked = select_gold(np.full(4, NAN), np.ones(4), np.array([0, 0, 1, 1]), percent=50)
    assert picked.count == 0 and picked.conflicted_prompts == [0, 1] and picked.conflict_rate == 1.0


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="equal-length vectors"):
        select_gold(np.ones(3), np.ones(2), np.zeros(3), percent=50)
