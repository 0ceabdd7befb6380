"""CoRe's context regularization (paper 003, Eqs. 3-4): keep the *context* of a prompt as the
super-category word would leave it.

For a regularization prompt with the new token (``a photo of <t> on the beach``) and the same prompt
with the class word (``a photo of dog on the beach``):

- ``L_emb`` (Eq. 3) = mean over context tokens i of ``1 - cos(E(v_i), E(v'_i))``, the text encoder's
  outputs for token i in the two prompts;
- ``L_attn`` (Eq. 4) = mean over context tokens i of ``(μ_i - μ'_i)²``, where ``μ_i`` is the mean value
  of token i's cross-attention maps: the mean over a layer's spatial positions (heads averaged), then
  over the UNet's cross-attention layers (16 in SD) — the order of the authors' code, so a 64×64
  layer counts as much as an 8×8 one. Over a batch of noisy latents the term is averaged.

Context tokens are every position of the prompt except the subject span (``<t>`` in one prompt, the
class word's tokens in the other) and the padding after the end token: the start and end tokens
count (the paper's index set is "after removing the indices of S* and the super-category", and the
authors' code keeps both; ``docs/decisions.md``). The id sequences are assembled from the tokenized
prefix, subject and suffix, so the context positions are exact whatever the lengths of the token and
the class word. The class-word side is a fixed target (no gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.attention_maps import STORE_KWARG, AttentionStore


@dataclass(frozen=True)
class PromptPairs:
    subject_ids: torch.Tensor  # (B, L) prompts with the token
    class_ids: torch.Tensor  # (B, L) the same prompts with the class word
    subject_context: torch.Tensor  # (B, C) positions of the context tokens in subject_ids
    class_context: torch.Tensor  # (B, C) the same tokens' positions in class_ids


def _words(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids if text.strip() else []


def prompt_pairs(tokenizer, templates: list[str], subject_text: str, class_word: str, device=None) -> PromptPairs:
    """Token ids and context positions for ``templates`` (each with one ``{0}``) filled both ways."""
    length = tokenizer.model_max_length
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    subject_words, class_words = _words(tokenizer, subject_text), _words(tokenizer, class_word)
    rows = {"subject_ids": [], "class_ids": [], "subject_context": [], "class_context": []}
    for template in templates:
        if template.count("{0}") != 1:
            raise ValueError(f"regularization prompt {template!r}: needs {{0}} exactly once")
        before, after = template.split("{0}")
        prefix, suffix = _words(tokenizer, before), _words(tokenizer, after)
        for side, span in (("subject", subject_words), ("class", class_words)):
            ids = [bos, *prefix, *span, *suffix, eos]
            if len(ids) > length:
                raise ValueError(f"regularization prompt {template!r}: {len(ids)} tokens, at most {length}")
            rows[f"{side}_ids"].append(ids + [pad] * (length - len(ids)))
            start = 1 + len(prefix) + len(span)
            rows[f"{side}_context"].append(
                [0, *range(1, 1 + len(prefix)), *range(start, start + len(suffix)), len(ids) - 1]
            )
    width = {len(c) for c in rows["subject_context"]}
    if len(width) > 1:
        raise ValueError("prompt_pairs: templates of one batch must have the same number of context words")
    return PromptPairs(**{k: torch.tensor(v, device=device) for k, v in rows.items()})


def _gather(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``x[b, positions[b]]`` along dim 1: (B, L, D) → (B, C, D)."""
    return torch.gather(x, 1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def embedding_loss(subject_states: torch.Tensor, class_states: torch.Tensor, pairs: PromptPairs) -> torch.Tensor:
    """Eq. 3: mean over context tokens (and prompts) of ``1 - cos`` of their output embeddings."""
    a = _gather(subject_states, pairs.subject_context)
    b = _gather(class_states, pairs.class_context)
    return (1 - F.cosine_similarity(a, b, dim=-1)).mean()


def mean_attention(store: AttentionStore, positions: torch.Tensor) -> torch.Tensor:
    """``μ`` of Eq. 4 for the tokens at ``positions`` (``(P, C)``, P = 1 or the batch): each layer's
    maps averaged over its spatial positions, then over the layers → ``(B, C)``."""
    if not store.maps:
        raise ValueError("attention_loss: no cross-attention maps were captured (capture_cross_attention(unet)?)")
    per_layer = []
    for probs in store.maps.values():  # (B, Q, T), heads averaged
        index = positions.expand(probs.shape[0], -1)
        per_layer.append(torch.gather(probs.mean(dim=1), 1, index))
    return torch.stack(per_layer).mean(dim=0)


def attention_loss(subject_store: AttentionStore, class_store: AttentionStore, pairs: PromptPairs) -> torch.Tensor:
    """Eq. 4: mean over context tokens (and noisy latents) of ``(μ_i - μ'_i)²``."""
    if subject_store.maps.keys() != class_store.maps.keys():
        raise ValueError("attention_loss: the two prompts' UNet calls captured different layers")
    mu = mean_attention(subject_store, pairs.subject_context)
    mu_class = mean_attention(class_store, pairs.class_context)
    return ((mu - mu_class) ** 2).mean()


def context_losses(
    text_encoder, unet, pairs: PromptPairs, noisy: torch.Tensor, timesteps: torch.Tensor, with_attention: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(L_emb, L_attn)`` for one prompt pair (``pairs`` of batch 1); ``L_attn`` runs the UNet twice on
    the noisy latents ``noisy`` ``(B, C, h, w)`` at ``timesteps`` ``(B,)``, each latent with the pair's
    prompts (``None`` when ``with_attention`` is false). Gradients flow into the subject side."""
    subject_states = text_encoder(pairs.subject_ids)[0]
    with torch.no_grad():
        class_states = text_encoder(pairs.class_ids)[0]
    l_emb = embedding_loss(subject_states, class_states, pairs)
    if not with_attention:
        return l_emb, None
    batch = noisy.shape[0]
    subject_store, class_store = AttentionStore(), AttentionStore()
    unet(noisy, timesteps, subject_states.expand(batch, -1, -1), cross_attention_kwargs={STORE_KWARG: subject_store})
    with torch.no_grad():
        unet(noisy, timesteps, class_states.expand(batch, -1, -1), cross_attention_kwargs={STORE_KWARG: class_store})
    return l_emb, attention_loss(subject_store, class_store, pairs)
