"""Mining prompts: an LLM writes varied prompts for each subject; they become ``{0} {1}`` templates.

The contract: one request per (subject, round) asking for ``{"prompts": [...]}`` with exactly
``num_prompts`` different prompts, each naming the subject's class word. The JSON parsing, schema
reasons and backends are the S3 builder's (``core.llm_json``); what counts as a valid prompt is
decided here: plain characters only and the class word present (``missing-category`` otherwise).

A prompt's first mention of the class word becomes ``{0} {1}`` (identifier + class word, the
DreamBooth benchmark's placeholders), so ``"a dog on a pier"`` is drawn by the teacher as
``"a sks dog on a pier"``, scored as ``"a dog on a pier"`` and trained on by the student with its
own identifier. An invalid answer does not stop the subject: its prompts come from the template
backend instead and the row records ``source = template-fallback`` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np

from core.config.selfdistill import PromptWriterSection
from core.llm_json import InvalidAnswer, check_characters, parse_json

SYSTEM = "You write prompts for a text-to-image model. Reply with a single JSON object and nothing else."

STYLES = (
    "a photo of",
    "a close-up photo of",
    "a wide-angle photo of",
    "a watercolor painting of",
    "an oil painting of",
    "a pencil sketch of",
    "a 3d render of",
    "a vintage film photo of",
)
CONTEXTS = (
    "on a wooden pier at dawn",
    "in a cozy reading nook",
    "on a mossy rock in a forest",
    "in a busy market square",
    "on a windowsill with rain outside",
    "in a field of sunflowers",
    "on a snowy porch",
    "next to a campfire at night",
    "on a sailing boat",
    "in a library between tall shelves",
    "on a desert road at sunset",
    "in a neon-lit alley",
    "on a picnic blanket in a park",
    "in front of a waterfall",
    "on a kitchen counter with fresh bread",
    "in a greenhouse full of plants",
    "on the steps of an old cathedral",
    "under a cherry blossom tree",
    "on a frozen lake",
    "in a tiny spaceship cockpit",
)
"""The template backend's material: style x context gives up to 160 prompts (never the benchmark's
evaluation prompts, so a student is not trained on what it is evaluated on)."""


@dataclass(frozen=True)
class MinedPrompt:
    prompt_id: int
    template: str  # with {0} (identifier) and {1} (class word)
    text: str  # without the identifier: what the image is scored against


def request_seed(seed: int, subject: str, round_: int) -> int:
    digest = hashlib.sha256(f"{seed}:selfdistill:{subject}:{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def user_prompt(class_word: str, cfg: PromptWriterSection) -> str:
    return (
        f"Write {cfg.num_prompts} different prompts for a text-to-image model. Each shows one particular "
        f"{class_word} in a different place, situation or art style. Every prompt contains the word "
        f'"{class_word}" and has at most {cfg.max_prompt_chars} characters.\n'
        'Reply as JSON: {"prompts": ["...", "..."]}'
    )


def answer_schema(cfg: PromptWriterSection) -> dict:
    """JSON schema of a valid answer (also vLLM's structured-output constraint)."""
    return {
        "type": "object",
        "properties": {
            "prompts": {
                "type": "array",
                "items": {"type": "string", "minLength": 3, "maxLength": cfg.max_prompt_chars},
                "minItems": cfg.num_prompts,
                "maxItems": cfg.num_prompts,
                "uniqueItems": True,
            }
        },
        "required": ["prompts"],
        "additionalProperties": False,
    }


def requests(subjects: list[tuple[str, str]], round_: int, seed: int, cfg: PromptWriterSection) -> list[dict]:
    """One request per ``(subject name, class word)``: ``subject, class_word, round, seed, prompt``."""
    return [
        {
            "subject": name,
            "class_word": word,
            "round": round_,
            "seed": request_seed(seed, name, round_),
            "prompt": user_prompt(word, cfg),
        }
        for name, word in subjects
    ]


def template_answer(request: dict, cfg: PromptWriterSection) -> str:
    """A valid answer drawn from ``STYLES`` x ``CONTEXTS`` with the request's seed (no model)."""
    word = request["class_word"]
    candidates = [f"{style} a {word} {context}" for context in CONTEXTS for style in STYLES]
    candidates = [c for c in candidates if len(c) <= cfg.max_prompt_chars]
    if cfg.num_prompts > len(candidates):
        raise ValueError(
            f"selfdistill.prompts.num_prompts: the template backend writes at most {len(candidates)} prompts "
            f"of at most {cfg.max_prompt_chars} characters for {word!r}, got {cfg.num_prompts}; use an LLM backend"
        )
    picks = np.random.default_rng(request["seed"]).choice(len(candidates), size=cfg.num_prompts, replace=False)
    return json.dumps({"prompts": [candidates[i] for i in picks.tolist()]})


def to_template(prompt: str, class_word: str) -> str:
    """The prompt with its first mention of the class word (or its plural) replaced by ``{0} {1}``."""
    pattern = rf"\b{re.escape(class_word)}(?:e?s)?\b"
    found = re.search(pattern, prompt, flags=re.IGNORECASE)
    if found is None:
        raise InvalidAnswer("missing-category", f"{prompt!r} does not name {class_word!r}")
    return f"{prompt[: found.start()]}{{0}} {{1}}{prompt[found.end() :]}"


def token_free(template: str, class_word: str) -> str:
    return " ".join(template.replace("{0}", "").replace("{1}", class_word).split())


def parse_prompts(answer: str | None, class_word: str, cfg: PromptWriterSection) -> list[MinedPrompt]:
    """The answer's prompts as templates, or ``InvalidAnswer`` with the reason."""
    value = parse_json(answer, answer_schema(cfg))
    prompts = [" ".join(p.split()) for p in value["prompts"]]
    check_characters(prompts)
    templates = [to_template(p, class_word) for p in prompts]
    return [MinedPrompt(i, t, token_free(t, class_word)) for i, t in enumerate(templates)]


def resolve(request: dict, answer: str | None, error: str | None, backend: str, cfg: PromptWriterSection) -> dict:
    """A request with its answer (or the backend's error) → the subject's prompts, falling back to the
    template backend, with the reason recorded, when the answer is invalid."""
    out = {
        "subject": request["subject"],
        "round": request["round"],
        "answer": answer or "",
        "reason": "",
        "details": "",
    }
    try:
        if error:
            raise InvalidAnswer("error", error)
        prompts = parse_prompts(answer, request["class_word"], cfg)
        source = backend
    except InvalidAnswer as exc:
        prompts = parse_prompts(template_answer(request, cfg), request["class_word"], cfg)
        source = "template-fallback"
        out.update(reason=exc.reason, details=exc.details)
    return {**out, "source": source, "prompts": prompts}
