"""The loss gap: how much worse the model denoises a novel subject when given another subject's references.

For a trial, the set is K references followed by the target (the subject in the target scene, with
the generic prompt); the references are given (clean channel + noised to the same timestep, exactly
as in training and in the pipeline's replacement trick) and only the target's denoising error counts.
With fixed noise and timesteps per trial, the right references and the decoy's references (same
scenes, same layouts, another novel subject) differ in identity only, so

    gap = L(decoy references) / L(right references) − 1

measures how much identity the model takes from its references. With coupled attention off the
target cannot see the references, so both losses equal the loss of the target alone (tested).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.jedi import attention_kwargs, unet_input
from core.jedi.images import prepare_images
from core.jedi.objective import training_target
from evaluation.toyworld.trials import Trial

CHUNK = 256
"""Images per UNet call."""


def eval_timesteps(num_train_timesteps: int, count: int) -> list[int]:
    """``count`` timesteps evenly spread over the middle 90% of the schedule."""
    lo, hi = 0.05 * num_train_timesteps, 0.95 * num_train_timesteps
    return [round(float(t)) for t in np.linspace(lo, hi, count)]


@torch.no_grad()
def target_losses(
    pipe, trials: list[Trial], k: int, size: int, timesteps: list[int], *, decoy: bool = False, coupled: bool = True
) -> np.ndarray:
    """``(len(trials), len(timesteps))`` denoising MSE of the target given ``k`` references (``k = 0``: alone)."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    device, dtype = pipe.unet.device, pipe.unet.dtype
    n = k + 1
    pixels = torch.cat(
        [prepare_images([*(t.references(k, size, decoy) if k else []), t.target(size)], size, size) for t in trials]
    )
    encoded = pipe.encode_images(pixels).to(dtype)
    latents = encoded.reshape(len(trials), n, *encoded.shape[1:])
    captions = [c for t in trials for c in [""] * k + [t.prompt]]  # references uncaptioned, as in the pipeline
    unique = list(dict.fromkeys(captions))
    table = dict(zip(unique, pipe.encode_text(unique), strict=True))
    embeds = torch.stack([table[c] for c in captions])
    text = embeds.reshape(len(trials), n, *embeds.shape[1:])
    generate = torch.zeros(n, device=device)
    generate[k] = 1.0

    cases = [(i, j) for i in range(len(trials)) for j in range(len(timesteps))]
    out = np.zeros((len(trials), len(timesteps)))
    for start in range(0, len(cases), max(1, CHUNK // n)):
        chunk = cases[start : start + max(1, CHUNK // n)]
        lat = torch.cat([latents[i] for i, _ in chunk])
        noise = torch.cat([_noise(trials[i].seed, timesteps[j], lat.shape[1:], n, device, dtype) for i, j in chunk])
        t = torch.tensor([timesteps[j] for _, j in chunk for _ in range(n)], device=device)
        noisy = scheduler.add_noise(lat, noise, t)
        model_in = unet_input(noisy, lat, generate.repeat(len(chunk)))
        pred = pipe.unet(
            model_in,
            t,
            encoder_hidden_states=torch.cat([text[i] for i, _ in chunk]),
            cross_attention_kwargs=attention_kwargs(n, coupled),
        ).sample
        target = training_target(scheduler, lat, noise, t)
        err = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3)).reshape(len(chunk), n)
        for (i, j), e in zip(chunk, err[:, k].cpu().numpy(), strict=True):
            out[i, j] = e
    return out


def _noise(seed: int, timestep: int, shape, n: int, device, dtype) -> torch.Tensor:
    """The noise of (trial, timestep) for the *target*; references get their own draws after it.

    The target's noise depends only on (seed, timestep), whatever ``k``, so losses with different
    reference counts or with decoy references are measured on the same noisy target.
    """
    g = torch.Generator(device="cpu").manual_seed(seed * 10_007 + timestep)
    target = torch.randn((1, *shape), generator=g)
    refs = torch.randn((n - 1, *shape), generator=g)
    return torch.cat([refs, target]).to(device, dtype)


def loss_gaps(right: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Per trial: mean loss with wrong references / mean loss with right ones − 1."""
    return wrong.mean(axis=1) / right.mean(axis=1) - 1.0
