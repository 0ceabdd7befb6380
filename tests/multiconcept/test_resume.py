"""A scene resumed from a mid-phase checkpoint ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import load_config
from tests.multiconcept.conftest import make_recipe, settings
from training.multiconcept.em import SceneRecipe


@pytest.mark.parametrize("unet", ["full", "lora"])
def test_checkpoint_restore_continues_exactly(zoo_home, scene_dir, tmp_path, unet):
    """The joint phase trains every UNet weight by default, a LoRA with ``unet.mode: lora``."""
    overrides = ("multiconcept.joint_optim.lr=1e-3", f"multiconcept.unet.mode={unet}")  # the UNet visibly moves
    cfg = load_config("tiny", settings(tmp_path, *overrides))

    def fresh() -> SceneRecipe:
        return make_recipe(cfg, scene_dir)

    straight = fresh()
    base = {n: p.detach().clone() for n, p in straight.models.unet.named_parameters()}
    straight.set_masks(straight.estimate_masks(0))
    for step in (1, 2):
        straight.train_step(step)
    straight.set_masks(straight.estimate_masks(2))
    masks = straight.masks.copy()
    straight.history = [{"step": 0}, {"step": 2}]
    meta = {**straight.save(tmp_path), "step": 2}
    for step in (3, 4, 5):  # 5: the joint phase starts (every UNet weight trained)
        straight.train_step(step)
    trained = dict(straight.models.unet.named_parameters())
    moved = {"lora_" in n for n, p in trained.items() if not torch.equal(p, base[n])}
    assert moved == {unet == "lora"}, "the joint phase trains the LoRA only, or the UNet's own weights"

    resumed = fresh()
    resumed.restore(tmp_path, meta)
    assert resumed.history == [{"step": 0}, {"step": 2}]
    assert np.array_equal(resumed.masks, masks), "masks are part of the state"
    for step in (3, 4, 5):
        resumed.train_step(step)
    torch.testing.assert_close(resumed.token_rows(), straight.token_rows(), atol=1e-6, rtol=0)
    moved = [n for n, p in resumed.models.unet.named_parameters() if not torch.allclose(p, trained[n], atol=1e-6)]
    assert not moved, moved[:3]
