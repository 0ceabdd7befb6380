"""The ToyWorld renderer: one subject on a flat scene, anti-aliased, deterministic.

Everything is computed in numpy float64 from the layout (centre and radius in pixels): no font,
no Pillow drawing, no global state, so the same layout gives the same bytes on every machine and
the oracle can re-render any shape as a template (analysis by synthesis, see ``oracle``).

Shapes are defined in unit coordinates around their centre (radius 1) and covered with a 4×4
supersampling grid per pixel; the coverage is the alpha of the body colour over the scene colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from core.toyworld.world import COLOURS, SCENES, SHAPES, Subject

SUPERSAMPLE = 4
MIN_RADIUS, MAX_RADIUS = 0.26, 0.38
"""Radius range as a fraction of the image side (a body covers roughly a quarter to half of it)."""


@dataclass(frozen=True)
class Layout:
    """Where the body is: centre ``(cx, cy)`` and radius ``r`` in pixels of a ``size``-pixel image."""

    cx: float
    cy: float
    r: float


def random_layout(rng: np.random.Generator, size: int) -> Layout:
    """A radius in [MIN_RADIUS, MAX_RADIUS]·size and a centre that keeps the body 1 px inside the image."""
    r = rng.uniform(MIN_RADIUS, MAX_RADIUS) * size
    lo, hi = r + 1.0, size - 1.0 - r
    return Layout(float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)), float(r))


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean membership of unit coordinates (``v`` points down) in ``shape``."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # apex up, flat base
        return (v <= 0.8) & (np.abs(u) <= (v + 0.95) / 1.75)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.34) & (av <= 1.0)) | ((av <= 0.34) & (au <= 1.0))
    if shape == "ring":
        d2 = u * u + v * v
        return (d2 <= 1.0) & (d2 >= 0.5 * 0.5)
    raise ValueError(f"shape: {shape!r} is not one of {SHAPES}")


@lru_cache(maxsize=8)
def _subpixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel centres ``(size·S, size·S)`` in pixel coordinates."""
    offsets = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    return np.meshgrid(offsets, offsets)  # x varies along columns, y along rows


def coverage(shape: str, layout: Layout, size: int) -> np.ndarray:
    """(size, size) float64 in [0, 1]: the fraction of each pixel the body covers."""
    x, y = _subpixel_grid(size)
    hit = inside(shape, (x - layout.cx) / layout.r, (y - layout.cy) / layout.r).astype(np.float64)
    return hit.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def composite(alpha: np.ndarray, body: tuple[int, int, int], scene: tuple[int, int, int]) -> np.ndarray:
    """(size, size, 3) uint8: ``body`` over ``scene`` with per-pixel ``alpha``."""
    bg = np.asarray(scene, dtype=np.float64)
    fg = np.asarray(body, dtype=np.float64)
    rgb = bg + alpha[..., None] * (fg - bg)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def render(subject: Subject, scene: str, layout: Layout, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The image (``size``×``size``×3 uint8) and the subject mask (bool, coverage ≥ 0.5)."""
    if scene not in SCENES:
        raise ValueError(f"scene: {scene!r} is not one of {tuple(SCENES)}")
    alpha = coverage(subject.shape, layout, size)
    return composite(alpha, COLOURS[subject.colour], SCENES[scene]), alpha >= 0.5
