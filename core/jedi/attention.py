"""Coupled self-attention: every image of a set attends to the tokens of all images of its set.

The UNet sees a batch of sets flattened to one batch of images, members of a set contiguous. In
every self-attention (``attn1``) layer the features ``(B·N, L, C)`` of ``B`` sets of ``N`` images
are viewed as ``(B, N·L, C)``, attended with diffusers' own SDPA processor (one fused
``scaled_dot_product_attention`` call, no materialised ``N·L × N·L`` matrix) and viewed back.
Cross-attention (``attn2``) stays per image, each image with its own prompt. With ``N = 1`` this
is exactly the base model's attention.

The layout travels with each UNet call in ``cross_attention_kwargs={"set_size": ...}``, never in
global state, so calls with different set sizes, or concurrent requests in one process, cannot
interfere. It is either an int ``N`` (all sets of ``N``) or a tuple of ``(num_sets, N)`` segments,
which lets guidance branches with different layouts share one batched UNet call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

SET_SIZE_KWARG = "set_size"
SetLayout = int | Sequence[tuple[int, int]]


def segments(layout: SetLayout, batch: int) -> list[tuple[int, int]]:
    """Normalise a layout to ``[(num_sets, set_size), ...]`` covering exactly ``batch`` images."""
    if isinstance(layout, int):
        if layout < 1 or batch % layout:
            raise ValueError(f"set_size: a batch of {batch} images is not a whole number of sets of {layout}")
        return [(batch // layout, layout)]
    segs = [(int(n), int(size)) for n, size in layout]
    if any(n < 0 or size < 1 for n, size in segs) or sum(n * size for n, size in segs) != batch:
        raise ValueError(f"set_size: segments {segs} do not cover a batch of {batch} images")
    return segs


class JeDiAttnProcessor:
    """Attention processor for one layer; ``coupled`` is True for self-attention layers only."""

    def __init__(self, coupled: bool):
        self.coupled = coupled
        self._sdpa = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        set_size: SetLayout = 1,
    ) -> torch.Tensor:
        if not self.coupled or set_size == 1:
            return self._sdpa(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if hidden_states.ndim != 3 or attn.group_norm is not None or attention_mask is not None:
            # Group-norm statistics and padding masks are per image; coupling them would change the
            # base model's behaviour, so such layers are refused rather than silently altered.
            raise ValueError("coupled attention needs token-sequence self-attention without group norm or masks")
        bn, length, channels = hidden_states.shape
        outputs, start = [], 0
        for num_sets, size in segments(set_size, bn):
            chunk = hidden_states[start : start + num_sets * size]
            start += num_sets * size
            if size == 1:
                outputs.append(self._sdpa(attn, chunk, None, None, temb))
                continue
            joint = chunk.reshape(num_sets, size * length, channels)
            outputs.append(self._sdpa(attn, joint, None, None, temb).reshape(num_sets * size, length, channels))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def set_jedi_attention(unet: torch.nn.Module) -> None:
    """Install coupled processors on ``attn1`` layers and per-image ones on all other attention."""
    processors = {name: JeDiAttnProcessor(coupled=name.endswith("attn1.processor")) for name in unet.attn_processors}
    unet.set_attn_processor(processors)


def attention_kwargs(layout: SetLayout, coupled: bool = True) -> dict[str, SetLayout]:
    """``cross_attention_kwargs`` for one UNet call. ``coupled=False`` is the ablation "coupled
    attention off": every image attends only to itself."""
    return {SET_SIZE_KWARG: layout if coupled else 1}
