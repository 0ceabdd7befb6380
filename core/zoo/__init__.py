"""The model zoo: the only way the rest of s3jedi loads a model.

``load(family, ref)`` takes a reference from the config:

- ``"tiny"``: the randomly initialised stand-in that ``s3jedi zoo build`` writes under
  ``$S3JEDI_HOME/zoo/tiny/<family>`` in the library's own format;
- a local directory (absolute, ``./``-relative or ``~``);
- a hub id (``CompVis/stable-diffusion-v1-4``), resolved by the library itself, so
  ``HF_HUB_OFFLINE=1`` and the Hugging Face cache behave as users expect;
- ``"shape"`` (or ``"shape:VARIANT"``): the production architecture at random init, built from the
  published configs in ``core.zoo.shapes`` without any download — for shape checks
  (``device="meta"``) and speed/memory benchmarks.

The first three go through the same loading function of the family's library; ``shape`` returns
the same kind of object.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.paths import zoo_dir
from core.zoo.build import build, is_built
from core.zoo.errors import ModelNotFoundError, UnsafeWeightsError, ZooError
from core.zoo.family import Family
from core.zoo.registry import families as all_families
from core.zoo.registry import get

__all__ = [
    "Family",
    "ModelNotFoundError",
    "UnsafeWeightsError",
    "ZooError",
    "all_families",
    "build",
    "get",
    "load",
    "resolve",
]

BUILT_PROFILES = ("tiny",)
SHAPE = "shape"


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or os.path.exists(ref)


def resolve(family: str, ref: str, home: Path | None = None) -> str:
    """Turn a config reference into what the family's loader takes: a directory or a hub id."""
    get(family)
    if ref == SHAPE or ref.startswith(SHAPE + ":"):
        if get(family).build_shape is None:
            raise ModelNotFoundError(f"models.{family}: no '{SHAPE}' entry for this family")
        return ref
    if ref in BUILT_PROFILES:
        root = zoo_dir(ref, home)
        if not is_built(family, root):
            raise ModelNotFoundError(
                f"the {ref} model for '{family}' is not built (looked in {root / family}); "
                f"run `s3jedi zoo build --profile {ref}`"
            )
        return str(root / family)
    if _looks_like_path(ref):
        path = Path(ref).expanduser()
        if not path.exists():
            raise ModelNotFoundError(f"models.{family}: no such directory or file: {path}")
        return str(path.resolve())
    return ref


def load(family: str, ref: str = "tiny", *, home: Path | None = None, device: str = "cpu", dtype=None) -> Any:
    source = resolve(family, ref, home)
    if source == SHAPE or source.startswith(SHAPE + ":"):
        variant = source.partition(":")[2] or None
        return get(family).build_shape(device=device, dtype=dtype, variant=variant)
    try:
        return get(family).load(source, device=device, dtype=dtype)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        if Path(source).exists() or not offline:
            raise
        raise ModelNotFoundError(
            f"models.{family}: {ref!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"download it where the hub is reachable, or point models.{family} at a local directory "
            f"(or use 'tiny' after `s3jedi zoo build`). Library said: {str(exc).splitlines()[0]}"
        ) from exc
