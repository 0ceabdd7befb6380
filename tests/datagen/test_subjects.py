"""Stage 1: categories, the LLM contract, the three backends and de-duplication."""

from __future__ import annotations

import json

import pytest

from core import zoo
from core.config.datagen import SubjectsSection
from datagen import subjects, vllm_backend
from datagen.categories import NoCategoriesError, clean_categories, read_categories
from datagen.llm_contract import SYSTEM, InvalidAnswer, answer_schema, parse_answer
from tests.datagen.conftest import tiny_config

SUB = SubjectsSection(num_scenes=2, max_subject_chars=60, max_scene_chars=40)


def test_default_category_list_is_large_and_clean():
    raw, source = read_categories(SubjectsSection())
    kept, rejects = clean_categories(raw)
    assert source.endswith("datagen/categories.txt") and len(kept) >= 300 and rejects == []


def test_bad_categories_become_rejects_with_reasons():
    kept, rejects = clean_categories(["Teapot", "  ", "x" * 60, "tea/pot", "t-shirt", "T shirt", "teapot"])
    assert kept == ["teapot", "t-shirt"]
    assert [(r.category, r.reason) for r in rejects] == [
        ("  ", "empty"),
        ("x" * 60, "too-long"),
        ("tea/pot", "bad-characters"),
        ("t shirt", "duplicate"),
        ("teapot", "duplicate"),
    ]


def test_no_usable_category_stops_before_any_model():
    with pytest.raises(NoCategoriesError, match=r"datagen.subjects: no usable category in datagen.subjects.categories"):
        subjects.requests(tiny_config("datagen.subjects.categories=[]"))
    with pytest.raises(NoCategoriesError, match="2 entries; bad-characters, empty"):
        subjects.requests(tiny_config("datagen.subjects.categories=['', '$$']"))
    with pytest.raises(FileNotFoundError, match="datagen.subjects.categories_file: no such file"):
        subjects.requests(tiny_config("datagen.subjects.categories_file=nope/missing.txt"))


def test_requests_have_stable_ids_seeds_and_prompts():
    cfg = tiny_config("datagen.subjects.categories=[mug, teddy bear]", "datagen.subjects.num_categories=null")
    reqs, rejects = subjects.requests(cfg)
    assert rejects == []
    assert [r["subject_id"] for r in reqs] == ["mug-000", "mug-001", "teddy-bear-000", "teddy-bear-001"]
    assert reqs == subjects.requests(cfg)[0], "same config, same requests"
    assert len({r["seed"] for r in reqs}) == 4 and all('"teddy bear"' in r["prompt"] for r in reqs[2:])
    other_seed = subjects.requests(tiny_config("seed=1", "datagen.subjects.categories=[mug]"))[0]
    assert other_seed[0]["seed"] != reqs[0]["seed"]


def test_template_backend_answers_valid_and_deterministic():
    cfg = tiny_config("datagen.subjects.categories=[mug, teddy bear]", "datagen.subjects.num_categories=null")
    reqs, _ = subjects.requests(cfg)
    answers = [subjects.template_answer(r, cfg.datagen.subjects) for r in reqs]
    assert answers == [subjects.template_answer(r, cfg.datagen.subjects) for r in reqs]
    parsed = [subjects.parse(r, a, None, cfg.datagen.subjects) for r, a in zip(reqs, answers, strict=True)]
    assert all(p["reason"] == "" for p in parsed)
    assert all(r["category"] in p["subject"] and len(p["scenes"]) == 2 for r, p in zip(reqs, parsed, strict=True))
    assert len({p["subject"] for p in parsed}) == 4


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("Sure! Here is a mug.", "not-json"),
        ('{"subject": "a mug", "scenes": ["a", ', "not-json"),
        ("[1, 2]", "not-json"),
        ('{"subject": 3, "scenes": ["on a desk", "in a car"]}', "wrong-format"),
        ('{"subject": "a red mug", "scenes": ["on a desk", "in a car"], "extra": 1}', "wrong-format"),
        ('{"subject": "a red mug", "scenes": ["on a desk", "on a desk"]}', "wrong-format"),
        ('{"subject": "a red mug", "scenes": ["on a desk"]}', "too-short"),
        ('{"subject": "a red mug ' + "very " * 20 + '", "scenes": ["on a desk", "in a car"]}', "too-long"),
        ('{"subject": "a red teapot", "scenes": ["on a desk", "in a car"]}', "missing-category"),
        ('{"subject": "a red mug\\u0007", "scenes": ["on a desk", "in a car"]}', "bad-characters"),
        ('{"subject": "a <b>red</b> mug", "scenes": ["on a desk", "in a car"]}', "bad-characters"),
    ],
)
def test_wrong_answers_are_rejected_with_a_reason(reply, reason):
    with pytest.raises(InvalidAnswer) as info:
        parse_answer(reply, "mug", SUB)
    assert info.value.reason == reason and info.value.details


def test_answers_real_models_write_are_accepted():
    fenced = 'Here you go:\n```json\n{"subject": "A red  enamel Mug", "scenes": ["on a desk", "in a car"]}\n```'
    assert parse_answer(fenced, "mug", SUB) == ("A red enamel Mug", ["on a desk", "in a car"])
    plural = '{"subject": "two tiny mugs with stripes", "scenes": ["on a desk", "in a car"]}'
    assert parse_answer(plural, "mug", SUB)[0] == "two tiny mugs with stripes"


