"""The registry of model families: what each one is, how its tiny stand-in is built, how it loads.

A *family* is a role in the system (the text-to-image base, the CLIP scorer, the detector, ...).
Each family knows two things: how to write its tiny, randomly initialised model into a directory in
the library's own format, and how to load a model of that family from a local directory or a hub
id through the library's real loading function. Because tiny and production models go through the
same ``load``, switching between them is a config change only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    summary: str
    library: str
    production: str
    """The default production reference (a hub id), used by the production config profiles."""
    build_tiny: Callable[[Path], None]
    """Write the tiny model into an empty directory. Must seed itself: same bytes on every call."""
    load: Callable[..., Any]
    """``load(source: str, *, device: str, dtype) -> model or bundle``; source is a dir or hub id."""
    build_shape: Callable[..., Any] | None = None
    """``build_shape(device, dtype) -> model or bundle``: the production architecture at random init
    (``device="meta"``: shapes only, nothing allocated). See ``core.zoo.shapes``."""


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
