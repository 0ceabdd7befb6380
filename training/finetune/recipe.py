"""Fine-tuning one subject with any registered method: the recipe the training shell runs — no Ray in here.

The recipe holds the base model with what the method's plan adds (a learned token, LoRA adapters,
the stage plug-ins, e.g. CoRe's context regularization), the subject's and class images as VAE
posteriors, and the current stage's optimizer. ``step(batch(step))`` is one optimizer step of
whichever stage owns global step ``step``. All randomness of a step (which images, flips, noise,
timesteps, a plug-in's draws) comes from a generator keyed by (seed, subject id, step), so nothing
random is checkpointed and a resumed run draws exactly what an uninterrupted one would.

Checkpoint parts are named after what the stages so far have trained (``tokens``, ``unet``,
``unet_lora``, ``text_encoder``, ``text_encoder_lora``): a CoRe run's stage-1 checkpoints hold a few
embedding rows, not a copy of the UNet. The export is the subject in the store format of
``core.subjects``, published to ``finetune.store``.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core import storage
from core.config import S3JediConfig
from core.config.training import RunSection, ScalingSection
from core.logs import get_logger
from core.methods import method_plan
from core.methods.plan import TEXT_ENCODER, TOKENS, UNET, StepState
from core.methods.tokens import LearnedToken, RowGuard, add_token, row_norms
from core.subject_pipeline import published, store_location
from core.subjects import SubjectStore
from training.finetune.class_images import load_class_images
from training.finetune.export import write_subject
from training.finetune.subjects import load_extra_instances, load_subject
from training.shell import checkpoint as ckpt
from training.shell.lora import TEXT_LORA_TARGETS, UNET_LORA_TARGETS, lora_config
from training.shell.optim import Optimization
from training.shell.precision import autocast, resolve_precision
from training.shell.ray_run import nested_run
from training.shell.recipe import Recipe, Worker
from training.shell.sd_parts import SDParts, load_base, sample_posterior
from training.shell.seeds import step_generator

log = get_logger("finetune")


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


def subject_run(cfg: S3JediConfig, subject_id: str) -> RunSection:
    """The subject's own ``RunSection``: ``<storage>/<run name>/<subject id>``."""
    return nested_run(cfg.finetune.run, subject_id)


@dataclass
class SubjectBatch:
    step: int
    stage: int
    latents: torch.Tensor  # instance images, then class images with prior preservation
    ids: torch.Tensor  # their prompts' token ids
    noise: torch.Tensor
    timesteps: torch.Tensor
    generator: torch.Generator  # what is left of the step's randomness (a plug-in's draws)


