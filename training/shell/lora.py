"""LoRA on a UNet or text encoder: which layers, and writing the result as diffusers LoRA weights."""

from __future__ import annotations

from pathlib import Path

import torch

from core.subjects import LORA_FILE

UNET_LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def lora_config(rank: int, alpha: int, targets: list[str]):
    """A PEFT LoRA with diffusers' Gaussian initialisation (A random, B zero: the model starts unchanged)."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets)


def save_lora(out: Path, modules: dict[str, torch.nn.Module]) -> str:
    """The PEFT LoRA of each part (``unet``, ``text_encoder``) as one diffusers LoRA file; returns its name."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = {}
    for part, module in modules.items():
        layers[f"{part}_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(module))
        # rank and alpha travel with the weights, so loading does not have to guess the scale
        layers[f"{part}_lora_adapter_metadata"] = module.peft_config["default"].to_dict()
    StableDiffusionPipeline.save_lora_weights(str(out), weight_name=LORA_FILE, safe_serialization=True, **layers)
    return LORA_FILE