def test_duplicates_keep_the_first_in_request_order():
    def row(sid, subject, reason=""):
        return {
            "subject_id": sid,
            "category": "mug",
            "seed": 1,
            "subject": subject,
            "scenes": ["a b c"],
            "reason": reason,
            "details": "d",
        }

    parsed = [row("mug-002", "A red mug."), row("mug-000", "a red mug"), row("mug-001", "", "not-json")]
    chosen, rejects = subjects.select(parsed, ["mug-000", "mug-001", "mug-002"])
    assert [s.subject_id for s in chosen] == ["mug-000"]
    assert [(sid, r.reason) for sid, r in rejects] == [("mug-001", "not-json"), ("mug-002", "duplicate")]
    assert "mug-000" in rejects[1][1].details
    with pytest.raises(RuntimeError, match="without an answer"):
        subjects.select(parsed[:1], ["mug-000", "mug-002"])


def test_transformers_backend_on_the_random_tiny_model_rejects_with_reasons(zoo_home):
    cfg = tiny_config("datagen.subjects.backend=transformers", "datagen.subjects.max_new_tokens=24")
    reqs, _ = subjects.requests(cfg)
    writer = subjects.TransformersWriter(zoo.load("llm", "tiny", home=zoo_home), cfg.datagen.subjects)
    answers = writer(reqs)
    assert answers == writer(reqs), "greedy decoding is deterministic"
    parsed = [subjects.parse(r, a, None, cfg.datagen.subjects) for r, a in zip(reqs, answers, strict=True)]
    assert {p["reason"] for p in parsed} <= {"empty", "not-json", "wrong-format", "bad-characters"}
    assert all(p["reason"] and p["details"] for p in parsed)


def test_vllm_processor_is_configured_from_the_config(ray_local, zoo_home):
    cfg = tiny_config(
        "datagen.subjects.backend=vllm",
        "datagen.subjects.vllm.batch_size=16",
        "datagen.subjects.vllm.concurrency=2",
        "datagen.subjects.vllm.engine_kwargs={max_model_len: 512, dtype: half}",
        "datagen.subjects.temperature=0.7",
    )
    config = vllm_backend.processor_config(cfg)
    assert config.model_source == zoo.resolve("llm", "tiny", zoo_home)
    assert config.batch_size == 16 and config.concurrency == 2 and config.should_continue_on_error
    assert config.engine_kwargs["max_model_len"] == 512 and config.engine_kwargs["dtype"] == "half"
    processor = vllm_backend.build(cfg)
    assert processor.list_stage_names() == ["ChatTemplateStage", "TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]
    engine = processor.get_stage_by_name("vLLMEngineStage")
    assert engine.fn_constructor_kwargs["engine_kwargs"]["max_model_len"] == 512


def test_vllm_rows_are_shaped_with_per_row_seed_and_schema():
    cfg = tiny_config("datagen.subjects.temperature=0.7", "datagen.subjects.max_new_tokens=99")
    reqs, _ = subjects.requests(cfg)
    shaped = vllm_backend.Preprocess(cfg.datagen.subjects)(reqs[0])
    assert shaped["subject_id"] == reqs[0]["subject_id"]
    assert shaped["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": reqs[0]["prompt"]}]
    params = shaped["sampling_params"]
    assert params["temperature"] == 0.7 and params["max_tokens"] == 99 and params["seed"] == reqs[0]["seed"] % 2**31
    assert params["structured_outputs"] == {"json": answer_schema(cfg.datagen.subjects)}
    answer = json.dumps({"subject": f"a red {reqs[0]['category']}", "scenes": ["on a desk", "in a car"]})
    out = vllm_backend.postprocess({**shaped, "generated_text": answer})
    assert subjects.parse_row(out, cfg.datagen.subjects)["reason"] == ""
    failed = subjects.parse_row(
        {**shaped, "generated_text": "", "__inference_error__": "prompt too long"}, cfg.datagen.subjects
    )
    assert (failed["reason"], failed["details"]) == ("error", "prompt too long")


@pytest.mark.gpu
def test_vllm_backend_answers_in_the_contract_format(ray_local, zoo_home):
    """Structured outputs force the JSON shape even from the random tiny model."""
    import ray.data

    from datagen import ray_stages

    cfg = tiny_config("datagen.subjects.backend=vllm", "datagen.subjects.vllm.engine_kwargs={max_model_len: 512}")
    reqs, _ = subjects.requests(cfg)
    rows = ray_stages.subject_pipeline(ray.data.from_items(reqs), cfg).take_all()
    assert sorted(r["subject_id"] for r in rows) == sorted(r["subject_id"] for r in reqs)
    assert all(r["reason"] not in ("error", "not-json", "empty") for r in rows), rows


def test_an_llm_that_does_not_load_answers_every_request_with_the_error(zoo_home):
    import pyarrow as pa

    from datagen.ray_stages import SubjectWriter

    cfg = tiny_config("datagen.subjects.backend=transformers", f"models.llm={zoo.resolve('clip', 'tiny', zoo_home)}")
    reqs, _ = subjects.requests(cfg)
    writer = SubjectWriter(cfg)
    for _ in range(2):  # the failure is kept, not retried per batch
        answers = writer(pa.Table.from_pylist(reqs)).to_pylist()
        assert [a["subject_id"] for a in answers] == [r["subject_id"] for r in reqs]
        assert all(a["answer"] is None and "loading models.llm failed" in a["error"] for a in answers)
    parsed = subjects.parse_row(answers[0], cfg.datagen.subjects)
    assert parsed["reason"] == "error" and "loading models.llm failed" in parsed["details"]
