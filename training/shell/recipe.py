"""A recipe: one kind of training (JeDi, a fine-tuned subject, a multi-concept scene) as a plain object.

The shell (``loop``) owns what every run needs — restore, the step loop, windowed metrics, progress
lines, checkpoint reports, validation images, failure handling, export — and asks the recipe only
what differs. A recipe holds no Ray: built from a config and JSON-able ``options`` (what the driver
sends to each worker), it can be set up on a ``Worker()`` in a test and stepped by hand.

Driver side (cheap, no models): ``run``, ``scaling``, ``steps``, ``settings``, ``datasets``.
Worker side, in the order the shell calls it::

    setup(worker)                       models, data, optimizer
    restore(directory, meta)            only when resuming; the shell knows the step from meta
    begin(step)                         once, before the first step (e.g. a baseline measurement)
    loop: train_step(step)              one optimizer step, ``step(batch(step))``; ``step`` counts from 1
          save(directory)               at checkpoints, on every rank; returns meta fields
          validation(step)              on rank 0 when ``validation_due``
    export(directory)                   on rank 0 at the end, unless ``exported()`` already
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from core.config import S3JediConfig
from core.config.training import RunSection, ScalingSection


def _unwrapped(module: torch.nn.Module, **_: object) -> torch.nn.Module:
    return module


@dataclass
class Worker:
    """Where a recipe runs: its data-parallel rank, its device, and what Ray Train gives a worker
    (model wrapping for DDP/FSDP, dataset shards); the defaults are one process on the CPU."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    prepare_model: Callable[..., torch.nn.Module] = _unwrapped
    dataset_shard: Callable[[str], Any] | None = None


class Recipe(ABC):
    kind: ClassVar[str]
    """``jedi``, ``finetune``, ``multiconcept``: recorded in checkpoints, named in logs."""
    run_field: ClassVar[str]
    """Where ``run`` lives in the config (``finetune.run``): error messages name it."""

    def __init__(self, cfg: S3JediConfig, **options: Any):
        self.cfg = cfg
        self.options = options

    # -- driver side ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def run(self) -> RunSection: ...

    @property
    @abstractmethod
    def scaling(self) -> ScalingSection: ...

    @property
    @abstractmethod
    def steps(self) -> int:
        """Optimizer steps of the whole run."""
        ...

    @property
    def label(self) -> str:
        """How progress lines and MLflow name the run."""
        return self.run.name

    @abstractmethod
    def settings(self) -> dict:
        """What decides the trained weights, JSON-able; a resumed run must not change it unnoticed."""
        ...

    def datasets(self) -> dict[str, Any] | None:
        """Ray Datasets the workers read shards of (``Worker.dataset_shard``)."""
        return None

    def params(self) -> dict:
        """Hyperparameters for MLflow."""
        return {}

    @property
    @abstractmethod
    def export_location(self) -> str:
        """Where ``export`` publishes (reported with the result)."""
        ...

    # -- worker side ------------------------------------------------------------------------------
    @abstractmethod
    def setup(self, worker: Worker) -> None: ...

    @abstractmethod
    def restore(self, directory: Path, meta: dict) -> None: ...

    def begin(self, step: int) -> dict[str, float]:
        """Before the first step of this attempt (``step`` steps are done); metrics to log at ``step``."""
        return {}

    @abstractmethod
    def batch(self, step: int) -> Any:
        """The inputs of step ``step`` (1-based), drawn from the step's own randomness."""
        ...

    @abstractmethod
    def step(self, batch: Any) -> dict[str, float]:
        """One optimizer step; its metrics (``loss`` at least). ``images``, when present, is the number
        of training images the step used on this worker (the shell turns it into images/s)."""
        ...

    def train_step(self, step: int) -> dict[str, float]:
        return self.step(self.batch(step))

    def status(self) -> dict[str, Any]:
        """Where the recipe is (a stage name, counters), added to every report."""
        return {}

    def checkpoint_due(self, step: int) -> bool:
        """A checkpoint the recipe needs besides ``run.checkpoint_every`` (state that changed)."""
        return False

    @abstractmethod
    def save(self, directory: Path) -> dict:
        """Write this rank's checkpoint files into ``directory``; returns fields for ``meta.json``."""
        ...

    def validation_due(self, step: int) -> bool:
        return step == self.steps

    def validation(self, step: int):
        """A PIL image showing the model now (rank 0), or None."""
        return None

    def exported(self) -> bool:
        """Whether the export of the finished run is already where ``export`` would put it."""
        return False

    @abstractmethod
    def export(self, directory: Path) -> str:
        """Write the result into the empty local ``directory`` and publish it; returns where it went."""
        ...
