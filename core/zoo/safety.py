"""Loading raw weight files without executing anything they contain.

Pickle (``.pt``/``.pth``/``.bin``) can run arbitrary code while loading. The zoo therefore reads
safetensors whenever they exist and otherwise goes through ``torch.load(weights_only=True)``, which
only reconstructs tensors and plain containers and raises on anything else.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.zoo.errors import UnsafeWeightsError


def _numpy_scalar_globals() -> list:
    """What unpickling a numpy scalar needs: the scalar constructor (under numpy 1's and 2's module
    names) and the dtypes it is built from. They rebuild numbers from bytes and call nothing else."""
    import numpy as np

    scalar = np._core.multiarray.scalar
    dtypes = [np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType, np.dtypes.Int32DType]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def load_state_dict(path: str | Path, *, numpy_scalars: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (safetensors, or a pickle restricted to tensors).

    Checkpoints that wrap the state dict (``{"model": {...}}``, as Grounding DINO's do, or a trainer's
    ``{"state_dict": {...}, "optimizer": ...}``) are unwrapped. ``numpy_scalars``: also accept numpy
    scalars, which trainers leave in such checkpoints (open_clip's stores its learning rate as one).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals() if numpy_scalars else []):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnsafeWeightsError(
            f"{path}: refused to load; it is not a plain tensor checkpoint "
            f"(torch.load(weights_only=True) said: {str(exc).splitlines()[0]}). "
            "Convert it to safetensors on a trusted machine."
        ) from exc
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UnsafeWeightsError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path))


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict`` that names what is missing or unexpected instead of silently ignoring it
    (groundingdino-py's own loader uses ``strict=False``, which would hide a wrong checkpoint)."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{what}: checkpoint does not match the architecture: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def refuse_pickle_only_dir(source: str, family: str) -> None:
    """Name the real problem when some part of a local checkpoint exists only as a pickle.

    Checked per folder: a pipeline folder whose ``unet/`` holds only ``diffusion_pytorch_model.bin``
    while the other components have safetensors is refused as a pickle, naming ``unet/…``. Loading
    with ``use_safetensors=True`` would refuse it anyway, but with "no file named
    ….safetensors", which reads like a missing download rather than a refused unsafe format. A
    pickle next to safetensors in the same folder is left alone: the safetensors are what loads.
    """
    path = Path(source)
    if not path.is_dir():
        return
    pickles = []
    for folder in sorted({p.parent for p in path.rglob("*") if p.suffix in PICKLE_SUFFIXES and p.is_file()}):
        if not any(folder.glob("*.safetensors")):
            pickles += sorted(str(p.relative_to(path)) for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeWeightsError(
            f"models.{family}: {source} has only pickled weights for {', '.join(pickles)} (no safetensors "
            "beside them); a pickle could run code when loaded, so it was refused. Convert them to "
            "safetensors on a trusted machine (model.save_pretrained(dir, safe_serialization=True))"
        )
