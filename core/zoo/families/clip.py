"""The ``clip`` family: an open_clip image/text embedder used to score prompt fidelity and subject identity.

References a config may use (all go through ``open_clip.create_model_and_transforms``):

- a local directory holding ``open_clip_config.json`` + weights (what the tiny build writes, and what
  ``open_clip`` itself calls ``local-dir:DIR``);
- ``hf-hub:ORG/REPO``, e.g. ``hf-hub:timm/vit_base_patch32_clip_224.openai`` (ViT-B/32, the default)
  or ``hf-hub:timm/vit_large_patch14_clip_224.openai`` (ViT-L/14); the repo carries its own config;
- ``MODEL/TAG`` with an open_clip built-in model name and pretrained tag, e.g. ``ViT-B-32/openai`` or
  ``ViT-L-14/openai`` (``ViT-B/32/openai`` too), the convention of papers and the open_clip README;
- a bare ``ORG/REPO`` that is not ``MODEL/TAG``, treated as ``hf-hub:ORG/REPO`` so that, as for every
  other family, a plain hub id works.

Every route asks open_clip to *require* pretrained weights: open_clip only logs a warning and returns
a randomly initialised model when a checkpoint is missing, which would make scores silently meaningless.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.zoo.errors import ModelNotFoundError, UnsafeWeightsError
from core.zoo.family import Family
from core.zoo.safety import save_state_dict

PRODUCTION = "hf-hub:timm/vit_base_patch32_clip_224.openai"
"""OpenAI ViT-B/32 as published by timm with an ``open_clip_config.json`` (QuickGELU set in the config)."""

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
SEED = 0

TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    # The real CLIP BPE vocabulary (49,408 tokens, shipped inside open_clip) so that the tiny model
    # tokenizes exactly like production; it is most of the tiny model's size.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_PREPROCESS_CFG: dict[str, Any] = {
    "size": 32,
    "mode": "RGB",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}

_PRECISION = {None: "fp32", torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass
class ClipScorer:
    """An open_clip model in eval mode with its own preprocessing and tokenizer.

    Embeddings are returned L2-normalised in float32 on the CPU whatever the model's device or
    precision, so callers can compare scores across models and store them without caring.
    """

    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    name: str
    device: str = "cpu"
    input_dtype: torch.dtype = torch.float32
    """Pixel dtype: open_clip's fp16/bf16 precisions cast only some layers, so it cannot be read off
    an arbitrary parameter."""

    @torch.inference_mode()
    def encode_images(self, images: list, batch_size: int = 32) -> torch.Tensor:
        """(N, D) unit-norm image embeddings of PIL images."""
        if not images:
            return torch.empty(0, self.embed_dim)
        out = []
        for i in range(0, len(images), batch_size):
            batch = torch.stack([self.preprocess(im) for im in images[i : i + batch_size]])
            feats = self.model.encode_image(batch.to(self.device, dtype=self.input_dtype))
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(N, D) unit-norm text embeddings; texts longer than the context are truncated by the tokenizer."""
        if not texts:
            return torch.empty(0, self.embed_dim)
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
            feats = self.model.encode_text(tokens)
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    @property
    def embed_dim(self) -> int:
        """Width of the shared image/text embedding space."""
        return int(self.model.visual.output_dim)


