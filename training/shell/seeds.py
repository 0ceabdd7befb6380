"""Randomness keyed by what it is for, never by what ran before it.

A step's draws (which images, crops, noise, timesteps) come from generators seeded with a digest of
(seed, what, step), so a resumed, restarted or re-scaled run draws exactly what an uninterrupted one
would, and nothing random needs a checkpoint. ``key_seed`` keys JeDi's per-set draws;
``step_generator`` a fine-tuning step's (its digest is kept as it was, so runs made before still
resume to the same weights).
"""

from __future__ import annotations

import hashlib

import torch


def key_seed(*parts: object) -> int:
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def step_generator(seed: int, key: str, step: int) -> torch.Generator:
    """The CPU generator of step ``step`` of whatever ``key`` names (a subject, a scene)."""
    digest = hashlib.sha256(f"{seed}:{key}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
