"""Ray Train shell of the concept-driven EM: one worker per scene, checkpoints, resume, export.

The run lives at ``<multiconcept.run.storage_path>/<run name>/<subject id>``. A checkpoint is reported
after every E-step (the masks are state) and every ``run.checkpoint_every`` steps; a rerun with the
same run name restores the latest one and continues. A finished run (its ``outputs/summary.json``
written, the subject in the store) is not started again: the driver returns its summary. With
``in_process`` the loop runs in the calling process (Ray Train's local mode, ``num_workers=0``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from core import storage
from core.config import S3JediConfig, config_hash, save_config
from core.config.multiconcept import MultiConceptSection
from core.logs import get_logger
from core.ray_runtime import init_ray
from core.subjects import SubjectStore
from training.finetune.export import published, store_location
from training.finetune.runner import failure_reason
from training.finetune.subjects import subject_id
from training.multiconcept.em import SceneTuner
from training.multiconcept.export import draw_samples, history_entry, write_masks, write_reports, write_subject
from training.multiconcept.scene import load_scene
from training.shell import checkpoint as ckpt
from training.shell.metrics import MetricsLogger
from training.shell.precision import resolve_precision
from training.shell.ray_run import local_run_dir, run_config, run_dir, scaling_config

log = get_logger("multiconcept")


def scene_subject_id(cfg: S3JediConfig, scene_name: str) -> str:
    return subject_id(cfg.multiconcept.subject_id.replace("{scene}", "{subject}"), scene_name, "multiconcept")


def scene_run(cfg: S3JediConfig, sid: str):
    """The scene's own ``RunSection``: ``<storage>/<run name>/<subject id>``."""
    run = cfg.multiconcept.run
    return run.model_copy(update={"name": sid, "storage_path": storage.join(run.storage_path, run.name)})


def estep_due(step: int, mc: MultiConceptSection) -> bool:
    """E-steps: before training (the baseline), every ``estep_every`` token steps, and at phase 1's end."""
    return step == 0 or (step <= mc.em_steps and (step % mc.estep_every == 0 or step == mc.em_steps))


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg = S3JediConfig.model_validate(loop_config["config"])
    mc, sid = cfg.multiconcept, loop_config["subject_id"]
    scene = load_scene(loop_config["scene"], mc)
    device = ray.train.torch.get_device()
    tuner = SceneTuner(cfg, scene, device, resolve_precision(mc.precision, device))
    total = mc.total_steps
    run = scene_run(cfg, sid)
    local_dir = local_run_dir(run)
    outputs = local_dir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    save_config(cfg, local_dir)

    step, history, restored_from = 0, [], -1
    with ckpt.latest_checkpoint() as restored:
        if restored is not None:
            step, history = tuner.restore(restored)
            restored_from = step
            log.info("resumed from checkpoint", subject=sid, step=step)
    logger = MetricsLogger(local_dir / "tensorboard", f"{mc.run.name}/{sid}", run.mlflow_tracking_uri)

    def estep(at: int) -> None:
        tuner.set_masks(tuner.estimate_masks(at))
        entry = history_entry(at, scene, tuner.masks)
        history.append(entry)
        write_masks(outputs, at, scene, tuner.masks)
        if "mean_iou" in entry:
            logger.log(at, {"mask_iou": entry["mean_iou"]})
        log.info("masks estimated", subject=sid, step=at, mean_iou=entry.get("mean_iou"))

    def report_checkpoint(metrics: dict) -> None:
        with ckpt.staging_dir() as staging:
            tuner.save(staging, step, history, {"config_hash": loop_config["config_hash"], "subject_id": sid})
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(str(staging)),
                checkpoint_dir_name=f"checkpoint-{step:07d}",
            )

    if tuner.masks is None:
        estep(0)
    last: dict[str, float] = {}
    window_start, window_steps = time.perf_counter(), 0
    while step < total:
        last = tuner.train_step(step + 1)
        step += 1
        window_steps += 1
        logger.log(step, {f"{k}_step": v for k, v in last.items()})
        due = estep_due(step, mc)
        if due:
            estep(step)
        if due or step % mc.run.checkpoint_every == 0 or step == total:
            metrics = {"step": step, "phase": tuner.phase, "restored_from_step": restored_from, **last}
            metrics["steps_per_s"] = window_steps / max(time.perf_counter() - window_start, 1e-9)
            report_checkpoint(metrics)
            window_start, window_steps = time.perf_counter(), 0
    export(tuner, outputs, history, sid, last)
    if storage.is_uri(run_dir(run)):
        storage.upload_dir(outputs, storage.join(run_dir(run), "outputs"))
    logger.close()


def export(tuner: SceneTuner, outputs: Path, history: list[dict], sid: str, last: dict[str, float]) -> dict:
    """Final masks, samples, IoU report and the published subject."""
    cfg, scene = tuner.cfg, tuner.scene
    write_masks(outputs, history[-1]["step"], scene, tuner.masks)
    metrics = {k: float(v) for k, v in last.items()}
    if "mean_iou" in history[-1]:
        metrics.update(mask_iou=history[-1]["mean_iou"], mask_iou_baseline=history[0]["mean_iou"])
    with tempfile.TemporaryDirectory(prefix="s3jedi-subject-") as tmp:
        write_subject(tuner, Path(tmp) / sid, sid, cfg.multiconcept.total_steps, metrics)
        dest = SubjectStore(store_location(cfg)).publish(Path(tmp) / sid)
    samples = draw_samples(tuner, outputs)
    summary = {
        "subject_id": sid,
        "published": dest,
        "scene": scene.name,
        "tokens": scene.tokens,
        "steps": cfg.multiconcept.total_steps,
        "metrics": metrics,
        "samples": samples,
    }
    log.info("published subject", subject=sid, path=dest)
    return write_reports(outputs, scene, history, summary)


def run_scene(cfg: S3JediConfig, scene_path: str, in_process: bool = False) -> dict:
    """Train one scene; returns its ``summary.json``. The scene is read (and checked) here first, so a
    bad scene fails with one line before any worker starts."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    mc = cfg.multiconcept
    scene = load_scene(scene_path, mc)
    sid = scene_subject_id(cfg, scene.name)
    run = scene_run(cfg, sid)
    summary_path = storage.join(run_dir(run), "outputs", "summary.json")
    if storage.exists(summary_path) and published(cfg, sid, "multiconcept", mc.total_steps):
        log.info("run already finished", subject=sid, run=run_dir(run))
        return _read_json(summary_path)
    init_ray(cfg.ray)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.model_dump(mode="json"),
            "scene": storage.resolve(scene_path),
            "subject_id": sid,
            "config_hash": config_hash(cfg),
        },
        scaling_config=ScalingConfig(num_workers=0) if in_process else scaling_config(mc.scaling),
        run_config=run_config(run),
    )
    try:
        trainer.fit()
    except Exception as exc:  # the run failed after Ray Train's own restarts
        raise RuntimeError(f"multiconcept {sid}: {failure_reason(exc)}") from exc
    return _read_json(summary_path)


def _read_json(path: str) -> dict:
    fs, p = storage.filesystem(path)
    with fs.open_input_stream(p) as f:
        return json.loads(f.read())
