"""Concept-driven EM on one scene: the recipe the training shell runs — no Ray in here.

``SceneRecipe`` holds the base model with one new token per concept (and, with ``unet.mode: lora``, a
zero-initialised UNet LoRA), the scene's images as VAE posteriors, and the current concept masks.

- **Warm start** (steps ``1..warmup_steps``): the tokens are inverted on the whole images, each prompt
  naming every concept of its image, with the plain diffusion loss — no masks yet (paper 004 §3,
  "Optimization": inversion without masking gives the initial tokens).
- **E-step** (``estimate_masks``): for each image, the prompt naming all its concepts is run through
  the UNet at ``estep_timesteps`` random timesteps; each concept token's cross-attention, averaged over
  every cross-attention layer and those timesteps (``core.attention_maps.timestep_averaged_maps``),
  becomes its mask (``masks.attention_masks``: threshold, then the image's concepts compete for its
  pixels in a DenseCRF). The first E-step (after the warm start) gives the initial masks — what the
  no-update baseline keeps.
- **M-step** (``train_step``): one image, a random non-empty subset of its concepts, the prompt naming
  them; loss = diffusion loss inside the union of their masks (Break-A-Scene's masked loss) +
  ``lambda_attn`` · MSE between each token's max-normalised attention map and its mask. Phase 1
  (``em_steps``) trains the tokens, with an E-step every ``estep_every`` steps and at the phase's end;
  phase 2 (``joint_steps``) trains the tokens and the UNet weights (or its LoRA) with the masks fixed.

All randomness of a step comes from a generator keyed by (seed, scene, step), so nothing random is
checkpointed and a resumed run draws what an uninterrupted one would. A checkpoint is taken after
every E-step (the masks are state). The export, under ``<run dir>/outputs``, is what ``export``
describes: the mask history, the IoU curve, samples, and the subject published to the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core import storage
from core.attention_maps import STORE_KWARG, AttentionStore, capture_cross_attention, timestep_averaged_maps, token_maps
from core.config import S3JediConfig
from core.config.finetune import NewTokenSection
from core.config.multiconcept import MultiConceptSection
from core.config.training import RunSection, ScalingSection
from core.logs import get_logger
from core.methods.tokens import LearnedToken, RowGuard, add_token
from core.subject_pipeline import published, store_location
from core.subjects import SubjectStore
from training.multiconcept.export import (
    draw_samples,
    history_entry,
    mask_grid,
    write_masks,
    write_reports,
    write_subject,
)
from training.multiconcept.masks import attention_masks, latent_masks
from training.multiconcept.scene import Scene, load_scene
from training.shell import checkpoint as ckpt
from training.shell.lora import UNET_LORA_TARGETS, lora_config
from training.shell.optim import Optimization
from training.shell.precision import autocast, resolve_precision
from training.shell.ray_run import local_run_dir, nested_run, run_dir
from training.shell.recipe import Recipe, Worker
from training.shell.sd_parts import SDParts, load_base, sample_posterior
from training.shell.seeds import step_generator

log = get_logger("multiconcept")
TOKENS_PHASE, JOINT_PHASE = 0, 1


def scene_run(cfg: S3JediConfig, subject_id: str) -> RunSection:
    """The scene's own ``RunSection``: ``<storage>/<run name>/<subject id>``."""
    return nested_run(cfg.multiconcept.run, subject_id)


def estep_due(step: int, mc: MultiConceptSection) -> bool:
    """E-steps: after the warm start (the initial masks), every ``estep_every`` phase-1 steps, and at
    phase 1's end."""
    start, end = mc.warmup_steps, mc.em_end
    return step == start or (start < step <= end and ((step - start) % mc.estep_every == 0 or step == end))


@dataclass
class SceneBatch:
    step: int
    image: int
    concepts: list[int]
    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor


