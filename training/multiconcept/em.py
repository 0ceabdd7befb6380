"""Concept-driven EM on one scene — no Ray in here.

``SceneTuner`` holds the base model with one new token per concept and a (zero-initialised) UNet
LoRA, the scene's images as VAE posteriors, and the current concept masks.

- **E-step** (``estimate_masks``): for each image, the prompt naming all its concepts is run through
  the UNet at ``estep_timesteps`` random timesteps; each concept token's cross-attention, averaged over
  every cross-attention layer and those timesteps (``core.attention_maps.timestep_averaged_maps``),
  becomes its mask (``masks.attention_masks``: threshold + DenseCRF). Step 0's masks come from the
  initial tokens alone — the no-update baseline.
- **M-step** (``train_step``): one image, a random non-empty subset of its concepts, the prompt naming
  them; loss = diffusion loss inside the union of their masks (Break-A-Scene's masked loss) +
  ``lambda_attn`` · MSE between each token's max-normalised attention map and its mask. Phase 1
  (``em_steps``) trains the tokens, with an E-step every ``estep_every`` steps and at the phase's end;
  phase 2 (``joint_steps``) trains tokens and the LoRA with the masks fixed.

All randomness of a step comes from a generator keyed by (seed, scene, step), so nothing random is
checkpointed and a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.attention_maps import STORE_KWARG, AttentionStore, capture_cross_attention, timestep_averaged_maps, token_maps
from core.config import S3JediConfig
from core.config.finetune import NewTokenSection
from training.finetune.models import BaseModels, load_base
from training.finetune.tokens import LearnedToken, RowGuard, add_token
from training.finetune.tuner import UNET_LORA_TARGETS, step_generator
from training.multiconcept.masks import attention_masks, latent_masks
from training.multiconcept.scene import Scene
from training.shell import checkpoint as ckpt
from training.shell.optim import build_lr_schedule, build_optimizer
from training.shell.precision import autocast, grad_scaler

TOKENS_PHASE, JOINT_PHASE = 0, 1


def _sample(mean: torch.Tensor, std: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return mean + std * torch.randn(mean.shape, generator=g).to(mean.device)


class SceneTuner:
    def __init__(self, cfg: S3JediConfig, scene: Scene, device: torch.device, precision: str):
        from peft import LoraConfig

        self.cfg, self.scene, self.device, self.precision = cfg, scene, device, precision
        mc = cfg.multiconcept
        self.models: BaseModels = load_base(cfg, device)
        m = self.models
        self.tokens: list[LearnedToken] = []
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)  # random token rows and LoRA initialisation: seeded, caller's RNG kept
            for concept in scene.concepts:
                spec = NewTokenSection(token=concept.token, initializer=concept.initializer or "a", num_vectors=1)
                token = add_token(m.tokenizer, m.text_encoder, spec, "")
                if concept.initializer is None:  # random: a draw with the embedding table's statistics
                    table = m.text_encoder.get_input_embeddings().weight
                    with torch.no_grad():
                        table[token.ids] = table.mean(0) + table.std(0) * torch.randn_like(table[token.ids])
                self.tokens.append(token)
            m.unet.add_adapter(
                LoraConfig(
                    r=mc.lora_rank,
                    lora_alpha=mc.lora_rank,
                    init_lora_weights="gaussian",
                    target_modules=UNET_LORA_TARGETS,
                )
            )
        self.token_ids = torch.cat([t.ids for t in self.tokens])  # (K,): one vector per concept
        m.unet.requires_grad_(False)
        m.text_encoder.requires_grad_(False)
        capture_cross_attention(m.unet)
        self.posterior = m.latent_posterior(scene.images)  # (M, 4, h, w) each
        self.latent_size = tuple(self.posterior[0].shape[-2:])
        self.masks: np.ndarray | None = None  # (M, K, R, R) bool
        self.mask_targets: torch.Tensor | None = None  # (M, K, h, w) float
        self.phase: int | None = None

    # -- prompts ----------------------------------------------------------------------------------
    def prompt(self, concepts: list[int]) -> str:
        names = " and ".join(self.tokens[k].token for k in concepts)
        return self.cfg.multiconcept.prompt_template.replace("{concepts}", names)

    def encode(self, concepts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(1, L)`` of the prompt naming ``concepts`` and each concept token's position ``(S,)``."""
        ids = self.models.token_ids([self.prompt(concepts)])
        positions = []
        for k in concepts:
            found = (ids[0] == self.token_ids[k]).nonzero()
            if not len(found):
                raise ValueError(f"multiconcept.prompt_template: token {self.tokens[k].token} was cut off the prompt")
            positions.append(int(found[0]))
        return ids, torch.tensor(positions, device=ids.device)

    # -- E-step -----------------------------------------------------------------------------------
    def set_masks(self, masks: np.ndarray) -> None:
        self.masks = masks
        self.mask_targets = latent_masks(masks, self.latent_size, self.device)

    @torch.no_grad()
    def estimate_masks(self, step: int) -> np.ndarray:
        """Every image's concept masks from the current tokens (``(M, K, R, R)`` bool); absent concepts
        get an empty mask."""
        mc, m = self.cfg.multiconcept, self.models
        g = step_generator(self.cfg.seed, f"{self.scene.name}:estep", step)
        images, present = self.scene.images, self.scene.present
        masks = np.zeros((len(images), len(self.tokens), *images.shape[1:3]), dtype=bool)
        mean = self.posterior[0]
        for i in range(len(images)):
            concepts = [int(k) for k in np.nonzero(present[i])[0]]
            ids, positions = self.encode(concepts)
            states = m.text_encoder(ids)[0]
            timesteps = torch.randint(
                0, m.noise_scheduler.config.num_train_timesteps, (mc.estep_timesteps,), generator=g
            )
            noise = torch.randn((mc.estep_timesteps, *mean.shape[1:]), generator=g).to(self.device)
            with autocast(self.precision, self.device):
                maps = timestep_averaged_maps(
                    m.unet, m.noise_scheduler, mean[i : i + 1], states, positions, timesteps.to(self.device), noise
                )
            masks[i, concepts] = attention_masks(maps, images[i], mc.mask_threshold, mc.crf)
        return masks

    # -- M-step -----------------------------------------------------------------------------------
    def start_phase(self, phase: int) -> None:
        mc, m = self.cfg.multiconcept, self.models
        m.unet.requires_grad_(False)
        weight = m.text_encoder.get_input_embeddings().weight
        self.params = [weight]
        if phase == JOINT_PHASE:
            self.params += [p for n, p in m.unet.named_parameters() if "lora_" in n]
        for p in self.params:
            p.requires_grad_(True)
        m.unet.train(phase == JOINT_PHASE)
        optim, steps = (mc.token_optim, mc.em_steps) if phase == TOKENS_PHASE else (mc.joint_optim, mc.joint_steps)
        self.optimizer = build_optimizer(self.params, optim, self.device.type == "cuda")
        self.schedule = build_lr_schedule(self.optimizer, optim, steps)
        self.scaler = grad_scaler(self.precision)
        self.max_grad_norm = optim.max_grad_norm
        self.guard = RowGuard(weight, self.token_ids)
        self.phase = phase

    def phase_of(self, step: int) -> int:
        return TOKENS_PHASE if step <= self.cfg.multiconcept.em_steps else JOINT_PHASE

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step at global step ``step`` (1-based) with the current masks."""
        if self.mask_targets is None:
            raise RuntimeError("train_step: no masks yet; run estimate_masks(0) first")
        phase = self.phase_of(step)
        if phase != self.phase:
            self.start_phase(phase)
        mc, m = self.cfg.multiconcept, self.models
        g = step_generator(self.cfg.seed, self.scene.name, step)
        image = int(torch.randint(len(self.scene.images), (1,), generator=g))
        present = [int(k) for k in np.nonzero(self.scene.present[image])[0]]
        count = int(torch.randint(1, len(present) + 1, (1,), generator=g))
        concepts = [present[int(j)] for j in torch.randperm(len(present), generator=g)[:count]]
        ids, positions = self.encode(concepts)
        latents = _sample(self.posterior[0][image : image + 1], self.posterior[1][image : image + 1], g)
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        timesteps = torch.randint(0, m.noise_scheduler.config.num_train_timesteps, (1,), generator=g).to(self.device)
        noisy = m.noise_scheduler.add_noise(latents, noise, timesteps)
        targets = self.mask_targets[image, concepts]  # (S, h, w)
        union = targets.amax(dim=0)
        with autocast(self.precision, self.device):
            states = m.text_encoder(ids)[0]
            store = AttentionStore()
            pred = m.unet(noisy, timesteps, states, cross_attention_kwargs={STORE_KWARG: store}).sample.float()
            target = m.target(latents, noise, timesteps).float()
            error = ((pred - target) ** 2).mean(dim=1)[0]  # (h, w)
            loss_diffusion = (error * union).sum() / union.sum().clamp_min(1.0)
            maps = token_maps(store, positions, self.latent_size)[0]  # (S, h, w)
            maps = maps / maps.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
            loss_attention = F.mse_loss(maps, targets)
            loss = loss_diffusion + mc.lambda_attn * loss_attention
        self.scaler.scale(loss).backward()
        self.guard.mask_grad()
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        self.guard.restore()
        return {
            "loss": float(loss.detach()),
            "loss_diffusion": float(loss_diffusion.detach()),
            "loss_attention": float(loss_attention.detach()),
            "grad_norm": grad_norm,
            "lr": self.schedule.get_last_lr()[0],
            "concepts": float(count),
        }

    # -- weights ----------------------------------------------------------------------------------
    def token_rows(self) -> torch.Tensor:
        return self.models.text_encoder.get_input_embeddings().weight[self.token_ids].detach()

    def save(self, directory: Path, step: int, history: list[dict], provenance: dict | None = None) -> None:
        from peft.utils import get_peft_model_state_dict

        ckpt.write_weights(directory, "tokens", {"rows": self.token_rows()})
        ckpt.write_weights(directory, "unet_lora", get_peft_model_state_dict(self.models.unet))
        ckpt.write_weights(directory, "masks", {"masks": torch.from_numpy(self.masks.astype(np.uint8))})
        if self.phase is not None:
            ckpt.write_state(directory, "optimizer", self.optimizer.state_dict())
            ckpt.write_state(directory, "lr_schedule", self.schedule.state_dict())
            ckpt.write_state(directory, "grad_scaler", self.scaler.state_dict())
        meta = {"step": step, "phase": self.phase, "history": history, "method": "multiconcept", **(provenance or {})}
        ckpt.write_json(directory, "meta", meta)

    def restore(self, directory: Path) -> tuple[int, list[dict]]:
        """Load a checkpoint written by ``save``; returns its step and the mask history so far. The
        optimizer state is loaded when the next step belongs to the same phase."""
        from peft.utils import set_peft_model_state_dict

        meta = ckpt.read_json(directory, "meta")
        if meta is None or meta.get("method") != "multiconcept":
            raise ValueError(f"{directory}: not a multiconcept checkpoint")
        with torch.no_grad():
            rows = ckpt.read_weights(directory, "tokens")["rows"]
            self.models.text_encoder.get_input_embeddings().weight[self.token_ids] = rows.to(self.device)
        set_peft_model_state_dict(self.models.unet, ckpt.read_weights(directory, "unet_lora"))
        self.set_masks(ckpt.read_weights(directory, "masks")["masks"].numpy().astype(bool))
        step, phase = meta["step"], meta["phase"]
        if phase is not None and step < self.cfg.multiconcept.total_steps and self.phase_of(step + 1) == phase:
            self.start_phase(phase)
            self.optimizer.load_state_dict(ckpt.read_state(directory, "optimizer"))
            self.schedule.load_state_dict(ckpt.read_state(directory, "lr_schedule"))
            self.scaler.load_state_dict(ckpt.read_state(directory, "grad_scaler"))
        return step, meta["history"]
