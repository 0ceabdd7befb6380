"""The reference-conditioned JeDi UNet: noisy latents ‖ reference latents ‖ mask as input.

A JeDi UNet is a stock ``UNet2DConditionModel`` whose ``conv_in`` takes ``2·C + 1`` channels:
the noisy latents (C), the clean reference latents (C, zero where the image is unknown) and a
binary mask (1 = generate this image, 0 = its reference is given). It is built from any pretrained
SD UNet by widening ``conv_in`` with zero-initialised weights for the new channels, so that right
after widening the model computes exactly what the base model computes when no reference is given.

The JeDi parameters are recorded in the UNet config under the private key ``_jedi``: diffusers
keeps private keys through ``save_pretrained``/``from_pretrained`` without warnings, so the
directory stays a normal diffusers model dir that any diffusers tool can open.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

CONFIG_KEY = "_jedi"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class JeDiSpec:
    latent_channels: int = 4
    max_set_size: int = 4
    version: int = FORMAT_VERSION

    @property
    def in_channels(self) -> int:
        return 2 * self.latent_channels + 1


def jedi_spec(unet) -> JeDiSpec:
    """The JeDi parameters of ``unet``; a clear error for a plain UNet."""
    raw = unet.config.get(CONFIG_KEY)
    if not raw:
        raise ValueError(
            f"unet: not a JeDi UNet (no '{CONFIG_KEY}' in its config, in_channels={unet.config.in_channels}); "
            "widen a base UNet with core.jedi.widen_unet or load a JeDi checkpoint"
        )
    spec = JeDiSpec(**raw)
    if unet.config.in_channels != spec.in_channels:
        raise ValueError(f"unet: config says {unet.config.in_channels} input channels, JeDi needs {spec.in_channels}")
    return spec


def is_jedi_unet(unet) -> bool:
    return bool(unet.config.get(CONFIG_KEY))


@torch.no_grad()
def widen_unet(unet, max_set_size: int = 4):
    """Turn a base text-to-image UNet (in place) into a JeDi UNet; returns it.

    The base input weights are copied into the first C channels; the reference and mask channels
    get zero weights, which is what makes the widened model equal the base model at init.
    """
    if is_jedi_unet(unet):
        raise ValueError("unet: already a JeDi UNet")
    if max_set_size < 2:
        raise ValueError(f"max_set_size: must be >= 2 (one reference and one target), got {max_set_size}")
    c = unet.config.in_channels
    if unet.config.out_channels != c:
        raise ValueError(
            f"unet: expected a text-to-image UNet with in_channels == out_channels, got {c} -> {unet.config.out_channels}"
        )
    spec = JeDiSpec(latent_channels=c, max_set_size=max_set_size)
    old = unet.conv_in
    new = torch.nn.Conv2d(
        spec.in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    new.weight.zero_()
    new.weight[:, :c] = old.weight
    new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=spec.in_channels, **{CONFIG_KEY: asdict(spec)})
    return unet


def unet_input(noisy: torch.Tensor, references: torch.Tensor, generate: torch.Tensor) -> torch.Tensor:
    """Concatenate the UNet input ``(B·N, 2C+1, h, w)``.

    ``references`` holds clean reference latents where ``generate`` is 0 and is zeroed where
    ``generate`` is 1 (an unknown image must not leak its own latents). ``generate`` has shape
    ``(B·N,)`` with 1 = generate, 0 = reference given.
    """
    if noisy.shape != references.shape:
        raise ValueError(f"references: shape {tuple(references.shape)} differs from latents {tuple(noisy.shape)}")
    if generate.shape != noisy.shape[:1]:
        raise ValueError(f"generate: expected shape ({noisy.shape[0]},), got {tuple(generate.shape)}")
    g = generate.to(noisy.dtype).view(-1, 1, 1, 1)
    mask = g.expand(-1, 1, *noisy.shape[2:])
    return torch.cat([noisy, references * (1 - g), mask], dim=1)
