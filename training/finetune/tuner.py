"""Fine-tuning one subject: models, data, stages and the optimisation step — no Ray in here.

``SubjectTuner`` is the heart every method shares. It holds the base model with what the plan adds
(a learned token, LoRA adapters, cross-attention capture for CoRe), the subject's and class images as
VAE posteriors, and the current stage's optimizer. ``train_step(step)`` runs one optimizer step of
whichever stage owns global step ``step``. All randomness of a step (which images, flips, noise,
timesteps, regularization prompt) comes from a generator keyed by (seed, subject id, step), so
nothing random is checkpointed and a resumed run draws exactly what an uninterrupted one would.

Checkpoint parts are named after what the stages so far have trained (``tokens``, ``unet``,
``unet_lora``, ``text_encoder``, ``text_encoder_lora``): a CoRe run's stage-1 checkpoints hold a few
embedding rows, not a copy of the UNet.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.attention_maps import capture_cross_attention
from core.config import S3JediConfig
from training.finetune.context_reg import context_losses, prompt_pairs
from training.finetune.models import BaseModels, load_base
from training.finetune.plan import TEXT_ENCODER, TOKENS, UNET, MethodPlan
from training.finetune.tokens import LearnedToken, RowGuard, add_token, rescale_rows, row_norms
from training.shell import checkpoint as ckpt
from training.shell.optim import build_lr_schedule, build_optimizer
from training.shell.precision import autocast, grad_scaler

UNET_LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass(frozen=True)
class SubjectJob:
    """One (subject, method) run: what the driver hands to a training worker."""

    subject: str
    source: str
    class_word: str
    method: str
    subject_id: str
    class_images: str | None = None  # cache directory of the class images (prior preservation)
    # More instance images with their own prompts (self-distillation's gold samples): a Parquet file of
    # ``image`` (PNG bytes) and ``prompt`` ({0}/{1} template); a draw is one of them with ``extra_share``.
    extra_instances: str | None = None
    extra_share: float = 0.0


def step_generator(seed: int, subject_id: str, step: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{subject_id}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _sample(mean: torch.Tensor, std: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return mean + std * torch.randn(mean.shape, generator=g).to(mean.device)


class SubjectTuner:
    def __init__(
        self,
        cfg: S3JediConfig,
        plan: MethodPlan,
        job: SubjectJob,
        images: np.ndarray,
        class_images: np.ndarray | None,
        device: torch.device,
        precision: str,
        extra: tuple[np.ndarray, list[str]] | None = None,
    ):
        self.cfg, self.plan, self.job, self.device, self.precision = cfg, plan, job, device, precision
        fcfg = cfg.finetune
        self.models: BaseModels = load_base(cfg, device)
        m = self.models
        self.token: LearnedToken | None = None
        if plan.new_token is not None:
            self.token = add_token(m.tokenizer, m.text_encoder, plan.new_token, job.class_word)
        trained = plan.trained_by(len(plan.stages) - 1)
        self.lora = plan.unet is not None and plan.unet.mode == "lora"
        if self.lora:
            from peft import LoraConfig

            def lora(targets):
                return LoraConfig(
                    r=plan.unet.lora_rank,
                    lora_alpha=plan.unet.lora_alpha,
                    init_lora_weights="gaussian",
                    target_modules=targets,
                )

            # LoRA initialisation is the only draw from the global RNGs: seeded, and the caller's left alone.
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(cfg.seed)
                if UNET in trained:
                    m.unet.add_adapter(lora(UNET_LORA_TARGETS))
                if TEXT_ENCODER in trained:
                    m.text_encoder.add_adapter(lora(TEXT_LORA_TARGETS))
        m.unet.requires_grad_(False)
        m.text_encoder.requires_grad_(False)
        if fcfg.gradient_checkpointing:
            m.unet.enable_gradient_checkpointing()
            m.text_encoder.gradient_checkpointing_enable()
        if any(s.context_reg for s in plan.stages):
            capture_cross_attention(m.unet)

        subject_text = self.token.text if self.token else plan.identifier
        # One prompt per instance image: the photos share the instance prompt, extra images bring theirs.
        self.num_photos = len(images)
        prompts = [plan.prompt_template] * len(images)
        if extra is not None and len(extra[0]):
            images, prompts = np.concatenate([images, extra[0]]), prompts + list(extra[1])
        self.instance_ids = m.token_ids([self.render(p, subject_text) for p in prompts])
        self.class_ids = m.token_ids([fcfg.class_images.prompt.replace("{1}", job.class_word)])
        self.subject_text = subject_text
        # Posteriors of every image and its mirror image: (2, N, 4, h, w).
        plain, mirrored = m.latent_posterior(images), m.latent_posterior(np.ascontiguousarray(images[:, :, ::-1]))
        self.instance = torch.stack([plain[0], mirrored[0]]), torch.stack([plain[1], mirrored[1]])
        self.prior = m.latent_posterior(class_images) if class_images is not None and len(class_images) else None
        if self.prior is None and any(s.prior and s.steps for s in plan.stages):
            raise ValueError(f"{job.subject}: prior preservation needs class images, none were given")
        self.stage_index: int | None = None

    def render(self, template: str, subject_text: str) -> str:
        return template.replace("{0}", subject_text).replace("{1}", self.job.class_word)

    # -- what is trained --------------------------------------------------------------------------
    def _params(self, part: str) -> list[torch.nn.Parameter]:
        m = self.models
        if part == TOKENS:
            return [m.text_encoder.get_input_embeddings().weight]
        module = m.unet if part == UNET else m.text_encoder
        if self.lora:
            return [p for n, p in module.named_parameters() if "lora_" in n]
        return list(module.parameters())

    def start_stage(self, index: int) -> None:
        stage = self.plan.stages[index]
        m = self.models
        m.unet.requires_grad_(False)
        m.text_encoder.requires_grad_(False)
        self.params = [p for part in sorted(stage.trains) for p in self._params(part)]
        for p in self.params:
            p.requires_grad_(True)
        m.unet.train(UNET in stage.trains)
        m.text_encoder.train(TEXT_ENCODER in stage.trains)
        self.optimizer = build_optimizer(self.params, stage.optim, self.device.type == "cuda")
        self.schedule = build_lr_schedule(self.optimizer, stage.optim, stage.steps)
        self.scaler = grad_scaler(self.precision)
        weight = m.text_encoder.get_input_embeddings().weight
        self.guard = RowGuard(weight, self.token.ids) if TOKENS in stage.trains else None
        self.stage_index = index

    # -- one step ---------------------------------------------------------------------------------
    def _batch(self, g: torch.Generator, with_prior: bool) -> tuple[torch.Tensor, torch.Tensor]:
        bs = self.cfg.finetune.batch_size
        mean, std = self.instance
        idx = torch.randint(0, self.num_photos, (bs,), generator=g)
        if mean.shape[1] > self.num_photos:  # extra images: each draw is one of them with extra_share
            extra = torch.randint(self.num_photos, mean.shape[1], (bs,), generator=g)
            idx = torch.where(torch.rand(bs, generator=g) < self.job.extra_share, extra, idx)
        flips = (torch.rand(bs, generator=g) < 0.5).long() if self.cfg.finetune.flip else torch.zeros(bs).long()
        latents = _sample(mean[flips, idx], std[flips, idx], g)
        ids = self.instance_ids[idx.to(self.instance_ids.device)]
        if with_prior:
            cmean, cstd = self.prior
            cidx = torch.randint(0, cmean.shape[0], (bs,), generator=g)
            latents = torch.cat([latents, _sample(cmean[cidx], cstd[cidx], g)])
            ids = torch.cat([ids, self.class_ids.expand(bs, -1)])
        return latents, ids

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step at global step ``step`` (1-based); returns the step's metrics."""
        index = self.plan.stage_of(step)
        if index != self.stage_index:
            self.start_stage(index)
        stage = self.plan.stages[index]
        m, bs = self.models, self.cfg.finetune.batch_size
        g = step_generator(self.cfg.seed, self.job.subject_id, step)
        latents, ids = self._batch(g, stage.prior is not None)
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        timesteps = torch.randint(0, m.noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=g)
        timesteps = timesteps.to(self.device)
        noisy = m.noise_scheduler.add_noise(latents, noise, timesteps)
        text_trained = bool(stage.trains & {TOKENS, TEXT_ENCODER})
        metrics: dict[str, float] = {}
        with autocast(self.precision, self.device):
            with contextlib.nullcontext() if text_trained else torch.no_grad():
                states = m.text_encoder(ids)[0]
            pred = m.unet(noisy, timesteps, states).sample.float()
            target = m.target(latents, noise, timesteps).float()
            loss = F.mse_loss(pred[:bs], target[:bs])
            metrics["loss_instance"] = float(loss.detach())
            if stage.prior is not None:
                prior = F.mse_loss(pred[bs:], target[bs:])
                loss = loss + stage.prior.loss_weight * prior
                metrics["loss_prior"] = float(prior.detach())
            reg = stage.context_reg
            if reg is not None:
                template = reg.regularization_prompts[
                    int(torch.randint(len(reg.regularization_prompts), (1,), generator=g))
                ]
                pairs = prompt_pairs(
                    m.tokenizer,
                    [template.replace("{1}", self.job.class_word)],
                    self.subject_text,
                    self.job.class_word,
                    self.device,
                )
                l_emb, l_attn = context_losses(
                    m.text_encoder, m.unet, pairs, noisy[:1], timesteps[:1], with_attention=reg.lambda_attn > 0
                )
                loss = loss + reg.lambda_emb * l_emb
                metrics["l_emb"] = float(l_emb.detach())
                if l_attn is not None:
                    loss = loss + reg.lambda_attn * l_attn
                    metrics["l_attn"] = float(l_attn.detach())
        self.scaler.scale(loss).backward()
        if self.guard is not None:
            self.guard.mask_grad()
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, stage.optim.max_grad_norm))
        weight = m.text_encoder.get_input_embeddings().weight
        local_step = step - self.plan.stage_start(index)
        rescale = reg is not None and reg.rescale_start <= local_step <= reg.rescale_end
        norms = row_norms(weight, self.token.ids) if rescale else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        if self.guard is not None:
            self.guard.restore()
        if norms is not None:
            rescale_rows(weight, self.token.ids, norms)
        metrics.update(loss=float(loss.detach()), grad_norm=grad_norm, lr=self.schedule.get_last_lr()[0])
        if self.token is not None:
            metrics["embedding_norm"] = float(row_norms(weight, self.token.ids).mean())
        return metrics

    # -- checkpoints ------------------------------------------------------------------------------
    def _parts(self, index: int) -> dict[str, torch.nn.Module | None]:
        trained = self.plan.trained_by(index)
        parts: dict[str, torch.nn.Module | None] = {}
        if TOKENS in trained:
            parts["tokens"] = None
        for part, module in ((UNET, self.models.unet), (TEXT_ENCODER, self.models.text_encoder)):
            if part in trained:
                parts[f"{part}_lora" if self.lora else part] = module
        return parts

    def save(self, directory: Path, step: int, provenance: dict | None = None) -> None:
        from peft.utils import get_peft_model_state_dict

        for name, module in self._parts(self.stage_index).items():
            if name == "tokens":
                state = {"rows": self.models.text_encoder.get_input_embeddings().weight[self.token.ids]}
            elif name.endswith("_lora"):
                state = get_peft_model_state_dict(module)
            else:
                state = module.state_dict()
            ckpt.write_weights(directory, name, state)
        ckpt.write_state(directory, "optimizer", self.optimizer.state_dict())
        ckpt.write_state(directory, "lr_schedule", self.schedule.state_dict())
        ckpt.write_state(directory, "grad_scaler", self.scaler.state_dict())
        meta = {"step": step, "stage": self.stage_index, "method": self.plan.method, **(provenance or {})}
        ckpt.write_json(directory, "meta", meta)

    def restore(self, directory: Path) -> int:
        """Load a checkpoint written by ``save``; returns its step. The optimizer state is loaded when
        the next step belongs to the same stage (a checkpoint at a stage's end starts the next afresh)."""
        from peft.utils import set_peft_model_state_dict

        meta = ckpt.read_json(directory, "meta")
        if meta is None or meta.get("method") != self.plan.method:
            raise ValueError(f"{directory}: not a {self.plan.method} checkpoint of this run")
        step, stage = meta["step"], meta["stage"]
        for name, module in self._parts(stage).items():
            state = ckpt.read_weights(directory, name)
            if state is None:
                raise ValueError(f"{directory}: checkpoint lacks {name}.safetensors")
            if name == "tokens":
                with torch.no_grad():
                    self.models.text_encoder.get_input_embeddings().weight[self.token.ids] = state["rows"].to(
                        self.device
                    )
            elif name.endswith("_lora"):
                set_peft_model_state_dict(module, state)
            else:
                module.load_state_dict(state)
        if step < self.plan.total_steps and self.plan.stage_of(step + 1) == stage:
            self.start_stage(stage)
            self.optimizer.load_state_dict(ckpt.read_state(directory, "optimizer"))
            self.schedule.load_state_dict(ckpt.read_state(directory, "lr_schedule"))
            self.scaler.load_state_dict(ckpt.read_state(directory, "grad_scaler"))
        return step
