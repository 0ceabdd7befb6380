"""CoRe (Wu et al. 2024): textual inversion regularized by the prompt context, then the UNet.

Stage 1 learns the token with CoRe's context regularization (``context_reg``) as a plug-in of the
stage, and keeps the embedding norm for the updates of a middle window; stage 2 trains the UNet with
the embedding frozen and prior preservation. Before a prompt is drawn, test-time optimization runs a
few steps on the learned embedding only, with the context losses of *that* prompt and no diffusion
loss (there is no image at test time): the method's inference step, applied wherever a CoRe subject
is drawn (``core.subject_pipeline``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from core.attention_maps import capture_cross_attention
from core.config.finetune import CoReSection, FinetuneSection
from core.methods.context_reg import context_losses, prompt_pairs
from core.methods.plan import TOKENS, UNET, MethodPlan, Stage, StepState
from core.methods.registry import Method, register
from core.methods.tokens import LearnedToken, RowGuard, find_token, rescale_rows, row_norms
from core.subjects import SubjectCard


@dataclass(frozen=True)
class ContextRegularization:
    """The stage-1 plug-in: ``lambda_emb·L_emb + lambda_attn·L_attn`` on a regularization prompt drawn
    per step, and the embedding norm kept across the updates of stage steps ``rescale_start..rescale_end``."""

    prompts: tuple[str, ...]
    lambda_emb: float
    lambda_attn: float
    rescale_start: int
    rescale_end: int

    def prepare(self, unet: torch.nn.Module) -> None:
        capture_cross_attention(unet)

    def loss(self, state: StepState) -> tuple[torch.Tensor, dict[str, float]]:
        template = self.prompts[int(torch.randint(len(self.prompts), (1,), generator=state.generator))]
        device = state.noisy.device
        pairs = prompt_pairs(
            state.tokenizer, [template.replace("{1}", state.class_word)], state.subject_text, state.class_word, device
        )
        l_emb, l_attn = context_losses(
            state.text_encoder,
            state.unet,
            pairs,
            state.noisy[:1],
            state.timesteps[:1],
            with_attention=self.lambda_attn > 0,
        )
        loss, metrics = self.lambda_emb * l_emb, {"l_emb": float(l_emb.detach())}
        if l_attn is not None:
            loss = loss + self.lambda_attn * l_attn
            metrics["l_attn"] = float(l_attn.detach())
        return loss, metrics

    @contextmanager
    def around_update(self, state: StepState) -> Iterator[None]:
        weight = state.text_encoder.get_input_embeddings().weight
        inside = self.rescale_start <= state.stage_step <= self.rescale_end
        norms = row_norms(weight, state.token.ids) if inside else None
        yield
        if norms is not None:
            rescale_rows(weight, state.token.ids, norms)

    def settings(self) -> dict:
        return {"context_regularization": asdict(self)}


def plan(settings: FinetuneSection) -> MethodPlan:
    cfg = settings.core
    regularization = ContextRegularization(
        tuple(cfg.regularization_prompts), cfg.lambda_emb, cfg.lambda_attn, cfg.rescale_start, cfg.rescale_end
    )
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


def optimize_embedding_for_prompt(
    pipe, card: SubjectCard, prompt: str, core: CoReSection, steps: int, side: int, seed: int
) -> LearnedToken:
    """Optimise the rows of ``card``'s token in ``pipe``'s text encoder for ``prompt`` (a template with
    ``{0}`` for the subject, optionally ``{1}`` for its class word). Modifies ``pipe`` in place.

    The attention loss needs noisy latents; with no image they are Gaussian noise at random
    timesteps, on the latent grid of the requested output size. The UNet and every other embedding
    row are left exactly as they are."""
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
    optimizer = torch.optim.AdamW([weight], lr=core.stage1.optim.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    latent_side = side // pipe.vae_scale_factor
    shape = (1, unet.config.in_channels, latent_side, latent_side)
    num_train = pipe.scheduler.config.num_train_timesteps
    try:
        for _ in range(steps):
            noisy = torch.randn(shape, generator=g).to(device, unet.dtype)
            timesteps = torch.randint(0, num_train, (1,), generator=g).to(device)
            l_emb, l_attn = context_losses(
                text_encoder, unet, pairs, noisy, timesteps, with_attention=core.lambda_attn > 0
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
    pipe, card: SubjectCard, prompt: str, core: CoReSection, steps: int, side: int, seed: int
) -> Iterator[None]:
    """``pipe`` with the token's rows optimised for ``prompt``; the trained rows come back afterwards, so
    each prompt starts from the trained embedding."""
    weight = pipe.text_encoder.get_input_embeddings().weight
    token = find_token(pipe.tokenizer, card.tokens[0], weight.device)
    trained = weight.detach()[token.ids].clone()
    optimize_embedding_for_prompt(pipe, card, prompt, core, steps, side, seed)
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
        self, pipe, card: SubjectCard, prompt: str, settings: FinetuneSection, steps: int, side: int, seed: int
    ):
        if not card.weights.embeddings:
            raise ValueError(
                f"tto_steps: subject {card.subject_id} ({card.method}) has no learned embedding to optimise"
            )
        return optimized_for(pipe, card, prompt, settings.core, steps, side, seed)


register(Method("core", "CoRe", plan, inference_step=TestTimeOptimization()))
