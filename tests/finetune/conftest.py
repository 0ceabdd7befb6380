"""Fine-tuning tests: the tiny SD at 32 px, a handful of steps per method, the real DreamBooth photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import S3JediConfig, load_config

FAST = [
    "finetune.resolution=32",
    "finetune.scaling.cpus_per_worker=0.5",
    "finetune.run.log_every=1",
    "finetune.class_images.steps=2",
    "finetune.class_images.batch_size=2",
    "finetune.dreambooth.prior.num_images=2",
    "finetune.dreambooth.train.steps=3",
    "finetune.ti.train.steps=3",
    "finetune.two_stage.stage1.steps=2",
    "finetune.two_stage.stage2.steps=2",
    "finetune.core.stage1.steps=5",
    "finetune.core.rescale_start=2",
    "finetune.core.rescale_end=3",
    "finetune.core.stage2.steps=2",
    "finetune.core.prior.num_images=2",
    "ray.num_cpus=2",
]
"""A few steps of every method; CoRe's norm window covers stage-1 steps 2-3 of 5."""


def ft_config(tmp_path: Path, *overrides: str) -> S3JediConfig:
    return load_config(
        "tiny",
        [*FAST, f"finetune.run.storage_path={tmp_path / 'runs'}", f"finetune.store={tmp_path / 'store'}", *overrides],
    )


@pytest.fixture(scope="session")
def dog_dir(dreambooth) -> Path:
    return dreambooth / "images" / "dog"


@pytest.fixture(scope="session")
def dog_photos(dog_dir) -> np.ndarray:
    from training.finetune.subjects import load_subject

    return load_subject(str(dog_dir), 32)


def make_tuner(cfg: S3JediConfig, method: str, photos: np.ndarray, class_images: np.ndarray | None = None):
    """The method's recipe on ``photos``, set up in this process (no Ray)."""
    from training.finetune.recipe import SubjectJob, SubjectRecipe

    recipe = SubjectRecipe.of(cfg, SubjectJob("dog", "unused", "dog", method, f"dog-{method}"))
    recipe.load(photos, class_images, None, torch.device("cpu"), "fp32")
    return recipe


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, f"changed: {changed[:5]}"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on busy cores OpenMP's spinning threads made
    these tests 4× slower (measured: 71 s vs 18 s for test_tuner.py). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
