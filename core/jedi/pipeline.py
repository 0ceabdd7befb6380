"""``JeDiPipeline``: finetuning-free personalization by joint-image diffusion.

Every output image is generated as a member of a *set*: the K reference images followed by the
targets. Coupled self-attention lets the targets see the references; the reference channels give the
model the clean references. By default a set holds one target; with ``joint_targets`` the B images
asked of one reference set are drawn together, up to ``max_set_size − K`` per set, so they see each
other and a step costs K + B image passes instead of B·(K + 1) — the paper's "generate the missing
images of a joint-image set".

**Replacement trick.** Before the first step and after every step, the reference members of a set
are overwritten with the references forward-diffused to the next timestep (fixed noise per
reference), and with the clean reference latents after the last step. Only the targets keep the
model's update. This is diffusers' inpainting convention applied to whole set members.

**Guidance** (``guidance``):

- ``"paper"`` — Eq. 3 of the paper, one scale ``λ = image_guidance_scale``::

      ε̃ = ε⁰ + λ·(ε_θ(x_t, x̂, M, text) − ε⁰),   ε⁰ = ε_θ(x_t, 0, M, ∅)

  ε⁰ is the *same* joint set — the noised references stay in it and in coupled attention, the mask
  is kept — with the clean-reference channel zeroed and every member's text null. The model sees
  that input in training (``p_reference_channel_drop``: a set whose text is dropped loses its
  reference channel too, mask kept). Two passes per step, batched into one UNet call.
- ``"paper-unknown"`` — the same equation with the references marked *unknown* in ε⁰ (mask 1,
  channel zero): the other reading of "all reference images set to null", which training shows
  whenever a set draws no reference, so it also suits models trained without the channel dropout.
- ``"decomposed"`` — a project variant that composes a separate text scale ``s = guidance_scale``
  InstructPix2Pix-style: ε̃ = ε_t⁰ + λ·(ε_r − ε_t⁰) + s·(ε_rt − ε_r), with ε_rt the conditional
  prediction, ε_r the references with null text, and ε_t⁰ each target *alone* (a set of one: no
  reference channel, no coupling, null text). Up to three passes per step.

``λ = 1`` (and ``s = 1`` for ``decomposed``) is the plain conditional prediction in one pass. The
passes a setting needs are batched into one UNet call (``batch_guidance=True``); set it to False to
run them one by one when memory is short.
"""

from __future__ import annotations

import copy
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
from core.jedi.guidance import DEFAULT_GUIDANCE, DEFAULT_IMAGE_GUIDANCE_SCALE, DEFAULT_JOINT_TARGETS, check_guidance
from core.jedi.images import prepare_images
from core.jedi.unet import jedi_spec, unet_input, widen_unet
from core.text_encoding import encode_prompts

Layout = tuple[tuple[int, int], ...]
"""``((num_sets, set_size), ...)`` segments of a flat batch of set members (see ``core.jedi.attention``)."""


def _is_nested(items) -> bool:
    """A list of lists (per-prompt references, or per-reference-set prompts)."""
    return isinstance(items, (list, tuple)) and len(items) > 0 and all(isinstance(g, (list, tuple)) for g in items)


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


def _targets(prompt, per_prompt: bool, groups: int, m: int) -> list[tuple[str, int]]:
    """``(prompt, reference set)`` of every output image, in output order (prompt-major)."""
    if isinstance(prompt, str):
        prompt = [prompt]
    prompts = list(prompt or [])
    if not prompts:
        raise ValueError("prompt: at least 1 prompt is required")
    if _is_nested(prompts):
        if not per_prompt or len(prompts) != groups:
            raise ValueError(
                f"prompt: {len(prompts)} prompt lists need one reference list each (reference_images as a list "
                f"of {len(prompts)} lists), got {groups if per_prompt else 'one shared'} reference set(s)"
            )
        pairs = [(p, g) for g, ps in enumerate(prompts) for p in ps]
    elif per_prompt:
        if len(prompts) != groups:
            raise ValueError(f"reference_images: {groups} reference sets for {len(prompts)} prompts")
        pairs = [(p, g) for g, p in enumerate(prompts)]
    else:
        pairs = [(p, 0) for p in prompts]
    if not pairs or any(not isinstance(p, str) for p, _ in pairs):
        raise ValueError("prompt: every prompt must be a string (and every prompt list non-empty)")
    return [pair for pair in pairs for _ in range(m)]


