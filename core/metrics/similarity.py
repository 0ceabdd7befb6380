"""Embedding similarities and foreground-only images: the building blocks of every image score.

Masked variants of a score compare only the subject: pixels outside the subject mask are set to one
fixed colour, so the background cannot raise or lower the similarity.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

FOREGROUND_FILL = (255, 255, 255)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b`` (default ``a``), fp32."""
    a = torch.nn.functional.normalize(a.float(), dim=-1)
    b = a if b is None else torch.nn.functional.normalize(b.float(), dim=-1)
    return a @ b.T


def mean_pairwise(similarity: torch.Tensor) -> float:
    """Mean off-diagonal entry of a square similarity matrix (NaN for fewer than 2 rows)."""
    n = similarity.shape[0]
    if n < 2:
        return float("nan")
    off = similarity.sum() - similarity.diagonal().sum()
    return float(off / (n * (n - 1)))


def foreground(
    image: Image.Image, mask: np.ndarray | Image.Image, fill: tuple[int, int, int] = FOREGROUND_FILL
) -> Image.Image:
    """The image with everything outside ``mask`` (True/nonzero = subject) set to ``fill``."""
    rgb = np.asarray(image.convert("RGB"))
    m = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
    if m.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"mask: shape {m.shape[:2]} differs from the image's {rgb.shape[:2]}")
    out = np.empty_like(rgb)
    out[...] = np.asarray(fill, dtype=np.uint8)
    keep = m.astype(bool)
    out[keep] = rgb[keep]
    return Image.fromarray(out)


def paired_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of row i of ``a`` with row i of ``b`` (an image and *its* prompt), fp32."""
    if a.shape != b.shape:
        raise ValueError(f"paired_cosine: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    a = torch.nn.functional.normalize(a.float(), dim=-1)
    b = torch.nn.functional.normalize(b.float(), dim=-1)
    return (a * b).sum(dim=-1)


def mean_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """For every row of ``a``, its mean cosine similarity to all rows of ``b`` (NaN when ``b`` is empty).

    This is the DreamBooth image score: a generated image against each real photo, averaged.
    """
    if b.shape[0] == 0:
        return torch.full((a.shape[0],), float("nan"))
    return cosine_matrix(a, b).mean(dim=1)
