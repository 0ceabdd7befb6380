"""The models a JeDi training worker holds: frozen VAE and text encoder, the trainable JeDi UNet."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core import zoo
from core.config import S3JediConfig
from core.jedi import JeDiPipeline, set_jedi_attention, widen_unet
from training.shell.sd_parts import SDParts


@dataclass
class JeDiModels(SDParts):
    """Frozen VAE and text encoder, the trainable JeDi UNet."""

    def pipeline(self, unet: torch.nn.Module) -> JeDiPipeline:
        from diffusers import DDIMScheduler

        return JeDiPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=unet,
            scheduler=DDIMScheduler.from_config(self.sampling_scheduler_config),
        )


def load_models(cfg: S3JediConfig, device: torch.device) -> JeDiModels:
    """Start from a JeDi pipeline (``train.jedi.init_from``) or widen the base model ``models.sd``."""
    from diffusers import DDPMScheduler

    tcfg = cfg.train.jedi
    if tcfg.init_from:
        base = zoo.load("jedi", tcfg.init_from, home=cfg.home)
        unet = base.unet
    else:
        base = zoo.load("sd", cfg.models.sd, home=cfg.home)
        unet = widen_unet(base.unet, max_set_size=tcfg.max_set_size)
    set_jedi_attention(unet)
    if tcfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    for frozen in (base.vae, base.text_encoder):
        frozen.requires_grad_(False).eval().to(device)
    unet.train().to(device)
    return JeDiModels(
        unet=unet,
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        noise_scheduler=DDPMScheduler.from_config(base.scheduler.config),
        sampling_scheduler_config=dict(base.scheduler.config),
    )
