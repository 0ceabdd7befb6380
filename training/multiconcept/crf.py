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


TIE_BREAK = 1e-3
"""Weight of a concept's attention in the logits where binary masks overlap: the concept attending
more wins a tie, while the masks themselves still decide everything else."""


def refine_masks(
    image: np.ndarray, masks: np.ndarray, cfg: CRFSection, strength: np.ndarray | None = None
) -> np.ndarray:
    """Binary masks ``(K, H, W)`` of competing concepts refined together (paper 004 §3, "Mask
    extraction"): the stack of masks plus one label for "none of them" (on where no mask is) is passed
    through a softmax over the labels — logits 1 where a mask is on, 0 elsewhere, so a soft
    0.73/0.27 unary for one mask, as CutLER's binary refinement, which the image can overrule — and is
    the DenseCRF's unary; each pixel then takes its most probable label, so the refined masks are
    disjoint. ``strength`` ``(K, H, W)`` in [0, 1] (the normalised attention) adds ``TIE_BREAK·strength``
    to the concepts' logits. With ``cfg.enabled`` false the unary's arg max is taken directly."""
    on = masks.astype(np.float32)
    logits = np.concatenate([on, 1.0 - on.max(axis=0, keepdims=True)])
    if strength is not None:
        logits[:-1] += TIE_BREAK * strength.astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    posterior = dense_crf(image, probs, cfg) if cfg.enabled else probs
    labels = posterior.argmax(axis=0)
    return np.stack([labels == k for k in range(len(masks))])
