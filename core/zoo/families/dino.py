"""The ``dino`` family: a self-supervised ViT whose CLS feature measures subject identity (DINO score).

DINO features, unlike CLIP's, are not trained to ignore instance details, which is why DreamBooth-style
evaluations use them to say "is this the same dog". Loading goes through transformers'
``ViTModel.from_pretrained`` with ``use_safetensors=True`` (never a pickle) and ``AutoImageProcessor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.zoo.family import Family
from core.zoo.safety import refuse_pickle_only_dir

PRODUCTION = "facebook/dino-vits16"
SEED = 0
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TINY_IMAGE_SIZE = 32


@dataclass
class DinoScorer:
    """A ViT in eval mode plus its image processor; features are the final-layer-normed CLS token."""

    model: torch.nn.Module
    processor: Any
    name: str
    device: str = "cpu"

    @torch.inference_mode()
    def encode_images(self, images: list, batch_size: int = 32) -> torch.Tensor:
        """(N, D) unit-norm CLS features of PIL images, float32 on the CPU."""
        if not images:
            return torch.empty(0, self.model.config.hidden_size)
        dtype = next(self.model.parameters()).dtype
        out = []
        for i in range(0, len(images), batch_size):
            batch = [im.convert("RGB") for im in images[i : i + batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            hidden = self.model(pixel_values=pixels.to(self.device, dtype=dtype)).last_hidden_state
            out.append(torch.nn.functional.normalize(hidden[:, 0].float(), dim=-1).cpu())
        return torch.cat(out)


def build_tiny(out_dir: Path) -> None:
    """Write a random 2-layer ViT (32 px, patch 8, width 32) and a matching ViTImageProcessor."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(SEED)
    config = ViTConfig(
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        qkv_bias=True,
    )
    model = ViTModel(config, add_pooling_layer=False)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor = ViTImageProcessor(
        do_resize=True,
        size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        resample=2,  # bilinear, as facebook/dino-vits16's processor
        do_rescale=True,
        do_normalize=True,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    processor.save_pretrained(out_dir)


def load(source: str, *, device: str = "cpu", dtype: torch.dtype | None = None) -> DinoScorer:
    """Load through ``ViTModel.from_pretrained`` (safetensors only) and ``AutoImageProcessor``.

    ``add_pooling_layer=False``: DINO checkpoints have no trained pooler, and the score uses the CLS
    token, so building one would only add randomly initialised weights and a warning.
    """
    from transformers import AutoImageProcessor, ViTModel

    refuse_pickle_only_dir(source, "dino")
    model = ViTModel.from_pretrained(
        source, use_safetensors=True, add_pooling_layer=False, dtype=dtype or torch.float32
    )
    processor = AutoImageProcessor.from_pretrained(source)
    model.to(device).eval()
    return DinoScorer(model=model, processor=processor, name=source, device=device)


def build_shape(device: str = "cpu", dtype: torch.dtype | None = None, variant: str | None = None) -> DinoScorer:
    """DINO ViT-S/16's architecture at random init (``core.zoo.shapes.DINO_VITS16``)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    from core.zoo.shapes import DINO_VITS16

    with torch.device(device):
        model = ViTModel(ViTConfig(**DINO_VITS16), add_pooling_layer=False)
    processor = ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    if dtype is not None and device != "meta":
        model.to(dtype)
    return DinoScorer(model=model.eval(), processor=processor, name="shape", device=device)


FAMILIES: list[Family] = [
    Family(
        name="dino",
        summary="DINO ViT image embedder for subject-identity (DINO) scores (transformers)",
        library="transformers",
        production=PRODUCTION,
        build_tiny=build_tiny,
        load=load,
        build_shape=build_shape,
    )
]
