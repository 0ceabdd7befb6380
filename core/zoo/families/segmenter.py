"""The ``segmenter`` family: Segment Anything (SAM), which turns detector boxes into pixel masks.

segment-anything's ``build_sam*`` functions hard-code a 1024 px input and 256-dim prompts, and load
checkpoints with a bare ``torch.load`` (arbitrary pickle). Here one builder, ``build_sam(config)``,
assembles ``Sam`` from ``segment_anything.modeling`` parts with every architecture parameter taken
from a JSON-able config; the tiny stand-in and the production ViT-H (the values of the library's
``sam_model_registry["vit_h"]``) are just two configs. Weights go through ``core.zoo.safety``
(safetensors, or a pickle restricted to tensors) and a strict key check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.zoo.family import Family

PRODUCTION = "ybelkada/segment-anything"
PRODUCTION_FILE = "checkpoints/sam_vit_h_4b8939.pth"
CONFIG_NAME = "sam_config.json"
WEIGHTS_NAME = "model.safetensors"
SEED = 0
FORMAT = "s3jedi-sam/1"

_COMMON: dict[str, Any] = {
    "format": FORMAT,
    "patch_size": 16,
    "encoder_mlp_ratio": 4.0,
    "encoder_qkv_bias": True,
    "encoder_use_abs_pos": True,
    "encoder_use_rel_pos": True,
    "encoder_layernorm_eps": 1e-6,
    "decoder_num_multimask_outputs": 3,
    "decoder_transformer_depth": 2,
    "decoder_attention_downsample_rate": 2,
    "decoder_iou_head_depth": 3,
    "pixel_mean": [123.675, 116.28, 103.53],
    "pixel_std": [58.395, 57.12, 57.375],
    "image_format": "RGB",
}


def _registry_variant(embed_dim: int, depth: int, num_heads: int, global_attn: list[int]) -> dict[str, Any]:
    """The settings ``segment_anything.build_sam._build_sam`` fixes for every released variant."""
    return {
        **_COMMON,
        "image_size": 1024,
        "encoder_embed_dim": embed_dim,
        "encoder_depth": depth,
        "encoder_num_heads": num_heads,
        "encoder_global_attn_indexes": global_attn,
        "encoder_window_size": 14,
        "prompt_embed_dim": 256,
        "mask_in_chans": 16,
        "decoder_transformer_mlp_dim": 2048,
        "decoder_transformer_num_heads": 8,
        "decoder_iou_head_hidden_dim": 256,
    }


# The three checkpoints Meta released, with sam_model_registry's parameters (build_sam.py).
VARIANTS: dict[str, dict[str, Any]] = {
    "vit_h": _registry_variant(1280, 32, 16, [7, 15, 23, 31]),
    "vit_l": _registry_variant(1024, 24, 16, [5, 11, 17, 23]),
    "vit_b": _registry_variant(768, 12, 12, [2, 5, 8, 11]),
}
PRODUCTION_VARIANT = "vit_h"

# The tiny stand-in: 128 px input (8x8 patch grid, 32x32 low-res masks), 2 encoder blocks (one
# windowed, one global, as the real encoder alternates), 32-dim everything.
TINY_CONFIG: dict[str, Any] = {
    **_COMMON,
    "image_size": 128,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "encoder_window_size": 4,
    "prompt_embed_dim": 32,
    "mask_in_chans": 4,
    "decoder_transformer_mlp_dim": 64,
    "decoder_transformer_num_heads": 2,
    "decoder_iou_head_hidden_dim": 32,
}


def build_sam(config: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised ``Sam`` in eval mode, assembled exactly as ``_build_sam`` does but with
    every parameter from ``config`` (so any input size and width can be built)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    c = config
    image_size, patch = c["image_size"], c["patch_size"]
    if image_size % patch:
        raise ValueError(f"segmenter config: image_size {image_size} is not a multiple of patch_size {patch}")
    grid = image_size // patch
    prompt_dim = c["prompt_embed_dim"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=patch,
            embed_dim=c["encoder_embed_dim"],
            depth=c["encoder_depth"],
            num_heads=c["encoder_num_heads"],
            mlp_ratio=c["encoder_mlp_ratio"],
            out_chans=prompt_dim,
            qkv_bias=c["encoder_qkv_bias"],
            norm_layer=partial(torch.nn.LayerNorm, eps=c["encoder_layernorm_eps"]),
            use_abs_pos=c["encoder_use_abs_pos"],
            use_rel_pos=c["encoder_use_rel_pos"],
            window_size=c["encoder_window_size"],
            global_attn_indexes=tuple(c["encoder_global_attn_indexes"]),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=c["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=c["decoder_num_multimask_outputs"],
            transformer=TwoWayTransformer(
                depth=c["decoder_transformer_depth"],
                embedding_dim=prompt_dim,
                mlp_dim=c["decoder_transformer_mlp_dim"],
                num_heads=c["decoder_transformer_num_heads"],
                attention_downsample_rate=c["decoder_attention_downsample_rate"],
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=c["decoder_iou_head_depth"],
            iou_head_hidden_dim=c["decoder_iou_head_hidden_dim"],
        ),
        pixel_mean=c["pixel_mean"],
        pixel_std=c["pixel_std"],
    )
    sam.image_format = c["image_format"]
    return sam.eval()


def build_tiny(out_dir: Path) -> None:
    """Write the tiny SAM: ``sam_config.json`` (every architecture parameter) and safetensors weights."""
    from core.zoo.safety import save_state_dict

    out_dir = Path(out_dir)
    torch.manual_seed(SEED)
    model = build_sam(TINY_CONFIG)
    save_state_dict(model.state_dict(), out_dir / WEIGHTS_NAME)
    (out_dir / CONFIG_NAME).write_text(json.dumps(TINY_CONFIG, indent=1, sort_keys=True) + "\n")


def _variant_from_name(path: Path) -> dict[str, Any]:
    """Meta's checkpoint names say their variant (``sam_vit_h_4b8939.pth``)."""
    for name, config in VARIANTS.items():
        if name in path.name:
            return config
    raise ValueError(
        f"{path}: cannot tell the SAM variant from the file name (expected one of {', '.join(VARIANTS)} "
        f"in it); put a {CONFIG_NAME} next to it"
    )


