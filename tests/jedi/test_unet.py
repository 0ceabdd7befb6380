"""The widened, reference-conditioned UNet and the training objective."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel

from core.jedi import is_jedi_unet, jedi_loss, jedi_spec, set_jedi_attention, unet_input, widen_unet


def test_widened_unet_at_init_equals_base_without_reference(tiny_sd):
    base = tiny_sd.unet
    jedi = widen_unet(copy.deepcopy(base))
    assert jedi.config.in_channels == 9 and jedi_spec(jedi).in_channels == 9
    torch.manual_seed(0)
    noisy, t, text = torch.randn(2, 4, 8, 8), torch.tensor(700), torch.randn(2, 77, 32)
    x = unet_input(noisy, torch.randn(2, 4, 8, 8), torch.ones(2))  # "generate": reference zeroed
    with torch.no_grad():
        torch.testing.assert_close(jedi(x, t, text).sample, base(noisy, t, text).sample, atol=1e-6, rtol=0)
        given = unet_input(noisy, torch.randn(2, 4, 8, 8), torch.zeros(2))
        # at init the new channels have zero weights, so even a given reference changes nothing yet
        torch.testing.assert_close(jedi(given, t, text).sample, base(noisy, t, text).sample, atol=1e-6, rtol=0)


def test_unet_input_layout():
    noisy, ref = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    x = unet_input(noisy, ref, torch.tensor([1.0, 0.0, 1.0]))
    assert x.shape == (3, 9, 2, 2)
    assert torch.equal(x[:, :4], noisy)
    assert torch.equal(x[1, 4:8], ref[1]) and not x[0, 4:8].any() and not x[2, 4:8].any()
    assert x[0, 8].eq(1).all() and x[1, 8].eq(0).all()
    with pytest.raises(ValueError, match="generate: expected shape"):
        unet_input(noisy, ref, torch.ones(2))


def test_jedi_config_survives_save_and_load(tiny_sd, tmp_path):
    jedi = widen_unet(copy.deepcopy(tiny_sd.unet), max_set_size=3)
    jedi.save_pretrained(tmp_path / "unet")
    loaded = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    assert is_jedi_unet(loaded) and jedi_spec(loaded).max_set_size == 3
    for a, b in zip(jedi.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_plain_unet_and_double_widening_are_refused(tiny_sd):
    with pytest.raises(ValueError, match="unet: not a JeDi UNet"):
        jedi_spec(tiny_sd.unet)
    jedi = widen_unet(copy.deepcopy(tiny_sd.unet))
    with pytest.raises(ValueError, match="already a JeDi UNet"):
        widen_unet(jedi)
    with pytest.raises(ValueError, match="max_set_size: must be >= 2"):
        widen_unet(copy.deepcopy(tiny_sd.unet), max_set_size=1)


def _loss_inputs(num_sets=2, set_size=3):
    torch.manual_seed(0)
    latents = torch.randn(num_sets * set_size, 4, 8, 8)
    text = torch.randn(num_sets * set_size, 77, 32)
    null = torch.zeros(1, 77, 32)
    return latents, text, null


def test_loss_gradient_reaches_every_new_parameter(tiny_sd):
    unet = widen_unet(copy.deepcopy(tiny_sd.unet))
    set_jedi_attention(unet)
    latents, text, null = _loss_inputs()
    out = jedi_loss(
        unet,
        tiny_sd.scheduler,
        latents,
        text,
        null,
        set_size=3,
        p_reference=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    out.loss.backward()
    grad = unet.conv_in.weight.grad
    assert grad[:, 4:8].abs().sum() > 0, "reference channels get no gradient"
    assert grad[:, 8].abs().sum() > 0, "mask channel gets no gradient"
    assert all(p.grad is not None for p in unet.parameters() if p.requires_grad)


def test_loss_masks_references_per_set_and_is_seeded(tiny_sd):
    unet = widen_unet(copy.deepcopy(tiny_sd.unet))
    set_jedi_attention(unet)
    latents, text, null = _loss_inputs(num_sets=8, set_size=3)

    def run(seed):
        with torch.no_grad():
            return jedi_loss(
                unet,
                tiny_sd.scheduler,
                latents,
                text,
                null,
                set_size=3,
                p_reference=0.9,
                p_text_drop=0.5,
                generator=torch.Generator().manual_seed(seed),
            )

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.generate, b.generate)
    assert not torch.equal(a.timesteps, c.timesteps)
    per_set = a.generate.view(8, 3)
    assert (per_set.sum(1) >= 1).all(), "every set must have at least one image to generate"
    assert a.timesteps.view(8, 3).eq(a.timesteps.view(8, 3)[:, :1]).all(), "one timestep per set"
    single = jedi_loss(unet, tiny_sd.scheduler, latents[:4], text[:4], null, set_size=1, p_reference=1.0)
    assert single.generate.eq(1).all(), "sets of one image never get their own reference"
    assert not (a.caption_dropped & a.generate.bool()).any(), "only given references lose their caption"
    always = run_with(unet, tiny_sd, latents, text, null, p_reference_caption_drop=1.0)
    assert torch.equal(always.caption_dropped, always.generate == 0)


def run_with(unet, tiny_sd, latents, text, null, **kw):
    with torch.no_grad():
        return jedi_loss(
            unet,
            tiny_sd.scheduler,
            latents,
            text,
            null,
            set_size=3,
            p_reference=0.9,
            generator=torch.Generator().manual_seed(0),
            **kw,
        )


def test_loss_rejects_bad_shapes(tiny_sd):
    unet = widen_unet(copy.deepcopy(tiny_sd.unet))
    latents, text, null = _loss_inputs()
    with pytest.raises(ValueError, match="latents: expected"):
        jedi_loss(unet, tiny_sd.scheduler, latents[:5], text[:5], null, set_size=3)
    with pytest.raises(ValueError, match="text_embeds: 5 prompts for 6 images"):
        jedi_loss(unet, tiny_sd.scheduler, latents, text[:5], null, set_size=3)


def test_per_set_generators_make_a_set_independent_of_its_batch(tiny_sd):
    """Per-set draws: the same set gets the same noise/timestep alone or inside a larger batch."""
    from core.jedi.objective import draw_sets

    def gens(ids):
        return [torch.Generator().manual_seed(1000 + i) for i in ids]

    both = draw_sets(gens([0, 1]), 2, 3, (4, 8, 8), 1000, 0.5, 0.3, "cpu", torch.float32)
    second = draw_sets(gens([1]), 1, 3, (4, 8, 8), 1000, 0.5, 0.3, "cpu", torch.float32)
    assert torch.equal(both.noise[3:], second.noise) and torch.equal(both.timesteps[3:], second.timesteps)
    assert torch.equal(both.generate[3:], second.generate) and torch.equal(both.text_dropped[1:], second.text_dropped)
    with pytest.raises(ValueError, match="generator: 1 generators for 2 sets"):
        draw_sets(gens([0]), 2, 3, (4, 8, 8), 1000, 0.5, 0.3, "cpu", torch.float32)


def test_reference_channel_drop_zeroes_the_channel_of_text_dropped_sets_and_keeps_the_mask(tiny_sd):
    """The ε⁰ = ε_θ(x_t, 0, M) of paper guidance: null text, clean-reference channel zero, mask kept."""
    unet = widen_unet(copy.deepcopy(tiny_sd.unet))
    set_jedi_attention(unet)
    latents, text, null = _loss_inputs(num_sets=8, set_size=3)
    seen = []
    hook = unet.conv_in.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    try:
        for p_channel in (0.0, 1.0, 0.5):
            out = run_with(unet, tiny_sd, latents, text, null, p_text_drop=0.5, p_reference_channel_drop=p_channel)
            x = seen[-1].view(8, 3, 9, 8, 8)
            given = out.generate.view(8, 3) == 0
            assert torch.equal(x[:, :, 8, 0, 0], out.generate.view(8, 3)), "the mask is kept either way"
            channel = x[:, :, 4:8].abs().flatten(2).sum(2) > 0  # (sets, members): a reference in the channel
            assert torch.equal(channel, given & ~out.channel_dropped.view(8, 1))
            assert not (out.channel_dropped & ~out.text_dropped).any(), "only text-dropped sets lose the channel"
            if p_channel == 0.0:
                assert not out.channel_dropped.any()
            if p_channel == 1.0:
                assert torch.equal(out.channel_dropped, out.text_dropped) and out.text_dropped.any()
    finally:
        hook.remove()
    with pytest.raises(ValueError, match=r"p_reference_channel_drop: must lie in \[0, 1\]"):
        run_with(unet, tiny_sd, latents, text, null, p_reference_channel_drop=1.5)


def test_channel_drop_draws_come_last_so_older_draws_keep_their_values():
    from core.jedi.objective import draw_sets

    def draws(p):
        gens = [torch.Generator().manual_seed(7 + i) for i in range(4)]
        return draw_sets(gens, 4, 3, (4, 2, 2), 1000, 0.5, 0.5, "cpu", torch.float32, 0.5, p)

    a, b = draws(0.0), draws(1.0)
    for name in ("timesteps", "noise", "generate", "text_dropped", "caption_dropped"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
