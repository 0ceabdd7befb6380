"""DenseCRF refinement with CutLER's parameters."""

from __future__ import annotations

import numpy as np
import pytest

from core.config.multiconcept import CRFSection
from training.multiconcept.crf import dense_crf, refine_mask
from training.multiconcept.masks import iou


def two_regions(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 64 px image: a noisy orange disc on a noisy blue ground, and the disc's mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    truth = (yy - 30) ** 2 + (xx - 34) ** 2 < 18**2
    image = np.where(truth[..., None], [210, 110, 40], [40, 90, 200]).astype(float)
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8), truth


def test_a_noisy_mask_is_snapped_back_to_the_regions():
    image, truth = two_regions()
    noisy = truth ^ (np.random.default_rng(1).random(truth.shape) < 0.2)  # a fifth of the pixels flipped
    assert iou(noisy, truth) < 0.6 and iou(~noisy, ~truth) < 0.8
    refined = refine_mask(image, noisy, CRFSection())
    assert iou(refined, truth) >= 0.9 and iou(~refined, ~truth) >= 0.9


def test_the_posterior_is_a_distribution_per_pixel_and_follows_the_image():
    image, truth = two_regions(2)
    flat = np.full((2, 64, 64), 0.5, dtype=np.float32)  # the unary says nothing ...
    flat[1, 30, 34], flat[0, 30, 34] = 0.99, 0.01  # ... except at one pixel inside the disc
    post = dense_crf(image, flat, CRFSection())
    assert post.shape == (2, 64, 64) and np.allclose(post.sum(axis=0), 1.0, atol=1e-4)
    assert post[1][truth].mean() > post[1][~truth].mean(), "belief spreads within the disc's colour"


def test_bad_inputs_name_what_is_wrong():
    image, _ = two_regions()
    with pytest.raises(ValueError, match=r"dense_crf: image must be \(64, 64, 3\) uint8"):
        dense_crf(image[:32], np.full((2, 64, 64), 0.5, np.float32), CRFSection())
