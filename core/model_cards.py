"""Model cards: the ``README.md`` beside an exported model, in the Hugging Face Hub's format.

A card is YAML front matter (``library_name``, ``base_model``, ``tags``, ...) that the Hub and
``huggingface_hub.ModelCard`` read, then Markdown for people: what the model is, how to load it with
plain diffusers, how it was trained. ``base_model`` is always something diffusers can load: the hub
id the config named, or the absolute directory a built or local model resolves to, never a
profile name such as ``tiny`` that only s3jedi understands.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from core import zoo
from core.subjects import SubjectCard

README = "README.md"


def base_model(family: str, ref: str, home: Path | None = None) -> str | None:
    """The hub id or absolute path that ``ref`` (a ``models.*`` value) loads; None for ``shape``
    models, which are random weights with no source."""
    resolved = zoo.resolve(family, ref, home)
    return None if resolved == zoo.SHAPE or resolved.startswith(zoo.SHAPE + ":") else resolved


def table(rows: dict[str, object], header: tuple[str, str] = ("setting", "value")) -> str:
    """A two-column Markdown table; values are shown as code so paths and tokens stay intact."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    for key, value in rows.items():
        text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        escaped = text.replace("|", "\\|")
        lines.append(f"| {key} | `{escaped}` |")
    return "\n".join(lines)


def render(front_matter: dict, title: str, sections: dict[str, str]) -> str:
    """The card's text: front matter (keys with None values left out), a title, then the sections."""
    meta = {k: v for k, v in front_matter.items() if v is not None}
    parts = [f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---", f"# {title}"]
    parts += [f"## {name}\n\n{body.strip()}" for name, body in sections.items()]
    return "\n\n".join(parts) + "\n"


def write(directory: Path, text: str) -> Path:
    path = Path(directory) / README
    path.write_text(text)
    return path


METHOD_NAMES = {
    "dreambooth": "DreamBooth",
    "ti": "Textual Inversion",
    "two-stage": "two-stage personalization (adjective-token Textual Inversion, then UNet fine-tuning)",
    "core": "CoRe (context-regularized Textual Inversion)",
    "selfdistill": "filtered self-distillation",
    "multiconcept": "concept-driven EM (several concepts in one scene)",
}
METHOD_TAGS = {"dreambooth": "dreambooth", "ti": "textual-inversion", "two-stage": "textual-inversion"}


def subject_usage(card: SubjectCard, base: str | None) -> str:
    """Loading a subject with plain diffusers, the steps ``core.subjects.apply_subject`` takes."""
    w = card.weights
    lines = ["import torch", "from diffusers import StableDiffusionPipeline"]
    if w.unet:
        lines.append("from diffusers import UNet2DConditionModel")
    if w.text_encoder:
        lines.append("from transformers import CLIPTextModel")
    lines += [
        "",
        'subject = "path/to/this/folder"',
        f'pipe = StableDiffusionPipeline.from_pretrained("{base or "BASE_MODEL"}")',
    ]
    if w.unet:
        lines.append(f'pipe.unet = UNet2DConditionModel.from_pretrained(f"{{subject}}/{w.unet}")')
    if w.text_encoder:
        lines.append(f'pipe.text_encoder = CLIPTextModel.from_pretrained(f"{{subject}}/{w.text_encoder}")')
    if w.embeddings:
        if len(card.tokens) == 1:
            lines.append(f'pipe.load_textual_inversion(f"{{subject}}/{w.embeddings}", token="{card.tokens[0]}")')
        else:
            lines += [
                "from safetensors.torch import load_file",
                f'embeds = load_file(f"{{subject}}/{w.embeddings}")',
                "pipe.load_textual_inversion([{t: e} for t, e in embeds.items()], token=list(embeds))",
            ]
    if w.lora:
        lines.append(f'pipe.load_lora_weights(subject, weight_name="{w.lora}")')
    prompt = card.render_prompt(card.prompt_template + " on the beach")
    lines.append(f'image = pipe("{prompt}", generator=torch.Generator().manual_seed(0)).images[0]')
    return "```python\n" + "\n".join(lines) + "\n```"


def subject_card(card: SubjectCard, base: str | None, training: dict[str, object]) -> str:
    """``README.md`` of a fine-tuned subject: what it is, how to draw it, how it was trained."""
    method = METHOD_NAMES.get(card.method, card.method)
    tokens = " ".join(f"`{t}`" for t in card.tokens)
    about = (
        f"The subject `{card.subject_id}` (a {card.class_word}), learned by {method} on the base model "
        f"`{base or card.base_model}`. Prompts name it with {tokens}; the training prompt was "
        f"`{card.instance_prompt()}`. `card.json` is the same record for s3jedi (`s3jedi serve`, `s3jedi eval`)."
    )
    if card.base_model == "tiny":
        about += " It was trained on the project's tiny random model: its images are noise."
    rows = {"method": card.method, "steps": card.steps, **training}
    rows.update({f"final {name}": f"{value:.4g}" for name, value in card.metrics.items()})
    rows["created"] = card.created.strftime("%Y-%m-%d %H:%M UTC")
    front = {
        "library_name": "diffusers",
        "pipeline_tag": "text-to-image",
        "base_model": base,
        "instance_prompt": card.instance_prompt(),
        "tags": ["s3jedi", "text-to-image", "personalization", METHOD_TAGS.get(card.method, card.method)]
        + (["lora"] if card.weights.lora else []),
    }
    sections = {"About": about, "Use": subject_usage(card, base), "Training": table(rows)}
    return render(front, f"{card.subject_id}: {card.class_word} by {method}", sections)
