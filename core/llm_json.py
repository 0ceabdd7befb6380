"""JSON answers from an instruct LLM, whichever backend writes them: the parsing contract and the runners.

Two apps ask an LLM for structured text — the S3 builder (subject descriptions and scenes) and
self-distillation (mining prompts) — with the same three backends: templates (no model), a local
transformers chat model (``core.zoo`` ``llm`` family) and vLLM through ``ray.data.llm``. What is
app-neutral lives here, once:

- ``parse_json``: the reply → a JSON object that satisfies the app's JSON schema, or ``InvalidAnswer``
  with a short, groupable reason (``empty``, ``not-json``, ``wrong-format``, ``too-long``,
  ``too-short``); ``check_characters`` adds ``bad-characters``. Replies are accepted the way instruct
  models really write them: an object possibly inside a ```json fence or after a sentence.
- ``ChatWriter``: the transformers backend. Greedy decoding runs batched (its output does not depend
  on the batch); sampling runs one request at a time with the request's own seed, because a batch
  shares one random stream and a resumed run would batch differently.
- ``VllmRequests`` / ``vllm_processor``: the vLLM backend. Each row becomes OpenAI-style ``messages``
  and ``sampling_params`` with the row's seed and structured outputs constrained to the app's schema;
  rows whose inference fails come back with ``__inference_error__`` (``should_continue_on_error``).

Each app keeps its own prompts, schema and acceptance rules (what a valid subject or prompt is).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import jsonschema

from core.config.datagen import VllmSection

SCHEMA_REASONS = {"maxLength": "too-long", "maxItems": "too-long", "minLength": "too-short", "minItems": "too-short"}
_ALLOWED = re.compile(r"^[\w\s,.'\"&()/:;!?+%#-]+$")


class InvalidAnswer(ValueError):
    def __init__(self, reason: str, details: str):
        super().__init__(f"{reason}: {details}")
        self.reason = reason
        self.details = details


def extract_object(text: str) -> dict:
    """The outermost ``{...}`` of a reply, decoded; ``not-json``/``wrong-format`` otherwise."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise InvalidAnswer("not-json", f"no JSON object in {text[:200]!r}")
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise InvalidAnswer("not-json", f"{exc.msg} at {exc.pos} in {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise InvalidAnswer("wrong-format", f"expected an object, got {type(value).__name__}")
    return value


def parse_json(text: str | None, schema: dict) -> dict:
    """The reply's JSON object, validated against ``schema`` (first error → its reason)."""
    if text is None or not text.strip():
        raise InvalidAnswer("empty", "the reply is empty")
    value = extract_object(text)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: e.path)
    if errors:
        first = errors[0]
        raise InvalidAnswer(SCHEMA_REASONS.get(first.validator, "wrong-format"), first.message[:300])
    return value


def check_characters(parts: Sequence[str]) -> None:
    """Plain text only: no control characters, markup or other symbols a caption never needs."""
    for part in parts:
        if not _ALLOWED.match(part):
            raise InvalidAnswer("bad-characters", f"{part[:200]!r}")


class ChatWriter:
    """Answers requests (rows with ``prompt`` and ``seed``) with a zoo ``ChatLM``."""

    def __init__(self, llm, system: str, max_new_tokens: int, temperature: float):
        self.llm = llm
        self.kwargs = dict(system=system, max_new_tokens=max_new_tokens, temperature=temperature)

    def __call__(self, batch: list[dict]) -> list[str]:
        if self.kwargs["temperature"] == 0:
            return self.llm.generate([r["prompt"] for r in batch], **self.kwargs)
        return [self.llm.generate([r["prompt"]], seed=r["seed"] % 2**32, **self.kwargs)[0] for r in batch]


class VllmRequests:
    """Request row → the vLLM processor's input: chat messages and per-row sampling parameters."""

    def __init__(self, system: str, schema: dict, temperature: float, max_tokens: int, keys: Sequence[str]):
        self.system, self.schema, self.keys = system, schema, tuple(keys)
        self.temperature, self.max_tokens = temperature, max_tokens

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: row[k] for k in self.keys},
            "messages": [{"role": "system", "content": self.system}, {"role": "user", "content": row["prompt"]}],
            "sampling_params": {
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "seed": int(row["seed"]) % 2**31,
                "structured_outputs": {"json": self.schema},
            },
        }


def vllm_processor_config(cfg: VllmSection, model_source: str):
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(
        model_source=model_source,
        engine_kwargs=dict(cfg.engine_kwargs),
        concurrency=cfg.concurrency,
        batch_size=cfg.batch_size,
        accelerator_type=cfg.accelerator_type,
        should_continue_on_error=True,
    )


def vllm_processor(cfg: VllmSection, model_source: str, preprocess: VllmRequests, postprocess):
    """The vLLM processor (apply it to a dataset of requests: ``processor(ds)``); lazy, so building it
    needs no vllm, running it needs vllm and a GPU (the ``gpu`` extra)."""
    from ray.data.llm import build_processor

    return build_processor(vllm_processor_config(cfg, model_source), preprocess=preprocess, postprocess=postprocess)
