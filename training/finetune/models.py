"""The base model parts a fine-tuning worker holds, loaded through the zoo and all frozen at first.

Fine-tuning targets Stable Diffusion 1.x/2.x pipelines (one CLIP text encoder, a
``UNet2DConditionModel``); what becomes trainable is decided stage by stage by the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core import zoo
from core.config import S3JediConfig
from training.shell.sd_parts import SDParts


@dataclass
class BaseModels(SDParts):
    """The base model's parts for fine-tuning (what trains is decided by the method's plan)."""

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