@dataclass(frozen=True)
class SetPlan:
    """One set of a call: its reference set and the output images drawn as its targets."""

    group: int
    targets: tuple[int, ...]


def plan_sets(target_groups: list[int], capacity: int, joint: bool) -> list[SetPlan]:
    """Sets for the output images (``target_groups[i]`` = reference set of image ``i``): one target per
    set, or with ``joint`` the images of one reference set in sets of up to ``capacity`` targets."""
    per_group: dict[int, list[int]] = {}
    for i, g in enumerate(target_groups):
        per_group.setdefault(g, []).append(i)
    step = capacity if joint else 1
    return [
        SetPlan(g, tuple(images[j : j + step])) for g, images in per_group.items() for j in range(0, len(images), step)
    ]


def layout_of(sizes: list[int]) -> Layout:
    """Run-length segments of consecutive set sizes."""
    out: list[list[int]] = []
    for size in sizes:
        if out and out[-1][1] == size:
            out[-1][0] += 1
        else:
            out.append([1, size])
    return tuple((n, size) for n, size in out)


@dataclass
class JeDiPipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    """One image per (prompt, image-per-prompt), prompt-major."""
    set_latents: list[torch.Tensor]
    """Final latents of every set ``(K + targets, C, h, w)``: K reference slots, then its targets."""


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
        layout: Layout,
        guidance: str = DEFAULT_GUIDANCE,
        image_guidance_scale: float = DEFAULT_IMAGE_GUIDANCE_SCALE,
        guidance_scale: float | None = None,
        coupled: bool = True,
        batch_guidance: bool = True,
    ) -> torch.Tensor:
        """Guided prediction for a flat batch of set members laid out as ``layout``; see the module
        docstring. ``guidance_scale`` is the ``decomposed`` variant's text scale (None elsewhere)."""
        lam, s = image_guidance_scale, guidance_scale
        model_in = unet_input(x_in, refs, generate)
        calls = [(model_in, text, layout)]
        if guidance == "decomposed":
            need_r, need_0 = s != 1.0 or lam != 1.0, lam != 1.0
            targets = generate.bool()
            if need_r:
                calls.append((model_in, null_text, layout))
            if need_0:
                n_t = int(targets.sum())
                alone = unet_input(x_in[targets], torch.zeros_like(refs[targets]), torch.ones(n_t, device=x_in.device))
                calls.append((alone, null_text[targets], ((n_t, 1),)))
        elif lam != 1.0:
            mask = generate if guidance == "paper" else torch.ones_like(generate)
            calls.append((unet_input(x_in, torch.zeros_like(refs), mask), null_text, layout))

        if batch_guidance and len(calls) > 1:
            out = self.unet(
                torch.cat([c[0] for c in calls]),
                t,
                encoder_hidden_states=torch.cat([c[1] for c in calls]),
                cross_attention_kwargs=attention_kwargs(tuple(seg for c in calls for seg in c[2]), coupled),
            ).sample
            preds = list(out.split([c[0].shape[0] for c in calls]))
        else:
            preds = [
                self.unet(
                    inp, t, encoder_hidden_states=txt, cross_attention_kwargs=attention_kwargs(lay, coupled)
                ).sample
                for inp, txt, lay in calls
            ]

        eps = preds[0]
        if len(preds) == 1:
            return eps
        if guidance != "decomposed":
            eps_0 = preds[1]
            return eps_0 + lam * (eps - eps_0)
        eps_r = preds[1]
        guided = eps_r + s * (eps - eps_r)
        if len(preds) == 3:
            eps_0 = preds[2]
            guided = guided.clone()
            guided[targets] = eps_0 + lam * (eps_r[targets] - eps_0) + s * (eps[targets] - eps_r[targets])
        return guided

    # -- validation ---------------------------------------------------------------------------
    def _check(self, reference_images, num_images_per_prompt, num_inference_steps, height, width, joint_targets):
        if reference_images is None or (isinstance(reference_images, (list, tuple)) and not reference_images):
            raise ValueError("reference_images: at least 1 reference image is required")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt: must be >= 1, got {num_images_per_prompt}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps: must be >= 1, got {num_inference_steps}")
        if not isinstance(joint_targets, bool):
            raise ValueError(f"joint_targets: must be true or false, got {joint_targets!r}")
        for name, value in (("height", height), ("width", width)):
            if value < self.vae_scale_factor or value % self.vae_scale_factor:
                raise ValueError(f"{name}: must be a positive multiple of {self.vae_scale_factor}, got {value}")

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        reference_images,
        prompt: str | list[str] | list[list[str]],
        reference_captions: list[str] | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int = 50,
        guidance_scale: float | None = None,
        image_guidance_scale: float = DEFAULT_IMAGE_GUIDANCE_SCALE,
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
        guidance: str = DEFAULT_GUIDANCE,
        joint_targets: bool = DEFAULT_JOINT_TARGETS,
    ):
        """Generate ``num_images_per_prompt`` images per prompt showing the subject of the references.

        Args:
            reference_images: 1..max_set_size-1 images (PIL, H×W×3 uint8 or [0, 1] float arrays, or
                (3, H, W) tensors in [0, 1]); resized (shorter side) and centre-cropped to the output size.
                A list of such lists gives each prompt its own references (same count for every prompt),
                so requests about different subjects can share one batched call.
            prompt: one prompt or a list of prompts; with a list of reference lists, also a list of
                prompt lists (the prompts of each reference set, e.g. one request each).
            reference_captions: one caption per reference (default: empty, i.e. uncaptioned); with
                per-prompt references, one list per reference set or one list shared by all.
            guidance: ``paper`` (Eq. 3, default), ``paper-unknown`` or ``decomposed``; see the module docstring.
            image_guidance_scale: ``λ``. guidance_scale: the text scale ``s`` of ``decomposed`` only
                (default 7.5); the paper's guidance has the one scale ``λ`` and refuses it.
            joint_targets: draw the images of one reference set as members of shared sets (up to
                ``max_set_size − K`` per set) instead of one set each. A set's noise then comes from the
                generator of its first image.
            coupled: False switches coupled attention off (the ablation: references cannot be seen).
            callback_on_step_end: receives ``latents`` as the flat batch of every set's members.
        """
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        self._check(reference_images, num_images_per_prompt, num_inference_steps, height, width, joint_targets)
        text_scale = check_guidance(guidance, image_guidance_scale, guidance_scale)
        per_prompt = _is_nested(reference_images)
        groups = list(reference_images) if per_prompt else [reference_images]
        targets = _targets(prompt, per_prompt, len(groups), num_images_per_prompt)
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
        if isinstance(generator, list) and len(generator) != len(targets):
            raise ValueError(f"generator: {len(generator)} generators for {len(targets)} images (one per image)")
        captions = _captions(reference_captions, per_prompt, len(groups), k)

        device, dtype = self._execution_device, self.unet.dtype
        c = self.spec.latent_channels
        h, w = height // self.vae_scale_factor, width // self.vae_scale_factor
        sets = plan_sets([g for _, g in targets], self.spec.max_set_size - k, joint_targets)
        # Equal-size sets sit together in the UNet batch (one attention segment each size).
        order = sorted(range(len(sets)), key=lambda i: k + len(sets[i].targets))
        start, first_member = 0, {}
        for i in order:
            first_member[i] = start
            start += k + len(sets[i].targets)
        members = start
        layout = layout_of([k + len(sets[i].targets) for i in order])
        ref_pos = torch.tensor([first_member[i] + j for i in range(len(sets)) for j in range(k)], device=device)
        target_pos = torch.empty(len(targets), dtype=torch.long, device=device)
        for i, plan in enumerate(sets):
            for j, image in enumerate(plan.targets):
                target_pos[image] = first_member[i] + k + j

        # Text: each reference slot its set's caption, each target its prompt; the null branch uses the
        # negative prompt for every member.
        unique = list(dict.fromkeys([*(c_ for g in captions for c_ in g), *(p for p, _ in targets), negative_prompt]))
        table = dict(zip(unique, self.encode_text(unique), strict=True))
        member_text: list[str] = [""] * members
        for i, plan in enumerate(sets):
            for j in range(k):
                member_text[first_member[i] + j] = captions[plan.group][j]
        for image, (p, _) in enumerate(targets):
            member_text[int(target_pos[image])] = p
        text = torch.stack([table[t] for t in member_text])
        null_text = table[negative_prompt].expand_as(text)

        ref0 = self.encode_images(torch.cat(pixels)).to(dtype).reshape(len(groups), k, c, h, w)
        ref_clean = torch.cat([ref0[plan.group] for plan in sets])  # (sets·K, C, h, w), sets in natural order
        refs = torch.zeros(members, c, h, w, device=device, dtype=dtype)
        refs[ref_pos] = ref_clean
        generate = torch.ones(members, device=device)
        generate[ref_pos] = 0.0

        # A generator list is one generator per output image (diffusers' convention); the scheduler
        # steps every member, so each set's members use its first image's generator.
        set_gens = [generator[plan.targets[0]] if isinstance(generator, list) else generator for plan in sets]
        member_generator = generator
        if isinstance(generator, list):
            member_generator = [None] * members
            for i, plan in enumerate(sets):
                member_generator[first_member[i] : first_member[i] + k + len(plan.targets)] = [set_gens[i]] * (
                    k + len(plan.targets)
                )

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = torch.empty(members, c, h, w, device=device, dtype=dtype)
        for i, plan in enumerate(sets):
            n = k + len(plan.targets)
            latents[first_member[i] : first_member[i] + n] = randn_tensor(
                (n, c, h, w), generator=set_gens[i], device=device, dtype=dtype
            )
        latents = latents * self.scheduler.init_noise_sigma
        ref_noise = torch.cat(
            [randn_tensor((k, c, h, w), generator=set_gens[i], device=device, dtype=dtype) for i in range(len(sets))]
        )

        def replace(lat: torch.Tensor, t) -> torch.Tensor:
            lat = lat.clone()
            if t is None:
                lat[ref_pos] = ref_clean
            else:
                tt = torch.full((ref_clean.shape[0],), int(t), device=device, dtype=torch.long)
                lat[ref_pos] = self.scheduler.add_noise(ref_clean, ref_noise, tt)
            return lat

        latents = replace(latents, timesteps[0])
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                x_in = self.scheduler.scale_model_input(latents, t)
                eps = self.predict_noise(
                    x_in,
                    t,
                    refs,
                    generate,
                    text,
                    null_text,
                    layout,
                    guidance,
                    image_guidance_scale,
                    text_scale,
                    coupled,
                    batch_guidance,
                )
                latents = self.scheduler.step(eps, t, latents, generator=member_generator).prev_sample
                latents = replace(latents, timesteps[i + 1] if i + 1 < len(timesteps) else None)
                if callback_on_step_end is not None:
                    local = {"latents": latents}
                    out = callback_on_step_end(self, i, t, {k_: local[k_] for k_ in callback_on_step_end_tensor_inputs})
                    latents = out.pop("latents", latents)
                bar.update()

        target_latents = latents[target_pos]
        if output_type == "latent":
            images = target_latents
        else:
            decoded = self.vae.decode(target_latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
            images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        set_latents = [latents[first_member[i] : first_member[i] + k + len(p.targets)] for i, p in enumerate(sets)]
        if not return_dict:
            return images, set_latents
        return JeDiPipelineOutput(images=images, set_latents=set_latents)