def build_tiny(out_dir: Path, seed: int = SEED) -> None:
    """Write a randomly initialised 2-layer CLIP (32 px images, 32-dim) in open_clip's local-dir format."""
    import open_clip

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**copy.deepcopy(TINY_MODEL_CFG))
    config = {"model_cfg": TINY_MODEL_CFG, "preprocess_cfg": TINY_PREPROCESS_CFG}
    (out_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_state_dict(model.state_dict(), out_dir / WEIGHTS_NAME)


def _open_clip_args(source: str) -> tuple[str, dict[str, Any]]:
    """Map a zoo reference to open_clip's ``(model_name, extra kwargs)``; see the module docstring."""
    import open_clip

    if os.path.isdir(source):
        return f"local-dir:{source}", {}
    if source.startswith(("hf-hub:", "local-dir:")):
        return source, {}
    model_part, sep, tag = source.rpartition("/")
    model = model_part.replace("/", "-")  # OpenAI spells it "ViT-B/32", open_clip "ViT-B-32"
    if sep and model in open_clip.list_models():
        tag_cfg = open_clip.get_pretrained_cfg(model, tag)
        if not tag_cfg:
            raise ValueError(
                f"clip: open_clip has no pretrained tag {tag!r} for {model}; "
                f"known: {', '.join(open_clip.list_pretrained_tags_by_model(model))}"
            )
        # open_clip 3 only *warns* when the built-in config's activation differs from the one the
        # weights were trained with (OpenAI weights need QuickGELU), giving subtly wrong embeddings.
        return model, {"pretrained": tag, "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False))}
    return f"hf-hub:{source}", {}


def load(source: str, *, device: str = "cpu", dtype: torch.dtype | None = None) -> ClipScorer:
    """Load a CLIP scorer through ``open_clip.create_model_and_transforms``.

    ``dtype`` maps to open_clip's precision (None/float32 -> fp32, float16 -> fp16, bfloat16 -> bf16).
    open_clip prefers ``*.safetensors`` and reads any pickle with ``torch.load(weights_only=True)``;
    a pickle holding anything but tensors is refused with ``UnsafeWeightsError``. Hub failures
    (offline, missing repo) are re-raised as ``FileNotFoundError`` so the zoo can turn them into its
    "not in the local cache" message.
    """
    import open_clip

    if dtype not in _PRECISION:
        raise ValueError(f"clip: unsupported dtype {dtype}; use one of float32, float16, bfloat16")
    model_name, kwargs = _open_clip_args(source)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            precision=_PRECISION[dtype],
            device=device,
            weights_only=True,
            require_pretrained=True,
            **kwargs,
        )
        tokenizer = open_clip.get_tokenizer(model_name)
    except pickle.UnpicklingError as exc:
        raise UnsafeWeightsError(
            f"clip: {source}: refused a pickled checkpoint that is not plain tensors "
            f"({str(exc).splitlines()[0]}); convert it to safetensors on a trusted machine"
        ) from exc
    except RuntimeError as exc:
        if model_name.startswith("local-dir:"):
            raise ModelNotFoundError(f"clip: {source}: {exc}") from exc
        raise FileNotFoundError(f"clip: could not fetch {source!r}: {exc}") from exc
    model.eval()
    return ClipScorer(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        name=source,
        device=device,
        input_dtype=dtype or torch.float32,
    )


def build_shape(device: str = "cpu", dtype: torch.dtype | None = None, variant: str | None = None) -> ClipScorer:
    """OpenAI CLIP's architecture at random init from open_clip's built-in configs (no download):
    ``variant`` ViT-B-32 (default, the primary scorer) or ViT-L-14."""
    import open_clip

    from core.zoo.shapes import CLIP_SCORER

    arch = variant or "ViT-B-32"
    if arch not in CLIP_SCORER:
        raise ValueError(f"models.clip: unknown shape variant {arch!r}; known: {', '.join(CLIP_SCORER)}")
    name = CLIP_SCORER[arch]
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=device)
    if dtype is not None and device != "meta":
        model.to(dtype)
    return ClipScorer(
        model=model.eval(),
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(name),
        name=f"shape:{arch}",
        device=device,
        input_dtype=dtype or torch.float32,
    )


FAMILIES: list[Family] = [
    Family(
        name="clip",
        summary="CLIP image/text embedder for CLIP-I / CLIP-T scores (open_clip)",
        library="open_clip_torch",
        production=PRODUCTION,
        build_tiny=build_tiny,
        load=load,
        build_shape=build_shape,
    )
]
