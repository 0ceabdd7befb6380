"""The per-worker JeDi training loop that Ray Train runs on every worker.

One optimizer step = ``grad_accum`` micro-batches of ``sets_per_worker`` sets per worker. The loss is
``core.jedi.jedi_loss``; all randomness is keyed by (seed, step, micro, set id) (see ``sampling``), so
nothing random is checkpointed and a resumed or re-scaled run draws exactly what it would have drawn.
A checkpoint holds the UNet (safetensors), optimizer, LR schedule, grad scaler, EMA, the step, and
each rank's data position; a run restored by Ray Train (after a failure, or a rerun with the same run
name) continues from it.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from core import storage
from core.config import S3JediConfig, save_config
from core.jedi import jedi_loss
from core.jedi_export import write_export_files
from core.logs import get_logger
from training.jedi.batches import MicroBatch, SourceCursor, endless_rows, next_micro_batch
from training.jedi.models import JeDiModels, load_models
from training.jedi.sampling import set_generator
from training.shell import checkpoint as ckpt
from training.shell.metrics import MetricsLogger
from training.shell.optim import build_lr_schedule, build_optimizer
from training.shell.precision import autocast, grad_scaler, resolve_precision
from training.shell.ray_run import local_run_dir, run_dir

log = get_logger("train.jedi")


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
        guidance_scale=3.0,
        generator=torch.Generator(device=device).manual_seed(seed),
    ).images[0]
    side = out.width
    grid = Image.new("RGB", (side * (k + 2), side))
    for i, img in enumerate([*refs, Image.fromarray(held_out.pixels[k]), out]):
        grid.paste(img.resize((side, side)), (i * side, 0))
    return grid


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg = S3JediConfig.model_validate(loop_config["config"])
    tcfg = cfg.train.jedi
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    precision = resolve_precision(tcfg.precision, device)
    torch.manual_seed(cfg.seed)  # only module construction draws from the global RNG

    models = load_models(cfg, device)
    unet_plain = models.unet
    optimizer = build_optimizer(unet_plain.parameters(), tcfg.optim, device.type == "cuda")
    lr_schedule = build_lr_schedule(optimizer, tcfg.optim, tcfg.steps)
    scaler = grad_scaler(precision)
    ema = None
    if tcfg.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(unet_plain.parameters(), decay=tcfg.ema_decay)

    sources = tcfg.data.sources
    cursors = [SourceCursor(name=f"source{i}", kind=s.kind) for i, s in enumerate(sources)]
    step, restored_from = 0, -1
    with ckpt.latest_checkpoint() as restored:
        if restored is not None:
            unet_plain.load_state_dict(ckpt.read_weights(restored, "unet"))
            optimizer.load_state_dict(ckpt.read_state(restored, "optimizer"))
            lr_schedule.load_state_dict(ckpt.read_state(restored, "lr_schedule"))
            scaler.load_state_dict(ckpt.read_state(restored, "grad_scaler"))
            if ema is not None:
                ema.load_state_dict(ckpt.read_state(restored, "ema"))
            step = restored_from = ckpt.read_json(restored, "meta")["step"]
            position = ckpt.read_json(restored, f"data-rank{rank}")
            if position and position.get("world_size") == world:
                for cursor in cursors:
                    state = position["sources"].get(cursor.name, {})
                    cursor.epoch, cursor.consumed = state.get("epoch", 0), state.get("consumed", 0)
                    cursor.skipped = state.get("skipped", 0)
            else:
                log.warning("no data position for this rank/world size; sources restart at their beginning", rank=rank)
            log.info("resumed from checkpoint", step=step, rank=rank)

    unet = ray.train.torch.prepare_model(unet_plain, parallel_strategy=tcfg.parallel)
    shards = [ray.train.get_dataset_shard(c.name) for c in cursors]
    rows = [endless_rows(shard, cursor) for shard, cursor in zip(shards, cursors, strict=True)]
    weights = [s.weight for s in sources]
    null_text = models.encode_text([""])

    def micro_batch(at_step: int, micro: int) -> MicroBatch:
        return next_micro_batch(
            rows,
            cursors,
            weights,
            seed=cfg.seed,
            step=at_step,
            micro=micro,
            sets=tcfg.sets_per_worker,
            min_set_size=tcfg.data.min_set_size,
            max_set_size=tcfg.data.max_set_size,
            resolution=tcfg.data.resolution,
            min_scale=tcfg.data.min_crop_scale,
            flip=tcfg.data.flip,
        )

    local_dir = local_run_dir(tcfg.run)
    logger, held_out = None, None
    if rank == 0:
        local_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, local_dir)
        logger = MetricsLogger(
            local_dir / "tensorboard",
            tcfg.run.name,
            tcfg.run.mlflow_tracking_uri,
            params={"profile": cfg.profile, "seed": cfg.seed, **tcfg.model_dump(exclude={"data", "run"})},
        )

    def report(metrics: dict, with_checkpoint: bool) -> None:
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        with ckpt.staging_dir() as staging:
            ckpt.write_json(
                staging, f"data-rank{rank}", {"world_size": world, "sources": {c.name: c.state() for c in cursors}}
            )
            if rank == 0:
                ckpt.write_weights(staging, "unet", unet_plain.state_dict())
                ckpt.write_state(staging, "optimizer", optimizer.state_dict())
                ckpt.write_state(staging, "lr_schedule", lr_schedule.state_dict())
                ckpt.write_state(staging, "grad_scaler", scaler.state_dict())
                if ema is not None:
                    ckpt.write_state(staging, "ema", ema.state_dict())
                ckpt.write_json(
                    staging, "meta", {"step": step, "world_size": world, "config_hash": loop_config["config_hash"]}
                )
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(str(staging)),
                checkpoint_dir_name=f"checkpoint-{step:07d}",
            )

    losses: list[float] = []
    images, window_start = 0, time.perf_counter()
    while step < tcfg.steps:
        for micro in range(tcfg.grad_accum):
            mb = micro_batch(step, micro)
            for reason in mb.skipped:
                log.warning("skipped an unusable set", reason=reason, rank=rank)
            if held_out is None and rank == 0 and mb.pixels is not None and mb.set_size >= 2:
                held_out = MicroBatch(mb.set_ids[:1], mb.set_size, mb.captions[: mb.set_size], mb.pixels[: mb.set_size])
            n = mb.set_size
            gens = [set_generator(cfg.seed, step, micro, sid, device) for sid in mb.set_ids]
            latents = _latents(models, mb, gens, n, device)
            text = models.encode_text(mb.captions)
            sync = micro == tcfg.grad_accum - 1 or world == 1
            context = unet.no_sync() if not sync and hasattr(unet, "no_sync") else contextlib.nullcontext()
            with context, autocast(precision, device):
                out = jedi_loss(
                    unet,
                    models.noise_scheduler,
                    latents,
                    text,
                    null_text,
                    set_size=n,
                    p_reference=tcfg.p_reference,
                    p_text_drop=tcfg.p_text_drop,
                    p_reference_caption_drop=tcfg.p_reference_caption_drop,
                    generator=gens,
                )
                scaler.scale(out.loss / tcfg.grad_accum).backward()
            losses.append(float(out.loss.detach()))
            images += latents.shape[0]
        scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(unet.parameters(), tcfg.optim.max_grad_norm))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        lr_schedule.step()
        if ema is not None:
            ema.step(unet_plain.parameters())
        step += 1

        last = step == tcfg.steps
        checkpoint_due = step % tcfg.run.checkpoint_every == 0 or last
        if logger is not None:
            logger.log(step, {"loss_step": losses[-1]})
        if step % tcfg.run.log_every == 0 or checkpoint_due:
            elapsed = time.perf_counter() - window_start
            metrics = {
                "step": step,
                "loss": float(np.mean(losses)),
                "lr": lr_schedule.get_last_lr()[0],
                "grad_norm": grad_norm,
                "images_per_s": images * world / max(elapsed, 1e-9),
                "skipped_sets": sum(c.skipped for c in cursors),
                "restored_from_step": restored_from,
            }
            if device.type == "cuda":
                metrics["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            if logger is not None:
                logger.log(step, {k: v for k, v in metrics.items() if k != "step"})
                if held_out is not None and ((tcfg.validate_every and step % tcfg.validate_every == 0) or last):
                    _save_samples(
                        models, unet_plain, ema, held_out, tcfg.validation_steps, cfg.seed, local_dir, step, logger
                    )
            report(metrics, with_checkpoint=checkpoint_due)
            losses, images, window_start = [], 0, time.perf_counter()
    if logger is not None:
        # Also reached when a rerun restores a finished run whose export was interrupted.
        if step == tcfg.steps and _exported_step(tcfg) != step:
            _export(models, unet_plain, ema, cfg, step)
        logger.close()


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


def _save_samples(models, unet, ema, held_out, steps, seed, run_dir: Path, step: int, logger: MetricsLogger) -> None:
    was_training = unet.training
    with _with_ema(ema, unet):
        unet.eval()
        grid = _validation_grid(models, unet, held_out, steps, seed)
        unet.train(was_training)
    (run_dir / "samples").mkdir(exist_ok=True)
    grid.save(run_dir / "samples" / f"step-{step:07d}.png")
    logger.image("validation/references|truth|sample", grid, step)


EXPORT_META = "s3jedi-export.json"


def _exported_step(tcfg) -> int | None:
    path = storage.join(run_dir(tcfg.run), "export", EXPORT_META)
    if not storage.exists(path):
        return None
    fs, p = storage.filesystem(path)
    with fs.open_input_stream(p) as f:
        return json.loads(f.read())["step"]


def _export(models, unet, ema, cfg: S3JediConfig, step: int) -> None:
    """Write the final ``JeDiPipeline`` (EMA weights if kept) to ``<run dir>/export``."""
    tcfg = cfg.train.jedi
    with _with_ema(ema, unet), ckpt.staging_dir() as staging:
        models.pipeline(unet).save_pretrained(str(staging), safe_serialization=True)
        (staging / EXPORT_META).write_text(json.dumps({"step": step, "run": tcfg.run.name, "ema": ema is not None}))
        write_export_files(staging, cfg, step, ema is not None)  # pipeline.py and README.md for plain diffusers
        dest = storage.upload_dir(staging, storage.join(run_dir(tcfg.run), "export"))
    log.info("exported JeDi pipeline", path=dest, step=step)
