"""The ToyWorld base pipeline: a standard diffusers ``StableDiffusionPipeline`` directory sized for the world.

It is what ``models.sd`` points at for the recipe's first stage, so the JeDi trainer, ``zoo.load("sd",
path)`` and ``JeDiPipeline.from_base`` use it unchanged. Components:

- the VAE fitted on renders (``vae.fit_vae``);
- the toy CLIP tokenizer and a random, frozen CLIP text encoder (``text``);
- a randomly initialised cross-attention UNet on the latent grid (trained by the recipe's stages);
- a DDIM scheduler whose ``prediction_type`` / ``beta_schedule`` / ``num_train_timesteps`` the JeDi
  trainer reads (it builds its DDPM noise scheduler from this config).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from core.config.toyworld import ToyWorldModelSection
from core.logs import get_logger
from core.threads import torch_threads
from core.toyworld.world import vocabulary
from training.toyworld.text import build_text_encoder, build_tokenizer
from training.toyworld.vae import fit_vae

log = get_logger("toyworld.base")
TEXT_HEADS = 4
_BETAS = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012), "squaredcos_cap_v2": (1e-4, 0.02)}


def build_scheduler(model: ToyWorldModelSection):
    from diffusers import DDIMScheduler

    beta_start, beta_end = _BETAS[model.beta_schedule]
    return DDIMScheduler(
        num_train_timesteps=model.num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule=model.beta_schedule,
        prediction_type=model.prediction_type,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_unet(model: ToyWorldModelSection, latent_size: int):
    from diffusers import UNet2DConditionModel

    n = len(model.unet_widths)
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=model.latent_channels,
        out_channels=model.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        block_out_channels=tuple(model.unet_widths),
        layers_per_block=1,
        attention_head_dim=model.attention_head_dim,
        norm_num_groups=32,
        cross_attention_dim=model.text_width,
    )


def build_base_pipeline(model: ToyWorldModelSection, size: int, seed: int, out_dir: Path, threads: int = 1) -> Path:
    """Fit the VAE (with ``threads`` torch threads), assemble the pipeline and save it to ``out_dir``
    (atomically: staged, then renamed)."""
    from diffusers import StableDiffusionPipeline

    with torch_threads(threads):
        vae = fit_vae(model, size, seed)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(vocabulary())
    text_encoder = build_text_encoder(tokenizer, model.text_width, model.text_layers, TEXT_HEADS)
    latent_size = size // 2 ** (len(model.vae_widths) - 1)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=build_unet(model, latent_size),
        scheduler=build_scheduler(model),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(str(staging), safe_serialization=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    log.info("base pipeline written", path=str(out_dir), latent_size=latent_size)
    return out_dir
