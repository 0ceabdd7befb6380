"""``JeDiPipeline``: finetuning-free personalization by joint-image diffusion.

For every output image the pipeline denoises a *set*: the K reference images followed by one target.
Coupled self-attention lets the target see the references; the reference channels give the model
the clean references. Two inference techniques from the paper:

**Replacement trick.** Before the first step and after every step, the reference members of the
set are overwritten with the references forward-diffused to the next timestep (fixed noise per
reference), and with the clean reference latents after the last step. Only the target keeps the
model's update. This is diffusers' inpainting convention applied to whole set members.

**Image guidance**, composed with text guidance like InstructPix2Pix::

    ε̃ = ε⁰ + λ·(ε_r − ε⁰) + s·(ε_rt − ε_r)

- ``ε_rt`` = prediction with references and text (the plain conditional prediction),
- ``ε_r``  = with references, null text (the negative prompt),
- ``ε⁰``   = null text, null references: the target alone (no reference channel, no coupling).

``λ`` is ``image_guidance_scale``, ``s`` is ``guidance_scale``. With ``λ = s = 1`` this is exactly
``ε_rt`` and only one pass runs; with ``λ = 1`` it is ordinary classifier-free guidance with the
references kept. The passes a setting needs are batched into one UNet call
(``batch_guidance=True``); set it to False to run them one by one when memory is short.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from core.jedi.attention import attention_kwargs, set_jedi_attention
from core.jedi.images import prepare_images
from core.jedi.unet import jedi_spec, unet_input, widen_unet
from core.text_encoding import encode_prompts


def _is_nested(reference_images) -> bool:
    """A list of per-prompt reference lists (as opposed to one reference list for every prompt)."""
    return (
        isinstance(reference_images, (list, tuple))
        and len(reference_images) > 0
        and all(isinstance(g, (list, tuple)) for g in reference_images)
    )


def _captions(reference_captions, per_prompt: bool, groups: int, k: int) -> list[list[str]]:
    if reference_captions is None:
        return [[""] * k for _ in range(groups)]
    nested = per_prompt and all(isinstance(c, (list, tuple)) for c in reference_captions)
    per_group = [list(c) for c in reference_captions] if nested else [list(reference_captions)] * groups
    if len(per_group) != groups:
        raise ValueError(f"reference_captions: {len(per_group)} caption lists for {groups} reference sets")
    for g in per_group:
        if len(g) != k:
            raise ValueError(f"reference_captions: {len(g)} captions for {k} reference images")
        if any(not isinstance(c, str) for c in g):
            raise ValueError("reference_captions: every caption must be a string")
    return per_group


@dataclass
class JeDiPipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    """One image per (prompt, image-per-prompt), prompt-major."""
    set_latents: torch.Tensor
    """(B, N, C, h, w) final latents of every set: K reference slots, then the target."""


class JeDiPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
    ):
        super().__init__()
        self.spec = jedi_spec(unet)
        set_jedi_attention(unet)
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @classmethod
    def from_base(cls, base: DiffusionPipeline, max_set_size: int = 4) -> JeDiPipeline:
        """A JeDi pipeline from a Stable Diffusion pipeline; the base pipeline is left untouched."""
        unet = widen_unet(copy.deepcopy(base.unet), max_set_size=max_set_size)
        return cls(
            vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=unet, scheduler=base.scheduler
        )

    @property
    def max_references(self) -> int:
        return self.spec.max_set_size - 1

    # -- text ---------------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), L, D) last hidden states of the text encoder, as Stable Diffusion uses them."""
        return encode_prompts(self.tokenizer, self.text_encoder, texts, self._execution_device).to(self.unet.dtype)

    # -- images -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE latents (mode of the posterior, deterministic) scaled like the training latents."""
        pixels = pixels.to(self._execution_device, self.vae.dtype)
        return self.vae.encode(pixels).latent_dist.mode() * self.vae.config.scaling_factor

    # -- guidance ---------------------------------------------------------------------------
    def predict_noise(
        self,
        x_in: torch.Tensor,
        t: torch.Tensor,
        refs: torch.Tensor,
        generate: torch.Tensor,
        text: torch.Tensor,
        null_text: torch.Tensor,
        set_size: int,
        guidance_scale: float,
        image_guidance_scale: float,
        coupled: bool = True,
        batch_guidance: bool = True,
    ) -> torch.Tensor:
        """Guided prediction for a flat batch of sets ``(B·N, ...)``; see the module docstring."""
        s, lam = guidance_scale, image_guidance_scale
        need_r = s != 1.0 or lam != 1.0
        need_0 = lam != 1.0
        bn = x_in.shape[0]
        num_sets = bn // set_size
        model_in = unet_input(x_in, refs, generate)
        targets = generate.bool()

        calls = [(model_in, text, (num_sets, set_size))]
        if need_r:
            calls.append((model_in, null_text, (num_sets, set_size)))
        if need_0:
            n_t = int(targets.sum())
            alone = unet_input(x_in[targets], torch.zeros_like(refs[targets]), torch.ones(n_t, device=x_in.device))
            calls.append((alone, null_text[targets], (n_t, 1)))

        if batch_guidance and len(calls) > 1:
            out = self.unet(
                torch.cat([c[0] for c in calls]),
                t,
                encoder_hidden_states=torch.cat([c[1] for c in calls]),
                cross_attention_kwargs=attention_kwargs(tuple(c[2] for c in calls), coupled),
            ).sample
            preds = list(out.split([c[0].shape[0] for c in calls]))
        else:
            preds = [
                self.unet(
                    inp, t, encoder_hidden_states=txt, cross_attention_kwargs=attention_kwargs((seg,), coupled)
                ).sample
                for inp, txt, seg in calls
            ]

        eps_rt = preds[0]
        if not need_r:
            return eps_rt
        eps_r = preds[1]
        guided = eps_r + s * (eps_rt - eps_r)
        if need_0:
            eps_0 = preds[2]
            guided = guided.clone()
            guided[targets] = eps_0 + lam * (eps_r[targets] - eps_0) + s * (eps_rt[targets] - eps_r[targets])
        return guided

    # -- validation ---------------------------------------------------------------------------
    def _check(
        self,
        reference_images,
        prompts,
        reference_captions,
        num_images_per_prompt,
        num_inference_steps,
        guidance_scale,
        image_guidance_scale,
        height,
        width,
    ):
        if reference_images is None or (isinstance(reference_images, (list, tuple)) and not reference_images):
            raise ValueError("reference_images: at least 1 reference image is required")
        if not prompts:
            raise ValueError("prompt: at least 1 prompt is required")
        if any(not isinstance(p, str) for p in prompts):
            raise ValueError("prompt: every prompt must be a string")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt: must be >= 1, got {num_images_per_prompt}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps: must be >= 1, got {num_inference_steps}")
        for name, value in (("guidance_scale", guidance_scale), ("image_guidance_scale", image_guidance_scale)):
            if not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number, got {value}")
        for name, value in (("height", height), ("width", width)):
            if value < self.vae_scale_factor or value % self.vae_scale_factor:
                raise ValueError(f"{name}: must be a positive multiple of {self.vae_scale_factor}, got {value}")

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        reference_images,
        prompt: str | list[str],
        reference_captions: list[str] | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.0,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        coupled: bool = True,
        batch_guidance: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
    ):
        """Generate ``num_images_per_prompt`` images per prompt showing the subject of the references.

        Args:
            reference_images: 1..max_set_size-1 images (PIL, H×W×3 uint8 or [0, 1] float arrays, or
                (3, H, W) tensors in [0, 1]); resized (shorter side) and centre-cropped to the output size.
                A list of such lists gives each prompt its own references (same count for every prompt),
                so requests about different subjects can share one batched call.
            prompt: one prompt or a list of prompts.
            reference_captions: one caption per reference (default: empty, i.e. uncaptioned); with
                per-prompt references, one list per prompt or one list shared by all.
            guidance_scale: text guidance ``s``; image_guidance_scale: image guidance ``λ``.
            coupled: False switches coupled attention off (the ablation: references cannot be seen).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        self._check(
            reference_images,
            prompts,
            reference_captions,
            num_images_per_prompt,
            num_inference_steps,
            guidance_scale,
            image_guidance_scale,
            height,
            width,
        )
        per_prompt = _is_nested(reference_images)
        groups = list(reference_images) if per_prompt else [reference_images]
        if per_prompt and len(groups) != len(prompts):
            raise ValueError(f"reference_images: {len(groups)} reference sets for {len(prompts)} prompts")
        pixels = [
            prepare_images(g, height, width, name=f"reference_images[{i}]" if per_prompt else "reference_images")
            for i, g in enumerate(groups)
        ]
        k = pixels[0].shape[0]
        if any(p.shape[0] != k for p in pixels):
            raise ValueError(
                f"reference_images: every prompt needs the same number of references, got {[p.shape[0] for p in pixels]}"
            )
        if k == 0:
            raise ValueError("reference_images: at least 1 reference image is required")
        if k > self.max_references:
            raise ValueError(
                f"reference_images: {k} given, this model takes at most {self.max_references} "
                f"(max_set_size {self.spec.max_set_size} minus the target)"
            )
        captions = _captions(reference_captions, per_prompt, len(groups), k)

        device = self._execution_device
        n = k + 1
        m = num_images_per_prompt
        num_sets = len(prompts) * m
        c = self.spec.latent_channels
        h, w = height // self.vae_scale_factor, width // self.vae_scale_factor

        # Text: per set, its K reference captions then its prompt; the null branch uses the negative prompt.
        group_of_set = [i if per_prompt else 0 for i in range(len(prompts)) for _ in range(m)]
        set_prompts = [p for p in prompts for _ in range(m)]
        unique = list(dict.fromkeys([*(c_ for g in captions for c_ in g), *prompts, negative_prompt]))
        table = dict(zip(unique, self.encode_text(unique), strict=True))
        text = torch.stack(
            [table[t] for p, g in zip(set_prompts, group_of_set, strict=True) for t in (*captions[g], p)]
        )
        null_text = table[negative_prompt].expand_as(text)

        ref0 = self.encode_images(torch.cat(pixels)).to(self.unet.dtype).reshape(len(groups), k, c, h, w)
        ref0_sets = ref0[torch.tensor(group_of_set, device=ref0.device)]  # (num_sets, K, C, h, w)
        refs = torch.zeros(num_sets, n, c, h, w, device=device, dtype=self.unet.dtype)
        refs[:, :k] = ref0_sets
        refs = refs.reshape(num_sets * n, c, h, w)
        generate = torch.zeros(num_sets, n, device=device)
        generate[:, k] = 1.0
        generate = generate.reshape(-1)
        # A generator list means one generator per output image (diffusers' convention); the scheduler
        # steps every set member, so each image's generator serves its whole set.
        member_generator = [g for g in generator for _ in range(n)] if isinstance(generator, list) else generator

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = randn_tensor((num_sets, n, c, h, w), generator=generator, device=device, dtype=self.unet.dtype)
        latents = latents * self.scheduler.init_noise_sigma
        ref_noise = randn_tensor((num_sets, k, c, h, w), generator=generator, device=device, dtype=self.unet.dtype)

        def replace(lat: torch.Tensor, t) -> torch.Tensor:
            lat = lat.clone()
            if t is None:
                lat[:, :k] = ref0_sets
            else:
                tt = torch.full((num_sets * k,), int(t), device=device, dtype=torch.long)
                noised = self.scheduler.add_noise(ref0_sets.reshape(-1, c, h, w), ref_noise.reshape(-1, c, h, w), tt)
                lat[:, :k] = noised.reshape(num_sets, k, c, h, w)
            return lat

        latents = replace(latents, timesteps[0])
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                flat = latents.reshape(num_sets * n, c, h, w)
                x_in = self.scheduler.scale_model_input(flat, t)
                eps = self.predict_noise(
                    x_in,
                    t,
                    refs,
                    generate,
                    text,
                    null_text,
                    n,
                    guidance_scale,
                    image_guidance_scale,
                    coupled,
                    batch_guidance,
                )
                flat = self.scheduler.step(eps, t, flat, generator=member_generator).prev_sample
                latents = replace(
                    flat.reshape(num_sets, n, c, h, w), timesteps[i + 1] if i + 1 < len(timesteps) else None
                )
                if callback_on_step_end is not None:
                    local = {"latents": latents}
                    out = callback_on_step_end(self, i, t, {k_: local[k_] for k_ in callback_on_step_end_tensor_inputs})
                    latents = out.pop("latents", latents)
                bar.update()

        target_latents = latents[:, k]
        if output_type == "latent":
            images = target_latents
        else:
            decoded = self.vae.decode(target_latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
            images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, latents
        return JeDiPipelineOutput(images=images, set_latents=latents)
