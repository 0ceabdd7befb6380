"""Detector + segmenter composition on a real photo with the tiny models."""

from __future__ import annotations

import numpy as np
from PIL import Image

from core import zoo
from core.grounded_segmentation import find_instances, subject_mask


def test_instances_have_boxes_inside_and_masks_of_the_image_size(zoo_home, dreambooth):
    det, seg = zoo.load("detector", "tiny", home=zoo_home), zoo.load("segmenter", "tiny", home=zoo_home)
    image = Image.open(dreambooth / "images" / "dog" / "00.jpg")
    found = find_instances(det, seg, image, "dog", box_threshold=0.0, text_threshold=0.0)
    assert found, "thresholds of 0 must keep every query"
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    for inst in found:
        x0, y0, x1, y1 = inst.box_xyxy
        assert 0 <= x0 <= x1 <= image.width and 0 <= y0 <= y1 <= image.height
        assert inst.mask.shape == (image.height, image.width) and inst.mask.dtype == bool
    union = subject_mask(det, seg, image, "dog", 0.0, 0.0, max_instances=2)
    assert np.array_equal(union, found[0].mask | found[1].mask)
    assert subject_mask(det, seg, image, "dog", box_threshold=1.01, text_threshold=0.0) is None


def test_max_detections_segments_only_the_best_boxes(zoo_home, dreambooth):
    """Grounding DINO keeps up to 900 queries at a low threshold; SAM sees only the best few."""
    det, seg = zoo.load("detector", "tiny", home=zoo_home), zoo.load("segmenter", "tiny", home=zoo_home)
    image = Image.open(dreambooth / "images" / "dog" / "00.jpg")
    every = find_instances(det, seg, image, "dog", box_threshold=0.0, text_threshold=0.0)
    best = find_instances(det, seg, image, "dog", box_threshold=0.0, text_threshold=0.0, max_detections=3)
    assert len(every) > 3 and len(best) == 3
    assert [b.box_xyxy for b in best] == [e.box_xyxy for e in every[:3]]
    for b, e in zip(best, every, strict=False):
        assert (b.mask != e.mask).mean() < 0.001, "a box's mask must not depend on the other boxes"
