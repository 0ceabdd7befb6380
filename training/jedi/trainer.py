"""Driver side of a JeDi training run: datasets, Ray Train ``TorchTrainer``, result.

``fit(cfg)`` is what ``s3jedi train jedi`` and ``python -m training jedi`` (the ``ray job submit`` and
KubeRay RayJob entry point) call. Rerunning it with the same ``train.jedi.run.name`` and storage
resumes the run from its latest checkpoint (Ray Train restores its checkpoint manager from storage).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import S3JediConfig, config_hash
from core.logs import get_logger
from core.ray_runtime import init_ray
from training.jedi.data import source_dataset
from training.jedi.loop import train_loop_per_worker
from training.shell.ray_run import run_config, run_dir, scaling_config

log = get_logger("train.jedi")


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: str
    export_dir: str
    checkpoint: str | None
    metrics: dict


def build_trainer(cfg: S3JediConfig):
    from ray.data import ExecutionOptions
    from ray.train import DataConfig
    from ray.train.torch import TorchTrainer

    tcfg = cfg.train.jedi
    # Datasets are built (and sources validated) here on the driver: a missing folder fails at once.
    datasets = {f"source{i}": source_dataset(src, tcfg.data, cfg.seed) for i, src in enumerate(tcfg.data.sources)}
    for ds in datasets.values():
        # Ingest restarts every epoch of every source; per-operator bars would flood the job log.
        # Training reports its own progress (step, images/s) through the metrics.
        ds.context.enable_progress_bars = False
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.model_dump(mode="json"), "config_hash": config_hash(cfg)},
        scaling_config=scaling_config(tcfg.scaling),
        run_config=run_config(tcfg.run),
        datasets=datasets,
        # A deterministic row order makes the saved data position meaningful on resume.
        dataset_config=DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
    )


def fit(cfg: S3JediConfig) -> TrainOutcome:
    from ray.train import TrainingFailedError

    init_ray(cfg.ray)
    tcfg = cfg.train.jedi
    trainer = build_trainer(cfg)
    log.info("training JeDi", run=tcfg.run.name, steps=tcfg.steps, workers=tcfg.scaling.num_workers)
    try:
        result = trainer.fit()
        if result.error:
            raise result.error
    except TrainingFailedError as exc:
        # A worker's ValueError names a field (bad data, bad setting): raise it as itself, one line.
        failures = getattr(exc, "worker_failures", {}).values()
        raise next((e for e in failures if isinstance(e, ValueError)), exc) from None
    where = run_dir(tcfg.run)
    return TrainOutcome(
        run_dir=where,
        export_dir=f"{where}/export",
        checkpoint=result.checkpoint.path if result.checkpoint else None,
        metrics=dict(result.metrics or {}),
    )
