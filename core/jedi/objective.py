"""The JeDi training objective (Eq. 1–2 of the paper), as one function the trainers call.

For a batch of ``B`` sets of ``N`` images the function samples one timestep per set (the set is
diffused jointly), noises every image, gives each image's clean reference with probability
``p_reference`` (never all images of a set: something must be generated; never for sets of one,
which would only teach copying), drops a set's text with probability ``p_text_drop`` for
classifier-free guidance — and, with probability ``p_reference_channel_drop``, the clean-reference
channel of such a set too, its mask kept: the input ``ε_θ(x_t, 0, M)`` of the paper's image guidance
(Eq. 3) — and returns the MSE of the prediction over every image of the set.
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
    caption_dropped: torch.Tensor
    """(B·N,) True for given references trained without their caption."""
    channel_dropped: torch.Tensor
    """(B,) True for sets trained with null text and the reference channel zeroed (mask kept)."""


@dataclass(frozen=True)
class SetDraws:
    """The random choices of one training step, drawn set by set."""

    timesteps: torch.Tensor  # (B·N,) long, equal within a set
    noise: torch.Tensor  # (B·N, C, h, w)
    generate: torch.Tensor  # (B·N,) 1 = generate, 0 = reference given
    text_dropped: torch.Tensor  # (B,) bool
    caption_dropped: torch.Tensor  # (B·N,) bool: a given reference trained without its caption
    channel_dropped: torch.Tensor  # (B,) bool: text dropped and reference channel zeroed, mask kept


def draw_sets(
    generators: torch.Generator | list[torch.Generator] | None,
    num_sets: int,
    set_size: int,
    latent_shape: tuple[int, ...],
    num_train_timesteps: int,
    p_reference: float,
    p_text_drop: float,
    device,
    dtype,
    p_reference_caption_drop: float = 0.0,
    p_reference_channel_drop: float = 0.0,
) -> SetDraws:
    """Draw timestep, noise, reference mask, text, caption and reference-channel dropout for each set,
    in that order per set (a draw added later goes last, so older draws keep their values).

    With one generator per set (seeded from the set's identity) a set gets the same draws whichever
    data-parallel worker processes it and whatever else is in the batch; that is what makes N workers
    with batch B equal one worker with batch N·B.
    """
    if isinstance(generators, list):
        if len(generators) != num_sets:
            raise ValueError(f"generator: {len(generators)} generators for {num_sets} sets")
        gens = generators
    else:
        gens = [generators] * num_sets
    t, noise, generate, dropped, captions, channels = [], [], [], [], [], []
    for g in gens:
        t.append(torch.randint(0, num_train_timesteps, (1,), generator=g, device=device).repeat(set_size))
        noise.append(torch.randn((set_size, *latent_shape), generator=g, device=device, dtype=dtype))
        given = torch.rand(set_size, generator=g, device=device) < p_reference
        keep = torch.randint(0, set_size, (1,), generator=g, device=device)
        if set_size == 1:
            given.zero_()
        elif given.all():
            given[keep] = False
        generate.append((~given).float())
        dropped.append(torch.rand(1, generator=g, device=device) < p_text_drop)
        captions.append(given & (torch.rand(set_size, generator=g, device=device) < p_reference_caption_drop))
        channels.append(dropped[-1] & (torch.rand(1, generator=g, device=device) < p_reference_channel_drop))
    return SetDraws(
        torch.cat(t),
        torch.cat(noise),
        torch.cat(generate),
        torch.cat(dropped),
        torch.cat(captions),
        torch.cat(channels),
    )


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
    p_reference_caption_drop: float = 0.5,
    p_reference_channel_drop: float = 0.0,
    generator: torch.Generator | list[torch.Generator] | None = None,
    coupled: bool = True,
) -> LossOutput:
    """Denoising loss on ``latents`` ``(B·N, C, h, w)`` (already VAE-scaled), sets contiguous.

    ``text_embeds`` is ``(B·N, L, D)``, one prompt per image; ``null_text_embeds`` is the encoded
    empty prompt ``(1, L, D)``, used for the sets whose text is dropped. A given reference also
    loses its own caption with probability ``p_reference_caption_drop``: users often have photos
    without captions (the pipeline's default reference caption is empty), so that case must be in
    the training distribution. A set whose text is dropped loses its clean-reference channel too with
    probability ``p_reference_channel_drop`` (mask kept), so the ε⁰ of the pipeline's ``paper``
    guidance is an input the model has seen. ``generator`` is one generator for the batch or a list
    with one per set (see ``draw_sets``).
    """
    if latents.ndim != 4 or latents.shape[0] % set_size:
        raise ValueError(f"latents: expected (B·N, C, h, w) with N={set_size}, got {tuple(latents.shape)}")
    if text_embeds.shape[0] != latents.shape[0]:
        raise ValueError(f"text_embeds: {text_embeds.shape[0]} prompts for {latents.shape[0]} images")
    for name, p in (
        ("p_reference", p_reference),
        ("p_text_drop", p_text_drop),
        ("p_reference_caption_drop", p_reference_caption_drop),
        ("p_reference_channel_drop", p_reference_channel_drop),
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}: must lie in [0, 1], got {p}")
    num_sets = latents.shape[0] // set_size
    draws = draw_sets(
        generator,
        num_sets,
        set_size,
        tuple(latents.shape[1:]),
        scheduler.config.num_train_timesteps,
        p_reference,
        p_text_drop,
        latents.device,
        latents.dtype,
        p_reference_caption_drop,
        p_reference_channel_drop,
    )
    timesteps, noise, generate = draws.timesteps, draws.noise, draws.generate
    noisy = scheduler.add_noise(latents, noise, timesteps)
    drop = draws.text_dropped.repeat_interleave(set_size) | draws.caption_dropped
    drop_img = drop.view(-1, 1, 1)
    text = torch.where(drop_img, null_text_embeds.to(text_embeds.dtype).expand_as(text_embeds), text_embeds)

    keep = (~draws.channel_dropped).repeat_interleave(set_size).to(latents.dtype).view(-1, 1, 1, 1)
    model_in = unet_input(noisy, latents * keep, generate)
    pred = unet(
        model_in, timesteps, encoder_hidden_states=text, cross_attention_kwargs=attention_kwargs(set_size, coupled)
    ).sample
    target = training_target(scheduler, latents, noise, timesteps)
    loss = F.mse_loss(pred.float(), target.float())
    return LossOutput(
        loss=loss,
        generate=generate,
        timesteps=timesteps,
        text_dropped=draws.text_dropped,
        caption_dropped=draws.caption_dropped,
        channel_dropped=draws.channel_dropped,
    )
