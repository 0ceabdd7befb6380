"""The parts of a Stable Diffusion model a trainer holds, and the operations every trainer needs.

JeDi and the fine-tuning recipes train different parts (the widened UNet; tokens, LoRA, UNet or
text encoder) but encode text and images and define the regression target the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core import zoo
from core.config import S3JediConfig
from core.jedi.objective import training_target
from core.text_encoding import encode_prompts, token_ids


def sample_posterior(mean: torch.Tensor, std: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Latents drawn from a VAE posterior with the step's own (CPU) generator."""
    return mean + std * torch.randn(mean.shape, generator=g).to(mean.device)


@dataclass
class SDParts:
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    noise_scheduler: object
    """The training scheduler (DDPM, from the base model's scheduler config)."""
    sampling_scheduler_config: dict

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    def token_ids(self, texts: list[str]) -> torch.Tensor:
        return token_ids(self.tokenizer, texts, self.device)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Frozen-encoder hidden states (no gradients)."""
        return encode_prompts(self.tokenizer, self.text_encoder, texts, self.device)

    @torch.no_grad()
    def latent_posterior(self, pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the VAE posterior of ``(N, H, W, 3)`` uint8 images, in the UNet's scaled space."""
        device = next(self.vae.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        dist = self.vae.encode(x).latent_dist
        scale = self.vae.config.scaling_factor
        return dist.mean * scale, dist.std * scale

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the UNet regresses under the scheduler's ``prediction_type``."""
        return training_target(self.noise_scheduler, latents, noise, timesteps)

    def sd_pipeline(self):
        """A Stable Diffusion sampling pipeline around the (possibly trained) parts, sharing their weights."""
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


def load_base(cfg: S3JediConfig, device: torch.device) -> SDParts:
    """The parts of the base model ``models.sd`` (Stable Diffusion 1.x/2.x), all frozen; what becomes
    trainable is the recipe's decision."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    pipe = zoo.load("sd", cfg.models.sd, home=cfg.home)
    if not isinstance(pipe, StableDiffusionPipeline):
        raise ValueError(
            f"models.sd: fine-tuning supports Stable Diffusion 1.x/2.x pipelines, got {type(pipe).__name__}"
        )
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False).to(device)
    pipe.vae.eval()
    return SDParts(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
        sampling_scheduler_config=dict(pipe.scheduler.config),
    )
