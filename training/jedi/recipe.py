"""JeDi training as a recipe of the training shell: multi-source image sets → coupled-attention UNet.

One optimizer step = ``grad_accum`` micro-batches of ``sets_per_worker`` sets per worker. The loss is
``core.jedi.jedi_loss``; all randomness is keyed by (seed, step, micro, set id) (see ``sampling``), so
nothing random is checkpointed and a resumed or re-scaled run draws exactly what it would have drawn.
A checkpoint holds the UNet (safetensors), optimizer, LR schedule, grad scaler, EMA, and each rank's
data position. The export is the final ``JeDiPipeline`` (EMA weights if kept) in ``<run dir>/export``.

``fit(cfg)`` is what ``s3jedi train jedi`` and ``python -m training jedi`` (the ``ray job submit`` and
KubeRay RayJob entry point) call; rerunning it with the same ``train.jedi.run.name`` and storage
resumes the run.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from core import storage
from core.config import S3JediConfig
from core.config.training import RunSection, ScalingSection
from core.jedi import jedi_loss
from core.jedi_export import write_export_files
from core.logs import get_logger
from core.ray_runtime import init_ray
from training.jedi.batches import MicroBatch, SourceCursor, endless_rows, next_micro_batch
from training.jedi.data import source_dataset
from training.jedi.models import JeDiModels, load_models
from training.jedi.sampling import set_generator
from training.shell import checkpoint as ckpt
from training.shell.optim import Optimization
from training.shell.precision import autocast, resolve_precision
from training.shell.ray_run import run_dir
from training.shell.recipe import Recipe, Worker
from training.shell.trainer import RunResult
from training.shell.trainer import fit as fit_recipe

log = get_logger("train.jedi")
EXPORT_META = "s3jedi-export.json"


def _latents(models: JeDiModels, mb: MicroBatch, gens: list[torch.Generator], n: int, device) -> torch.Tensor:
    """Scaled latents of the micro-batch, sampling the VAE posterior with each set's own generator."""
    if mb.pixels is not None:
        mean, std = models.latent_posterior(mb.pixels)
    else:
        mean = torch.from_numpy(mb.latent_mean).to(device).float()
        std = torch.from_numpy(mb.latent_std).to(device).float()
    eps = torch.cat(
        [torch.randn(mean[i * n : (i + 1) * n].shape, generator=g, device=device) for i, g in enumerate(gens)]
    )
    return mean + std * eps


def _validation_grid(models: JeDiModels, unet, held_out: MicroBatch, steps: int, seed: int):
    """References of a held-out set and the model's image for the set's last caption, side by side."""
    from PIL import Image

    k = held_out.set_size - 1
    refs = [Image.fromarray(p) for p in held_out.pixels[:k]]
    pipe = models.pipeline(unet)
    pipe.set_progress_bar_config(disable=True)
    device = next(unet.parameters()).device
    out = pipe(
        refs,
        held_out.captions[k],
        num_inference_steps=steps,
        generator=torch.Generator(device=device).manual_seed(seed),
    ).images[0]
    side = out.width
    grid = Image.new("RGB", (side * (k + 2), side))
    for i, img in enumerate([*refs, Image.fromarray(held_out.pixels[k]), out]):
        grid.paste(img.resize((side, side)), (i * side, 0))
    return grid


@contextlib.contextmanager
def _with_ema(ema, unet):
    """The UNet temporarily holds the EMA weights (samples and exports use them)."""
    if ema is None:
        yield unet
        return
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    try:
        yield unet
    finally:
        ema.restore(unet.parameters())


