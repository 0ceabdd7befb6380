"""Metrics to TensorBoard, and to MLflow when a tracking URI is configured (rank 0 only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class MetricsLogger:
    def __init__(
        self, log_dir: Path, run_name: str, mlflow_tracking_uri: str | None = None, params: dict | None = None
    ):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.mlflow = None
        if mlflow_tracking_uri:
            try:
                import mlflow
            except ImportError as exc:
                raise ValueError(
                    "run.mlflow_tracking_uri: mlflow is not installed (pip install -e '.[mlflow]')"
                ) from exc
            mlflow.set_tracking_uri(mlflow_tracking_uri)
            mlflow.set_experiment("s3jedi")
            mlflow.start_run(run_name=run_name)
            if params:
                mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
            self.mlflow = mlflow

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        if self.mlflow:
            self.mlflow.log_metrics(metrics, step=step)
        self.writer.flush()

    def image(self, tag: str, image, step: int) -> None:
        """``image``: a PIL image (HWC uint8)."""
        self.writer.add_image(tag, np.asarray(image), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
        if self.mlflow:
            self.mlflow.end_run()
