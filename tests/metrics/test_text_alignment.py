"""Hard-negative accuracy, conflict and the embedding helpers on embeddings with known answers."""

from __future__ import annotations

import math

import pytest
import torch

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
