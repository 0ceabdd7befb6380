"""CoRe (paper 003): textual inversion regularized by the prompt context, then the UNet.

Stage 1 learns the token with CoRe's context regularization (``context_reg``: L_emb, Eq. 3, and
L_attn, Eq. 4, on a regularization prompt drawn per step from the animate or inanimate list by the
subject's class) as a plug-in of the stage, and keeps the embedding norm for the updates of a middle
window (Eq. 6). Stage 2 trains every UNet weight with the embedding frozen and, as in the paper and
the authors' stage-2 script, no prior preservation (``finetune.core.prior`` turns it on).

Before a prompt is drawn, test-time optimization (§"Test-Time Optimization") runs a few steps on the
learned embedding only, with the context losses of *that* prompt and no diffusion loss: the method's
inference step, applied wherever a CoRe subject is drawn (``core.subject_pipeline``). Its noisy
latents are the subject's own training photos (their VAE latents are published with the subject)
noised at random timesteps, as the authors' script does; its optimizer is ``finetune.core.tto_optim``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from core.attention_maps import capture_cross_attention
from core.config.finetune import CoReSection, FinetuneSection
from core.methods.context_reg import context_losses, prompt_pairs
from core.methods.plan import TOKENS, UNET, MethodPlan, Stage, StepState
from core.methods.registry import Method, register
from core.methods.tokens import LearnedToken, RowGuard, find_token, rescale_rows, row_norms
from core.subjects import INSTANCE_LATENTS_FILE, SubjectCard

SETTINGS = (
    "lambda_emb",
    "lambda_attn",
    "rescale_start",
    "rescale_end",
    "animate_prompts",
    "inanimate_prompts",
    "animate_classes",
)
"""The fields of ``finetune.core`` that decide what the stage-1 plug-in does."""


@dataclass(frozen=True)
class ContextRegularization:
    """The stage-1 plug-in: ``lambda_emb·L_emb + lambda_attn·L_attn`` on a regularization prompt drawn
    per step (from the subject's list), and the embedding norm kept across the updates of stage steps
    ``rescale_start..rescale_end``."""

    core: CoReSection

    def prepare(self, unet: torch.nn.Module) -> None:
        capture_cross_attention(unet)

    def loss(self, state: StepState) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.core
        prompts = cfg.regularization_prompts(state.class_word)
        template = prompts[int(torch.randint(len(prompts), (1,), generator=state.generator))]
        device = state.noisy.device
        pairs = prompt_pairs(
            state.tokenizer, [template.replace("{1}", state.class_word)], state.subject_text, state.class_word, device
        )
        l_emb, l_attn = context_losses(
            state.text_encoder, state.unet, pairs, state.noisy, state.timesteps, with_attention=cfg.lambda_attn > 0
        )
        loss, metrics = cfg.lambda_emb * l_emb, {"l_emb": float(l_emb.detach())}
        if l_attn is not None:
            loss = loss + cfg.lambda_attn * l_attn
            metrics["l_attn"] = float(l_attn.detach())
        return loss, metrics

    @contextmanager
    def around_update(self, state: StepState) -> Iterator[None]:
        weight = state.text_encoder.get_input_embeddings().weight
        inside = self.core.rescale_start <= state.stage_step <= self.core.rescale_end
        norms = row_norms(weight, state.token.ids) if inside else None
        yield
        if norms is not None:
            rescale_rows(weight, state.token.ids, norms)

    def settings(self) -> dict:
        return {"context_regularization": self.core.model_dump(mode="json", include=set(SETTINGS))}


def plan(settings: FinetuneSection) -> MethodPlan:
    cfg = settings.core
    regularization = ContextRegularization(cfg)
    stages = (
        Stage("token", cfg.stage1.steps, cfg.stage1.optim, frozenset({TOKENS}), plugins=(regularization,)),
        Stage(
            "unet",
            cfg.stage2.steps,
            cfg.stage2.optim,
            frozenset({UNET}),
            prior=cfg.prior if cfg.prior.enabled else None,
        ),
    )
    return MethodPlan("core", None, cfg.token, cfg.prompt_template, cfg.unet, stages)


def load_instance_latents(subject_dir: Path, card: SubjectCard) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE posterior (mean, std) ``(N, C, h, w)`` of the subject's training photos."""
    from safetensors.torch import load_file

    if not card.weights.instance_latents:
        raise ValueError(
            f"tto_steps: subject {card.subject_id} was published without the latents of its photos "
            f"({INSTANCE_LATENTS_FILE}), which test-time optimization noises; train it again or set tto_steps 0"
        )
    state = load_file(str(Path(subject_dir) / INSTANCE_LATENTS_FILE))
    return state["mean"], state["std"]


def optimize_embedding_for_prompt(
    pipe,
    card: SubjectCard,
    latents: tuple[torch.Tensor, torch.Tensor],
    prompt: str,
    core: CoReSection,
    steps: int,
    seed: int,
) -> LearnedToken:
    """Optimise the rows of ``card``'s token in ``pipe``'s text encoder for ``prompt`` (a template with
    ``{0}`` for the subject, optionally ``{1}`` for its class word). Modifies ``pipe`` in place.

    Each step draws every training photo's latent from its posterior ``latents`` (mean, std), noises
    it at a random timestep, and takes ``lambda_emb·L_emb + lambda_attn·L_attn`` of the prompt pair on
    that batch — no diffusion loss. The UNet and every other embedding row are left exactly as they are."""
    from diffusers import DDPMScheduler

    if prompt.count("{0}") != 1:
        raise ValueError(f"prompt: {prompt!r} needs {{0}} exactly once where the subject goes (test-time optimization)")
    text_encoder, unet = pipe.text_encoder, pipe.unet
    device = next(unet.parameters()).device
    token = find_token(pipe.tokenizer, card.tokens[0], device)
    capture_cross_attention(unet)
    pairs = prompt_pairs(pipe.tokenizer, [prompt.replace("{1}", card.class_word)], token.text, card.class_word, device)
    weight = text_encoder.get_input_embeddings().weight
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    weight.requires_grad_(True)
    guard = RowGuard(weight, token.ids)
    optim = core.tto_optim
    optimizer = torch.optim.AdamW([weight], lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
    g = torch.Generator().manual_seed(seed)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    mean, std = (t.float() for t in latents)
    try:
        for _ in range(steps):
            clean = mean + std * torch.randn(mean.shape, generator=g)
            noise = torch.randn(mean.shape, generator=g)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(mean),), generator=g)
            noisy = noise_scheduler.add_noise(clean, noise, timesteps).to(device, unet.dtype)
            l_emb, l_attn = context_losses(
                text_encoder, unet, pairs, noisy, timesteps.to(device), with_attention=core.lambda_attn > 0
            )
            loss = core.lambda_emb * l_emb + (core.lambda_attn * l_attn if l_attn is not None else 0.0)
            loss.backward()
            guard.mask_grad()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            guard.restore()
    finally:
        weight.requires_grad_(False)
    return token


