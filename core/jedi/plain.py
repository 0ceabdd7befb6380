"""A plain Stable Diffusion pipeline from a JeDi pipeline: what the JeDi model draws with no reference.

The fine-tuning methods (DreamBooth, TI, two-stage, CoRe) train and sample a stock
``StableDiffusionPipeline`` with a 4-channel UNet; a model trained only in JeDi format (the
ToyWorld base stage) has none. Without a reference a JeDi UNet's input is ``noisy ‖ 0 ‖ 1``: the
reference channels are zero and contribute nothing, the mask channel is a constant 1. So the plain
``conv_in`` keeps the noisy-latent weights and folds the mask channel's weights into the bias
(``b + Σ W_mask``). That is exact wherever the 3×3 kernel lies inside the latent; on the one-pixel
border the JeDi conv sees zero padding where the mask would be 1, so there the plain UNet differs
by the mask weights that fall outside — a position-dependent bias a stock ``Conv2d`` cannot hold.
The fold matches the interior exactly and is the closest stock ``Conv2d`` to the border; the
ToyWorld report measures what it costs (the converted base's floor row).

Self-attention of a set of one with coupling off is ordinary self-attention, so the plain
pipeline's default attention processors compute what the JeDi processors compute for it.
"""

from __future__ import annotations

import copy

import torch

from core.jedi.unet import CONFIG_KEY, jedi_spec


@torch.no_grad()
def plain_unet(unet):
    """A stock ``UNet2DConditionModel`` equal to the JeDi ``unet`` given no reference (a new model;
    ``unet`` is left untouched)."""
    from diffusers import UNet2DConditionModel

    spec = jedi_spec(unet)
    c = spec.latent_channels
    config = {k: v for k, v in unet.config.items() if k != CONFIG_KEY}
    config["in_channels"] = c
    plain = UNet2DConditionModel.from_config(config).to(device=unet.device, dtype=unet.dtype)
    state = {k: v for k, v in unet.state_dict().items() if not k.startswith("conv_in.")}
    weight = unet.conv_in.weight
    state["conv_in.weight"] = weight[:, :c].clone()
    state["conv_in.bias"] = unet.conv_in.bias + weight[:, 2 * c].sum(dim=(1, 2))
    plain.load_state_dict(state, strict=True)
    return plain.eval()


def _in_dtype(module, dtype):
    """``module`` itself when it already computes in ``dtype``, else a cast copy (the JeDi pipeline keeps
    its own: float16 files load as float32 in diffusers but as float16 in transformers)."""
    return module if module.dtype == dtype else copy.deepcopy(module).to(dtype)


def plain_pipeline(pipe):
    """A ``StableDiffusionPipeline`` around ``plain_unet(pipe.unet)`` with the JeDi pipeline's VAE, text
    encoder and tokenizer (shared, or copied into the UNet's dtype) and a copy of its scheduler."""
    from diffusers import StableDiffusionPipeline

    dtype = pipe.unet.dtype
    return StableDiffusionPipeline(
        vae=_in_dtype(pipe.vae, dtype),
        text_encoder=_in_dtype(pipe.text_encoder, dtype),
        tokenizer=pipe.tokenizer,
        unet=plain_unet(pipe.unet),
        scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
