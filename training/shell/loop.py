"""The per-worker function Ray Train runs, for every recipe: the project's one training loop.

Restore (the newest complete checkpoint, see ``checkpoint.restore_point``), then the steps: every
step's metrics to TensorBoard, every ``run.log_every`` steps a progress line (loss, it/s, ETA) and the
window's speed, every ``run.checkpoint_every`` steps (and at the end) a checkpoint reported to Ray
Train with the window's metrics, validation images when the recipe wants them, and the export on
rank 0 when the last step is done. Ray Train gets reports only with checkpoints: a worker's report
waits until the controller has collected the previous one (it polls every couple of seconds), so
reporting every few fast steps would throttle training to the poll rate.

Rerunning a run (same run name) continues from its checkpoint; a finished run whose export is in
place only reports its final state. With ``num_workers=0`` (Ray Train's local mode) the same function
runs in the calling process without workers — what the benchmarks compare against.
"""

from __future__ import annotations

import time

import torch

from core.config import S3JediConfig, config_hash, save_config
from core.logs import get_logger
from training.shell import checkpoint as ckpt
from training.shell.metrics import MetricsLogger, Window, progress_line
from training.shell.ray_run import local_run_dir, run_dir
from training.shell.recipe import Recipe, Worker

log = get_logger("train")


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    # Validating the config on the worker also imports the methods its plugins register.
    cfg = S3JediConfig.model_validate(loop_config["config"])
    recipe: Recipe = loop_config["recipe"](cfg, **loop_config["options"])
    ctx = ray.train.get_context()
    worker = Worker(
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=ray.train.torch.get_device(),
        prepare_model=ray.train.torch.prepare_model,
        dataset_shard=ray.train.get_dataset_shard,
    )
    rank, run = worker.rank, recipe.run
    recipe.setup(worker)

    step, restored_from = 0, -1
    with ckpt.restore_point(run_dir(run)) as restored:
        if restored is not None:
            meta = ckpt.read_json(restored, ckpt.META)
            recipe.restore(restored, meta)
            step = restored_from = meta["step"]
            log.info("resumed from checkpoint", run=recipe.label, step=step, rank=rank)

    logger = None
    if rank == 0:
        local_dir = local_run_dir(run)
        local_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, local_dir)
        logger = MetricsLogger(local_dir / "tensorboard", recipe.label, run.mlflow_tracking_uri, recipe.params())
    first = recipe.begin(step)
    if logger is not None and first:
        logger.log(step, first)

    def report(metrics: dict) -> None:
        with ckpt.staging_dir() as staging:
            fields = recipe.save(staging)
            if rank == 0:
                meta = {
                    **fields,
                    "step": step,
                    "kind": recipe.kind,
                    "world_size": worker.world_size,
                    "settings": recipe.settings(),
                    "config_hash": config_hash(cfg),
                }
                ckpt.write_meta(staging, meta)
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(str(staging)),
                checkpoint_dir_name=ckpt.name(step),
            )

    total = recipe.steps
    window = Window(total, worker.world_size)
    while step < total:
        metrics = recipe.train_step(step + 1)
        step += 1
        window.add_images(int(metrics.pop("images", 0)))
        window.add(metrics)
        if logger is not None:
            logger.log(step, metrics)
            if recipe.validation_due(step):
                started = time.perf_counter()
                _validate(recipe, logger, run, step)
                window.exclude(time.perf_counter() - started)  # sampling is not training speed
        checkpoint_due = step % run.checkpoint_every == 0 or step == total or recipe.checkpoint_due(step)
        if step % run.log_every == 0 or checkpoint_due:
            summary = {"step": step, **window.close(step), "restored_from_step": restored_from}
            summary.update({k: v for k, v in metrics.items() if k != "loss"}, **recipe.status())
            if worker.device.type == "cuda":
                summary["gpu_mem_gb"] = torch.cuda.max_memory_allocated(worker.device) / 2**30
            if logger is not None:
                progress_line(recipe.label, step, total, summary)
                logger.log(step, {k: v for k, v in summary.items() if k in ("steps_per_s", "images_per_s")})
                logger.flush()
            # The next window starts before the report: the time a report blocks counts against speed.
            window.restart()
            if checkpoint_due:
                report(summary)
    if restored_from == total:  # a rerun of a finished run: its final state is the result
        ray.train.report({"step": step, "restored_from_step": restored_from, **recipe.status()})
    if rank == 0:
        if not (restored_from == total and recipe.exported()):
            start = time.perf_counter()
            with ckpt.staging_dir() as staging:
                where = recipe.export(staging)
            log.info("exported", run=recipe.label, step=step, path=where, seconds=round(time.perf_counter() - start, 1))
        logger.close()


def _validate(recipe: Recipe, logger: MetricsLogger, run, step: int) -> None:
    image = recipe.validation(step)
    if image is None:
        return
    samples = local_run_dir(run) / "samples"
    samples.mkdir(exist_ok=True)
    image.save(samples / f"step-{step:07d}.png")
    logger.image("samples", image, step)
