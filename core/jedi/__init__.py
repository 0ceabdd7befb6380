"""JeDi: joint-image diffusion for finetuning-free personalization (Zeng et al., CVPR 2024).

- ``attention``: coupled self-attention processors (sets attend jointly, one SDPA call).
- ``unet``: widening a base UNet to noisy ‖ reference ‖ mask input; the JeDi config record.
- ``objective``: the training loss over noised sets.
- ``guidance``: guidance modes, defaults and their validation (no torch: configs and APIs use it).
- ``pipeline``: ``JeDiPipeline`` with the replacement trick, image guidance and joint targets.

Names are imported on first use, so ``core.jedi.guidance`` stays light for configs and CLIs.
"""

from __future__ import annotations

import importlib

_HOME = {
    "JeDiAttnProcessor": "attention",
    "attention_kwargs": "attention",
    "set_jedi_attention": "attention",
    "LossOutput": "objective",
    "jedi_loss": "objective",
    "JeDiPipeline": "pipeline",
    "JeDiPipelineOutput": "pipeline",
    "JeDiSpec": "unet",
    "is_jedi_unet": "unet",
    "jedi_spec": "unet",
    "unet_input": "unet",
    "widen_unet": "unet",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
