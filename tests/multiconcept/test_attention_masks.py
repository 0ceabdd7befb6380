"""Concept masks from cross-attention: layer/timestep averaging (core.attention_maps) and the E/M steps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from core.attention_maps import AttentionStore, layer_grid, timestep_averaged_maps, token_maps
from core.config import load_config
from tests.multiconcept.conftest import make_recipe, settings


def test_layer_grids_follow_the_unet_levels():
    assert layer_grid(64, (8, 8)) == (8, 8) and layer_grid(16, (8, 8)) == (4, 4) and layer_grid(32, (8, 16)) == (4, 8)
    assert layer_grid(6, (5, 3)) == (3, 2), "odd sides round up like stride-2 convolutions"
    with pytest.raises(ValueError, match="15 positions fit no level of a 8x8 latent"):
        layer_grid(15, (8, 8))


def test_token_maps_average_every_layer_on_the_latent_grid():
    store = AttentionStore()
    fine, coarse = torch.zeros(2, 16, 5), torch.zeros(2, 4, 5)
    fine[:, :, 3], coarse[:, :, 3] = 1.0, 0.5  # token 3: 1.0 in the 4x4 layer, 0.5 in the 2x2 layer
    fine[1, 0, 1] = 4.0  # token 1, image 1: one hot cell in the 4x4 layer
    store.add("fine", fine)
    store.add("coarse", coarse)
    maps = token_maps(store, torch.tensor([3, 1]), (4, 4))
    assert maps.shape == (2, 2, 4, 4)
    assert torch.allclose(maps[:, 0], torch.full((2, 4, 4), 0.75)), "layers count equally"
    assert maps[1, 1, 0, 0] == 2.0 and maps[1, 1].sum() == 2.0 and maps[0, 1].abs().sum() == 0
    per_row = token_maps(store, torch.tensor([[3, 1], [1, 3]]), (4, 4))
    assert torch.equal(per_row[1], maps[1].flip(0)), "positions may differ per row"
    with pytest.raises(ValueError, match="no cross-attention maps were captured"):
        token_maps(AttentionStore(), torch.tensor([0]), (4, 4))


@pytest.fixture(scope="module")
def tuner(zoo_home, scene_dir, tmp_path_factory):
    """The scene with the cat (concept 1) marked absent from image 01."""
    root = tmp_path_factory.mktemp("partial") / "duo"
    shutil.copytree(scene_dir, root)
    meta = json.loads((root / "scene.json").read_text())
    (root / "scene.json").write_text(json.dumps({**meta, "images": {"01.png": [0, 2]}}))
    cfg = load_config("tiny", settings(tmp_path_factory.mktemp("runs")))
    torch.set_num_threads(1)
    return make_recipe(cfg, root)


def test_timestep_averaging_equals_the_mean_of_single_timesteps(tuner):
    m = tuner.models
    ids, positions = tuner.encode([0, 1, 2])
    states = m.text_encoder(ids)[0]
    latent = tuner.posterior[0][:1]
    timesteps, noise = (
        torch.tensor([10, 500, 990]),
        torch.randn(3, *latent.shape[1:], generator=torch.Generator().manual_seed(0)),
    )
    batched = timestep_averaged_maps(m.unet, m.noise_scheduler, latent, states, positions, timesteps, noise)
    single = [
        timestep_averaged_maps(
            m.unet, m.noise_scheduler, latent, states, positions, timesteps[i : i + 1], noise[i : i + 1]
        )
        for i in range(3)
    ]
    assert batched.shape == (3, 8, 8)
    torch.testing.assert_close(batched, torch.stack(single).mean(0), atol=1e-5, rtol=1e-4)


def test_estep_gives_one_mask_per_concept_and_image(tuner):
    masks = tuner.estimate_masks(0)
    assert masks.shape == (2, 3, 64, 64) and masks.dtype == bool
    assert not masks[1, 1].any(), "a concept absent from an image gets an empty mask"
    assert not (masks.sum(axis=1) > 1).any(), "the concepts of an image compete: each pixel has at most one"
    assert masks[0].any() and masks[1].any()
    assert np.array_equal(masks, tuner.estimate_masks(0)), "the same step draws the same timesteps"


def test_mstep_trains_only_the_concept_tokens(tuner):
    tuner.set_masks(tuner.estimate_masks(0))
    table = tuner.models.text_encoder.get_input_embeddings().weight
    before = table.detach().clone()
    unet = {n: p.detach().clone() for n, p in tuner.models.unet.named_parameters()}
    metrics = tuner.train_step(1)
    assert np.isfinite(metrics["loss"]) and metrics["loss_attention"] > 0 and 1 <= metrics["concepts"] <= 3
    changed = (table.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert set(changed) <= set(tuner.token_ids.tolist()) and changed, "only concept rows move"
    assert all(torch.equal(p, unet[n]) for n, p in tuner.models.unet.named_parameters())


def test_the_warm_start_inverts_every_concept_on_the_whole_image_before_the_first_estep(zoo_home, scene_dir, tmp_path):
    """Paper 004: unmasked inversion gives the initial tokens; the first E-step follows it."""
    from training.multiconcept.em import estep_due

    cfg = load_config("tiny", settings(tmp_path, "multiconcept.warmup_steps=2"))
    assert [s for s in range(0, 9) if estep_due(s, cfg.multiconcept)] == [2, 4, 6]
    recipe = make_recipe(cfg, scene_dir)
    assert recipe.begin(0) == {} and recipe.masks is None, "no masks before the warm start"
    table = recipe.models.text_encoder.get_input_embeddings().weight
    before = table.detach().clone()
    for step in (1, 2):
        batch = recipe.batch(step)
        assert batch.concepts == [int(k) for k in np.nonzero(recipe.scene.present[batch.image])[0]]
        m = recipe.models
        with torch.no_grad():  # the loss is the plain diffusion loss over the whole latent
            ids, _ = recipe.encode(batch.concepts)
            noisy = m.noise_scheduler.add_noise(batch.latents, batch.noise, batch.timesteps)
            pred = m.unet(noisy, batch.timesteps, m.text_encoder(ids)[0]).sample
            expected = float(((pred - m.target(batch.latents, batch.noise, batch.timesteps)) ** 2).mean())
        metrics = recipe.train_step(step)
        assert metrics["loss"] == pytest.approx(expected, rel=1e-5) and "loss_attention" not in metrics
    assert recipe.masks is not None and [h["step"] for h in recipe.history] == [2], "the first E-step at step 2"
    changed = (table.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert sorted(changed) == sorted(recipe.token_ids.tolist())
