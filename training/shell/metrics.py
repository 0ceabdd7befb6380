"""What a run says while it trains: TensorBoard (and MLflow) scalars and images, and a progress line.

Tags are namespaced: ``train/…`` for what the steps measure (every step's loss and the recipe's other
numbers, the window's speed), ``val/…`` for validation (sample images, a recipe's held-out scores).
Only rank 0 writes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from core.logs import get_logger

log = get_logger("train")


def tag(key: str) -> str:
    """``loss`` → ``train/loss``; a key that names its namespace (``val/mask_iou``) stays as it is."""
    return key if "/" in key else f"train/{key}"


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
        tagged = {tag(k): float(v) for k, v in metrics.items()}
        for key, value in tagged.items():
            self.writer.add_scalar(key, value, step)
        if self.mlflow:
            self.mlflow.log_metrics({k.replace("/", "."): v for k, v in tagged.items()}, step=step)

    def image(self, name: str, image, step: int) -> None:
        """``image``: a PIL image (HWC uint8), under ``val/<name>``."""
        self.writer.add_image(f"val/{name}", np.asarray(image), step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
        if self.mlflow:
            self.mlflow.end_run()


class Window:
    """The steps since the last progress line: their mean loss, speed and what that leaves to do."""

    def __init__(self, total: int, world_size: int):
        self.total, self.world_size = total, world_size
        self.restart()

    def restart(self) -> None:
        self.losses: list[float] = []
        self.images = 0
        self.start = time.perf_counter()

    def add(self, metrics: dict[str, float]) -> None:
        self.losses.append(float(metrics["loss"]))

    def add_images(self, count: int) -> None:
        self.images += count

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` (spent on something else than training) out of the speed."""
        self.start += seconds

    def close(self, step: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        steps_per_s = len(self.losses) / elapsed
        out = {
            "loss": float(np.mean(self.losses)),
            "steps_per_s": steps_per_s,
            "eta_s": (self.total - step) / steps_per_s if steps_per_s else 0.0,
        }
        if self.images:
            out["images_per_s"] = self.images * self.world_size / elapsed
        return out


def progress_line(label: str, step: int, total: int, window: dict[str, float]) -> None:
    eta = int(window["eta_s"])
    log.info(
        f"{label} step {step}/{total}",
        loss=f"{window['loss']:.4f}",
        **{"it/s": f"{window['steps_per_s']:.2f}"},
        eta=f"{eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}",
    )
