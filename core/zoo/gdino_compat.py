"""Lets groundingdino-py 0.4.0 run on transformers 5.

Grounding DINO does not call ``BertModel.forward``; its ``BertModelWarper`` copies three helper
methods off the ``BertModel`` instance and builds the attention masks itself:
``get_extended_attention_mask``, ``invert_attention_mask`` and ``get_head_mask``. transformers 4
provided them through ``ModuleUtilsMixin``; transformers 5 removed them (masks are now built by
``masking_utils``), so constructing a Grounding DINO model fails with ``AttributeError``.

``install()`` adds ports of the transformers-4 implementations (v4.4x ``modeling_utils``) to
``transformers.BertModel``, and only where the class lacks them, so it is idempotent and becomes a
no-op should a future transformers bring them back. The masks they produce are additive
(0 where attention is allowed, ``finfo(dtype).min`` where it is not), which is exactly what the
transformers-5 Bert attention (eager and SDPA) adds to its scores. Only the device-deprecation
warnings of the originals are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "create_extended_attention_mask_for_decoder",
    "get_extended_attention_mask",
    "get_head_mask",
    "install",
    "invert_attention_mask",
]


def invert_attention_mask(self: torch.nn.Module, encoder_attention_mask: Tensor) -> Tensor:
    """A 0/1 mask (2-D ``[batch, seq]`` or 3-D ``[batch, from, to]``) to an additive 4-D mask
    broadcastable over heads, in the model's dtype."""
    if encoder_attention_mask.dim() == 3:
        extended = encoder_attention_mask[:, None, :, :]
    elif encoder_attention_mask.dim() == 2:
        extended = encoder_attention_mask[:, None, None, :]
    else:  # transformers 4 failed here with an UnboundLocalError; say what is wrong instead
        raise ValueError(f"attention mask must be 2-D or 3-D, got shape {tuple(encoder_attention_mask.shape)}")
    extended = extended.to(dtype=self.dtype)
    return (1.0 - extended) * torch.finfo(self.dtype).min


def create_extended_attention_mask_for_decoder(
    input_shape: Sequence[int], attention_mask: Tensor, device: torch.device | None = None
) -> Tensor:
    """Causal mask combined with a padding mask, as 0/1 values of ``attention_mask.dtype``
    (``[batch, 1, seq, prefix + seq]``; a prefix of ones covers cached past positions)."""
    if device is None:
        device = attention_mask.device
    batch_size, seq_length = input_shape
    seq_ids = torch.arange(seq_length, device=device)
    causal_mask = seq_ids[None, None, :].repeat(batch_size, seq_length, 1) <= seq_ids[None, :, None]
    causal_mask = causal_mask.to(attention_mask.dtype)
    if causal_mask.shape[1] < attention_mask.shape[1]:
        prefix_seq_len = attention_mask.shape[1] - causal_mask.shape[1]
        ones = torch.ones((batch_size, seq_length, prefix_seq_len), device=device, dtype=causal_mask.dtype)
        causal_mask = torch.cat([ones, causal_mask], dim=-1)
    return causal_mask[:, None, :, :] * attention_mask[:, None, None, :]


def get_extended_attention_mask(
    self: torch.nn.Module,
    attention_mask: Tensor,
    input_shape: Sequence[int],
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """A 0/1 self-attention mask to the additive ``[batch, 1, from|1, to]`` mask.

    3-D masks (Grounding DINO passes its per-phrase block-diagonal ``[batch, seq, seq]`` mask) are
    only given a head axis; 2-D padding masks are broadcast over query positions, and combined with
    a causal mask when the model is a decoder.
    """
    if dtype is None:
        dtype = self.dtype
    if attention_mask.dim() == 3:
        extended = attention_mask[:, None, :, :]
    elif attention_mask.dim() == 2:
        if self.config.is_decoder:
            extended = create_extended_attention_mask_for_decoder(input_shape, attention_mask, device)
        else:
            extended = attention_mask[:, None, None, :]
    else:
        raise ValueError(
            f"Wrong shape for input_ids (shape {tuple(input_shape)}) or attention_mask "
            f"(shape {tuple(attention_mask.shape)})"
        )
    extended = extended.to(dtype=dtype)
    return (1.0 - extended) * torch.finfo(dtype).min


def _convert_head_mask_to_5d(self: torch.nn.Module, head_mask: Tensor, num_hidden_layers: int) -> Tensor:
    """``[heads]`` or ``[layers, heads]`` to ``[layers, batch=1, heads, 1, 1]`` in the model's dtype."""
    if head_mask.dim() == 1:
        head_mask = head_mask.unsqueeze(0).unsqueeze(0).unsqueeze(-1).unsqueeze(-1)
        head_mask = head_mask.expand(num_hidden_layers, -1, -1, -1, -1)
    elif head_mask.dim() == 2:
        head_mask = head_mask.unsqueeze(1).unsqueeze(-1).unsqueeze(-1)
    if head_mask.dim() != 5:
        raise ValueError(f"head_mask.dim != 5, instead {head_mask.dim()}")
    return head_mask.to(dtype=self.dtype)


def get_head_mask(
    self: torch.nn.Module,
    head_mask: Tensor | None,
    num_hidden_layers: int,
    is_attention_chunked: bool = False,
) -> Tensor | list[None]:
    """``[None] * num_hidden_layers`` when no mask is given (Grounding DINO's only case), else the
    5-D per-layer mask (with a trailing axis when attention is chunked)."""
    if head_mask is None:
        return [None] * num_hidden_layers
    head_mask = _convert_head_mask_to_5d(self, head_mask, num_hidden_layers)
    if is_attention_chunked:
        head_mask = head_mask.unsqueeze(-1)
    return head_mask


_METHODS = {
    "get_extended_attention_mask": get_extended_attention_mask,
    "invert_attention_mask": invert_attention_mask,
    "get_head_mask": get_head_mask,
}


def install() -> list[str]:
    """Give ``transformers.BertModel`` the three methods where it lacks them.

    Returns the names that were added (empty on a second call, or on a transformers that still has
    them). Only ``BertModel`` is touched, the one class groundingdino-py wraps.
    """
    from transformers import BertModel

    added = []
    for name, fn in _METHODS.items():
        if not hasattr(BertModel, name):
            setattr(BertModel, name, fn)
            added.append(name)
    return added
