"""Prompts to the text encoder's hidden states, the way every Stable Diffusion checkpoint expects.

Padding to the tokenizer's maximum length (77 for CLIP) and truncating is what SD was trained with;
the UNet's cross-attention sees the last hidden states of every position, padding included.
"""

from __future__ import annotations

import torch


def token_ids(tokenizer, texts: list[str], device) -> torch.Tensor:
    return tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, texts: list[str], device) -> torch.Tensor:
    """(len(texts), L, D) last hidden states, without gradients (frozen text encoder)."""
    return text_encoder(token_ids(tokenizer, texts, device))[0]
