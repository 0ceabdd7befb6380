"""Stage 3, instances: Grounding DINO finds the category in each collage, SAM outlines each box.

Each detection is checked on its own (``check_instance``): too small, too large, cut by the image
border, overlapping a better detection, or with an (almost) empty mask → an item reject with the
numbers. The SAM mask is clipped to its box: a box-prompted mask can leak onto a neighbouring
instance of the same collage, and a crop must hold exactly one instance.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

from core import zoo
from core.config import S3JediConfig
from core.config.datagen import InstancesSection
from core.grounded_segmentation import Instance, find_instances
from core.s3 import encode_image, encode_mask
from datagen.imaging import decode_items
from datagen.rows import Item, Reject, RejectRow, WorkRow
from datagen.stage import Stage

NAME = "instances"

Box = tuple[int, int, int, int]


def pixel_box(box_xyxy: tuple[float, float, float, float], width: int, height: int) -> Box:
    """The smallest whole-pixel box covering a float box, inside the image."""
    x0, y0, x1, y1 = box_xyxy
    return (
        max(0, math.floor(x0)),
        max(0, math.floor(y0)),
        min(width, math.ceil(x1)),
        min(height, math.ceil(y1)),
    )


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_mask(mask: np.ndarray, box: Box) -> np.ndarray:
    """The mask restricted to the box, cropped to it."""
    x0, y0, x1, y1 = box
    return mask[y0:y1, x0:x1].copy()


def check_instance(
    box: Box, mask_in_box: np.ndarray, width: int, height: int, kept: list[Box], cfg: InstancesSection
) -> tuple[str, str] | None:
    """``(reason, details)`` when an instance must be dropped, else None."""
    x0, y0, x1, y1 = box
    box_area = (x1 - x0) * (y1 - y0)
    area = box_area / (width * height)
    if box_area == 0 or area < cfg.min_area:
        return "too-small", f"box area {area:.4f} of the image < min_area {cfg.min_area}"
    if area > cfg.max_area:
        return "too-large", f"box area {area:.4f} of the image > max_area {cfg.max_area}"
    mx, my = cfg.border_margin * width, cfg.border_margin * height
    if x0 < mx or y0 < my or x1 > width - mx or y1 > height - my:
        return "cut-by-border", f"box {box} within border_margin {cfg.border_margin} of the edge of {width}x{height}"
    for other in kept:
        overlap = iou(box, other)
        if overlap > cfg.max_overlap:
            return "overlaps", f"IoU {overlap:.3f} with better box {other} > max_overlap {cfg.max_overlap}"
    fill = float(mask_in_box.sum()) / box_area
    if fill < cfg.min_mask_fill:
        return "empty-mask", f"mask covers {fill:.3f} of its box < min_mask_fill {cfg.min_mask_fill}"
    return None


def select_instances(
    instances: list[Instance], image: Image.Image, source: str, cfg: InstancesSection
) -> tuple[list[tuple[Box, np.ndarray, float, int]], list[Reject]]:
    """Accepted ``(box, mask in box, score, detection index)`` best first, at most ``max_per_image``;
    the rest as rejects."""
    kept: list[tuple[Box, np.ndarray, float, int]] = []
    rejects: list[Reject] = []
    for j, inst in enumerate(instances):
        if len(kept) == cfg.max_per_image:
            break
        box = pixel_box(inst.box_xyxy, image.width, image.height)
        mask = box_mask(inst.mask, box)
        problem = check_instance(box, mask, image.width, image.height, [k[0] for k in kept], cfg)
        if problem:
            rejects.append(Reject(NAME, problem[0], problem[1], f"{source} box {j}"))
        else:
            kept.append((box, mask, inst.score, j))
    return kept, rejects


class InstanceCutter:
    def __init__(self, detector, segmenter, cfg: InstancesSection):
        self.detector = detector
        self.segmenter = segmenter
        self.cfg = cfg

    def __call__(self, row: WorkRow) -> WorkRow:
        decoded, rejects = decode_items(row, NAME, with_masks=False)
        items: list[Item] = []
        detections = 0
        for item, image, _ in decoded:
            found = find_instances(
                self.detector,
                self.segmenter,
                image,
                row.category,
                self.cfg.box_threshold,
                self.cfg.text_threshold,
                self.cfg.max_detections,
            )
            detections += len(found)
            kept, dropped = select_instances(found, image, item.source, self.cfg)
            rejects.extend(dropped)
            for box, mask, score, j in kept:
                crop = image.crop(box)
                items.append(
                    Item(encode_image(crop), encode_mask(mask), item.prompt, item.seed, f"{item.source} box {j}", score)
                )
        if not items:
            raise RejectRow(
                "no-instances",
                f"{len(decoded)} collages, {detections} detections of {row.category!r}, none usable",
                rejects,
            )
        return dataclasses.replace(row, items=items, rejects=[*row.rejects, *rejects])


def load(cfg: S3JediConfig, device: str) -> InstanceCutter:
    detector = zoo.load("detector", cfg.models.detector, device=device, home=cfg.home)
    segmenter = zoo.load("segmenter", cfg.models.segmenter, device=device, home=cfg.home)
    return InstanceCutter(detector, segmenter, cfg.datagen.instances)


STAGE = Stage(NAME, version="1", families=("detector", "segmenter"), section=InstancesSection, load=load)
