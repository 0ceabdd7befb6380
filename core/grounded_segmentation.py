"""Cutting a named subject out of an image: Grounding DINO finds it, SAM outlines it.

The S3 builder uses it per instance (each box of a collage is one candidate instance) and the masked
scorers use the union (the subject's foreground in a generated image). One implementation, so the
dataset and the metrics agree on what "the subject" is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Instance:
    box_xyxy: tuple[float, float, float, float]
    """In pixels of the image."""
    score: float
    """Detector confidence."""
    phrase: str
    mask: np.ndarray
    """bool (H, W), True on the subject."""
    mask_score: float
    """SAM's predicted IoU of the mask."""


def find_instances(
    detector,
    segmenter,
    image: Image.Image,
    caption: str,
    box_threshold: float,
    text_threshold: float,
    max_detections: int | None = None,
) -> list[Instance]:
    """The detections of ``caption`` in ``image`` with their SAM masks, best detection first.

    ``max_detections`` caps the boxes handed to SAM (best first): SAM's time and memory grow per box,
    and Grounding DINO has 900 queries, so a low threshold or a busy image would otherwise segment
    hundreds of boxes of which a handful are used."""
    image = image.convert("RGB")
    detections = detector.detect(image, caption, box_threshold=box_threshold, text_threshold=text_threshold)
    detections = detections[:max_detections]
    if not detections:
        return []
    boxes = np.array([d.box_xyxy for d in detections], dtype=np.float32)
    masks, scores = segmenter.segment(image, boxes)
    return [Instance(d.box_xyxy, d.score, d.phrase, masks[i], float(scores[i])) for i, d in enumerate(detections)]


def subject_mask(
    detector,
    segmenter,
    image: Image.Image,
    caption: str,
    box_threshold: float,
    text_threshold: float,
    max_instances: int = 1,
) -> np.ndarray | None:
    """Union of the masks of the ``max_instances`` best detections; None when nothing is detected."""
    instances = find_instances(detector, segmenter, image, caption, box_threshold, text_threshold, max_instances)
    if not instances:
        return None
    return np.logical_or.reduce([inst.mask for inst in instances])