@contextmanager
def optimized_for(
    pipe,
    card: SubjectCard,
    latents: tuple[torch.Tensor, torch.Tensor],
    prompt: str,
    core: CoReSection,
    steps: int,
    seed: int,
) -> Iterator[None]:
    """``pipe`` with the token's rows optimised for ``prompt``; the trained rows come back afterwards, so
    each prompt starts from the trained embedding."""
    weight = pipe.text_encoder.get_input_embeddings().weight
    token = find_token(pipe.tokenizer, card.tokens[0], weight.device)
    trained = weight.detach()[token.ids].clone()
    optimize_embedding_for_prompt(pipe, card, latents, prompt, core, steps, seed)
    try:
        yield
    finally:
        with torch.no_grad():
            weight[token.ids] = trained


class TestTimeOptimization:
    """CoRe's inference step, with its settings from ``finetune.core`` of the drawing side's config."""

    __test__ = False  # not a pytest class

    def default_steps(self, settings: FinetuneSection) -> int:
        return settings.core.tto_steps

    def applied(
        self, pipe, card: SubjectCard, subject_dir: Path, prompt: str, settings: FinetuneSection, steps: int, seed: int
    ):
        if not card.weights.embeddings:
            raise ValueError(
                f"tto_steps: subject {card.subject_id} ({card.method}) has no learned embedding to optimise"
            )
        latents = load_instance_latents(subject_dir, card)
        return optimized_for(pipe, card, latents, prompt, settings.core, steps, seed)


register(Method("core", "CoRe", plan, inference_step=TestTimeOptimization(), instance_latents=True))
