"""Multi-concept tests: a synthetic 64 px scene built from the DreamBooth photos, a few EM steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import S3JediConfig, load_config
from tests.finetune.conftest import one_torch_thread  # noqa: F401  (shared fixture)

FAST = [
    "multiconcept.warmup_steps=0",
    "multiconcept.em_steps=4",
    "multiconcept.estep_every=2",
    "multiconcept.joint_steps=2",
    "multiconcept.estep_timesteps=3",
    "multiconcept.sample_steps=2",
    "multiconcept.scaling.cpus_per_worker=0.5",
    "ray.num_cpus=2",
]
"""No warm start (its own test), two alternations of two token steps, then two joint steps; E-steps at
steps 0, 2 and 4."""


def settings(tmp: Path, *overrides: str) -> list[str]:
    return [*FAST, f"multiconcept.run.storage_path={tmp / 'runs'}", f"finetune.store={tmp / 'store'}", *overrides]


def mc_config(tmp: Path, *overrides: str) -> S3JediConfig:
    return load_config("tiny", settings(tmp, *overrides))


def make_recipe(cfg: S3JediConfig, scene: Path):
    """The scene's recipe set up in this process (no Ray)."""
    import torch

    from training.multiconcept.em import SceneRecipe
    from training.multiconcept.scene import load_scene

    recipe = SceneRecipe(cfg, scene=str(scene), subject_id=f"{scene.name}-multiconcept")
    recipe.load(load_scene(str(scene), cfg.multiconcept), torch.device("cpu"), "fp32")
    return recipe


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory, dreambooth) -> Path:
    from training.multiconcept.synthetic import synthetic_scene

    out = tmp_path_factory.mktemp("scene") / "duo"
    synthetic_scene(dreambooth / "images", str(out), side=64)
    return out
