"""Cross-attention maps captured by an attention processor, for losses and masks built on them.

CoRe regularizes the cross-attention maps of a prompt's context tokens, and the concept-driven EM
method derives concept masks from them. Both need the softmax probabilities that fused attention
kernels (``scaled_dot_product_attention``) never materialise, and both must leave the UNet's output
exactly as it is.

``capture_cross_attention(unet)`` wraps the processor every attention layer already has (diffusers'
``AttnProcessor2_0``, JeDi's coupled processor, any other) in ``AttentionMapProcessor``. A UNet call
without a store behaves exactly as before. A call with
``cross_attention_kwargs={"attention_store": store}`` still computes each layer's output with the
wrapped processor, and in cross-attention layers additionally computes ``softmax(QKᵀ/√d)`` from the
layer's own projections (so LoRA layers and q/k norms count) and records it, averaged over heads, in
the store. The maps keep their autograd graph, so a loss on them trains whatever produced the text
states. The store travels with the call and is never kept on the model, so concurrent calls capture
independently. Self-attention layers are wrapped too, only so diffusers accepts the keyword.

``token_maps`` turns a store into one spatial map per token, averaged over every cross-attention layer
(each laid out on its own grid and resized to a common one); ``timestep_averaged_maps`` also averages
over several noise levels of the same latent — how the concept-driven EM reads a concept's mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

STORE_KWARG = "attention_store"


class AttentionStore:
    """Head-averaged cross-attention probabilities of one UNet call: layer name → ``(B, Q, T)``
    (``Q`` latent positions of that layer, ``T`` text tokens)."""

    def __init__(self) -> None:
        self.maps: dict[str, torch.Tensor] = {}

    def add(self, layer: str, probs: torch.Tensor) -> None:
        if layer in self.maps:
            raise ValueError(f"attention_store: layer {layer} was called twice; use one store per UNet call")
        self.maps[layer] = probs


def cross_attention_probs(
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax(QKᵀ·scale)`` of one cross-attention layer, averaged over heads: ``(B, Q, T)``.

    Follows the steps of diffusers' ``AttnProcessor`` up to the probabilities (spatial inputs
    flattened, group norm, cross norm, head split, optional q/k norms, upcasting)."""
    if hidden_states.ndim == 4:
        b, c, h, w = hidden_states.shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    batch, length, _ = hidden_states.shape
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    if attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, encoder_hidden_states.shape[1], batch)
    query = attn.head_to_batch_dim(attn.to_q(hidden_states))
    key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    probs = attn.get_attention_scores(query, key, attention_mask)
    return probs.view(batch, attn.heads, length, -1).mean(dim=1)


class AttentionMapProcessor:
    """Wraps a layer's processor; records cross-attention maps when a store comes with the call."""

    def __init__(self, name: str, inner, cross: bool):
        self.name = name
        self.inner = inner
        self.cross = cross

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        attention_store: AttentionStore | None = None,
    ) -> torch.Tensor:
        kwargs = {"encoder_hidden_states": encoder_hidden_states, "attention_mask": attention_mask}
        if temb is not None:
            kwargs["temb"] = temb
        out = self.inner(attn, hidden_states, **kwargs)
        if attention_store is not None and self.cross and encoder_hidden_states is not None:
            attention_store.add(
                self.name, cross_attention_probs(attn, hidden_states, encoder_hidden_states, attention_mask)
            )
        return out


def capture_cross_attention(unet: torch.nn.Module) -> list[str]:
    """Wrap every attention processor of ``unet`` (idempotent); returns the cross-attention layer names.

    Cross-attention layers are the ``attn2`` layers of diffusers' transformer blocks."""
    processors = {}
    for name, proc in unet.attn_processors.items():
        layer = name.removesuffix(".processor")
        if isinstance(proc, AttentionMapProcessor):
            processors[name] = proc
        else:
            processors[name] = AttentionMapProcessor(layer, proc, cross=layer.endswith("attn2"))
    cross = [p.name for p in processors.values() if p.cross]
    unet.set_attn_processor(processors)  # diffusers empties the dict it is given
    return cross


def layer_grid(queries: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` grid of a layer with ``queries`` positions in a UNet fed ``latent_size`` latents
    (each level halves the sides, rounding up like diffusers' stride-2 convolutions)."""
    h, w = latent_size
    for level in range(16):
        grid = (math.ceil(h / 2**level), math.ceil(w / 2**level))
        if grid[0] * grid[1] == queries:
            return grid
    raise ValueError(f"attention maps: {queries} positions fit no level of a {h}x{w} latent")


def token_maps(store: AttentionStore, positions: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cross-attention of the tokens at ``positions`` averaged over every captured layer: ``(B, K, *size)``.

    ``positions`` is ``(K,)`` (the same token indices in every row) or ``(B, K)``. Each layer's maps are
    laid out on that layer's grid, resized bilinearly to ``size`` (the latent size) and averaged with
    equal weight per layer, so low-resolution layers count as much as high-resolution ones. The autograd
    graph is kept: a loss on the maps trains the token embeddings."""
    if not store.maps:
        raise ValueError("token_maps: no cross-attention maps were captured (capture_cross_attention(unet)?)")
    total = None
    for probs in store.maps.values():
        batch, queries, _ = probs.shape
        index = positions.expand(batch, -1) if positions.ndim == 1 else positions
        picked = torch.gather(probs, 2, index.unsqueeze(1).expand(-1, queries, -1))  # (B, Q, K)
        grid = layer_grid(queries, size)
        maps = picked.transpose(1, 2).reshape(batch, -1, *grid).float()
        if grid != tuple(size):
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        total = maps if total is None else total + maps
    return total / len(store.maps)


@torch.no_grad()
def timestep_averaged_maps(
    unet: torch.nn.Module,
    noise_scheduler,
    latents: torch.Tensor,
    states: torch.Tensor,
    positions: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """``(K, h, w)`` maps of the tokens at ``positions`` (``(K,)``) for one latent ``(1, C, h, w)``,
    averaged over every cross-attention layer and over ``timesteps`` ``(T,)``.

    The latent is noised to each timestep with ``noise`` ``(T, C, h, w)`` (the caller draws it, so the
    maps are reproducible) and the ``T`` noisy copies go through the UNet in one call with the text
    states ``(1, L, D)``. The UNet must have been prepared with ``capture_cross_attention``."""
    count = timesteps.shape[0]
    noisy = noise_scheduler.add_noise(latents.expand(count, -1, -1, -1), noise, timesteps)
    store = AttentionStore()
    unet(noisy, timesteps, states.expand(count, -1, -1), cross_attention_kwargs={STORE_KWARG: store})
    return token_maps(store, positions, tuple(latents.shape[-2:])).mean(dim=0)
