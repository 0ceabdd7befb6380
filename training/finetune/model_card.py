"""The ``README.md`` model card of a fine-tuned subject, from the plan and config that trained it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core import model_cards
from core.subjects import SubjectCard

if TYPE_CHECKING:
    from training.finetune.recipe import SubjectRecipe


def training_settings(tuner: SubjectRecipe) -> dict[str, object]:
    plan, ft = tuner.plan, tuner.cfg.finetune
    rows: dict[str, object] = {}
    for stage in plan.stages:
        if not stage.steps:
            continue
        extras = [f"trains {', '.join(sorted(stage.trains))}", f"{stage.optim.name} lr {stage.optim.lr:g}"]
        if stage.prior is not None and stage.prior.enabled:
            extras.append(
                f"prior preservation ({stage.prior.num_images} class images, weight {stage.prior.loss_weight:g})"
            )
        extras.extend(name.replace("_", " ") for plugin in stage.plugins for name in plugin.settings())
        rows[f"stage {stage.name}"] = f"{stage.steps} steps: " + ", ".join(extras)
    if plan.new_token is not None:
        rows["new token"] = f"{plan.new_token.token}, {plan.new_token.num_vectors} vector(s)"
    if plan.unet is not None:
        rows["UNet tuning"] = f"LoRA rank {plan.unet.lora_rank}" if plan.unet.mode == "lora" else "full"
    rows["resolution"] = f"{ft.resolution}×{ft.resolution}"
    rows["batch size"] = ft.batch_size
    rows["precision"] = ft.precision
    rows["seed"] = tuner.cfg.seed
    return rows


def write_model_card(out: Path, tuner: SubjectRecipe, card: SubjectCard) -> Path:
    """``out/README.md``; its ``base_model`` is the hub id or directory that ``models.sd`` loads."""
    base = model_cards.base_model("sd", card.base_model, tuner.cfg.home)
    return model_cards.write(out, model_cards.subject_card(card, base, training_settings(tuner)))
