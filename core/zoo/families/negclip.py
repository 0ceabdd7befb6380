"""The ``negclip`` family: NegCLIP (Yuksekgonul et al., ICLR 2023), the text scorer of NegCLIP-T.

NegCLIP is OpenAI's CLIP ViT-B/32 fine-tuned by its authors on COCO with hard-negative captions (word
order swapped, attributes exchanged), so its text tower reads composition that plain CLIP treats as a
bag of words. Self-distillation (paper 000, §3.2) scores a mined image against its prompt with it.

The weights are released as one file, ``negclip.pth`` (the authors' Google Drive id
``1ooVVPxB-tvptgmHlIMMFGV3Cg-IrhbRZ``, linked from ``mertyg/vision-language-models-are-bows``), a
checkpoint of open_clip's trainer: ``{"epoch", "name", "state_dict": {"module.<key>": tensor},
"optimizer"}``. References a config may use:

- that file (``/mnt/s3jedi/models/negclip.pth``), or a safetensors file holding the same state dict: the
  architecture is open_clip's ``ViT-B-32-quickgelu`` (NegCLIP started from OpenAI's weights through
  open_clip's OpenAI loader, which builds QuickGELU), with its 224 px OpenAI preprocessing;
- a directory in open_clip's local-dir layout (``open_clip_config.json`` + one weights file): what
  the tiny build writes, and what a converted checkpoint can be stored as.

Every route reads the weights through ``core.zoo.safety.load_state_dict`` with
``torch.load(weights_only=True)``; the trainer's checkpoint keeps its learning rate as a numpy
scalar, so the file needs ``numpy_scalars=True`` (numpy scalar and dtype reconstruction allowed,
nothing else), and the state dict is matched key for key (``load_strict``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch

from core.zoo.errors import ModelNotFoundError
from core.zoo.families.clip import _PRECISION, CONFIG_NAME, ClipScorer
from core.zoo.families.clip import build_shape as clip_shape
from core.zoo.families.clip import build_tiny as clip_tiny
from core.zoo.family import Family
from core.zoo.safety import load_state_dict, load_strict

ARCHITECTURE = "ViT-B-32-quickgelu"
PRODUCTION = "/mnt/s3jedi/models/negclip.pth"
"""Where the production profile expects the released file (``configs/sd14.yaml``: ``models.negclip``)."""
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")

build_tiny = partial(clip_tiny, seed=1)
"""The tiny CLIP's shape with its own seed: the stand-in must not be the tiny CLIP in disguise."""


def _weights_in(directory: Path) -> Path:
    found = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    safe = [p for p in found if p.suffix == ".safetensors"]
    if len(safe) == 1 or len(found) == 1:
        return (safe or found)[0]
    raise ModelNotFoundError(
        f"models.negclip: {directory} must hold exactly one weights file ({', '.join(WEIGHT_SUFFIXES)}), "
        f"found {[p.name for p in found] or 'none'}"
    )


def _architecture(source: Path) -> tuple[str, Path]:
    """open_clip model name of the architecture, and the weights file, of a reference."""
    if source.is_file():
        return ARCHITECTURE, source
    if not (source / CONFIG_NAME).is_file():
        raise ModelNotFoundError(
            f"models.negclip: {source} has no {CONFIG_NAME}; point models.negclip at the released negclip.pth "
            "file itself, or at a directory in open_clip's local-dir layout"
        )
    return f"local-dir:{source}", _weights_in(source)


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The model's state dict from a weights file: the trainer's ``state_dict`` entry, DDP's
    ``module.`` prefix removed (as open_clip's own loader does)."""
    state = load_state_dict(path, numpy_scalars=True)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load(source: str, *, device: str = "cpu", dtype: torch.dtype | None = None) -> ClipScorer:
    """Build the architecture with open_clip (no weights, in the requested precision), then load the
    checkpoint into it through ``core.zoo.safety``."""
    import open_clip

    if dtype not in _PRECISION:
        raise ValueError(f"negclip: unsupported dtype {dtype}; use one of float32, float16, bfloat16")
    name, weights = _architecture(Path(source))
    with _no_random_init_warning():
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None, load_weights=False, precision=_PRECISION[dtype], device=device
        )
    state = checkpoint_state(weights)
    try:
        load_strict(model, state, f"negclip {weights}")
    except RuntimeError as exc:  # torch's own error for tensors of the wrong shape
        raise ValueError(
            f"negclip {weights}: checkpoint does not match the architecture {name}: {str(exc).splitlines()[-1].strip()}"
        ) from exc
    return ClipScorer(
        model=model.eval(),
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(name),
        name=source,
        device=device,
        input_dtype=dtype or torch.float32,
    )


class _RandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextmanager
def _no_random_init_warning() -> Iterator[None]:
    """open_clip warns that a model built without weights is random; here the weights follow at once."""
    quiet = _RandomInitWarning()
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


def build_shape(device: str = "cpu", dtype: torch.dtype | None = None, variant: str | None = None) -> Any:
    """NegCLIP's architecture (CLIP ViT-B/32) at random init; it has no other variant."""
    if variant not in (None, "ViT-B-32"):
        raise ValueError(f"models.negclip: NegCLIP is ViT-B-32 only, got shape variant {variant!r}")
    return clip_shape(device=device, dtype=dtype, variant="ViT-B-32")


FAMILIES: list[Family] = [
    Family(
        name="negclip",
        summary="NegCLIP ViT-B/32 text/image embedder for NegCLIP-T scores (open_clip)",
        library="open_clip_torch",
        production=PRODUCTION,
        build_tiny=build_tiny,
        load=load,
        build_shape=build_shape,
    )
]