class SceneRecipe(Recipe):
    kind = "multiconcept"
    run_field = "multiconcept.run"

    def __init__(self, cfg: S3JediConfig, *, scene: str, subject_id: str):
        super().__init__(cfg, scene=scene, subject_id=subject_id)
        self.scene_path, self.subject_id = scene, subject_id

    # -- driver side ------------------------------------------------------------------------------
    @property
    def run(self) -> RunSection:
        return scene_run(self.cfg, self.subject_id)

    @property
    def scaling(self) -> ScalingSection:
        return self.cfg.multiconcept.scaling

    @property
    def steps(self) -> int:
        return self.cfg.multiconcept.total_steps

    @property
    def label(self) -> str:
        return f"{self.cfg.multiconcept.run.name}/{self.subject_id}"

    def settings(self) -> dict:
        mc = self.cfg.multiconcept.model_dump(
            mode="json", exclude={"run", "scaling", "subject_id", "sample_prompts", "sample_steps", "sample_guidance"}
        )
        return {"multiconcept": mc, "models.sd": self.cfg.models.sd, "seed": self.cfg.seed, "scene": self.scene_path}

    @property
    def export_location(self) -> str:
        return storage.join(store_location(self.cfg), self.subject_id)

    # -- worker side ------------------------------------------------------------------------------
    def setup(self, worker: Worker) -> None:
        mc = self.cfg.multiconcept
        self.load(load_scene(self.scene_path, mc), worker.device, resolve_precision(mc.precision, worker.device))

    def load(self, scene: Scene, device: torch.device, precision: str) -> None:
        """The models and the scene's images; the run's ``outputs`` folder."""
        cfg = self.cfg
        self.scene, self.device, self.precision = scene, device, precision
        self.outputs = local_run_dir(self.run) / "outputs"
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.history: list[dict] = []
        self.last: dict[str, float] = {}
        mc = cfg.multiconcept
        self.models: SDParts = load_base(cfg, device)
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
            self.lora = mc.unet.mode == "lora"
            if self.lora:
                m.unet.add_adapter(lora_config(mc.unet.lora_rank, mc.unet.lora_alpha, UNET_LORA_TARGETS))
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

    def estep(self, step: int) -> dict[str, float]:
        """Re-estimate the masks, record them (files and history); the mask IoU when truth is known."""
        self.set_masks(self.estimate_masks(step))
        entry = history_entry(step, self.scene, self.masks)
        self.history.append(entry)
        write_masks(self.outputs, step, self.scene, self.masks)
        log.info("masks estimated", subject=self.subject_id, step=step, mean_iou=entry.get("mean_iou"))
        return {"val/mask_iou": entry["mean_iou"]} if "mean_iou" in entry else {}

    def begin(self, step: int) -> dict[str, float]:
        return self.estep(0) if self.masks is None and self.cfg.multiconcept.warmup_steps == 0 else {}

    # -- M-step -----------------------------------------------------------------------------------
    def start_phase(self, phase: int) -> None:
        mc, m = self.cfg.multiconcept, self.models
        m.unet.requires_grad_(False)
        weight = m.text_encoder.get_input_embeddings().weight
        params = [weight]
        if phase == JOINT_PHASE:
            params += [p for n, p in m.unet.named_parameters() if "lora_" in n or not self.lora]
        for p in params:
            p.requires_grad_(True)
        m.unet.train(phase == JOINT_PHASE)
        optim, steps = (mc.token_optim, mc.em_end) if phase == TOKENS_PHASE else (mc.joint_optim, mc.joint_steps)
        self.optimization = Optimization(params, optim, steps, self.precision, self.device)
        self.guard = RowGuard(weight, self.token_ids)
        self.phase = phase

    def phase_of(self, step: int) -> int:
        return TOKENS_PHASE if step <= self.cfg.multiconcept.em_end else JOINT_PHASE

    def batch(self, step: int) -> SceneBatch:
        """Step ``step``'s image, a random non-empty subset of its concepts (all of them in the warm
        start), latents, noise, timesteps."""
        m = self.models
        g = step_generator(self.cfg.seed, self.scene.name, step)
        image = int(torch.randint(len(self.scene.images), (1,), generator=g))
        present = [int(k) for k in np.nonzero(self.scene.present[image])[0]]
        concepts = present
        if step > self.cfg.multiconcept.warmup_steps:
            count = int(torch.randint(1, len(present) + 1, (1,), generator=g))
            concepts = [present[int(j)] for j in torch.randperm(len(present), generator=g)[:count]]
        latents = sample_posterior(self.posterior[0][image : image + 1], self.posterior[1][image : image + 1], g)
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        timesteps = torch.randint(0, m.noise_scheduler.config.num_train_timesteps, (1,), generator=g).to(self.device)
        return SceneBatch(step, image, concepts, latents, noise, timesteps)

    def train_step(self, step: int) -> dict[str, float]:
        """The M-step of global step ``step``, then the E-step when one is due (its mask IoU as ``val/mask_iou``)."""
        metrics = self.step(self.batch(step))
        return {**metrics, **self.estep(step)} if estep_due(step, self.cfg.multiconcept) else metrics

    def step(self, batch: SceneBatch) -> dict[str, float]:
        """One optimizer step at global step ``batch.step``: the warm start's unmasked inversion, or an
        M-step with the current masks."""
        mc, m = self.cfg.multiconcept, self.models
        warm = batch.step <= mc.warmup_steps
        if self.mask_targets is None and not warm:
            raise RuntimeError("train_step: no masks yet; run estimate_masks first")
        phase = self.phase_of(batch.step)
        if phase != self.phase:
            self.start_phase(phase)
        ids, positions = self.encode(batch.concepts)
        noisy = m.noise_scheduler.add_noise(batch.latents, batch.noise, batch.timesteps)
        metrics = {}
        with autocast(self.precision, self.device):
            states = m.text_encoder(ids)[0]
            store = AttentionStore()
            pred = m.unet(noisy, batch.timesteps, states, cross_attention_kwargs={STORE_KWARG: store}).sample.float()
            target = m.target(batch.latents, batch.noise, batch.timesteps).float()
            error = ((pred - target) ** 2).mean(dim=1)[0]  # (h, w)
            if warm:
                loss = loss_diffusion = error.mean()
            else:
                targets = self.mask_targets[batch.image, batch.concepts]  # (S, h, w)
                union = targets.amax(dim=0)
                loss_diffusion = (error * union).sum() / union.sum().clamp_min(1.0)
                maps = token_maps(store, positions, self.latent_size)[0]  # (S, h, w)
                maps = maps / maps.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
                loss_attention = F.mse_loss(maps, targets)
                loss = loss_diffusion + mc.lambda_attn * loss_attention
                metrics["loss_attention"] = float(loss_attention.detach())
        self.optimization.backward(loss)
        grad_norm = self.optimization.step(self.guard)
        self.last = {
            "loss": float(loss.detach()),
            "loss_diffusion": float(loss_diffusion.detach()),
            **metrics,
            "grad_norm": grad_norm,
            "lr": self.optimization.lr,
            "concepts": float(len(batch.concepts)),
        }
        return self.last

    def status(self) -> dict:
        return {"phase": self.phase}

    def checkpoint_due(self, step: int) -> bool:
        return estep_due(step, self.cfg.multiconcept)

    # -- weights ----------------------------------------------------------------------------------
    def token_rows(self) -> torch.Tensor:
        return self.models.text_encoder.get_input_embeddings().weight[self.token_ids].detach()

    @property
    def unet_part(self) -> str:
        return "unet_lora" if self.lora else "unet"

    def save(self, directory: Path) -> dict:
        """Tokens always; the UNet (or its LoRA) once the joint phase trains it; the masks once estimated."""
        from peft.utils import get_peft_model_state_dict

        ckpt.write_weights(directory, "tokens", {"rows": self.token_rows()})
        if self.phase == JOINT_PHASE:
            unet = self.models.unet
            ckpt.write_weights(
                directory, self.unet_part, get_peft_model_state_dict(unet) if self.lora else unet.state_dict()
            )
        if self.masks is not None:
            ckpt.write_weights(directory, "masks", {"masks": torch.from_numpy(self.masks.astype(np.uint8))})
        if self.phase is not None:
            self.optimization.save(directory)
        return {
            "phase": self.phase,
            "history": list(self.history),
            "method": "multiconcept",
            "subject_id": self.subject_id,
        }

    def restore(self, directory: Path, meta: dict) -> None:
        """Load a checkpoint written by ``save`` (its step and mask history from ``meta``). The
        optimizer state is loaded when the next step belongs to the same phase."""
        from peft.utils import set_peft_model_state_dict

        if meta.get("method") != "multiconcept":
            raise ValueError(f"{directory}: not a multiconcept checkpoint")
        with torch.no_grad():
            rows = ckpt.read_weights(directory, "tokens")["rows"]
            self.models.text_encoder.get_input_embeddings().weight[self.token_ids] = rows.to(self.device)
        unet = ckpt.read_weights(directory, self.unet_part)
        if unet is not None and self.lora:
            set_peft_model_state_dict(self.models.unet, unet)
        elif unet is not None:
            self.models.unet.load_state_dict(unet)
        masks = ckpt.read_weights(directory, "masks")
        if masks is not None:
            self.set_masks(masks["masks"].numpy().astype(bool))
        self.history = list(meta["history"])
        step, phase = meta["step"], meta["phase"]
        if phase is not None and step < self.steps and self.phase_of(step + 1) == phase:
            self.start_phase(phase)
            self.optimization.load(directory)

    # -- validation and export --------------------------------------------------------------------
    def validation_due(self, step: int) -> bool:
        return estep_due(step, self.cfg.multiconcept) or step == self.steps

    def validation(self, step: int):
        """The scene's images with each concept's current mask over them."""
        return mask_grid(self.scene, self.masks)

    def summary_path(self) -> str:
        return storage.join(run_dir(self.run), "outputs", "summary.json")

    def exported(self) -> bool:
        return storage.exists(self.summary_path()) and published(self.cfg, self.subject_id, "multiconcept", self.steps)

    def export(self, directory: Path) -> str:
        """Final masks, the published subject, samples, the IoU report and ``summary.json`` (last)."""
        cfg, scene, history = self.cfg, self.scene, self.history
        write_masks(self.outputs, history[-1]["step"], scene, self.masks)
        metrics = {k: float(v) for k, v in self.last.items()}
        if "mean_iou" in history[-1]:
            metrics.update(mask_iou=history[-1]["mean_iou"], mask_iou_baseline=history[0]["mean_iou"])
        write_subject(self, directory / self.subject_id, self.subject_id, self.steps, metrics)
        dest = SubjectStore(store_location(cfg)).publish(directory / self.subject_id)
        summary = {
            "subject_id": self.subject_id,
            "published": dest,
            "scene": scene.name,
            "tokens": scene.tokens,
            "steps": self.steps,
            "metrics": metrics,
            "samples": draw_samples(self, self.outputs),
        }
        write_reports(self.outputs, scene, history, summary)
        if storage.is_uri(run_dir(self.run)):
            storage.upload_dir(self.outputs, storage.join(run_dir(self.run), "outputs"))
        return dest
