"""CoRe's test-time optimization: before sampling a prompt, a few steps on the learned embedding only,
with the context losses of *that* prompt and no diffusion loss (there is no image at test time).

The attention loss needs noisy latents; with no image they are Gaussian noise at random timesteps, on
the latent grid of the requested output size. The UNet and every other embedding row are left exactly
as they are; ``optimized_for`` puts the learned rows back after the prompt is sampled, so each prompt
starts from the trained embedding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from core.attention_maps import capture_cross_attention
from core.config.finetune import CoReSection
from core.subjects import SubjectCard
from training.finetune.context_reg import context_losses, prompt_pairs
from training.finetune.tokens import LearnedToken, RowGuard, find_token


def optimize_embedding_for_prompt(
    pipe, card: SubjectCard, prompt: str, core: CoReSection, steps: int, side: int, seed: int
) -> LearnedToken:
    """Optimise the rows of ``card``'s token in ``pipe``'s text encoder for ``prompt`` (a template with
    ``{0}`` for the subject, optionally ``{1}`` for its class word). Modifies ``pipe`` in place."""
    if prompt.count("{0}") != 1:
        raise ValueError(f"prompt: {prompt!r} needs {{0}} exactly once where the subject goes (test-time optimization)")
    text_encoder, unet = pipe.text_encoder, pipe.unet
    device = next(unet.parameters()).device
    token = find_token(pipe.tokenizer, card.tokens[0], device)
    capture_cross_attention(unet)
    pairs = prompt_pairs(pipe.tokenizer, [prompt.replace("{1}", card.class_word)], token.text, card.class_word, device)
    weight = text_encoder.get_input_embeddings().weight
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    weight.requires_grad_(True)
    guard = RowGuard(weight, token.ids)
    optimizer = torch.optim.AdamW([weight], lr=core.stage1.optim.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    latent_side = side // pipe.vae_scale_factor
    shape = (1, unet.config.in_channels, latent_side, latent_side)
    num_train = pipe.scheduler.config.num_train_timesteps
    try:
        for _ in range(steps):
            noisy = torch.randn(shape, generator=g).to(device, unet.dtype)
            timesteps = torch.randint(0, num_train, (1,), generator=g).to(device)
            l_emb, l_attn = context_losses(
                text_encoder, unet, pairs, noisy, timesteps, with_attention=core.lambda_attn > 0
            )
            loss = core.lambda_emb * l_emb + (core.lambda_attn * l_attn if l_attn is not None else 0.0)
            loss.backward()
            guard.mask_grad()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            guard.restore()
    finally:
        weight.requires_grad_(False)
    return token


@contextmanager
def optimized_for(
    pipe, card: SubjectCard, prompt: str, core: CoReSection, steps: int, side: int, seed: int
) -> Iterator[None]:
    """``pipe`` with the token's rows optimised for ``prompt``; the trained rows come back afterwards."""
    weight = pipe.text_encoder.get_input_embeddings().weight
    token = find_token(pipe.tokenizer, card.tokens[0], weight.device)
    trained = weight.detach()[token.ids].clone()
    optimize_embedding_for_prompt(pipe, card, prompt, core, steps, side, seed)
    try:
        yield
    finally:
        with torch.no_grad():
            weight[token.ids] = trained
