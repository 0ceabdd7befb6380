"""The ToyWorld oracle: which scene, which body colour and which shape an image shows.

It reads any RGB image of the world's size (a fresh render, a VAE reconstruction or a generated
sample) in four steps, each robust to blur and mild noise:

1. **scene** — the median colour of the image border (bodies stay 1 px inside the frame), matched
   to the nearest scene colour;
2. **alpha** — how far each pixel has moved from that scene colour towards the body, per pixel;
   pixels further than ``FOREGROUND_DISTANCE`` from the scene form the foreground;
3. **colour** — the median of the clearly-foreground pixels, matched to the nearest body colour;
4. **shape** — analysis by synthesis: for every shape, the renderer's own template placed at the
   foreground's centroid with the radius that gives its area, tried at a few radii around it; the shape
   whose best template is closest (mean squared alpha error) wins. Moments place a fresh render's
   template exactly; the radius steps absorb the area a blurry sample gains or loses.

An image with no foreground reads as ``shape = colour = None``: a sample that drew no body can
never count as the right subject.

**Abstention.** Step 4 always names the closest shape, so formless marks get a shape too (a Gaussian
blob reads as a circle, noise on an empty scene as a ring). The reading is *unreadable* when the
winning template fits poorly (error above ``MAX_SHAPE_ERROR``) or barely beats the runner-up (margin
below ``MIN_SHAPE_MARGIN``). Calibrated on 600 random renders each (docs/decisions.md, ToyWorld):
fresh renders 100 % readable, moderately blurred ones (Gaussian σ = 0.7 px, with or without noise
σ = 8) 99.7 %; empty scenes with noise σ = 25 and random blotches 0 %, Gaussian blobs 13 %.
Evaluation counts an unreadable image as a miss (``is_subject``) and reports the always-answering
verdict beside it (``is_subject(..., abstain=False)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from core.toyworld.render import Layout, coverage, inside
from core.toyworld.world import COLOURS, SCENES, SHAPES, Subject

FOREGROUND_DISTANCE = 40.0
"""RGB distance from the scene colour beyond which a pixel belongs to the body (palettes are ≥ 75 apart)."""
MIN_FOREGROUND_PIXELS = 3
MAX_SHAPE_ERROR = 0.02
"""Above this mean squared alpha error the best template does not describe the mark (blurred true
renders stay below 0.016 in 99.5 % of cases; noise and blotches lie above 0.04)."""
MIN_SHAPE_MARGIN = 0.0015
"""Below this lead of the best template over the runner-up the shape is a guess."""
_SCENE_NAMES = tuple(SCENES)
_SCENE_RGB = np.array([SCENES[s] for s in _SCENE_NAMES], dtype=np.float64)
_COLOUR_NAMES = tuple(COLOURS)
_COLOUR_RGB = np.array([COLOURS[c] for c in _COLOUR_NAMES], dtype=np.float64)
_RADIUS_STEPS = (0.88, 0.94, 1.0, 1.06, 1.12)


@dataclass(frozen=True)
class Reading:
    scene: str
    colour: str | None
    shape: str | None
    foreground: int
    """Number of foreground pixels."""
    shape_error: float
    """Mean squared alpha error of the winning template (0 on a fresh render of its own shape)."""
    shape_margin: float = float("nan")
    """How much larger the runner-up template's error is."""

    @property
    def readable(self) -> bool:
        """A body whose shape the templates describe clearly (see the module docstring)."""
        return self.shape is not None and self.shape_error <= MAX_SHAPE_ERROR and self.shape_margin >= MIN_SHAPE_MARGIN

    def is_subject(self, subject: Subject, abstain: bool = True) -> bool:
        """The right shape and colour; an unreadable image counts as a miss unless ``abstain`` is False
        (the always-answering verdict)."""
        if abstain and not self.readable:
            return False
        return self.shape == subject.shape and self.colour == subject.colour


@cache
def _unit_geometry(shape: str) -> tuple[float, float, float]:
    """Area and centroid offset (du, dv) of ``shape`` at radius 1, on a fine grid."""
    t = (np.arange(800) + 0.5) / 400 - 1.0
    u, v = np.meshgrid(t, t)
    hit = inside(shape, u, v)
    cell = (2.0 / 800) ** 2
    return float(hit.sum() * cell), float(u[hit].mean()), float(v[hit].mean())


def _nearest(rgb: np.ndarray, palette: np.ndarray) -> int:
    return int(np.argmin(((palette - rgb) ** 2).sum(axis=1)))


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def _fit_shape(alpha: np.ndarray, shape: str) -> float:
    """Smallest mean squared error between ``alpha`` and the shape's template placed by moments."""
    size = alpha.shape[0]
    area, du, dv = _unit_geometry(shape)
    total = alpha.sum()
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    mx, my = (alpha * xs).sum() / total, (alpha * ys).sum() / total
    r0 = float(np.sqrt(total / area))
    best = np.inf
    for scale in _RADIUS_STEPS:
        r = r0 * scale
        layout = Layout(mx - du * r, my - dv * r, r)
        best = min(best, float(((coverage(shape, layout, size) - alpha) ** 2).mean()))
    return best


def read(image: np.ndarray) -> Reading:
    """Read one ``H×W×3`` uint8 image (square)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] != img.shape[1] or img.shape[0] < 4:
        raise ValueError(f"image: expected a square H×W×3 array of at least 4 px, got shape {img.shape}")
    rgb = img.astype(np.float64)
    bg = np.median(_border(rgb), axis=0)
    scene = _SCENE_NAMES[_nearest(bg, _SCENE_RGB)]
    distance = np.sqrt(((rgb - bg) ** 2).sum(axis=2))
    fg = distance > FOREGROUND_DISTANCE
    count = int(fg.sum())
    if count < MIN_FOREGROUND_PIXELS:
        return Reading(scene, None, None, count, float("nan"))
    core = distance >= 0.6 * distance[fg].max()
    body = np.median(rgb[core], axis=0)
    colour_index = _nearest(body, _COLOUR_RGB)
    direction = _COLOUR_RGB[colour_index] - bg
    alpha = np.clip(((rgb - bg) @ direction) / (direction @ direction), 0.0, 1.0)
    alpha = np.where(distance > 0.5 * FOREGROUND_DISTANCE, alpha, 0.0)  # scene noise is not body
    errors = {shape: _fit_shape(alpha, shape) for shape in SHAPES}
    best, runner_up = sorted(errors, key=errors.get)[:2]
    return Reading(scene, _COLOUR_NAMES[colour_index], best, count, errors[best], errors[runner_up] - errors[best])
