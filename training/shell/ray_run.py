"""Ray Train wiring from the config: scaling, run storage, checkpoint retention."""

from __future__ import annotations

from pathlib import Path

from core import storage
from core.config.training import RunSection, ScalingSection
from core.logs import ray_log_level
from core.paths import s3jedi_home


def scaling_config(cfg: ScalingSection):
    from ray.train import ScalingConfig

    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    return ScalingConfig(
        num_workers=cfg.num_workers,
        use_gpu=cfg.use_gpu,
        resources_per_worker=resources,
        accelerator_type=cfg.accelerator_type,
    )


def run_config(cfg: RunSection):
    """Worker failures are not retried by Ray Train: ``trainer.fit`` tells those worth a restart from
    those that cannot succeed (``run.max_failures`` restarts)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig

    return RunConfig(
        name=cfg.name,
        storage_path=storage.resolve(cfg.storage_path),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.num_to_keep),
        failure_config=FailureConfig(max_failures=0),
        logging_config=LoggingConfig(log_level=ray_log_level()),
    )


def nested_run(cfg: RunSection, name: str) -> RunSection:
    """A run of its own under ``cfg``'s run directory (``<storage>/<run name>/<name>``): one per subject
    or scene of a command."""
    return cfg.model_copy(update={"name": name, "storage_path": storage.join(cfg.storage_path, cfg.name)})


def run_dir(cfg: RunSection) -> str:
    """Where the run's checkpoints, export and samples live (local path or URI)."""
    return storage.join(cfg.storage_path, cfg.name)


def local_run_dir(cfg: RunSection) -> Path:
    """A local directory for files that need a local disk (TensorBoard events, sample grids):
    the run dir itself when storage is local, else a cache directory named after the run."""
    if storage.is_uri(cfg.storage_path):
        return s3jedi_home() / "runs" / cfg.name
    return Path(run_dir(cfg))
