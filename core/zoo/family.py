"""What a model family is: a role in the system, its tiny stand-in and its loader.

A *family* is a role (the text-to-image base, the CLIP scorer, the detector, ...). Each family knows
how to write its tiny, randomly initialised model into a directory in the library's own format, and
how to load a model of that family from a local directory or a hub id through the library's real
loading function. Because tiny and production models go through the same ``load``, switching between
them is a config change only. The family modules (``core.zoo.families``) define them; the registry
(``core.zoo.registry``) collects them.
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
