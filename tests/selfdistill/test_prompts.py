"""Mining prompts: the contract, the template backend, identifier placement and the fallback."""

from __future__ import annotations

import json

import pytest

from core import zoo
from core.config.selfdistill import PromptWriterSection
from core.llm_json import ChatWriter, InvalidAnswer, VllmRequests
from training.selfdistill.prompts import (
    SYSTEM,
    answer_schema,
    parse_prompts,
    requests,
    resolve,
    template_answer,
    to_template,
)

CFG = PromptWriterSection(num_prompts=3, max_prompt_chars=60)


def test_requests_are_seeded_per_subject_and_round():
    reqs = requests([("dog", "dog"), ("cat", "cat")], 1, 0, CFG)
    assert [r["subject"] for r in reqs] == ["dog", "cat"] and '"dog"' in reqs[0]["prompt"]
    assert reqs == requests([("dog", "dog"), ("cat", "cat")], 1, 0, CFG)
    seeds = {r["seed"] for r in reqs} | {requests([("dog", "dog")], 2, 0, CFG)[0]["seed"]}
    assert len(seeds) == 3, "subjects and rounds draw different prompts"


def test_template_answers_parse_into_identifier_templates():
    req = requests([("teddy", "teddy bear")], 1, 0, CFG)[0]
    answer = template_answer(req, CFG)
    assert answer == template_answer(req, CFG)
    prompts = parse_prompts(answer, "teddy bear", CFG)
    assert [p.prompt_id for p in prompts] == [0, 1, 2] and len({p.template for p in prompts}) == 3
    for p in prompts:
        assert p.template.count("{0} {1}") == 1 and "teddy bear" in p.text and "{" not in p.text
        assert len(p.text) <= CFG.max_prompt_chars


def test_the_identifier_goes_before_the_first_mention_of_the_class():
    assert to_template("Two Dogs chasing a dog", "dog") == "Two {0} {1} chasing a dog"
    assert to_template("a hotdog stand with a dog", "dog") == "a hotdog stand with a {0} {1}"
    with pytest.raises(InvalidAnswer, match="missing-category"):
        to_template("a cat on a mat", "dog")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, "empty"),
        ("no json here", "not-json"),
        ('{"prompts": ["a dog on a pier", "a dog in snow"]}', "too-short"),
        ('{"prompts": ["a dog", "a dog", "a dog"]}', "wrong-format"),
        ('{"prompts": ["a dog on a pier", "a dog in snow", "a cat in a box"]}', "missing-category"),
        ('{"prompts": ["a dog on a pier", "a dog in snow", "a dog {0}"]}', "bad-characters"),
    ],
)
def test_an_invalid_answer_falls_back_to_template_prompts_with_its_reason(answer, reason):
    req = requests([("dog", "dog")], 1, 0, CFG)[0]
    row = resolve(req, answer, None, "transformers", CFG)
    assert (row["source"], row["reason"]) == ("template-fallback", reason) and row["details"]
    assert [p.template for p in row["prompts"]] == [
        p.template for p in parse_prompts(template_answer(req, CFG), "dog", CFG)
    ]


def test_a_valid_llm_answer_is_used_and_a_backend_error_is_recorded():
    req = requests([("dog", "dog")], 1, 0, CFG)[0]
    answer = json.dumps({"prompts": ["A dog on a pier", "a dog in deep snow", "an oil painting of a dog"]})
    row = resolve(req, answer, None, "vllm", CFG)
    assert row["source"] == "vllm" and row["reason"] == ""
    assert [p.text for p in row["prompts"]] == ["A dog on a pier", "a dog in deep snow", "an oil painting of a dog"]
    failed = resolve(req, None, "prompt too long", "vllm", CFG)
    assert (failed["source"], failed["reason"], failed["details"]) == ("template-fallback", "error", "prompt too long")


def test_the_template_backend_has_a_limit():
    with pytest.raises(
        ValueError,
        match="selfdistill.prompts.num_prompts: the template backend writes at most 160 prompts of at most 120",
    ):
        template_answer(requests([("dog", "dog")], 1, 0, CFG)[0], PromptWriterSection(num_prompts=161))


def test_transformers_backend_on_the_random_tiny_llm_falls_back(zoo_home):
    cfg = PromptWriterSection(num_prompts=2, max_new_tokens=24)
    reqs = requests([("dog", "dog"), ("cat", "cat")], 1, 0, cfg)
    writer = ChatWriter(zoo.load("llm", "tiny", home=zoo_home), SYSTEM, cfg.max_new_tokens, cfg.temperature)
    answers = writer(reqs)
    assert answers == writer(reqs), "greedy decoding is deterministic"
    rows = [resolve(r, a, None, "transformers", cfg) for r, a in zip(reqs, answers, strict=True)]
    assert all(
        r["source"] == "template-fallback" and r["reason"] in ("empty", "not-json", "wrong-format") for r in rows
    )


def test_vllm_requests_carry_the_schema_and_the_row_seed():
    req = requests([("dog", "dog")], 1, 0, CFG)[0]
    shaped = VllmRequests(SYSTEM, answer_schema(CFG), 0.7, 99, ("subject", "round", "seed"))(req)
    assert shaped["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": req["prompt"]}]
    params = shaped["sampling_params"]
    assert params["seed"] == req["seed"] % 2**31 and params["structured_outputs"] == {"json": answer_schema(CFG)}
    assert (shaped["subject"], shaped["round"]) == ("dog", 1)
