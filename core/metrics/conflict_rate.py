"""The conflict rate of paper 000 (§4): how often the subject token and the prompt's context collide.

A generated image *conflicts* when it lacks the subject or the prompt's context so badly that one of
its scores falls below a minimum: its identity score (CLIP-MI, masked CLIP-I) below ``min_identity``
or its text score (NegCLIP-T) below ``min_text``. The conflict rate is the share of such images.

An image without an identity score (no subject found, so no masked score: NaN) counts as conflicting:
the subject is missing, which is one of the two failures the rate counts. The paper gives no
threshold values; the caller states them (``selfdistill.conflict``) and they are recorded with
every rate.
"""

from __future__ import annotations

import numpy as np


def conflicted(identity: np.ndarray, text: np.ndarray, min_identity: float, min_text: float) -> np.ndarray:
    """(N,) bool: identity score below ``min_identity`` or text score below ``min_text`` (NaN = below)."""
    identity, text = np.asarray(identity, dtype=np.float64), np.asarray(text, dtype=np.float64)
    if identity.shape != text.shape:
        raise ValueError(f"conflicted: identity and text scores differ in shape, {identity.shape} vs {text.shape}")
    with np.errstate(invalid="ignore"):
        return ~(identity >= min_identity) | ~(text >= min_text)


def conflict_rate(identity: np.ndarray, text: np.ndarray, min_identity: float, min_text: float) -> float:
    """Share of conflicting images (NaN for none)."""
    flags = conflicted(identity, text, min_identity, min_text)
    return float(flags.mean()) if flags.size else float("nan")
