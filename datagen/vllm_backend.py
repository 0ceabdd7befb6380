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
from datagen.llm_contract import answer_schema

REQUEST_KEYS = ("subject_id", "category", "seed")


def processor_config(cfg: S3JediConfig):
    from ray.data.llm import vLLMEngineProcessorConfig

    v = cfg.datagen.subjects.vllm
    return vLLMEngineProcessorConfig(
        model_source=zoo.resolve("llm", cfg.models.llm, cfg.home),
        engine_kwargs=dict(v.engine_kwargs),
        concurrency=v.concurrency,
        batch_size=v.batch_size,
        accelerator_type=v.accelerator_type,
        should_continue_on_error=True,
    )


class Preprocess:
    """Request row → the processor's input: chat messages and per-row sampling parameters."""

    def __init__(self, cfg: SubjectsSection):
        self.cfg = cfg
        self.schema = answer_schema(cfg)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: row[k] for k in REQUEST_KEYS},
            "messages": [{"role": "system", "content": row["system"]}, {"role": "user", "content": row["prompt"]}],
            "sampling_params": {
                "temperature": self.cfg.temperature,
                "max_tokens": self.cfg.max_new_tokens,
                "seed": int(row["seed"]) % 2**31,
                "structured_outputs": {"json": self.schema},
            },
        }


def postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the request keys and the reply; parsing happens in the stage shared by all backends."""
    return {**{k: row[k] for k in REQUEST_KEYS}, "answer": row["generated_text"], "error": None}


def build(cfg: S3JediConfig):
    """The vLLM processor: apply it to a dataset of requests (``processor(ds)``)."""
    from ray.data.llm import build_processor

    return build_processor(processor_config(cfg), preprocess=Preprocess(cfg.datagen.subjects), postprocess=postprocess)
