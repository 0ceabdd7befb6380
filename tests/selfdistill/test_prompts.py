"""Mining prompts: one set per class, the contract, the template backend, identifier placement and the fallback."""

from __future__ import annotations

import json

import pytest

from core import zoo
from core.config.selfdistill import PromptWriterSection
from core.llm_json import ChatWriter, InvalidAnswer, VllmRequests
from training.selfdistill.prompts import (
    BACKGROUNDS,
    OUTFITS,
    POSES,
    SYSTEM,
    answer_schema,
    parse_prompts,
    requests,
    resolve,
    template_answer,
    to_template,
)

CFG = PromptWriterSection(num_prompts=3, max_prompt_chars=60)


def test_one_request_per_class_seeded_by_the_class_alone():
    reqs = requests(["dog", "cat"], 0, CFG)
    assert [r["class_word"] for r in reqs] == ["dog", "cat"] and '"dog"' in reqs[0]["prompt"]
    assert reqs[0] == requests(["dog"], 0, CFG)[0], "a class's set does not depend on the other classes"
    assert reqs[0]["seed"] != reqs[1]["seed"] != requests(["cat"], 1, CFG)[0]["seed"]


def test_the_llm_is_shown_exemplars_of_backgrounds_poses_and_outfits_and_no_art_styles():
    text = requests(["teddy bear"], 0, CFG)[0]["prompt"]
    exemplars = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    assert len(exemplars) == 3 and all("teddy bear" in e for e in exemplars)
    kinds = (BACKGROUNDS, POSES, OUTFITS)
    assert all(any(part in e for part in kind) for e, kind in zip(exemplars, kinds, strict=True))
    assert "Write 3 new prompts in the same format" in text and "no art styles" in text


def test_template_answers_parse_into_identifier_templates():
    req = requests(["teddy bear"], 0, CFG)[0]
    answer = template_answer(req, CFG)
    assert answer == template_answer(req, CFG)
    prompts = parse_prompts(answer, "teddy bear", CFG)
    assert [p.prompt_id for p in prompts] == [0, 1, 2] and len({p.template for p in prompts}) == 3
    for p in prompts:
        assert p.template.startswith("a {0} {1} ") and "teddy bear" in p.text and "{" not in p.text
        assert len(p.text) <= CFG.max_prompt_chars and any(p.text.endswith(b) for b in BACKGROUNDS)


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
    req = requests(["dog"], 0, CFG)[0]
    row = resolve(req, answer, None, "transformers", CFG)
    assert (row["source"], row["reason"]) == ("template-fallback", reason) and row["details"]
    assert [p.template for p in row["prompts"]] == [
        p.template for p in parse_prompts(template_answer(req, CFG), "dog", CFG)
    ]


def test_a_valid_llm_answer_is_used_and_a_backend_error_is_recorded():
    req = requests(["dog"], 0, CFG)[0]
    answer = json.dumps({"prompts": ["A dog on a pier", "a dog in deep snow", "a dog wearing a scarf in Paris"]})
    row = resolve(req, answer, None, "vllm", CFG)
    assert row["source"] == "vllm" and row["reason"] == "" and row["class_word"] == "dog"
    assert [p.text for p in row["prompts"]] == [
        "A dog on a pier",
        "a dog in deep snow",
        "a dog wearing a scarf in Paris",
    ]
    failed = resolve(req, None, "prompt too long", "vllm", CFG)
    assert (failed["source"], failed["reason"], failed["details"]) == ("template-fallback", "error", "prompt too long")


def test_the_template_backend_has_a_limit():
    with pytest.raises(
        ValueError,
        match="selfdistill.prompts.num_prompts: the template backend writes at most 240 prompts of at most 120",
    ):
        template_answer(requests(["dog"], 0, CFG)[0], PromptWriterSection(num_prompts=241))


def test_transformers_backend_on_the_random_tiny_llm_falls_back(zoo_home):
    cfg = PromptWriterSection(num_prompts=2, max_new_tokens=24)
    reqs = requests(["dog", "cat"], 0, cfg)
    writer = ChatWriter(zoo.load("llm", "tiny", home=zoo_home), SYSTEM, cfg.max_new_tokens, cfg.temperature)
    answers = writer(reqs)
    assert answers == writer(reqs), "greedy decoding is deterministic"
    rows = [resolve(r, a, None, "transformers", cfg) for r, a in zip(reqs, answers, strict=True)]
    assert all(
        r["source"] == "template-fallback" and r["reason"] in ("empty", "not-json", "wrong-format") for r in rows
    )


def test_vllm_requests_carry_the_schema_and_the_row_seed():
    req = requests(["dog"], 0, CFG)[0]
    shaped = VllmRequests(SYSTEM, answer_schema(CFG), 0.7, 99, ("class_word", "seed"))(req)
    assert shaped["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": req["prompt"]}]
    params = shaped["sampling_params"]
    assert params["seed"] == req["seed"] % 2**31 and params["structured_outputs"] == {"json": answer_schema(CFG)}
    assert shaped["class_word"] == "dog"
