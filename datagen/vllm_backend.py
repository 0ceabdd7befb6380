"""The ``vllm`` backend of stage 1: ``ray.data.llm``'s vLLM processor, configured from ``datagen.subjects``.

The processor gets the same requests as the other backends. Each row is shaped into OpenAI-style
``messages`` and ``sampling_params`` with the request's own seed (so an answer does not depend on its
batch) and vLLM structured outputs constrained to ``llm_contract.answer_schema``: with a real instruct
model nearly every answer parses. Rows whose inference fails come back with ``__inference_error__``
(``should_continue_on_error``) and become rejects like any other bad answer.

``ray.data.llm`` imports without vllm; running the processor needs vllm and a GPU (the ``gpu`` extra).
"""

from __future__ import annotations

from typing import Any

from core import zoo
from core.config import S3JediConfig
from core.config.datagen import SubjectsSection
from core.llm_json import VllmRequests, vllm_processor, vllm_processor_config
from datagen.llm_contract import SYSTEM, answer_schema

REQUEST_KEYS = ("subject_id", "category", "seed")


def processor_config(cfg: S3JediConfig):
    return vllm_processor_config(cfg.datagen.subjects.vllm, zoo.resolve("llm", cfg.models.llm, cfg.home))


class Preprocess(VllmRequests):
    """Request row → the processor's input: chat messages and per-row sampling parameters."""

    def __init__(self, cfg: SubjectsSection):
        super().__init__(SYSTEM, answer_schema(cfg), cfg.temperature, cfg.max_new_tokens, REQUEST_KEYS)


def postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the request keys and the reply; parsing happens in the stage shared by all backends."""
    return {**{k: row[k] for k in REQUEST_KEYS}, "answer": row["generated_text"], "error": None}


def build(cfg: S3JediConfig):
    """The vLLM processor: apply it to a dataset of requests (``processor(ds)``)."""
    sub = cfg.datagen.subjects
    return vllm_processor(sub.vllm, zoo.resolve("llm", cfg.models.llm, cfg.home), Preprocess(sub), postprocess)
