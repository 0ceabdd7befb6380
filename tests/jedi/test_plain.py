"""A JeDi pipeline converted to plain Stable Diffusion computes what the JeDi model computes with no reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import zoo
from core.jedi import attention_kwargs, unet_input
from core.jedi.plain import plain_pipeline, plain_unet


@pytest.fixture()
def jedi(zoo_home):
    """The tiny JeDi pipeline with trained-looking weights on every extra input channel: the reference
    channels (which must drop out) and the mask channel (which must be folded)."""
    pipe = zoo.load("jedi", "tiny", home=zoo_home)
    with torch.no_grad():
        pipe.unet.conv_in.weight[:, 4:9].normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    return pipe


def _no_reference(pipe, x, t, text):
    """The JeDi UNet on a set of one to generate: noisy ‖ zero references ‖ mask 1, coupling off."""
    n = x.shape[0]
    model_in = unet_input(x, torch.randn_like(x), torch.ones(n))  # the references are zeroed where mask = 1
    return pipe.unet(
        model_in, t, encoder_hidden_states=text, cross_attention_kwargs=attention_kwargs(((n, 1),), False)
    ).sample


@torch.no_grad()
def test_input_convolution_matches_inside_and_differs_only_on_the_border(jedi):
    plain = plain_unet(jedi.unet)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    jedi_out = jedi.unet.conv_in(unet_input(x, torch.randn_like(x), torch.ones(2)))
    plain_out = plain.conv_in(x)
    torch.testing.assert_close(plain_out[..., 1:-1, 1:-1], jedi_out[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-6)
    # On the border the JeDi kernel meets zero padding where the mask would be 1: the fold cannot match.
    assert (plain_out - jedi_out)[..., 0, :].abs().max() > 1e-3


@torch.no_grad()
def test_whole_unet_is_exact_when_the_mask_never_meets_the_padding(jedi):
    """With the mask's weight on the centre tap only, the fold is exact everywhere, so the whole UNet
    (every block, attention, time embedding) must agree with the JeDi UNet to float precision."""
    jedi.unet.conv_in.weight[:, 8, :, :] = 0
    jedi.unet.conv_in.weight[:, 8, 1, 1] = torch.linspace(-0.5, 0.5, jedi.unet.conv_in.out_channels)
    plain = plain_unet(jedi.unet)
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(3, 4, 8, 8, generator=g), torch.tensor([10, 500, 990])
    text = jedi.encode_text(["a dog", "a cat on the sea", ""])
    torch.testing.assert_close(plain(x, t, encoder_hidden_states=text).sample, _no_reference(jedi, x, t, text))
    assert "_jedi" not in plain.config and plain.config.in_channels == 4


@torch.no_grad()
def test_plain_pipeline_saves_and_loads_with_plain_diffusers(jedi, tmp_path):
    from diffusers import StableDiffusionPipeline

    plain_pipeline(jedi).save_pretrained(str(tmp_path), safe_serialization=True)
    assert json.loads((tmp_path / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path), safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.config.in_channels == 4
    assert pipe.scheduler.config.prediction_type == jedi.scheduler.config.prediction_type
    for a, b in zip(pipe.unet.parameters(), plain_unet(jedi.unet).parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    image = pipe("a dog", num_inference_steps=2, height=64, width=64, output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_plain_unet_refuses_a_plain_unet(jedi):
    with pytest.raises(ValueError, match="not a JeDi UNet"):
        plain_unet(plain_unet(jedi.unet))
