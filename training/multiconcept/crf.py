"""DenseCRF refinement of soft or hard masks (pydensecrf; the defaults are CutLER's ``maskcut/crf.py``).

A fully connected CRF (Krähenbühl & Koltun 2011) snaps a coarse mask to the image: a Gaussian kernel
smooths labels spatially, a bilateral kernel makes pixels of similar colour nearby agree. Attention
maps are coarse (an 8×8 latent grid for a 64 px image, 64×64 for 512 px), so concept masks read from
them are refined this way before they are trusted as training targets.
"""

from __future__ import annotations

import numpy as np

from core.config.multiconcept import CRFSection


def dense_crf(image: np.ndarray, probs: np.ndarray, cfg: CRFSection) -> np.ndarray:
    """Posterior label probabilities ``(K, H, W)`` of a ``(H, W, 3)`` uint8 image given per-pixel label
    probabilities ``probs`` ``(K, H, W)`` (each pixel's column sums to 1)."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    labels, height, width = probs.shape
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise ValueError(f"dense_crf: image must be ({height}, {width}, 3) uint8, got {image.shape} {image.dtype}")
    crf = dcrf.DenseCRF2D(width, height, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32))))
    crf.addPairwiseGaussian(sxy=cfg.pos_xy_std, compat=cfg.pos_w)
    crf.addPairwiseBilateral(sxy=cfg.bi_xy_std, srgb=cfg.bi_rgb_std, rgbim=np.ascontiguousarray(image), compat=cfg.bi_w)
    return np.asarray(crf.inference(cfg.iterations), dtype=np.float32).reshape(labels, height, width)


def refine_mask(image: np.ndarray, mask: np.ndarray, cfg: CRFSection) -> np.ndarray:
    """A binary mask refined as CutLER does it: the labels (background, foreground) as logits 0/1,
    softmaxed (a soft 0.27/0.73 unary, so the image can overrule the mask), CRF, arg max."""
    fg = mask.astype(np.float32)
    logits = np.stack([1.0 - fg, fg])
    probs = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    return dense_crf(image, probs, cfg).argmax(axis=0) == 1