class SubjectRecipe(Recipe):
    kind = "finetune"
    run_field = "finetune.run"

    def __init__(self, cfg: S3JediConfig, **job):
        super().__init__(cfg, **job)
        self.job = SubjectJob(**job)
        self.plan = method_plan(cfg.finetune, self.job.method)

    @classmethod
    def of(cls, cfg: S3JediConfig, job: SubjectJob) -> SubjectRecipe:
        return cls(cfg, **asdict(job))

    # -- driver side ------------------------------------------------------------------------------
    @property
    def run(self) -> RunSection:
        return subject_run(self.cfg, self.job.subject_id)

    @property
    def scaling(self) -> ScalingSection:
        return self.cfg.finetune.scaling

    @property
    def steps(self) -> int:
        return self.plan.total_steps

    @property
    def label(self) -> str:
        return f"{self.cfg.finetune.run.name}/{self.job.subject_id}"

    def settings(self) -> dict:
        f, job = self.cfg.finetune, self.job
        return {
            "plan": self.plan.settings(),
            "models.sd": self.cfg.models.sd,
            "seed": self.cfg.seed,
            "finetune": f.model_dump(mode="json", include={"resolution", "batch_size", "flip", "precision"}),
            "class_images": (
                f.class_images.model_dump(mode="json", include={"prompt", "steps", "guidance_scale"})
                if self.plan.class_images()
                else None
            ),
            "subject": {k: v for k, v in asdict(job).items() if k not in ("subject_id", "method", "class_images")},
        }

    def params(self) -> dict:
        job = self.job
        return {"method": job.method, "subject": job.subject, "class": job.class_word, "steps": self.steps}

    @property
    def export_location(self) -> str:
        return storage.join(store_location(self.cfg), self.job.subject_id)

    # -- worker side ------------------------------------------------------------------------------
    def setup(self, worker: Worker) -> None:
        """Load the subject's photos, class images and extra instances, then the models."""
        fcfg, job = self.cfg.finetune, self.job
        images = load_subject(job.source, fcfg.resolution)
        needed = self.plan.class_images()
        class_images = load_class_images(job.class_images, needed, fcfg.resolution) if needed else None
        extra = load_extra_instances(job.extra_instances, fcfg.resolution) if job.extra_instances else None
        self.load(images, class_images, extra, worker.device, resolve_precision(fcfg.precision, worker.device))

    def load(
        self,
        images: np.ndarray,
        class_images: np.ndarray | None,
        extra: tuple[np.ndarray, list[str]] | None,
        device: torch.device,
        precision: str,
    ) -> None:
        """The models and data from arrays: ``(N, R, R, 3)`` uint8 photos (and class images), extra
        instance images with their prompts."""
        cfg, plan, job = self.cfg, self.plan, self.job
        self.device, self.precision = device, precision
        self.models: SDParts = load_base(cfg, device)
        m = self.models
        self.token: LearnedToken | None = None
        if plan.new_token is not None:
            self.token = add_token(m.tokenizer, m.text_encoder, plan.new_token, job.class_word)
        trained = plan.trained_by(len(plan.stages) - 1)
        self.lora = plan.unet is not None and plan.unet.mode == "lora"
        if self.lora:
            rank, alpha = plan.unet.lora_rank, plan.unet.lora_alpha
            # LoRA initialisation is the only draw from the global RNGs: seeded, and the caller's left alone.
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(cfg.seed)
                if UNET in trained:
                    m.unet.add_adapter(lora_config(rank, alpha, UNET_LORA_TARGETS))
                if TEXT_ENCODER in trained:
                    m.text_encoder.add_adapter(lora_config(rank, alpha, TEXT_LORA_TARGETS))
        m.unet.requires_grad_(False)
        m.text_encoder.requires_grad_(False)
        if cfg.finetune.gradient_checkpointing:
            m.unet.enable_gradient_checkpointing()
            m.text_encoder.gradient_checkpointing_enable()
        for plugin in plan.plugins():
            plugin.prepare(m.unet)

        self.subject_text = self.token.text if self.token else plan.identifier
        # One prompt per instance image: the photos share the instance prompt, extra images bring theirs.
        self.num_photos = len(images)
        self.photos = images
        prompts = [plan.prompt_template] * len(images)
        if extra is not None and len(extra[0]):
            images, prompts = np.concatenate([images, extra[0]]), prompts + list(extra[1])
        self.instance_ids = m.token_ids([self.render(p) for p in prompts])
        self.caption_ids = m.token_ids([self.render(c) for c in plan.captions]) if plan.captions else None
        self.class_ids = m.token_ids([cfg.finetune.class_images.prompt.replace("{1}", job.class_word)])
        # Posteriors of every image and its mirror image: (2, N, 4, h, w).
        plain, mirrored = m.latent_posterior(images), m.latent_posterior(np.ascontiguousarray(images[:, :, ::-1]))
        self.instance = torch.stack([plain[0], mirrored[0]]), torch.stack([plain[1], mirrored[1]])
        self.prior = m.latent_posterior(class_images) if class_images is not None and len(class_images) else None
        if self.prior is None and any(s.prior and s.steps for s in plan.stages):
            raise ValueError(f"{job.subject}: prior preservation needs class images, none were given")
        self.stage_index: int | None = None
        self.last: dict[str, float] = {}
        self.done = 0  # steps taken so far
        self.scores: dict[int, float] = {}  # checkpoint selection: global step -> score
        self.best: tuple[int, dict[str, dict[str, torch.Tensor]]] | None = None  # its step and weights (CPU)
        self.scorer = None  # the DINO scorer and the photos' features, loaded at the first selection

    def photo_latents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE posterior (mean, std) of the subject's photos, unflipped (extra instances excluded)."""
        mean, std = self.instance
        return mean[0, : self.num_photos], std[0, : self.num_photos]

    def render(self, template: str) -> str:
        return template.replace("{0}", self.subject_text).replace("{1}", self.job.class_word)

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
        params = [p for part in sorted(stage.trains) for p in self._params(part)]
        for p in params:
            p.requires_grad_(True)
        m.unet.train(UNET in stage.trains)
        m.text_encoder.train(TEXT_ENCODER in stage.trains)
        self.optimization = Optimization(params, stage.optim, stage.steps, self.precision, self.device)
        weight = m.text_encoder.get_input_embeddings().weight
        self.guard = RowGuard(weight, self.token.ids) if TOKENS in stage.trains else None
        self.stage_index = index

    # -- one step ---------------------------------------------------------------------------------
    def batch(self, step: int) -> SubjectBatch:
        index = self.plan.stage_of(step)
        with_prior = self.plan.stages[index].prior is not None
        bs, m = self.cfg.finetune.batch_size, self.models
        g = step_generator(self.cfg.seed, self.job.subject_id, step)
        mean, std = self.instance
        idx = torch.randint(0, self.num_photos, (bs,), generator=g)
        if mean.shape[1] > self.num_photos:  # extra images: each draw is one of them with extra_share
            extra = torch.randint(self.num_photos, mean.shape[1], (bs,), generator=g)
            idx = torch.where(torch.rand(bs, generator=g) < self.job.extra_share, extra, idx)
        flips = (torch.rand(bs, generator=g) < 0.5).long() if self.cfg.finetune.flip else torch.zeros(bs).long()
        latents = sample_posterior(mean[flips, idx], std[flips, idx], g)
        ids = self.instance_ids[idx.to(self.instance_ids.device)]
        if with_prior:
            cmean, cstd = self.prior
            cidx = torch.randint(0, cmean.shape[0], (bs,), generator=g)
            latents = torch.cat([latents, sample_posterior(cmean[cidx], cstd[cidx], g)])
            ids = torch.cat([ids, self.class_ids.expand(bs, -1)])
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        timesteps = torch.randint(0, m.noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=g)
        if self.caption_ids is not None:  # drawn last: the other draws stay those of a plan without captions
            captions = self.caption_ids[torch.randint(len(self.caption_ids), (bs,), generator=g)]
            photo = (idx < self.num_photos).to(ids.device)[:, None]
            ids = torch.cat([torch.where(photo, captions.to(ids.device), ids[:bs]), ids[bs:]])
        return SubjectBatch(step, index, latents, ids, noise, timesteps.to(self.device), g)

    def step(self, batch: SubjectBatch) -> dict[str, float]:
        """One optimizer step (global step ``batch.step``, 1-based); returns the step's metrics."""
        if batch.stage != self.stage_index:
            self.start_stage(batch.stage)
        stage = self.plan.stages[batch.stage]
        m, bs = self.models, self.cfg.finetune.batch_size
        noisy = m.noise_scheduler.add_noise(batch.latents, batch.noise, batch.timesteps)
        text_trained = bool(stage.trains & {TOKENS, TEXT_ENCODER})
        state = StepState(
            m.text_encoder,
            m.unet,
            m.tokenizer,
            self.token,
            self.subject_text,
            self.job.class_word,
            noisy[:bs],
            batch.timesteps[:bs],
            batch.generator,
            batch.step - self.plan.stage_start(batch.stage),
        )
        metrics: dict[str, float] = {}
        with autocast(self.precision, self.device):
            with contextlib.nullcontext() if text_trained else torch.no_grad():
                states = m.text_encoder(batch.ids)[0]
            pred = m.unet(noisy, batch.timesteps, states).sample.float()
            target = m.target(batch.latents, batch.noise, batch.timesteps).float()
            loss = F.mse_loss(pred[:bs], target[:bs])
            metrics["loss_instance"] = float(loss.detach())
            if stage.prior is not None:
                prior = F.mse_loss(pred[bs:], target[bs:])
                loss = loss + stage.prior.loss_weight * prior
                metrics["loss_prior"] = float(prior.detach())
            for plugin in stage.plugins:
                term, extra = plugin.loss(state)
                loss = loss + term
                metrics.update(extra)
        self.optimization.backward(loss)
        with contextlib.ExitStack() as around:
            for plugin in stage.plugins:
                around.enter_context(plugin.around_update(state))
            grad_norm = self.optimization.step(self.guard)
        metrics.update(loss=float(loss.detach()), grad_norm=grad_norm, lr=self.optimization.lr)
        if self.token is not None:
            weight = m.text_encoder.get_input_embeddings().weight
            metrics["embedding_norm"] = float(row_norms(weight, self.token.ids).mean())
        self.last = metrics
        return metrics

    def train_step(self, step: int) -> dict[str, float]:
        metrics = self.step(self.batch(step))
        self.done = step
        if self.plan.selection_due(step):
            metrics["val/selection_dino"] = self.select(step)
        return metrics

    def status(self) -> dict:
        return {"stage": self.plan.stages[self.stage_index].name} if self.stage_index is not None else {}

    # -- checkpoint selection (two-stage, paper 001 §4.1) -----------------------------------------
    @torch.no_grad()
    def selection_score(self) -> float:
        """Mean DINO cosine of ``select.images`` samples of the subject's prompt (the validation
        sampler, seeds ``seed..``) to the subject's photos: "the images that most closely matched the
        training images" (paper 001 §4.1)."""
        from PIL import Image

        from core import zoo
        from core.metrics.similarity import mean_similarity

        if self.scorer is None:
            dino = zoo.load("dino", self.cfg.models.dino, device=str(self.device))
            self.scorer = dino, dino.encode_images([Image.fromarray(p) for p in self.photos])
        dino, photos = self.scorer
        count = self.plan.stages[self.stage_index].select.images
        images = [self.draw(self.cfg.seed + i) for i in range(count)]
        return float(mean_similarity(dino.encode_images(images), photos).mean())

    def select(self, step: int) -> float:
        """Score the weights after step ``step``; keep a CPU copy of them when they score best so far."""
        score = self.selection_score()
        self.scores[step] = score
        if self.best is None or score > self.scores[self.best[0]]:
            self.best = step, self._states(self.stage_index, cpu=True)
        log.info("checkpoint scored", subject=self.job.subject_id, step=step, dino=round(score, 4))
        return score

    def checkpoint_due(self, step: int) -> bool:
        return self.plan.selection_due(step)  # a score (and maybe the best weights) to keep

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

    def _states(self, index: int, cpu: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        """The weights stages ``0..index`` trained, by checkpoint part name (copies on the CPU if ``cpu``)."""
        from peft.utils import get_peft_model_state_dict

        states = {}
        for name, module in self._parts(index).items():
            if name == "tokens":
                state = {"rows": self.models.text_encoder.get_input_embeddings().weight[self.token.ids]}
            elif name.endswith("_lora"):
                state = get_peft_model_state_dict(module)
            else:
                state = module.state_dict()
            states[name] = {k: v.detach().to("cpu", copy=True) for k, v in state.items()} if cpu else state
        return states

    def _load_states(self, states: dict[str, dict[str, torch.Tensor]]) -> None:
        from peft.utils import set_peft_model_state_dict

        for name, state in states.items():
            module = self._parts(len(self.plan.stages) - 1).get(name)
            if name == "tokens":
                with torch.no_grad():
                    self.models.text_encoder.get_input_embeddings().weight[self.token.ids] = state["rows"].to(
                        self.device
                    )
            elif name.endswith("_lora"):
                set_peft_model_state_dict(module, state)
            else:
                module.load_state_dict(state)

    def save(self, directory: Path) -> dict:
        for name, state in self._states(self.stage_index).items():
            ckpt.write_weights(directory, name, state)
        if self.best is not None and self.best[0] != self.done:  # older weights scored best: keep them too
            for name, state in self.best[1].items():
                ckpt.write_weights(directory, f"best_{name}", state)
        self.optimization.save(directory)
        return {
            "stage": self.stage_index,
            "method": self.plan.method,
            "subject_id": self.job.subject_id,
            "selection": {str(k): v for k, v in self.scores.items()},
            "best_step": self.best[0] if self.best else None,
        }

    def restore(self, directory: Path, meta: dict) -> None:
        """Load a checkpoint written by ``save``. The optimizer state is loaded when the next step
        belongs to the same stage (a checkpoint at a stage's end starts the next afresh)."""
        if meta.get("method") != self.plan.method:
            raise ValueError(f"{directory}: not a {self.plan.method} checkpoint of this run")
        step, stage = meta["step"], meta["stage"]
        states = {}
        for name in self._parts(stage):
            states[name] = ckpt.read_weights(directory, name)
            if states[name] is None:
                raise ValueError(f"{directory}: checkpoint lacks {name}.safetensors")
        self._load_states(states)
        self.done = step
        self.scores = {int(k): v for k, v in meta.get("selection", {}).items()}
        best = meta.get("best_step")
        if best is not None:
            kept = states if best == step else {n: ckpt.read_weights(directory, f"best_{n}") for n in states}
            self.best = best, {n: {k: v.to("cpu", copy=True) for k, v in s.items()} for n, s in kept.items()}
        if step < self.plan.total_steps and self.plan.stage_of(step + 1) == stage:
            self.start_stage(stage)
            self.optimization.load(directory)

    # -- validation and export --------------------------------------------------------------------
    def validation_due(self, step: int) -> bool:
        every = self.cfg.finetune.validate_every
        return step == self.steps or bool(every and step % every == 0)

    @torch.no_grad()
    def draw(self, seed: int):
        """The instance prompt drawn by the parts as they are now (CPU generator seeded ``seed``)."""
        m, side = self.models, self.cfg.finetune.resolution
        modes = m.unet.training, m.text_encoder.training
        m.unet.eval()
        m.text_encoder.eval()
        image = m.sd_pipeline()(
            self.render(self.plan.prompt_template),
            num_inference_steps=self.cfg.finetune.validation_steps,
            height=side,
            width=side,
            generator=torch.Generator().manual_seed(seed),
        ).images[0]
        m.unet.train(modes[0])
        m.text_encoder.train(modes[1])
        return image

    def validation(self, step: int):
        return self.draw(self.cfg.seed)

    def exported(self) -> bool:
        return published(self.cfg, self.job.subject_id, self.plan.method, self.steps)

    def export(self, directory: Path) -> str:
        out = directory / self.job.subject_id
        metrics = {k: float(v) for k, v in self.last.items()}
        if self.best is not None:  # the best-scoring checkpoint is the subject; every score goes with it
            self._load_states(self.best[1])
            metrics["selected_step"] = float(self.best[0])
            metrics.update({f"selection_dino_step_{step}": score for step, score in sorted(self.scores.items())})
        write_subject(self, out, metrics)
        return SubjectStore(store_location(self.cfg)).publish(out)