class JeDiRecipe(Recipe):
    kind = "jedi"
    run_field = "train.jedi.run"

    # -- driver side ------------------------------------------------------------------------------
    @property
    def run(self) -> RunSection:
        return self.cfg.train.jedi.run

    @property
    def scaling(self) -> ScalingSection:
        return self.cfg.train.jedi.scaling

    @property
    def steps(self) -> int:
        return self.cfg.train.jedi.steps

    def settings(self) -> dict:
        tcfg = self.cfg.train.jedi
        exclude = {"run", "scaling", "validate_every", "validation_steps", "gradient_checkpointing", "parallel"}
        return {
            "train.jedi": tcfg.model_dump(mode="json", exclude=exclude),
            "models.sd": self.cfg.models.sd,
            "seed": self.cfg.seed,
        }

    def datasets(self) -> dict:
        tcfg = self.cfg.train.jedi
        # Built (and sources validated) here on the driver: a missing folder fails at once.
        datasets = {
            f"source{i}": source_dataset(src, tcfg.data, self.cfg.seed) for i, src in enumerate(tcfg.data.sources)
        }
        for ds in datasets.values():
            # Ingest restarts every epoch of every source; per-operator bars would flood the job log.
            ds.context.enable_progress_bars = False
        return datasets

    def params(self) -> dict:
        return {
            "profile": self.cfg.profile,
            "seed": self.cfg.seed,
            **self.cfg.train.jedi.model_dump(exclude={"data", "run"}),
        }

    @property
    def export_location(self) -> str:
        return storage.join(run_dir(self.run), "export")

    # -- worker side ------------------------------------------------------------------------------
    def setup(self, worker: Worker) -> None:
        cfg, tcfg = self.cfg, self.cfg.train.jedi
        self.worker = worker
        self.precision = resolve_precision(tcfg.precision, worker.device)
        torch.manual_seed(cfg.seed)  # only module construction draws from the global RNG
        self.models = load_models(cfg, worker.device)
        self.unet_plain = self.models.unet
        self.optimization = Optimization(
            self.unet_plain.parameters(), tcfg.optim, tcfg.steps, self.precision, worker.device
        )
        self.ema = None
        if tcfg.ema_decay:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.unet_plain.parameters(), decay=tcfg.ema_decay)
        self.cursors = [
            SourceCursor(name=f"source{i}", kind=s.kind, path=s.path) for i, s in enumerate(tcfg.data.sources)
        ]
        self.held_out: MicroBatch | None = None

    def restore(self, directory: Path, meta: dict) -> None:
        rank, world = self.worker.rank, self.worker.world_size
        self.unet_plain.load_state_dict(ckpt.read_weights(directory, "unet"))
        self.optimization.load(directory)
        if self.ema is not None:
            self.ema.load_state_dict(ckpt.read_state(directory, "ema"))
        position = ckpt.read_json(directory, f"data-rank{rank}")
        if position and position.get("world_size") == world:
            for cursor in self.cursors:
                cursor.restore(position["sources"].get(cursor.name, {}))
        else:
            log.warning("no data position for this rank/world size; sources restart at their beginning", rank=rank)

    def begin(self, step: int) -> dict[str, float]:
        """Wrap the UNet for data parallelism and open the data where the restored position says."""
        tcfg = self.cfg.train.jedi
        self.unet = self.worker.prepare_model(self.unet_plain, parallel_strategy=tcfg.parallel)
        shards = [self.worker.dataset_shard(c.name) for c in self.cursors]
        self.rows = [endless_rows(shard, cursor) for shard, cursor in zip(shards, self.cursors, strict=True)]
        self.weights = [s.weight for s in tcfg.data.sources]
        self.null_text = self.models.encode_text([""])
        return {}

    def micro_batch(self, at_step: int, micro: int) -> MicroBatch:
        tcfg = self.cfg.train.jedi
        return next_micro_batch(
            self.rows,
            self.cursors,
            self.weights,
            seed=self.cfg.seed,
            step=at_step,
            micro=micro,
            sets=tcfg.sets_per_worker,
            min_set_size=tcfg.data.min_set_size,
            max_set_size=tcfg.data.max_set_size,
            resolution=tcfg.data.resolution,
            min_scale=tcfg.data.min_crop_scale,
            flip=tcfg.data.flip,
            grad_accum=tcfg.grad_accum,
        )

    def batch(self, step: int) -> tuple[int, list[MicroBatch]]:
        """Step ``step``'s micro-batches; its draws are keyed by the steps done before it."""
        done, micro_batches = step - 1, []
        for micro in range(self.cfg.train.jedi.grad_accum):
            mb = self.micro_batch(done, micro)
            if self.held_out is None and self.worker.rank == 0 and mb.pixels is not None and mb.set_size >= 2:
                n = mb.set_size
                self.held_out = MicroBatch(mb.set_ids[:1], n, mb.captions[:n], mb.pixels[:n])
            micro_batches.append(mb)
        return done, micro_batches

    def step(self, batch: tuple[int, list[MicroBatch]]) -> dict[str, float]:
        done, micro_batches = batch
        cfg, tcfg, models, device = self.cfg, self.cfg.train.jedi, self.models, self.worker.device
        losses, images = [], 0
        for micro, mb in enumerate(micro_batches):
            n = mb.set_size
            gens = [set_generator(cfg.seed, done, micro, sid, device) for sid in mb.set_ids]
            latents = _latents(models, mb, gens, n, device)
            text = models.encode_text(mb.captions)
            sync = micro == tcfg.grad_accum - 1 or self.worker.world_size == 1
            unet = self.unet
            context = unet.no_sync() if not sync and hasattr(unet, "no_sync") else contextlib.nullcontext()
            with context, autocast(self.precision, device):
                out = jedi_loss(
                    unet,
                    models.noise_scheduler,
                    latents,
                    text,
                    self.null_text,
                    set_size=n,
                    p_reference=tcfg.p_reference,
                    p_text_drop=tcfg.p_text_drop,
                    p_reference_caption_drop=tcfg.p_reference_caption_drop,
                    p_reference_channel_drop=tcfg.p_reference_channel_drop,
                    generator=gens,
                )
                self.optimization.backward(out.loss / tcfg.grad_accum)
            losses.append(float(out.loss.detach()))
            images += latents.shape[0]
        grad_norm = self.optimization.step()
        if self.ema is not None:
            self.ema.step(self.unet_plain.parameters())
        return {"loss": float(np.mean(losses)), "lr": self.optimization.lr, "grad_norm": grad_norm, "images": images}

    def status(self) -> dict:
        return {
            "skipped_sets": sum(c.skipped for c in self.cursors),
            **{k: v for c in self.cursors for k, v in c.metrics().items()},
        }

    def save(self, directory: Path) -> dict:
        rank, world = self.worker.rank, self.worker.world_size
        position = {"world_size": world, "sources": {c.name: c.state() for c in self.cursors}}
        ckpt.write_json(directory, f"data-rank{rank}", position)
        if rank == 0:
            ckpt.write_weights(directory, "unet", self.unet_plain.state_dict())
            self.optimization.save(directory)
            if self.ema is not None:
                ckpt.write_state(directory, "ema", self.ema.state_dict())
        return {}

    # -- validation and export --------------------------------------------------------------------
    def validation_due(self, step: int) -> bool:
        every = self.cfg.train.jedi.validate_every
        return step == self.steps or bool(every and step % every == 0)

    def validation(self, step: int):
        if self.held_out is None:
            return None
        unet = self.unet_plain
        was_training = unet.training
        with _with_ema(self.ema, unet):
            unet.eval()
            grid = _validation_grid(
                self.models, unet, self.held_out, self.cfg.train.jedi.validation_steps, self.cfg.seed
            )
            unet.train(was_training)
        return grid

    def exported(self) -> bool:
        path = storage.join(self.export_location, EXPORT_META)
        if not storage.exists(path):
            return False
        fs, p = storage.filesystem(path)
        with fs.open_input_stream(p) as f:
            return json.loads(f.read())["step"] == self.steps

    def export(self, directory: Path) -> str:
        """The final ``JeDiPipeline`` (EMA weights if kept) to ``<run dir>/export``."""
        with _with_ema(self.ema, self.unet_plain):
            self.models.pipeline(self.unet_plain).save_pretrained(str(directory), safe_serialization=True)
        meta = {"step": self.steps, "run": self.run.name, "ema": self.ema is not None}
        (directory / EXPORT_META).write_text(json.dumps(meta))
        write_export_files(directory, self.cfg, self.steps, self.ema is not None)  # pipeline.py + README.md
        return storage.upload_dir(directory, self.export_location)


def fit(cfg: S3JediConfig) -> RunResult:
    init_ray(cfg.ray)
    tcfg = cfg.train.jedi
    log.info("training JeDi", run=tcfg.run.name, steps=tcfg.steps, workers=tcfg.scaling.num_workers)
    return fit_recipe(JeDiRecipe(cfg))
