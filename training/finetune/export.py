"""Writing a fine-tuned subject in the store format of ``core.subjects``.

What goes in follows from what the plan trained: learned tokens → ``learned_embeds.safetensors``
(``load_textual_inversion``), LoRA → ``pytorch_lora_weights.safetensors`` (``load_lora_weights``),
a fully trained UNet or text encoder → its own diffusers/transformers directory; for a method whose
inference step reads them (CoRe), the VAE latents of the subject's photos; the card last.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.methods import get
from core.methods.plan import TEXT_ENCODER, UNET
from core.subjects import (
    EMBEDDINGS_FILE,
    INSTANCE_LATENTS_FILE,
    TEXT_ENCODER_DIR,
    UNET_DIR,
    SubjectCard,
    SubjectWeights,
    write_card,
)
from training.finetune.model_card import write_model_card
from training.shell.lora import save_lora

if TYPE_CHECKING:
    from training.finetune.recipe import SubjectRecipe


def write_subject(recipe: SubjectRecipe, out: Path, metrics: dict[str, float]) -> SubjectCard:
    from safetensors.torch import save_file

    plan, models, job = recipe.plan, recipe.models, recipe.job
    trained = plan.trained_by(len(plan.stages) - 1)
    out.mkdir(parents=True, exist_ok=True)
    weights: dict[str, str] = {}
    if recipe.token is not None:
        rows = models.text_encoder.get_input_embeddings().weight[recipe.token.ids]
        save_file({recipe.token.token: rows.detach().float().cpu().contiguous()}, str(out / EMBEDDINGS_FILE))
        weights["embeddings"] = EMBEDDINGS_FILE
    if get(plan.method).instance_latents:
        mean, std = recipe.photo_latents()
        save_file(
            {"mean": mean.float().cpu().contiguous(), "std": std.float().cpu().contiguous()},
            str(out / INSTANCE_LATENTS_FILE),
        )
        weights["instance_latents"] = INSTANCE_LATENTS_FILE
    if recipe.lora:
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
        base_model=recipe.cfg.models.sd,
        tokens=[recipe.token.token if recipe.token is not None else plan.identifier],
        class_word=job.class_word,
        prompt_template=plan.prompt_template,
        weights=SubjectWeights(**weights),
        steps=plan.total_steps,
        metrics=metrics,
    )
    write_model_card(out, recipe, card)  # README.md for the Hub and plain diffusers
    write_card(out, card)
    return card
