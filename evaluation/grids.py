"""Image grids per subject: the real photos on top, then one row per prompt with its samples.

A grid is what a person checks first ("is that the same dog, and is it in the snow?"), so every
row carries its prompt and the photos row shows what the scores compare against.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
LABEL_WIDTH = 2  # label column, in thumbnails


def _thumb(image: Image.Image, side: int) -> Image.Image:
    """Shorter side to ``side``, centre crop: the same framing as the generators' references."""
    image = image.convert("RGB")
    scale = side / min(image.size)
    w, h = max(side, round(image.width * scale)), max(side, round(image.height * scale))
    image = image.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def subject_grid(photos: list[Image.Image], rows: list[tuple[str, list[Image.Image]]], side: int) -> Image.Image:
    """``rows``: (label, images) per prompt. Columns = max(photos, samples per row)."""
    columns = max([len(photos), *(len(images) for _, images in rows)])
    label_px = LABEL_WIDTH * side
    grid = Image.new("RGB", (label_px + columns * side, (1 + len(rows)) * side), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font_size = max(8, side // 9)
    font = ImageFont.load_default(size=font_size)
    chars = max(8, int(label_px / (0.55 * font_size)))
    for r, (label, images) in enumerate([("subject photos (scored against)", photos), *rows]):
        draw.multiline_text((4, r * side + 4), textwrap.fill(label, chars), fill=INK, font=font)
        for c, image in enumerate(images):
            grid.paste(_thumb(image, side), (label_px + c * side, r * side))
    return grid


def write_grid(path: Path, photos: list[Image.Image], rows: list[tuple[str, list[Image.Image]]], side: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subject_grid(photos, rows, side).save(path, quality=90)
    return path
