"""Per-step and per-set randomness, derived from (seed, step, set id) and nothing else.

Stateless randomness makes a run reproducible whatever the number of workers and whatever a
restart changed: a set drawn at step 120 gets the same crop, images, timestep and noise whether it
lands on worker 0 or worker 3, in the first attempt or after a failure. Nothing random needs to be
checkpointed, because every draw is recomputed from its key.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from training.shell.seeds import key_seed


def step_rng(seed: int, step: int, micro: int) -> np.random.Generator:
    """Randomness shared by every worker for one micro-batch (source and set size)."""
    return np.random.default_rng(key_seed(seed, "step", step, micro))


def set_rng(seed: int, step: int, micro: int, set_id: str) -> np.random.Generator:
    return np.random.default_rng(key_seed(seed, "set", step, micro, set_id))


def set_generator(seed: int, step: int, micro: int, set_id: str, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(key_seed(seed, "torch", step, micro, set_id))
    return g


def choose_source(rng: np.random.Generator, weights: list[float]) -> int:
    w = np.asarray(weights, dtype=np.float64)
    return int(rng.choice(len(w), p=w / w.sum()))


def balanced_set_size(seed: int, index: int, low: int, high: int) -> int:
    """The set size of micro-batch ``index`` (counted over the run): every block of ``high − low + 1``
    consecutive micro-batches holds each size in ``low..high`` once, in a keyed random order."""
    sizes = high - low + 1
    order = np.random.default_rng(key_seed(seed, "sizes", index // sizes)).permutation(sizes)
    return low + int(order[index % sizes])


def crop_set(
    pixels: np.ndarray, n: int, rng: np.random.Generator, resolution: int, min_scale: float, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n`` images of a set and crop them all the same way.

    ``pixels`` is ``(k, L, L, 3)`` uint8 (square, see ``data.decode_set``). One crop scale, one
    relative position and one flip are drawn per set, so the images of a set stay aligned with each
    other (a multi-view set keeps its geometry). Returns the chosen indices and ``(n, R, R, 3)`` uint8.
    """
    k, side = pixels.shape[0], pixels.shape[1]
    if not 1 <= n <= k:
        raise ValueError(f"set size: cannot take {n} images from a set of {k}")
    chosen = np.sort(rng.choice(k, size=n, replace=False))
    scale = rng.uniform(min_scale, 1.0)
    crop = max(1, round(side * scale))
    x0, y0 = (int(rng.integers(0, side - crop + 1)) for _ in range(2))
    do_flip = flip and rng.random() < 0.5
    out = np.empty((n, resolution, resolution, 3), dtype=np.uint8)
    for i, idx in enumerate(chosen):
        img = Image.fromarray(pixels[idx][y0 : y0 + crop, x0 : x0 + crop])
        img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
        if do_flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(img)
    return chosen, out
