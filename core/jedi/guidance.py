"""The guidance settings of JeDi sampling: names, defaults and their one validation.

Plain Python (no torch), so configs, the HTTP API and the CLI check a request with the same rule and
the same one-line message as the pipeline, without importing the model code. What each mode computes
is explained in ``core.jedi.pipeline``.
"""

from __future__ import annotations

import math

GUIDANCE_MODES = ("paper", "paper-unknown", "decomposed")
"""``paper``: Eq. 3 of the paper (ε⁰ = the same set, reference channel zeroed, mask kept, null text);
``paper-unknown``: Eq. 3 with the references marked unknown in ε⁰; ``decomposed``: the project's
variant with a separate text scale."""
DEFAULT_GUIDANCE = "paper"
DEFAULT_IMAGE_GUIDANCE_SCALE = 2.0
"""λ of ``paper`` guidance, chosen on the ToyWorld validation seeds: identity 0.50 / 0.56 / 0.54 / 0.46 /
0.38 at λ = 1 / 2 / 3 / 5 / 7 (docs/decisions.md, JeDi model)."""
DEFAULT_TEXT_GUIDANCE_SCALE = 7.5
"""``s`` of the ``decomposed`` variant when none is given (Stable Diffusion's usual scale)."""
DEFAULT_JOINT_TARGETS = True
"""Measured on the ToyWorld validation seeds: identity +0.05 [−0.02, +0.13] (paired) at 0.63× the time
per image (docs/performance.md, joint targets)."""


def check_guidance(guidance: str, image_guidance_scale: float, guidance_scale: float | None) -> float | None:
    """Validate the guidance settings; returns the text scale ``s`` (``None`` outside ``decomposed``)."""
    if guidance not in GUIDANCE_MODES:
        raise ValueError(f"guidance: must be one of {', '.join(GUIDANCE_MODES)}, got {guidance!r}")
    if not math.isfinite(image_guidance_scale) or image_guidance_scale < 0:
        raise ValueError(f"image_guidance_scale: must be a finite number >= 0, got {image_guidance_scale}")
    if guidance != "decomposed":
        if guidance_scale is not None:
            raise ValueError(
                f"guidance_scale: only guidance 'decomposed' has a separate text scale; '{guidance}' guidance has "
                "one scale for text and references together, image_guidance_scale (Eq. 3)"
            )
        return None
    s = DEFAULT_TEXT_GUIDANCE_SCALE if guidance_scale is None else guidance_scale
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"guidance_scale: must be a finite number >= 0, got {s}")
    return s
