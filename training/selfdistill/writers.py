"""Who answers the mining-prompt requests: templates on the driver, a transformers actor pool, or vLLM.

The LLM backends run as Ray Data jobs like the S3 builder's stage 1 (``core.llm_json`` holds the
shared runners), so a production LLM gets its GPU from the cluster, not from the driver. Requests are
few (one per class word), answers are parsed on the driver (``prompts.resolve``).
"""

from __future__ import annotations

import numpy as np

from core import zoo
from core.config import S3JediConfig
from core.llm_json import ChatWriter, VllmRequests, vllm_processor
from core.logs import get_logger
from training.selfdistill.prompts import SYSTEM, answer_schema, resolve, template_answer

log = get_logger("selfdistill.prompts")
REQUEST_KEYS = ("class_word", "seed")


class PromptWriter:
    """The transformers backend's actor: ``models.llm`` answering a batch of requests."""

    def __init__(self, config: dict):
        cfg = S3JediConfig.model_validate(config)
        p = cfg.selfdistill.prompts
        device = "cuda" if p.resources.num_gpus > 0 else "cpu"
        llm = zoo.load("llm", cfg.models.llm, home=cfg.home, device=device)
        self.writer = ChatWriter(llm, SYSTEM, p.max_new_tokens, p.temperature)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [{"prompt": str(p), "seed": int(s)} for p, s in zip(batch["prompt"], batch["seed"], strict=True)]
        answers = self.writer(rows)
        return {**{k: batch[k] for k in REQUEST_KEYS}, "answer": np.array(answers, dtype=object)}


def _vllm_postprocess(row: dict) -> dict:
    return {**{k: row[k] for k in REQUEST_KEYS}, "answer": row.get("generated_text"), "error": None}


def vllm_prompt_processor(cfg: S3JediConfig):
    """The vLLM processor for mining-prompt requests (lazy: building needs no vllm, running needs a GPU)."""
    p = cfg.selfdistill.prompts
    preprocess = VllmRequests(SYSTEM, answer_schema(p), p.temperature, p.max_new_tokens, REQUEST_KEYS)
    return vllm_processor(p.vllm, zoo.resolve("llm", cfg.models.llm, cfg.home), preprocess, _vllm_postprocess)


def _answers_on_ray(cfg: S3JediConfig, reqs: list[dict]) -> dict[str, tuple[str | None, str | None]]:
    import ray.data

    p = cfg.selfdistill.prompts
    ds = ray.data.from_items(reqs)
    if p.backend == "transformers":
        res = p.resources
        ds = ds.map_batches(
            PromptWriter,
            fn_constructor_kwargs={"config": cfg.model_dump(mode="json")},
            batch_size=res.batch_size,
            compute=ray.data.ActorPoolStrategy(size=res.concurrency),
            num_gpus=res.num_gpus,
            num_cpus=res.num_cpus,
        )
    else:
        ds = vllm_prompt_processor(cfg)(ds)
    answers = {}
    for row in ds.take_all():
        error = row.get("error") or row.get("__inference_error__") or None
        answers[str(row["class_word"])] = (row.get("answer"), error)
    return answers


def write_prompts(cfg: S3JediConfig, reqs: list[dict]) -> list[dict]:
    """Every request's prompts (``prompts.resolve`` rows), in request order."""
    p = cfg.selfdistill.prompts
    if p.backend == "template":
        answers = {r["class_word"]: (template_answer(r, p), None) for r in reqs}
    else:
        answers = _answers_on_ray(cfg, reqs)
    missing = [r["class_word"] for r in reqs if r["class_word"] not in answers]
    if missing:
        raise RuntimeError(f"selfdistill prompts: {len(missing)} requests came back without an answer ({missing[0]})")
    resolved = [resolve(r, *answers[r["class_word"]], p.backend, p) for r in reqs]
    for row in resolved:
        if row["reason"]:
            log.warning(
                "invalid LLM answer, using template prompts", class_word=row["class_word"], reason=row["reason"]
            )
    return resolved
