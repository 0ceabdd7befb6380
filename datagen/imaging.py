"""Image checks shared by the stages: bad inputs and bad model outputs become item rejects, not crashes.

A corrupt PNG handed to a stage, or a generated image of the wrong size or without any content (what a
diffusion model returns after NaNs, e.g. an fp16 VAE overflow), costs that one image, not the run.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from core.s3 import CorruptImageError, decode_image, decode_mask
from datagen.rows import Item, Reject, RejectRow, WorkRow


def decode_items(
    row: WorkRow, stage: str, with_masks: bool
) -> tuple[list[tuple[Item, Image.Image, np.ndarray | None]], list[Reject]]:
    """Decoded ``(item, image, mask)`` of a row; undecodable items become ``corrupt-image`` rejects.

    Raises ``RejectRow`` when no item is left."""
    decoded, rejects = [], []
    for item in row.items:
        try:
            image = decode_image(item.image)
            mask = decode_mask(item.mask) if with_masks else None
            if mask is not None and mask.shape != (image.height, image.width):
                raise CorruptImageError(f"mask {mask.shape} does not match image {(image.height, image.width)}")
        except CorruptImageError as exc:
            rejects.append(Reject(stage, "corrupt-image", str(exc), item.source))
            continue
        decoded.append((item, image, mask))
    if not decoded:
        raise RejectRow("no-images", f"none of {len(row.items)} input images is readable", rejects)
    return decoded, rejects


def output_problem(image: Image.Image, size: tuple[int, int]) -> str | None:
    """Why a generated image is unusable, or None."""
    if image.size != size:
        return f"generated {image.size[0]}x{image.size[1]}, expected {size[0]}x{size[1]}"
    if np.ptp(np.asarray(image)) == 0:
        return "generated image is a single colour (the model produced no content, e.g. NaNs)"
    return None


def model_dtype(precision: str, device: str) -> torch.dtype | None:
    """fp32 on CPU always; on GPU ``auto`` means fp16 (what SDXL, SD2 inpainting and pix2pix ship)."""
    if device == "cpu" or precision == "fp32":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16
