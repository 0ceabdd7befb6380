"""Production architectures at random init (the ``shape`` entries): parameter counts and a real step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import zoo
from core.zoo.shapes import PUBLISHED_PARAMS, count_params


def _close(count: int, key: str) -> None:
    published, where = PUBLISHED_PARAMS[key]
    assert abs(count - published) / published < 0.01, f"{key}: {count:,} vs {published:,} ({where})"


@pytest.mark.parametrize(
    ("family", "parts"),
    [
        ("sd", {"unet": "sd1_unet", "vae": "sd_vae", "text_encoder": "clip_l_text"}),
        ("sdxl", {"unet": "sdxl_unet", "vae": "sd_vae", "text_encoder": "clip_l_text"}),
        ("pix2pix", {"vae": "sd_vae", "text_encoder": "clip_l_text"}),
    ],
)
def test_diffusion_shapes_match_published_parameter_counts(family, parts):
    pipe = zoo.load(family, "shape", device="meta")
    for attr, key in parts.items():
        _close(count_params(getattr(pipe, attr)), key)
    assert pipe.unet.device.type == "meta", "meta builds must not allocate"


def test_family_specific_input_channels_and_scorer_shapes():
    assert zoo.load("inpaint", "shape", device="meta").unet.config.in_channels == 9
    assert zoo.load("pix2pix", "shape", device="meta").unet.config.in_channels == 8
    jedi = zoo.load("jedi", "shape", device="meta")
    assert jedi.unet.config.in_channels == 9 and jedi.spec.max_set_size == 4
    _close(count_params(zoo.load("llm", "shape", device="meta").model), "qwen25_1_5b")
    _close(count_params(zoo.load("segmenter", "shape", device="meta").model), "sam_vit_h")
    _close(count_params(zoo.load("dino", "shape", device="meta").model), "dino_vits16")
    assert zoo.load("clip", "shape", device="meta").embed_dim == 512
    assert zoo.load("clip", "shape:ViT-L-14", device="meta").embed_dim == 768
    with pytest.raises(ValueError, match="unknown shape variant 'ViT-H-99'"):
        zoo.load("clip", "shape:ViT-H-99", device="meta")


@pytest.mark.slow
def test_jedi_on_the_sd14_shape_runs_a_real_step(dreambooth):
    """Widening, coupled attention and the pipeline on SD1.4's architecture (materialised, random)."""
    from PIL import Image

    pipe = zoo.load("jedi", "shape", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    base_in = pipe.unet.conv_in.weight[:, :4].clone()
    assert torch.count_nonzero(pipe.unet.conv_in.weight[:, 4:]) == 0, "new channels start at zero"
    refs = [Image.open(dreambooth / "images" / "dog" / f"0{i}.jpg") for i in range(2)]
    out = pipe(
        refs,
        "a dog on the beach",
        num_inference_steps=1,
        height=64,
        width=64,
        image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    assert out.images.shape == (1, 64, 64, 3) and np.isfinite(out.images).all()
    assert len(out.set_latents) == 1 and out.set_latents[0].shape == (3, 4, 8, 8)
    assert torch.equal(pipe.unet.conv_in.weight[:, :4], base_in)


@pytest.mark.slow
def test_detector_shape_detects_on_a_real_photo(dreambooth):
    from PIL import Image

    det = zoo.load("detector", "shape", device="cpu")
    assert 150e6 < count_params(det.model) < 200e6  # Swin-T OGC with BERT-base: 172M
    found = det.detect(
        Image.open(dreambooth / "images" / "dog" / "00.jpg"), "dog", box_threshold=0.0, text_threshold=0.0
    )
    assert found and all(len(d.box_xyxy) == 4 for d in found)
