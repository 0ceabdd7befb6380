"""Self-distillation tests: the tiny models at 32 px, two prompts x two samples, two training steps."""

from __future__ import annotations

from pathlib import Path

from core.config import S3JediConfig, load_config
from tests.finetune.conftest import dog_dir, one_torch_thread  # noqa: F401  (shared fixtures)

FAST = [
    "finetune.resolution=32",
    "finetune.scaling.cpus_per_worker=0.5",
    "finetune.dreambooth.prior.enabled=false",
    "finetune.dreambooth.train.steps=2",
    "finetune.run.log_every=1",
    "finetune.run.max_failures=0",
    "selfdistill.mining.steps=2",
    "selfdistill.mining.cpus_per_actor=0.5",
    "ray.num_cpus=2",
]


def settings(tmp: Path, *overrides: str) -> list[str]:
    return [*FAST, f"finetune.run.storage_path={tmp / 'runs'}", f"finetune.store={tmp / 'store'}", *overrides]


def sd_config(tmp: Path, *overrides: str) -> S3JediConfig:
    return load_config("tiny", settings(tmp, *overrides))
