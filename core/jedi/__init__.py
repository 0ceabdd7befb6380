"""JeDi: joint-image diffusion for finetuning-free personalization (Zeng et al., CVPR 2024).

- ``attention``: coupled self-attention processors (sets attend jointly, one SDPA call).
- ``unet``: widening a base UNet to noisy ‖ reference ‖ mask input; the JeDi config record.
- ``objective``: the training loss over noised sets.
- ``pipeline``: ``JeDiPipeline`` with the replacement trick and image guidance.
"""

from core.jedi.attention import JeDiAttnProcessor, attention_kwargs, set_jedi_attention
from core.jedi.objective import LossOutput, jedi_loss
from core.jedi.pipeline import JeDiPipeline, JeDiPipelineOutput
from core.jedi.unet import JeDiSpec, is_jedi_unet, jedi_spec, unet_input, widen_unet

__all__ = [
    "JeDiAttnProcessor",
    "JeDiPipeline",
    "JeDiPipelineOutput",
    "JeDiSpec",
    "LossOutput",
    "attention_kwargs",
    "is_jedi_unet",
    "jedi_loss",
    "jedi_spec",
    "set_jedi_attention",
    "unet_input",
    "widen_unet",
]
