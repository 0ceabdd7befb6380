"""Mining prompts (paper 000, §3.2): one LLM-written set of backgrounds, poses and outfits per class.

The paper gives an LLM a few exemplar prompts holding subject-irrelevant elements, takes new sentences
in the same format and templates them for every input subject. Here: one request per class word (all
dogs share one set, all backpacks another), seeded by the class word alone, so the set does not
depend on which subjects are in the run; the runner keeps each class's set for the whole run, every
round mines with it. The request shows three exemplars (a background, a pose, an outfit) and asks
for ``{"prompts": [...]}`` with exactly ``num_prompts`` different prompts in their format, each naming
the class word. Art styles are not asked for: the gold samples must be photos of the subject.

The JSON parsing, schema reasons and backends are the S3 builder's (``core.llm_json``); what counts as
a valid prompt is decided here: plain characters only and the class word present (``missing-category``
otherwise). A prompt's first mention of the class word becomes ``{0} {1}`` (identifier + class word,
the DreamBooth benchmark's placeholders), so ``"a dog on a pier"`` is drawn by the teacher as
``"a sks dog on a pier"``, scored as ``"a dog on a pier"`` and trained on by the student with its own
identifier. An invalid answer does not stop the class: its prompts come from the template backend
instead and the row records ``source = template-fallback`` with the reason.
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

BACKGROUNDS = (
    "on a wooden pier at dawn",
    "in a field of sunflowers",
    "on a snowy mountain trail",
    "in a busy market square",
    "on a sandy beach at sunset",
    "in a cozy living room",
    "on a mossy rock in a forest",
    "in front of a waterfall",
    "on a city sidewalk at night",
    "in a greenhouse full of plants",
    "on a kitchen counter with fresh bread",
    "under a cherry blossom tree",
    "on a frozen lake",
    "in a library between tall shelves",
    "on a desert road",
    "on a picnic blanket in a park",
    "on the steps of an old cathedral",
    "in a wheat field",
    "on a cobblestone street",
    "next to a campfire",
)
POSES = (
    "seen from the side",
    "seen from above",
    "seen from below",
    "in a close-up",
    "far away",
    "turned to the left",
)
OUTFITS = (
    "wearing a red scarf",
    "wearing a tiny party hat",
    "wearing sunglasses",
    "with a flower crown",
    "wrapped in a blue ribbon",
    "with a bow tie",
)
"""The template backend's material: background x (pose or outfit) gives 240 prompts, all photos and
none a DreamBooth evaluation prompt (a student is not trained on what it is evaluated on)."""
EXEMPLARS = (
    "a {word} on a wooden pier at dawn",
    "a {word} seen from above in a field of sunflowers",
    "a {word} wearing a red scarf on a snowy mountain trail",
)
"""What the LLM is shown: one background, one pose, one outfit, in the format the answer must keep."""


@dataclass(frozen=True)
class MinedPrompt:
    prompt_id: int
    template: str  # with {0} (identifier) and {1} (class word)
    text: str  # without the identifier: what the image is scored against


def request_seed(seed: int, class_word: str) -> int:
    digest = hashlib.sha256(f"{seed}:selfdistill:{class_word}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def user_prompt(class_word: str, cfg: PromptWriterSection) -> str:
    examples = "\n".join(f"- {e.format(word=class_word)}" for e in EXEMPLARS)
    return (
        f"Prompts for a text-to-image model, each a photo of one {class_word} in a different setting:\n"
        f"{examples}\n"
        f"Write {cfg.num_prompts} new prompts in the same format. Each shows the {class_word} with a "
        "different background, pose or outfit; photos only, no art styles. Every prompt contains the word "
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


def requests(class_words: list[str], seed: int, cfg: PromptWriterSection) -> list[dict]:
    """One request per class word: ``class_word, seed, prompt``."""
    return [{"class_word": w, "seed": request_seed(seed, w), "prompt": user_prompt(w, cfg)} for w in class_words]


def template_answer(request: dict, cfg: PromptWriterSection) -> str:
    """A valid answer drawn from backgrounds x (poses + outfits) with the request's seed (no model)."""
    word = request["class_word"]
    candidates = [f"a {word} {element} {where}" for where in BACKGROUNDS for element in POSES + OUTFITS]
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
    """A request with its answer (or the backend's error) → the class's prompts, falling back to the
    template backend, with the reason recorded, when the answer is invalid."""
    out = {
        "class_word": request["class_word"],
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
