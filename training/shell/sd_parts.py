"""The parts of a Stable Diffusion model a trainer holds, and the operations every trainer needs.

JeDi and the fine-tuning methods train different parts (the widened UNet; tokens, LoRA, UNet or
text encoder) but encode text and images and define the regression target the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.jedi.objective import training_target
from core.text_encoding import encode_prompts, token_ids


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
