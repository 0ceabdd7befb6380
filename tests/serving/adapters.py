"""Real fine-tuned subjects for tests, made the way the trainers make them (tiny SD, real files).

A PEFT LoRA with *random* (non-zero) A and B matrices on the UNet's attention projections, saved
through ``StableDiffusionPipeline.save_lora_weights``; and a textual-inversion embedding saved in
diffusers' ``learned_embeds`` format. No training happens: the weights only have to be non-trivial
so that applying them visibly changes the output.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import save_file

from core.methods import METHODS
from core.subjects import (
    EMBEDDINGS_FILE,
    INSTANCE_LATENTS_FILE,
    LORA_FILE,
    UNET_DIR,
    SubjectCard,
    SubjectWeights,
    write_card,
)


def _card(subject_id: str, method: str, weights: SubjectWeights, tokens=("<sks>",)) -> SubjectCard:
    return SubjectCard(
        subject_id=subject_id,
        method=method,
        base_model="tiny",
        tokens=list(tokens),
        class_word="dog",
        prompt_template="a photo of {0} {1}",
        weights=weights,
        steps=10,
        metrics={"loss": 0.1},
    )


def make_lora_subject(store: Path, subject_id: str, base_pipe, seed: int = 1) -> Path:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = copy.deepcopy(base_pipe.unet)
    torch.manual_seed(seed)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    out = Path(store) / subject_id
    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        str(out), unet_lora_layers=layers, weight_name=LORA_FILE, safe_serialization=True
    )
    write_card(out, _card(subject_id, "dreambooth", SubjectWeights(lora=LORA_FILE)))
    return out


def make_ti_subject(
    store: Path, subject_id: str, base_pipe, tokens=("<sks>",), seed: int = 2, method: str = "ti", word_norm=False
) -> Path:
    """``word_norm``: rows with the mean norm of the vocabulary's (as trained tokens have), not N(0, 1)."""
    table = base_pipe.text_encoder.get_input_embeddings().weight.detach()
    gen = torch.Generator().manual_seed(seed)
    out = Path(store) / subject_id
    out.mkdir(parents=True, exist_ok=True)
    rows = {t: torch.randn(1, table.shape[1], generator=gen) for t in tokens}
    if word_norm:
        rows = {t: r / r.norm() * table.norm(dim=-1).mean() for t, r in rows.items()}
    save_file(rows, str(out / EMBEDDINGS_FILE))
    weights = {"embeddings": EMBEDDINGS_FILE}
    if METHODS[method].instance_latents:  # CoRe: the VAE latents of its (here: two random 32 px) photos
        latents = {"mean": torch.randn(2, 4, 4, 4, generator=gen), "std": torch.full((2, 4, 4, 4), 0.1)}
        save_file(latents, str(out / INSTANCE_LATENTS_FILE))
        weights["instance_latents"] = INSTANCE_LATENTS_FILE
    write_card(out, _card(subject_id, method, SubjectWeights(**weights), tokens))
    return out


def make_unet_subject(store: Path, subject_id: str, base_pipe, seed: int = 3) -> Path:
    unet = copy.deepcopy(base_pipe.unet)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    out = Path(store) / subject_id
    unet.save_pretrained(str(out / UNET_DIR), safe_serialization=True)
    write_card(out, _card(subject_id, "two-stage", SubjectWeights(unet=UNET_DIR)))
    return out
