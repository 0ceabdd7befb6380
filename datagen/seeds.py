"""Seeds derived from the config seed and stable names, never from order or time.

A row's randomness depends only on ``(config seed, subject id, stage, item)``, so a rerun, a resumed
run or a run with different batch sizes draws exactly the same numbers for the same subject.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (``derive_seed(cfg.seed, "teapot-00", "collages", 2)``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def generator(seed: int):
    """A CPU torch generator: diffusers draws CPU noise and moves it, so images match across devices."""
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
