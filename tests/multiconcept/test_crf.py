"""DenseCRF refinement with CutLER's parameters."""

from __future__ import annotations

import numpy as np
import pytest

from core.config.multiconcept import CRFSection
from training.multiconcept.crf import dense_crf, refine_masks
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
    (refined,) = refine_masks(image, noisy[None], CRFSection())
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


def test_concepts_compete_for_pixels_through_a_softmax_over_their_stacked_masks():
    """Paper 004: the thresholded masks of an image's concepts, stacked with a "none" label and
    softmaxed, are the CRF's unary; every pixel ends in at most one concept. Without the CRF the
    result is the arg max of that softmax, computed here independently."""
    image, disc = two_regions(3)
    rng = np.random.default_rng(4)
    a = disc | (rng.random(disc.shape) < 0.1)  # concept 0: the disc, with noise
    b = np.zeros_like(disc)
    b[:, 40:] = True  # concept 1: a band overlapping the disc's right side
    strength = rng.random((2, 64, 64))
    plain = refine_masks(image, np.stack([a, b]), CRFSection(enabled=False), strength)
    expected = np.zeros((2, 64, 64), dtype=bool)
    for y, x in np.ndindex(64, 64):
        logits = [float(a[y, x]) + 1e-3 * strength[0, y, x], float(b[y, x]) + 1e-3 * strength[1, y, x]]
        logits.append(0.0 if (a[y, x] or b[y, x]) else 1.0)
        probs = np.exp(logits) / np.exp(logits).sum()
        if probs.argmax() < 2:
            expected[probs.argmax(), y, x] = True
    assert np.array_equal(plain, expected)
    assert not (plain[0] & plain[1]).any() and (a & b).any(), "overlaps are resolved"
    refined = refine_masks(image, np.stack([a, b]), CRFSection(), strength)
    assert not (refined[0] & refined[1]).any()
    assert iou(refined[0], disc & ~refined[1]) >= 0.9, "the CRF snaps concept 0 back to the disc"
    assert refined[1][~disc].mean() > 0.9 * b[~disc].mean(), "concept 1 keeps its band off the disc"