def _resolve(source: str) -> tuple[dict[str, Any], Path]:
    """(config, weights file) for a bundle directory, a checkpoint file, or a hub repository id."""
    path = Path(source)
    if path.is_file():
        return _variant_from_name(path), path
    if path.is_dir():
        config_file = path / CONFIG_NAME
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            candidates = sorted(path.glob("*.pth")) + sorted(path.glob("*.safetensors"))
            if len(candidates) != 1:
                raise FileNotFoundError(
                    f"{path}: no {WEIGHTS_NAME} and not exactly one .pth/.safetensors checkpoint "
                    f"(found {[p.name for p in candidates]})"
                )
            weights = candidates[0]
        if config_file.is_file():
            config = json.loads(config_file.read_text())
            if config.get("format") != FORMAT:
                raise ValueError(f"{config_file}: unknown format {config.get('format')!r}, expected {FORMAT!r}")
            return config, weights
        return _variant_from_name(weights), weights
    from huggingface_hub import hf_hub_download

    return VARIANTS[PRODUCTION_VARIANT], Path(hf_hub_download(source, PRODUCTION_FILE))


def load(source: str, *, device: str = "cpu", dtype: torch.dtype | None = None) -> SamSegmenter:
    """Load a SAM bundle directory, a Meta checkpoint file, or the ViT-H checkpoint of a hub repo
    (``hf_hub_download``, so ``HF_HUB_OFFLINE`` and the cache behave as usual)."""
    from core.zoo.safety import load_state_dict, load_strict

    config, weights = _resolve(source)
    state = load_state_dict(weights)  # refuse unsafe pickles before building anything
    model = build_sam(config)
    load_strict(model, state, f"segmenter {source}")
    model.to(device=device, dtype=dtype or torch.float32).eval()
    return SamSegmenter(model=model, config=config, name=source, device=device)


@dataclass
class SamSegmenter:
    """A SAM model in eval mode; ``segment`` prompts it with boxes through ``SamPredictor``."""

    model: torch.nn.Module
    config: dict[str, Any]
    name: str
    device: str = "cpu"

    @torch.inference_mode()
    def segment(self, image: Any, boxes_xyxy: Any) -> tuple[np.ndarray, np.ndarray]:
        """One mask per box: ``(masks bool (n, H, W), scores float32 (n,))`` for an RGB PIL image or an
        ``HxWx3`` uint8 array and ``(n, 4)`` pixel boxes (x0, y0, x1, y1).

        ``multimask_output=False``: a box is an unambiguous prompt, for which SAM's authors recommend
        the single-mask head; the score is SAM's predicted IoU of that mask.
        """
        from segment_anything import SamPredictor

        array = _as_rgb_array(image)
        height, width = array.shape[:2]
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, height, width), dtype=bool), np.zeros((0,), dtype=np.float32)
        predictor = SamPredictor(self.model)  # holds per-image state; one per call keeps calls independent
        predictor.set_image(array, image_format="RGB")
        prompts = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes, device=self.device), (height, width))
        masks, scores, _ = predictor.predict_torch(
            point_coords=None, point_labels=None, boxes=prompts, multimask_output=False
        )
        return masks[:, 0].cpu().numpy().astype(bool), scores[:, 0].float().cpu().numpy()


def _as_rgb_array(image: Any) -> np.ndarray:
    """A PIL image or ``HxWx3`` uint8 array as a contiguous ``HxWx3`` uint8 RGB array."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"segment: expected an HxWx3 uint8 array, got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image)
    return np.asarray(image.convert("RGB"))


def build_shape(device: str = "cpu", dtype: torch.dtype | None = None, variant: str | None = None) -> SamSegmenter:
    """SAM's architecture at random init: ``variant`` vit_h (default), vit_l or vit_b."""
    name = variant or PRODUCTION_VARIANT
    if name not in VARIANTS:
        raise ValueError(f"models.segmenter: unknown shape variant {name!r}; known: {', '.join(VARIANTS)}")
    with torch.device(device):
        model = build_sam(VARIANTS[name])
    if dtype is not None and device != "meta":
        model.to(dtype)
    return SamSegmenter(model=model.eval(), config=VARIANTS[name], name=f"shape:{name}", device=device)


FAMILIES: list[Family] = [
    Family(
        name="segmenter",
        summary="Segment Anything: box prompts to subject masks (segment-anything)",
        library="segment-anything",
        production=PRODUCTION,
        build_tiny=build_tiny,
        load=load,
        build_shape=build_shape,
    )
]
