"""The base model parts a fine-tuning worker holds, loaded through the zoo and all frozen at first.

Fine-tuning targets Stable Diffusion 1.x/2.x pipelines (one CLIP text encoder, a
``UNet2DConditionModel``); what becomes trainable is decided stage by stage by the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core import zoo
from core.config import S3JediConfig


@dataclass
class BaseModels:
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    noise_scheduler: object
    sampling_scheduler_config: dict

    def token_ids(self, texts: list[str]) -> torch.Tensor:
        device = next(self.text_encoder.parameters()).device
        return self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)

    @torch.no_grad()
    def latent_posterior(self, pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the VAE posterior of ``(N, H, W, 3)`` uint8 images, in the UNet's scaled space."""
        device = next(self.vae.parameters()).device
        x = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        dist = self.vae.encode(x).latent_dist
        scale = self.vae.config.scaling_factor
        return dist.mean * scale, dist.std * scale

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the UNet predicts under the scheduler's ``prediction_type``."""
        kind = self.noise_scheduler.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.noise_scheduler.get_velocity(latents, noise, timesteps)
        raise ValueError(f"models.sd: prediction_type {kind!r} is not supported for fine-tuning")

    def pipeline(self):
        """A sampling pipeline around the (possibly trained) parts, sharing their weights."""
        from diffusers import DDIMScheduler, StableDiffusionPipeline

        pipe = StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=DDIMScheduler.from_config(self.sampling_scheduler_config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe


def load_base(cfg: S3JediConfig, device: torch.device) -> BaseModels:
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    pipe = zoo.load("sd", cfg.models.sd, home=cfg.home)
    if not isinstance(pipe, StableDiffusionPipeline):
        raise ValueError(
            f"models.sd: fine-tuning supports Stable Diffusion 1.x/2.x pipelines, got {type(pipe).__name__}"
        )
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False).to(device)
    pipe.vae.eval()
    return BaseModels(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
        sampling_scheduler_config=dict(pipe.scheduler.config),
    )
