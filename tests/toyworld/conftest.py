"""A ToyWorld recipe shrunk to seconds: the same commands and code paths, a few steps per stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import S3JediConfig, load_config


def smoke_overrides(root: Path) -> list[str]:
    values = {
        "toyworld.data.sets": 24,
        "toyworld.data.singles": 32,
        "toyworld.data.shard_size": 16,
        "toyworld.model.vae_steps": 4,
        "toyworld.model.vae_batch": 8,
        "toyworld.model.unet_widths": "[32]",
        "toyworld.model.attention_head_dim": 8,
        "toyworld.model.text_width": 16,
        "toyworld.model.text_layers": 1,
        "toyworld.train.out": str(root / "work"),
        "toyworld.train.ship": str(root / "assets"),
        "toyworld.train.cpus_per_worker": 0.5,
        "toyworld.train.base": "{steps: 2, sets_per_worker: 2, warmup_steps: 0, checkpoint_every: 2}",
        "toyworld.train.jedi": "{steps: 2, sets_per_worker: 2, warmup_steps: 0, checkpoint_every: 2}",
        "toyworld.train.jedi_continued": "{steps: 2, sets_per_worker: 2, warmup_steps: 0, checkpoint_every: 2}",
        "toyworld.eval.jedi": str(root / "assets" / "jedi"),
        "toyworld.eval.base": str(root / "assets" / "base"),
        "toyworld.eval.out": str(root / "eval"),
        "toyworld.eval.subjects": 2,
        "toyworld.eval.trials": 1,
        "toyworld.eval.steps": 2,
        "toyworld.eval.loss_timesteps": 2,
        "toyworld.eval.references": "[1, 2]",
        "toyworld.eval.image_guidance_scales": "[1.0, 2.0]",
        "toyworld.eval.guidance_modes": "[paper, decomposed]",
        "toyworld.eval.resamples": 200,
        "toyworld.eval.finetune_methods": "[]",  # test_finetune_rows runs them
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def smoke_config(tmp_path_factory) -> S3JediConfig:
    return load_config("tiny", smoke_overrides(tmp_path_factory.mktemp("toyworld")))


@pytest.fixture(scope="session")
def smoke_recipe(ray_local, smoke_config) -> dict:
    """The whole recipe, run once per session (data job, VAE fit, two Ray Train stages, shipping)."""
    from training.toyworld.recipe import run_recipe

    return run_recipe(smoke_config)
