"""The per-worker loop Ray Train runs for one (subject, method): restore, train, checkpoint, export.

Metrics go to TensorBoard (and MLflow) every ``log_every`` steps; Ray Train gets a report only with a
checkpoint. A worker's report waits until the controller has collected the previous one (it polls
every couple of seconds), so reporting every few fast steps would throttle training to the poll rate.

Rerunning a subject's run (same ``finetune.run.name``) restores its latest checkpoint through
``ray.train.get_checkpoint()`` and continues from that step; the step's draws are keyed by the step,
so the result equals an uninterrupted run. With ``num_workers=0`` (Ray Train's local mode) the same
function runs in the calling process without workers — what the benchmark compares against.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core import storage
from core.config import S3JediConfig, save_config
from core.logs import get_logger
from training.finetune.class_images import load_class_images
from training.finetune.export import publish, published, write_subject
from training.finetune.methods import method_plan
from training.finetune.subjects import load_extra_instances, load_subject
from training.finetune.tuner import SubjectJob, SubjectTuner
from training.shell import checkpoint as ckpt
from training.shell.metrics import MetricsLogger
from training.shell.precision import resolve_precision
from training.shell.ray_run import local_run_dir

log = get_logger("finetune")


def subject_run(cfg: S3JediConfig, subject_id: str):
    """The subject's own ``RunSection``: ``<storage>/<run name>/<subject id>``."""
    run = cfg.finetune.run
    return run.model_copy(update={"name": subject_id, "storage_path": storage.join(run.storage_path, run.name)})


def make_tuner(cfg: S3JediConfig, job: SubjectJob, device: torch.device) -> SubjectTuner:
    """Load the subject's photos and class images and build its tuner (what a worker does first)."""
    fcfg = cfg.finetune
    plan = method_plan(fcfg, job.method)
    images = load_subject(job.source, fcfg.resolution)
    needed = plan.class_images()
    class_images = load_class_images(job.class_images, needed, fcfg.resolution) if needed else None
    extra = load_extra_instances(job.extra_instances, fcfg.resolution) if job.extra_instances else None
    precision = resolve_precision(fcfg.precision, device)
    return SubjectTuner(cfg, plan, job, images, class_images, device, precision, extra)


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg = S3JediConfig.model_validate(loop_config["config"])
    job = SubjectJob(**loop_config["job"])
    fcfg = cfg.finetune
    tuner = make_tuner(cfg, job, ray.train.torch.get_device())
    plan, total = tuner.plan, tuner.plan.total_steps

    step, restored_from = 0, -1
    with ckpt.latest_checkpoint() as restored:
        if restored is not None:
            step = restored_from = tuner.restore(restored)
            log.info("resumed from checkpoint", subject=job.subject_id, step=step)

    run = subject_run(cfg, job.subject_id)
    local_dir = local_run_dir(run)
    local_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, local_dir)
    logger = MetricsLogger(
        local_dir / "tensorboard",
        f"{fcfg.run.name}/{job.subject_id}",
        run.mlflow_tracking_uri,
        params={"method": job.method, "subject": job.subject, "class": job.class_word, "steps": total},
    )

    def report_checkpoint(metrics: dict) -> None:
        with ckpt.staging_dir() as staging:
            tuner.save(staging, step, {"config_hash": loop_config["config_hash"], "subject_id": job.subject_id})
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(str(staging)),
                checkpoint_dir_name=f"checkpoint-{step:07d}",
            )

    losses: list[float] = []
    last: dict[str, float] = {}
    window_start, window_steps = time.perf_counter(), 0
    while step < total:
        last = tuner.train_step(step + 1)
        step += 1
        losses.append(last["loss"])
        window_steps += 1
        logger.log(step, {f"{k}_step": v for k, v in last.items()})
        checkpoint_due = step % fcfg.run.checkpoint_every == 0 or step == total
        if step % fcfg.run.log_every == 0 or checkpoint_due:
            metrics = {
                "step": step,
                "stage": plan.stages[tuner.stage_index].name,
                "loss": float(np.mean(losses)),
                "steps_per_s": window_steps / max(time.perf_counter() - window_start, 1e-9),
                "restored_from_step": restored_from,
                **{k: v for k, v in last.items() if k not in ("loss", "loss_instance")},
            }
            logger.log(step, {k: v for k, v in metrics.items() if isinstance(v, float)})
            # The next window starts before the report, so the time a report blocks counts against speed.
            losses, window_start, window_steps = [], time.perf_counter(), 0
            if checkpoint_due:
                report_checkpoint(metrics)
    if restored_from == total:  # a rerun of a finished run: say so, then export only if that was lost
        ray.train.report({"step": step, "stage": plan.stages[-1].name, "restored_from_step": restored_from})
    if not (restored_from == total and published(cfg, job.subject_id, plan.method, total)):
        card_metrics = {k: float(v) for k, v in last.items()}
        with tempfile.TemporaryDirectory(prefix="s3jedi-subject-") as tmp:
            out = Path(tmp) / job.subject_id
            write_subject(tuner, out, card_metrics)
            dest = publish(cfg, out)
        log.info("published subject", subject=job.subject_id, path=dest, steps=total)
    logger.close()
