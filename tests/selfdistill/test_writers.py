"""Who writes the mining prompts: the template backend on the driver, the transformers backend as a Ray
Data actor pool, vLLM through ``ray.data.llm`` (GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from core import zoo
from tests.selfdistill.conftest import sd_config
from training.selfdistill.prompts import requests
from training.selfdistill.writers import PromptWriter, vllm_prompt_processor, write_prompts

CLASSES = ["dog", "teddy bear", "cat"]


def test_template_backend_writes_on_the_driver(tmp_path):
    cfg = sd_config(tmp_path, "selfdistill.prompts.num_prompts=3")
    rows = write_prompts(cfg, requests(CLASSES, cfg.seed, cfg.selfdistill.prompts))
    assert [r["class_word"] for r in rows] == CLASSES
    assert all(r["source"] == "template" and r["reason"] == "" and len(r["prompts"]) == 3 for r in rows)


def test_the_transformers_actor_answers_a_batch_of_requests(zoo_home, tmp_path):
    """The actor class of the transformers pool, called as Ray Data calls it (a numpy batch)."""
    cfg = sd_config(tmp_path, "selfdistill.prompts.backend=transformers", "selfdistill.prompts.max_new_tokens=16")
    reqs = requests(CLASSES, cfg.seed, cfg.selfdistill.prompts)
    batch = {k: np.array([r[k] for r in reqs], dtype=object) for k in reqs[0]}
    out = PromptWriter(cfg.model_dump(mode="json"))(batch)
    assert set(out) == {"class_word", "seed", "answer"} and out["class_word"].tolist() == CLASSES
    assert all(isinstance(a, str) for a in out["answer"]) and out["seed"].tolist() == [r["seed"] for r in reqs]


@pytest.mark.slow
def test_transformers_backend_answers_every_request_through_ray_data(ray_local, zoo_home, tmp_path):
    """The random tiny LLM writes no valid JSON: every class falls back to template prompts, with the
    LLM's answer and the reason kept, in request order."""
    cfg = sd_config(
        tmp_path,
        "selfdistill.prompts.backend=transformers",
        "selfdistill.prompts.max_new_tokens=16",
        "selfdistill.prompts.resources.batch_size=2",
    )
    reqs = requests(CLASSES, cfg.seed, cfg.selfdistill.prompts)
    rows = write_prompts(cfg, reqs)
    assert [r["class_word"] for r in rows] == CLASSES
    assert all(r["source"] == "template-fallback" and r["reason"] and r["details"] for r in rows), rows
    assert all(r["prompts"][0].template.count("{0} {1}") == 1 for r in rows)


def test_vllm_processor_is_configured_from_the_section(ray_local, zoo_home, tmp_path):
    cfg = sd_config(
        tmp_path,
        "selfdistill.prompts.backend=vllm",
        "selfdistill.prompts.vllm.batch_size=8",
        "selfdistill.prompts.vllm.engine_kwargs={max_model_len: 512}",
    )
    processor = vllm_prompt_processor(cfg)
    assert processor.list_stage_names() == ["ChatTemplateStage", "TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]
    engine = processor.get_stage_by_name("vLLMEngineStage")
    assert engine.fn_constructor_kwargs["engine_kwargs"]["max_model_len"] == 512
    assert processor.config.model_source == zoo.resolve("llm", "tiny", zoo_home) and processor.config.batch_size == 8


@pytest.mark.gpu
def test_vllm_backend_answers_in_the_contract_format(ray_local, zoo_home, tmp_path):
    """Structured outputs force the JSON shape even from the random tiny model."""
    cfg = sd_config(
        tmp_path, "selfdistill.prompts.backend=vllm", "selfdistill.prompts.vllm.engine_kwargs={max_model_len: 512}"
    )
    rows = write_prompts(cfg, requests(CLASSES, cfg.seed, cfg.selfdistill.prompts))
    assert [r["class_word"] for r in rows] == CLASSES
    assert all(r["reason"] not in ("error", "not-json", "empty") for r in rows), rows
