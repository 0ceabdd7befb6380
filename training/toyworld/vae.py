"""Fitting ToyWorld's VAE on fresh renders, before any diffusion training.

The tiny zoo's VAE downsamples 8×: a 16 px image would become a 2×2 latent, too coarse to hold a
shape. ToyWorld's VAE is a standard diffusers ``AutoencoderKL`` with fewer blocks (2× downsampling
by default) fitted here with a reconstruction loss and a small KL term; renders are unlimited, so
every step sees new images and there is no overfitting to watch. Only training subjects are
rendered: the novel subjects stay out of every trained component.

The latent ``scaling_factor`` is set, as for Stable Diffusion, to 1 / (standard deviation of the
latents), so the diffusion model sees unit-variance latents.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.config.toyworld import ToyWorldModelSection
from core.logs import get_logger
from core.progress import Progress
from core.toyworld.dataset import item_rng
from core.toyworld.render import random_layout, render
from core.toyworld.world import SCENES, training_subjects

log = get_logger("toyworld.vae")
SCALE_SAMPLES = 512


def render_batch(seed: int, step: int, count: int, size: int) -> torch.Tensor:
    """``(count, 3, size, size)`` in [-1, 1]: random training subjects in random scenes."""
    rng = item_rng(seed, "vae", step)
    subjects, scenes = training_subjects(), list(SCENES)
    images = [
        render(
            subjects[int(rng.integers(len(subjects)))],
            scenes[int(rng.integers(len(scenes)))],
            random_layout(rng, size),
            size,
        )[0]
        for _ in range(count)
    ]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def build_vae(model: ToyWorldModelSection, size: int):
    from diffusers import AutoencoderKL

    n = len(model.vae_widths)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(model.vae_widths),
        layers_per_block=1,
        latent_channels=model.latent_channels,
        norm_num_groups=16,
        sample_size=size,
    )


def fit_vae(model: ToyWorldModelSection, size: int, seed: int):
    """A fitted ``AutoencoderKL`` (eval mode) with its ``scaling_factor`` set from the latents."""
    factor = 2 ** (len(model.vae_widths) - 1)
    if size % factor:
        raise ValueError(f"toyworld.data.size: {size} is not a multiple of the VAE's downsampling {factor}")
    torch.manual_seed(seed)
    vae = build_vae(model, size)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=model.vae_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, model.vae_steps)
    bar = Progress(range(model.vae_steps), desc="fit VAE", unit="step")
    for step in bar:
        pixels = render_batch(seed, step, model.vae_batch, size)
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(recon, pixels)
        loss = mse + model.vae_kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            bar.set_postfix(mse=f"{mse.item():.5f}")
    vae.eval()
    with torch.no_grad():
        latents = vae.encode(render_batch(seed, -1, SCALE_SAMPLES, size)).latent_dist.mode()
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    log.info("VAE fitted", steps=model.vae_steps, mse=round(mse.item(), 6), scaling_factor=round(scale, 4))
    return vae
