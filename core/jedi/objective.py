"""The JeDi training objective (Eq. 1–2 of the paper), as one function the trainers call.

For a batch of ``B`` sets of ``N`` images the function samples one timestep per set (the set is
diffused jointly), noises every image, gives each image's clean reference with probability
``p_reference`` (never all images of a set: something must be generated; never for sets of one,
which would only teach copying), drops a set's text with probability ``p_text_drop`` for
classifier-free guidance, and returns the MSE of the prediction over every image of the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.jedi.attention import attention_kwargs
from core.jedi.unet import unet_input


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor
    generate: torch.Tensor
    """(B·N,) 1 where the image was generated, 0 where its reference was given."""
    timesteps: torch.Tensor
    """(B·N,) the timestep of each image (equal within a set)."""
    text_dropped: torch.Tensor
    """(B,) True for sets trained without text."""


def sample_reference_mask(num_sets: int, set_size: int, p_reference: float, generator, device) -> torch.Tensor:
    """(B·N,) generate-mask: 1 = generate, 0 = reference given; at least one 1 per set."""
    given = torch.rand(num_sets, set_size, generator=generator, device=device) < p_reference
    if set_size == 1:
        given.zero_()
    all_given = given.all(dim=1)
    if all_given.any():
        keep = torch.randint(0, set_size, (num_sets,), generator=generator, device=device)
        given[all_given, keep[all_given]] = False
    return (~given).float().reshape(-1)


def training_target(scheduler, latents, noise, timesteps) -> torch.Tensor:
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"scheduler.prediction_type: unsupported {kind!r} (epsilon, v_prediction, sample)")


def jedi_loss(
    unet,
    scheduler,
    latents: torch.Tensor,
    text_embeds: torch.Tensor,
    null_text_embeds: torch.Tensor,
    *,
    set_size: int,
    p_reference: float = 0.5,
    p_text_drop: float = 0.1,
    generator: torch.Generator | None = None,
    coupled: bool = True,
) -> LossOutput:
    """Denoising loss on ``latents`` ``(B·N, C, h, w)`` (already VAE-scaled), sets contiguous.

    ``text_embeds`` is ``(B·N, L, D)``, one prompt per image; ``null_text_embeds`` is the encoded
    empty prompt ``(1, L, D)``, used for the sets whose text is dropped.
    """
    if latents.ndim != 4 or latents.shape[0] % set_size:
        raise ValueError(f"latents: expected (B·N, C, h, w) with N={set_size}, got {tuple(latents.shape)}")
    if text_embeds.shape[0] != latents.shape[0]:
        raise ValueError(f"text_embeds: {text_embeds.shape[0]} prompts for {latents.shape[0]} images")
    if not 0.0 <= p_reference <= 1.0 or not 0.0 <= p_text_drop <= 1.0:
        raise ValueError(f"p_reference/p_text_drop: must lie in [0, 1], got {p_reference}/{p_text_drop}")
    device = latents.device
    num_sets = latents.shape[0] // set_size

    t_set = torch.randint(0, scheduler.config.num_train_timesteps, (num_sets,), generator=generator, device=device)
    timesteps = t_set.repeat_interleave(set_size)
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    noisy = scheduler.add_noise(latents, noise, timesteps)

    generate = sample_reference_mask(num_sets, set_size, p_reference, generator, device)
    dropped = torch.rand(num_sets, generator=generator, device=device) < p_text_drop
    drop_img = dropped.repeat_interleave(set_size).view(-1, 1, 1)
    text = torch.where(drop_img, null_text_embeds.to(text_embeds.dtype).expand_as(text_embeds), text_embeds)

    model_in = unet_input(noisy, latents, generate)
    pred = unet(
        model_in, timesteps, encoder_hidden_states=text, cross_attention_kwargs=attention_kwargs(set_size, coupled)
    ).sample
    target = training_target(scheduler, latents, noise, timesteps)
    loss = F.mse_loss(pred.float(), target.float())
    return LossOutput(loss=loss, generate=generate, timesteps=timesteps, text_dropped=dropped)
