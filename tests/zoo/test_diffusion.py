"""The four diffusers families: tiny pipelines load through ``core.zoo.load`` and draw 64×64 images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core import zoo


def _run(name: str, home, **kwargs) -> Image.Image:
    pipe = zoo.load(name, "tiny", home=home)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pil", **kwargs)
    return out.images[0]


@pytest.fixture(scope="module")
def init_image(dreambooth) -> Image.Image:
    return Image.open(dreambooth / "images" / "teapot" / "00.jpg").convert("RGB").resize((64, 64))


@pytest.mark.parametrize("name", ["sd", "sdxl"])
def test_text_to_image_pipelines_draw_64px(zoo_home, name):
    image = _run(name, zoo_home, prompt="a photo of a teapot", height=64, width=64)
    assert image.size == (64, 64)
    again = _run(name, zoo_home, prompt="a photo of a teapot", height=64, width=64)
    assert np.array_equal(np.asarray(image), np.asarray(again)), "a fixed seed must give the same image"


def test_inpainting_pipeline_has_nine_input_channels_and_draws(zoo_home, init_image):
    pipe = zoo.load("inpaint", "tiny", home=zoo_home)
    assert pipe.unet.config.in_channels == 9
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    assert _run("inpaint", zoo_home, prompt="on the beach", image=init_image, mask_image=mask).size == (64, 64)


def test_pix2pix_pipeline_has_eight_input_channels_and_draws(zoo_home, init_image):
    pipe = zoo.load("pix2pix", "tiny", home=zoo_home)
    assert pipe.unet.config.in_channels == 8
    assert _run("pix2pix", zoo_home, prompt="make it a watercolor", image=init_image).size == (64, 64)


def test_tiny_keeps_production_geometry_and_real_clip_tokenizer(zoo_home):
    pipe = zoo.load("sd", "tiny", home=zoo_home)
    assert pipe.vae_scale_factor == 8 and pipe.unet.config.in_channels == 4
    from open_clip.tokenizer import SimpleTokenizer

    # The real CLIP BPE: the same ids as OpenAI's tokenizer (open_clip's copy), as in every SD checkpoint.
    reference = SimpleTokenizer()
    for text in ("a photo of a teapot", "A sks dog wearing a santa hat!", "cube-shaped backpack, 3 times"):
        expected = [reference.sot_token_id, *reference.encode(text), reference.eot_token_id]
        assert pipe.tokenizer(text).input_ids == expected
    assert len(pipe.tokenizer) == 49408


def test_pickled_weights_are_never_loaded(zoo_home, tmp_path):
    import shutil

    src = zoo_home / "zoo" / "tiny" / "sd"
    copy = tmp_path / "sd"
    shutil.copytree(src, copy)
    for f in (copy / "unet").glob("*.safetensors"):
        f.unlink()
    torch.save({"conv_in.weight": torch.zeros(1)}, copy / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(zoo.UnsafeWeightsError, match="unet/diffusion_pytorch_model.bin"):
        zoo.load("sd", str(copy))
