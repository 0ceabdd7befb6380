"""Similarity building blocks used by the S3 filter and the scorers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.metrics.similarity import FOREGROUND_FILL, cosine_matrix, foreground, mean_pairwise


def test_cosine_matrix_and_mean_pairwise():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    sim = cosine_matrix(a)
    torch.testing.assert_close(sim.diagonal(), torch.ones(3))
    assert sim[0, 1] == pytest.approx(0.0) and sim[0, 2] == pytest.approx(2**-0.5)
    assert mean_pairwise(sim) == pytest.approx((0 + 2**-0.5 + 2**-0.5) * 2 / 6)
    assert np.isnan(mean_pairwise(sim[:1, :1]))
    assert cosine_matrix(a, a[:1]).shape == (3, 1)


def test_foreground_keeps_the_subject_and_fills_the_rest():
    img = Image.fromarray(np.full((4, 4, 3), 10, dtype=np.uint8))
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True
    out = np.asarray(foreground(img, mask))
    assert (out[mask] == 10).all() and (out[~mask] == FOREGROUND_FILL).all()
    with pytest.raises(ValueError, match="mask: shape"):
        foreground(img, np.zeros((3, 3), dtype=bool))
