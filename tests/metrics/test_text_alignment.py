"""Hard-negative accuracy, conflicts and the embedding helpers on inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.metrics.conflict_rate import conflict_rate, conflicted
from core.metrics.similarity import mean_similarity, paired_cosine
from core.metrics.text_alignment import conflicts, hard_negative_accuracy


def unit(*xs: float) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(xs, dtype=torch.float32), dim=-1)


def test_paired_cosine_and_mean_similarity():
    a = torch.stack([unit(1, 0), unit(0, 1)])
    b = torch.stack([unit(1, 0), unit(1, 1)])
    torch.testing.assert_close(paired_cosine(a, b), torch.tensor([1.0, 2**-0.5]))
    torch.testing.assert_close(mean_similarity(a, b), torch.tensor([(1 + 2**-0.5) / 2, (0 + 2**-0.5) / 2]))
    assert torch.isnan(mean_similarity(a, torch.empty(0, 2))).all()
    with pytest.raises(ValueError, match="shapes differ"):
        paired_cosine(a, b[:1])


def test_hard_negative_accuracy_counts_the_negatives_the_prompt_beats():
    image = torch.stack([unit(1, 0, 0), unit(0, 1, 0)])
    prompt = torch.stack([unit(1, 0.1, 0), unit(1, 0, 0)])  # image 0 matches its prompt, image 1 does not
    negatives = [
        torch.stack([unit(0, 1, 0), unit(1, 1, 0)]),  # both worse than the prompt for image 0
        torch.stack([unit(0, 1, 0), unit(0, -1, 0)]),  # the first beats the prompt for image 1
    ]
    acc = hard_negative_accuracy(image, prompt, negatives)
    assert acc.tolist() == [1.0, 0.5]
    assert math.isnan(hard_negative_accuracy(image[:1], prompt[:1], [torch.empty(0, 3)])[0])
    with pytest.raises(ValueError, match="negatives: 1 lists for 2 images"):
        hard_negative_accuracy(image, prompt, negatives[:1])


def test_conflict_when_the_bare_subject_text_is_as_close_as_the_prompt():
    image = torch.stack([unit(1, 0), unit(0, 1)])
    prompt = torch.stack([unit(1, 0), unit(1, 0)])
    subject = torch.stack([unit(1, 1), unit(1, 1)])
    assert conflicts(image, prompt, subject).tolist() == [False, True]


def test_conflict_rate_is_the_share_of_images_below_either_minimum():
    """Paper 000 §4, against a plain loop over the images: a missing identity score counts as below."""
    identity = np.array([0.9, 0.6, 0.9, np.nan, 0.7, 0.69999])
    text = np.array([0.30, 0.30, 0.20, 0.31, 0.25, 0.40])
    flags = conflicted(identity, text, min_identity=0.7, min_text=0.25)
    by_hand = [not (i >= 0.7) or not (t >= 0.25) for i, t in zip(identity, text, strict=True)]
    assert flags.tolist() == by_hand == [False, True, True, True, False, True]
    assert conflict_rate(identity, text, 0.7, 0.25) == pytest.approx(4 / 6)
    assert math.isnan(conflict_rate(np.array([]), np.array([]), 0.7, 0.25))
    with pytest.raises(ValueError, match="differ in shape"):
        conflicted(identity, text[:2], 0.7, 0.25)
