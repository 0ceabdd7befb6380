"""What each method's steps may and may not change, checked on the tuner itself (no Ray)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from core.methods.tokens import row_norms
from tests.finetune.conftest import assert_same, ft_config, make_tuner, state


def test_textual_inversion_changes_only_the_new_token_rows(zoo_home, tmp_path, dog_photos):
    tuner = make_tuner(ft_config(tmp_path), "ti", dog_photos)
    weight = tuner.models.text_encoder.get_input_embeddings().weight
    ids = tuner.token.ids
    keep = torch.ones(weight.shape[0], dtype=torch.bool)
    keep[ids] = False
    table, unet = weight.detach().clone(), state(tuner.models.unet)
    encoder = {k: v for k, v in state(tuner.models.text_encoder).items() if "token_embedding" not in k}
    for step in (1, 2, 3):
        tuner.train_step(step)
    after = weight.detach()
    assert torch.equal(after[keep], table[keep]), "rows other than the new token changed"
    assert not torch.equal(after[ids], table[ids]), "the new token's row did not train"
    assert_same(unet, state(tuner.models.unet))
    assert_same(encoder, {k: v for k, v in state(tuner.models.text_encoder).items() if "token_embedding" not in k})


def test_new_token_starts_at_the_initializer_words_embedding(zoo_home, tmp_path, dog_photos):
    cfg = ft_config(tmp_path, "finetune.ti.token.num_vectors=2", "finetune.ti.token.initializer=stuffed animal")
    tuner = make_tuner(cfg, "ti", dog_photos)
    tok, weight = tuner.models.tokenizer, tuner.models.text_encoder.get_input_embeddings().weight
    assert tuner.token.names == ["<sks>", "<sks>_1"] and tuner.token.text == "<sks> <sks>_1"
    init = weight[torch.tensor(tok("stuffed animal", add_special_tokens=False).input_ids)].mean(0)
    for row in weight[tuner.token.ids]:
        torch.testing.assert_close(row, init, rtol=0, atol=0)
    prompt_ids = tuner.instance_ids[0].tolist()
    assert prompt_ids[:6] == [
        tok.bos_token_id,
        *tok("a photo of", add_special_tokens=False).input_ids,
        *tuner.token.ids.tolist(),
    ]


def test_textual_inversion_captions_each_photo_with_a_drawn_template(zoo_home, tmp_path, dog_photos):
    """Each photo of a step gets one of TI's caption templates; every other draw of the step is what
    the single-template plan draws."""
    from core.config.finetune import TI_CAPTIONS

    fast = ("finetune.batch_size=4", "finetune.ti.train.steps=5")
    tuner = make_tuner(ft_config(tmp_path, *fast), "ti", dog_photos)
    single = make_tuner(ft_config(tmp_path, *fast, "finetune.ti.captions=[]"), "ti", dog_photos)
    assert len(TI_CAPTIONS) == 27 and tuner.plan.captions == TI_CAPTIONS and single.plan.captions == ()
    captions = {tuple(tuner.models.token_ids([c.replace("{0}", tuner.token.text)])[0].tolist()) for c in TI_CAPTIONS}
    seen = set()
    for step in range(1, 6):
        batch, plain = tuner.batch(step), single.batch(step)
        rows = {tuple(r) for r in batch.ids.tolist()}
        assert rows <= captions, "a photo was captioned with something else"
        seen |= rows
        assert {tuple(r) for r in plain.ids.tolist()} == {tuple(single.instance_ids[0].tolist())}
        for a, b in ((batch.latents, plain.latents), (batch.noise, plain.noise), (batch.timesteps, plain.timesteps)):
            assert torch.equal(a, b)
    assert len(seen) > 5, "the captions are not drawn"


def test_an_existing_token_is_refused(zoo_home, tmp_path, dog_photos):
    with pytest.raises(ValueError, match="already in the tokenizer"):
        make_tuner(ft_config(tmp_path, "finetune.ti.token.token=dog"), "ti", dog_photos)


def test_two_stage_stage2_leaves_text_encoder_and_embedding_unchanged(zoo_home, tmp_path, dog_photos):
    tuner = make_tuner(ft_config(tmp_path), "two-stage", dog_photos)
    base_unet = state(tuner.models.unet)
    for step in (1, 2):  # stage 1: the token only
        assert tuner.train_step(step)["lr"] == pytest.approx(5e-4)
    assert_same(base_unet, state(tuner.models.unet))
    encoder, unet = state(tuner.models.text_encoder), state(tuner.models.unet)
    for step in (3, 4):  # stage 2: the UNet only
        assert tuner.train_step(step)["lr"] == pytest.approx(5e-6)
    assert_same(encoder, state(tuner.models.text_encoder))
    assert any(not torch.equal(v, state(tuner.models.unet)[k]) for k, v in unet.items()), "stage 2 did not train"
    assert tuner.plan.stages[tuner.stage_index].name == "unet"


def test_core_rescaling_keeps_the_norm_only_inside_its_window(zoo_home, tmp_path, dog_photos):
    """Window = stage-1 steps 2..3 of 5: the update of those steps keeps the norm the row had before."""
    tuner = make_tuner(ft_config(tmp_path, "finetune.core.stage2.steps=0"), "core", dog_photos)
    weight, ids = tuner.models.text_encoder.get_input_embeddings().weight, tuner.token.ids
    norms = [float(row_norms(weight, ids))]
    for step in range(1, 6):
        tuner.train_step(step)
        norms.append(float(row_norms(weight, ids)))
    assert norms[1] != pytest.approx(norms[0], rel=1e-5), "step 1 is outside the window"
    assert norms[2] == pytest.approx(norms[1], rel=1e-6) and norms[3] == pytest.approx(norms[1], rel=1e-6)
    assert norms[4] != pytest.approx(norms[3], rel=1e-5), "step 4 is outside the window"
    assert norms[5] != pytest.approx(norms[4], rel=1e-5)


def test_prior_preservation_adds_the_class_loss(zoo_home, tmp_path, dog_photos):
    tuner = make_tuner(ft_config(tmp_path), "dreambooth", dog_photos, class_images=dog_photos[:2])
    metrics = tuner.train_step(1)
    assert metrics["loss"] == pytest.approx(metrics["loss_instance"] + metrics["loss_prior"], rel=1e-6)
    with pytest.raises(ValueError, match="needs class images"):
        make_tuner(ft_config(tmp_path), "dreambooth", dog_photos)


@pytest.mark.parametrize(
    ("method", "saved_at"),
    [("ti", 2), ("two-stage", 2), ("two-stage", 3)],
    ids=["inside-a-stage", "at-a-stage-end", "inside-stage-2"],
)
def test_checkpoint_restore_continues_exactly(zoo_home, tmp_path, dog_photos, method, saved_at):
    """Save after step ``saved_at``, restore into a fresh tuner, take the next step: the same as an
    uninterrupted run (a checkpoint at a stage's end starts the next stage with a fresh optimizer)."""
    cfg = ft_config(tmp_path)
    straight = make_tuner(cfg, method, dog_photos)
    for step in range(1, saved_at + 1):
        straight.train_step(step)
    meta = {**straight.save(tmp_path), "step": saved_at}  # the shell adds the step to the recipe's fields
    resumed = make_tuner(cfg, method, dog_photos)
    resumed.restore(tmp_path, meta)
    assert resumed.stage_index == (None if saved_at == 2 and method == "two-stage" else straight.stage_index)
    assert straight.train_step(saved_at + 1) == resumed.train_step(saved_at + 1)
    for a, b in (
        (straight.models.text_encoder, resumed.models.text_encoder),
        (straight.models.unet, resumed.models.unet),
    ):
        assert_same(state(a), state(b))


def test_two_stage_publishes_its_best_scored_stage2_checkpoint_with_every_score(zoo_home, tmp_path, dog_photos):
    """Paper 001 §4.1: stage 2 is scored every ``select_every`` steps (and at its end) by the mean DINO
    similarity of samples of the subject's prompt to its photos; the best weights are published, and
    they and the scores survive a checkpoint."""
    from diffusers import UNet2DConditionModel

    from core import zoo
    from core.subjects import read_card

    cfg = ft_config(
        tmp_path,
        "finetune.two_stage.stage1.steps=1",
        "finetune.two_stage.stage2.steps=4",
        "finetune.two_stage.stage2.optim.lr=0.05",
        "finetune.two_stage.select_every=2",
        "finetune.two_stage.select_images=2",
    )
    tuner = make_tuner(cfg, "two-stage", dog_photos)
    dino = zoo.load("dino", "tiny")
    photos = dino.encode_images([Image.fromarray(p) for p in dog_photos])
    unets, scores = {}, {}
    for step in range(1, 6):
        metrics = tuner.train_step(step)
        if step in (3, 5):  # stage-2 steps 2 and 4
            samples = dino.encode_images([tuner.draw(cfg.seed + i) for i in range(2)])
            scores[step] = float((samples @ photos.T).mean())  # unit-norm features: cosines
            assert metrics["val/selection_dino"] == pytest.approx(scores[step], abs=1e-5)
            unets[step] = state(tuner.models.unet)
        else:
            assert "val/selection_dino" not in metrics
    best = max(scores, key=scores.get)
    assert tuner.best[0] == best and tuner.scores == pytest.approx(scores, abs=1e-5)

    (tmp_path / "ckpt").mkdir()
    meta = {**tuner.save(tmp_path / "ckpt"), "step": 5}
    assert best == 3 and (tmp_path / "ckpt" / "best_unet.safetensors").is_file(), "the earlier weights are kept"
    resumed = make_tuner(cfg, "two-stage", dog_photos)
    resumed.restore(tmp_path / "ckpt", meta)
    resumed.export(tmp_path / "export")
    card = read_card(tmp_path / "store" / "dog-two-stage")
    assert card.metrics["selected_step"] == best
    assert {k: v for k, v in card.metrics.items() if k.startswith("selection_dino")} == pytest.approx(
        {f"selection_dino_step_{s}": v for s, v in scores.items()}, abs=1e-5
    )
    published = UNet2DConditionModel.from_pretrained(str(tmp_path / "store" / "dog-two-stage" / "unet"))
    assert_same(unets[best], state(published))
