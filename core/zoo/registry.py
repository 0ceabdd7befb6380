"""The registry of model families: every ``Family`` (``core.zoo.family``) of ``core.zoo.families``, by name.

The family modules import torch and their libraries, so they are imported on first use, not with
``core.zoo``.
"""

from __future__ import annotations

from core.zoo.family import Family


def _collect() -> dict[str, Family]:
    from core.zoo.families import clip, detector, diffusion, dino, jedi, llm, negclip, segmenter

    families: dict[str, Family] = {}
    for module in (diffusion, jedi, clip, negclip, dino, detector, segmenter, llm):
        for fam in module.FAMILIES:
            if fam.name in families:
                raise RuntimeError(f"model family {fam.name!r} registered twice")
            families[fam.name] = fam
    return families


_FAMILIES: dict[str, Family] | None = None


def families() -> dict[str, Family]:
    global _FAMILIES
    if _FAMILIES is None:
        _FAMILIES = _collect()
    return _FAMILIES


def get(name: str) -> Family:
    fams = families()
    if name not in fams:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(sorted(fams))}")
    return fams[name]
