"""Image grids per subject: the real photos on top, then one row per method on the same prompts and seeds.

A grid is what a person checks first ("is that the same dog, and is it in the snow?"): the photos
row shows what the scores compare against, each column is one (prompt, seed) with its prompt written
above it, and every method's row draws that column from the same initial noise.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MISSING = (235, 235, 235)
LABEL_WIDTH = 2  # label column, in thumbnails


def _thumb(image: Image.Image, side: int) -> Image.Image:
    """Shorter side to ``side``, centre crop: the same framing as the generators' references."""
    image = image.convert("RGB")
    scale = side / min(image.size)
    w, h = max(side, round(image.width * scale)), max(side, round(image.height * scale))
    image = image.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def subject_grid(
    photos: list[Image.Image], columns: list[str], rows: list[tuple[str, list[Image.Image | None]]], side: int
) -> Image.Image:
    """``columns``: the label of each (prompt, seed) column; ``rows``: (method label, one image or
    None per column). Width = max(photos, columns) thumbnails plus the label column."""
    width = max(len(photos), len(columns))
    label_px, caption_px = LABEL_WIDTH * side, side // 2
    grid = Image.new("RGB", (label_px + width * side, (1 + len(rows)) * side + caption_px), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font_size = max(8, side // 9)
    font = ImageFont.load_default(size=font_size)
    chars = max(8, int(label_px / (0.55 * font_size)))
    draw.multiline_text((4, 4), textwrap.fill("subject photos (scored against)", chars), fill=INK, font=font)
    for c, image in enumerate(photos):
        grid.paste(_thumb(image, side), (label_px + c * side, 0))
    small = ImageFont.load_default(size=max(7, side // 12))
    for c, text in enumerate(columns):
        lines = textwrap.wrap(text, max(6, int(side / (0.55 * max(7, side // 12)))))[:3]
        draw.multiline_text((label_px + c * side + 2, side + 2), "\n".join(lines), fill=INK, font=small)
    for r, (label, images) in enumerate(rows):
        top = side + caption_px + r * side
        draw.multiline_text((4, top + 4), textwrap.fill(label, chars), fill=INK, font=font)
        for c, image in enumerate(images):
            box = (label_px + c * side, top)
            if image is None:
                grid.paste(Image.new("RGB", (side, side), MISSING), box)
            else:
                grid.paste(_thumb(image, side), box)
    return grid


def write_grid(
    path: Path,
    photos: list[Image.Image],
    columns: list[str],
    rows: list[tuple[str, list[Image.Image | None]]],
    side: int,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subject_grid(photos, columns, rows, side).save(path, quality=90)
    return path
