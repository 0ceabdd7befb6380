"""Foreground-only images for the masked scores (MCLIP-I, MDINO).

The subject is found by the same detector + segmenter composition the S3 builder uses
(``core.grounded_segmentation.subject_mask``) with the class name as the caption; everything else is
set to one fixed colour (``core.metrics.similarity.foreground``), so a background shared with, or
differing from, the reference photos cannot move the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.grounded_segmentation import subject_mask
from core.metrics.similarity import FOREGROUND_FILL, foreground


@dataclass(frozen=True)
class MaskSettings:
    """How the subject is cut out; recorded with every masked score."""

    box_threshold: float
    text_threshold: float
    max_instances: int = 1
    fill: tuple[int, int, int] = FOREGROUND_FILL


def detect_masks(
    detector, segmenter, images: Sequence[Image.Image], class_name: str, settings: MaskSettings
) -> list[np.ndarray | None]:
    """The subject mask of every image (None where the detector finds nothing above the thresholds)."""
    return [
        subject_mask(
            detector,
            segmenter,
            image,
            class_name,
            settings.box_threshold,
            settings.text_threshold,
            settings.max_instances,
        )
        for image in images
    ]


def foregrounds(
    images: Sequence[Image.Image], masks: Sequence[np.ndarray | None], fill: tuple[int, int, int] = FOREGROUND_FILL
) -> list[Image.Image | None]:
    """Each image with its background filled, or None where it has no mask."""
    if len(images) != len(masks):
        raise ValueError(f"masks: {len(masks)} masks for {len(images)} images")
    return [None if m is None else foreground(im, m, fill) for im, m in zip(images, masks, strict=True)]
