"""What the LLM is asked and what counts as a valid answer: one JSON object per subject.

The contract is the same for every backend. The prompt asks for
``{"subject": "<noun phrase naming the category>", "scenes": ["<scene>", ...]}``; vLLM additionally
*constrains* decoding to ``answer_schema`` (structured outputs), a local transformers model is only
asked. ``parse_answer`` accepts what instruct models really emit (a JSON object, possibly inside a
```json fence or after a sentence) and rejects everything else with a short, groupable reason:

``empty``, ``not-json``, ``wrong-format`` (missing/extra keys, wrong types, repeated scenes),
``too-long``, ``too-short``, ``missing-category`` (the subject does not name its category),
``bad-characters`` (control characters, markup).

The template backend writes answers in the same format and goes through the same parser, so the
parser is exercised on every run. The app-neutral part (JSON extraction, schema reasons, the character
whitelist) is ``core.llm_json``, shared with self-distillation's prompt writer.
"""

from __future__ import annotations

import re

from core.config.datagen import SubjectsSection
from core.llm_json import InvalidAnswer, check_characters, parse_json

SYSTEM = (
    "You write subjects for a dataset of photographs of everyday objects. "
    "Reply with a single JSON object and nothing else."
)

HINTS = (
    "a vintage one",
    "a modern, minimalist one",
    "a handmade one",
    "a brightly coloured one",
    "a luxurious one",
    "a worn, well-loved one",
    "a child's one",
    "a rustic one",
    "an unusual, quirky one",
    "a classic, everyday one",
    "a patterned one",
    "a miniature one",
)
"""Variety with greedy decoding: subjects of one category differ in their hint (picked by seed)."""


def user_prompt(category: str, hint: str, cfg: SubjectsSection) -> str:
    return (
        f"Category: {category}\n"
        f"Invent one specific {category} that a photographer could shoot ({hint}). "
        f'Name it in a short noun phrase of at most {cfg.max_subject_chars} characters that contains the word "{category}" '
        "and mentions its colour, material and one distinctive detail. "
        f"Then list {cfg.num_scenes} different everyday scenes where it could be photographed, "
        f"each at most {cfg.max_scene_chars} characters.\n"
        'Reply as JSON: {"subject": "...", "scenes": ["...", "..."]}'
    )


def answer_schema(cfg: SubjectsSection) -> dict:
    """JSON schema of a valid answer (also given to vLLM's structured-output decoding)."""
    return {
        "type": "object",
        "properties": {
            "subject": {"type": "string", "minLength": 3, "maxLength": cfg.max_subject_chars},
            "scenes": {
                "type": "array",
                "items": {"type": "string", "minLength": 3, "maxLength": cfg.max_scene_chars},
                "minItems": cfg.num_scenes,
                "maxItems": cfg.num_scenes,
                "uniqueItems": True,
            },
        },
        "required": ["subject", "scenes"],
        "additionalProperties": False,
    }


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def names_category(subject: str, category: str) -> bool:
    """Every word of the category appears in the subject (a plural -s/-es counts)."""
    words = set(_normalise(subject).split())
    return all(w in words or f"{w}s" in words or f"{w}es" in words for w in _normalise(category).split())


def parse_answer(text: str | None, category: str, cfg: SubjectsSection) -> tuple[str, list[str]]:
    """``(subject, scenes)`` from an LLM reply, or ``InvalidAnswer`` with the reason."""
    value = parse_json(text, answer_schema(cfg))
    subject = " ".join(value["subject"].split())
    scenes = [" ".join(s.split()) for s in value["scenes"]]
    check_characters([subject, *scenes])
    if not names_category(subject, category):
        raise InvalidAnswer("missing-category", f"{subject!r} does not name {category!r}")
    return subject, scenes


def dedup_key(subject: str) -> str:
    """Two subjects are duplicates when they are equal up to case, punctuation and spacing."""
    return _normalise(subject)
