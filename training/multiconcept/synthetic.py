"""A scene whose true masks are known: two subjects' photos pasted onto a third photo as background.

Each subject is a centre crop of one of its DreamBooth photos, cut to an ellipse and pasted at a
seeded position (first subject in the left half, second in the right half; the halves swap from one
image to the next so position alone cannot name a concept). The background is a blurred crop of the
background subject's photo, so it reads as a surface rather than as a third object. The pasted
ellipses are the ground truth of the two subject concepts, the rest that of the background concept —
exact by construction, which is what the mask-IoU curve needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.config.multiconcept import ConceptSection
from core.jedi.images import resize_center_crop
from training.multiconcept.scene import write_scene
from training.shell.images import image_paths

SUBJECT_SCALE = 0.42
"""Side of a pasted subject / side of the image."""


def _photo(folder: Path, index: int, side: int) -> Image.Image:
    paths = image_paths(str(folder), "--photos")
    if not paths:
        raise ValueError(f"synthetic scene: no photos in {folder}")
    with Image.open(paths[index % len(paths)]) as img:
        return resize_center_crop(img.convert("RGB"), side, side)


def _ellipse(side: int) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    inset = side // 12
    ImageDraw.Draw(mask).ellipse((inset, inset, side - 1 - inset, side - 1 - inset), fill=255)
    return mask


def synthetic_scene(
    photos: Path,
    out: str,
    subjects: tuple[str, str] = ("dog", "cat"),
    background: str = "backpack",
    images: int = 2,
    side: int = 256,
    seed: int = 0,
) -> str:
    """Write a scene folder of ``images`` pictures of ``subjects`` on ``background`` (DreamBooth folder
    names under ``photos``); concepts ``<c0>`` = first subject, ``<c1>`` = second, ``<c2>`` = background."""
    rng = np.random.default_rng(seed)
    size = int(side * SUBJECT_SCALE)
    cut = _ellipse(size)
    pictures, truth = [], []
    for m in range(images):
        canvas = _photo(photos / background, m, side).filter(ImageFilter.GaussianBlur(side / 24))
        masks = []
        for k, name in enumerate(subjects):
            half = (k + m) % 2  # which half of the image this subject goes to
            x = int(rng.integers(half * side // 2, (half + 1) * side // 2 - size + 1))
            y = int(rng.integers(0, side - size + 1))
            canvas.paste(_photo(photos / name, m, size), (x, y), cut)
            mask = np.zeros((side, side), dtype=bool)
            mask[y : y + size, x : x + size] = np.asarray(cut) > 127
            masks.append(mask)
        masks.append(~np.logical_or.reduce(masks))
        pictures.append(canvas)
        truth.append(masks)
    concepts = [ConceptSection(token=f"<c{k}>", initializer=name) for k, name in enumerate([*subjects, "background"])]
    return write_scene(out, pictures, concepts, truth)
