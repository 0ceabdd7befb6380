"""Concept masks from attention maps, and how well they match the truth.

``attention_masks`` is the E-step's last part: each concept's attention (already averaged over layers
and timesteps) is upsampled to the image, min-max normalised and thresholded; the image's concepts
then compete for its pixels (``crf.refine_masks``: their binary masks stacked, softmaxed over the
concepts and a "none" label, DenseCRF against the image, one label per pixel). ``latent_masks``
brings masks back to the latent grid for the losses.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.config.multiconcept import CRFSection
from training.multiconcept.crf import refine_masks


def attention_masks(maps: torch.Tensor, image: np.ndarray, threshold: float, crf: CRFSection) -> np.ndarray:
    """``(K, h, w)`` attention maps of one image's concepts → ``(K, R, R)`` disjoint bool masks for its
    ``(R, R, 3)`` pixels."""
    side = image.shape[:2]
    up = F.interpolate(maps[None].float(), size=side, mode="bilinear", align_corners=False)[0]
    low = up.amin(dim=(1, 2), keepdim=True)
    high = up.amax(dim=(1, 2), keepdim=True)
    normalised = ((up - low) / (high - low).clamp_min(1e-12)).cpu().numpy()
    return refine_masks(image, normalised > threshold, crf, strength=normalised)


def latent_masks(masks: np.ndarray, size: tuple[int, int], device) -> torch.Tensor:
    """``(..., R, R)`` bool masks → ``(..., h, w)`` float coverage of each latent cell (area average)."""
    flat = torch.from_numpy(masks.reshape(-1, 1, *masks.shape[-2:]).astype(np.float32))
    small = F.interpolate(flat, size=size, mode="area")
    return small.reshape(*masks.shape[:-2], *size).to(device)


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(mask, truth).sum()
    return float(np.logical_and(mask, truth).sum() / union) if union else 1.0


def scene_iou(masks: np.ndarray, truth: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``(M, K)`` IoU of every present concept in every image (NaN where the concept is absent)."""
    out = np.full(present.shape, np.nan)
    for m, k in zip(*np.nonzero(present), strict=True):
        out[m, k] = iou(masks[m, k], truth[m, k])
    return out
