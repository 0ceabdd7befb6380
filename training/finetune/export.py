"""Writing a fine-tuned subject in the store format of ``core.subjects`` and publishing it.

What goes in follows from what the plan trained: learned tokens → ``learned_embeds.safetensors``
(``load_textual_inversion``), LoRA → ``pytorch_lora_weights.safetensors`` (``load_lora_weights``),
a fully trained UNet or text encoder → its own diffusers/transformers directory; the card last.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.config import S3JediConfig
from core.paths import s3jedi_home
from core.subjects import (
    EMBEDDINGS_FILE,
    LORA_FILE,
    TEXT_ENCODER_DIR,
    UNET_DIR,
    SubjectCard,
    SubjectNotFoundError,
    SubjectStore,
    SubjectWeights,
    write_card,
)
from training.finetune.model_card import write_model_card
from training.finetune.plan import TEXT_ENCODER, UNET
from training.finetune.tuner import SubjectTuner


def store_location(cfg: S3JediConfig) -> str:
    """Where subjects are published: ``finetune.store``, else where serving looks for them."""
    return str(cfg.finetune.store or cfg.serving.subjects_store or (cfg.home or s3jedi_home()) / "subjects")


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


def write_subject(tuner: SubjectTuner, out: Path, metrics: dict[str, float]) -> SubjectCard:
    from safetensors.torch import save_file

    plan, models, job = tuner.plan, tuner.models, tuner.job
    trained = plan.trained_by(len(plan.stages) - 1)
    out.mkdir(parents=True, exist_ok=True)
    weights: dict[str, str] = {}
    if tuner.token is not None:
        rows = models.text_encoder.get_input_embeddings().weight[tuner.token.ids]
        save_file({tuner.token.token: rows.detach().float().cpu().contiguous()}, str(out / EMBEDDINGS_FILE))
        weights["embeddings"] = EMBEDDINGS_FILE
    if tuner.lora:
        parts = ((UNET, models.unet), (TEXT_ENCODER, models.text_encoder))
        weights["lora"] = save_lora(out, {part: module for part, module in parts if part in trained})
    else:
        if UNET in trained:
            models.unet.save_pretrained(str(out / UNET_DIR), safe_serialization=True)
            weights["unet"] = UNET_DIR
        if TEXT_ENCODER in trained:
            models.text_encoder.save_pretrained(str(out / TEXT_ENCODER_DIR), safe_serialization=True)
            weights["text_encoder"] = TEXT_ENCODER_DIR
    card = SubjectCard(
        subject_id=job.subject_id,
        method=plan.method,
        base_model=tuner.cfg.models.sd,
        tokens=[tuner.token.token if tuner.token is not None else plan.identifier],
        class_word=job.class_word,
        prompt_template=plan.prompt_template,
        weights=SubjectWeights(**weights),
        steps=plan.total_steps,
        metrics=metrics,
    )
    write_model_card(out, tuner, card)  # README.md for the Hub and plain diffusers
    write_card(out, card)
    return card


def published(cfg: S3JediConfig, subject_id: str, method: str, steps: int) -> bool:
    """Whether the store already holds this subject as this run would write it (a finished run that
    is rerun does not export again)."""
    try:
        card = SubjectStore(store_location(cfg)).card(subject_id)
    except SubjectNotFoundError:
        return False
    return card.method == method and card.steps == steps


def publish(cfg: S3JediConfig, subject_dir: Path) -> str:
    return SubjectStore(store_location(cfg)).publish(subject_dir)
