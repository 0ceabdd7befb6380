"""Reading the DreamBooth layout and planning the cases of a run."""

from __future__ import annotations

import json

import pytest

from core.config.evaluation import EvaluationConfig
from evaluation.benchmark import eval_prompt, fill, load_benchmark, plan, select_subjects


def test_the_shared_material_loads(dreambooth):
    bench = load_benchmark(dreambooth)
    assert len(bench.subjects) == 30 and len(bench.prompts["object"]) == len(bench.prompts["live"]) == 25
    assert [s.name for s in select_subjects(bench, None)] == ["backpack", "cat", "dog", "teapot"]
    assert bench.subjects["dog"].live and not bench.subjects["teapot"].live
    assert len(bench.subjects["dog"].photos) == 5 and bench.subjects["bear_plushie"].photos == ()


def test_prompts_fill_the_token_and_class():
    assert fill("a {0} {1} in the snow", "sks", "dog") == "a sks dog in the snow"
    assert eval_prompt("a {0} {1} in the snow", "dog") == "a dog in the snow"
    assert eval_prompt("a red {0} {1}", "stuffed animal") == "a red stuffed animal"


def test_plan_covers_subjects_prompts_and_seeds(dreambooth):
    bench = load_benchmark(dreambooth)
    ev = EvaluationConfig(
        methods=["jedi", "base"], selection={"subjects": ["cat", "backpack"], "prompts": 11, "samples": 2}
    )
    cases = plan(bench, ev, seed=5)
    assert len(cases) == 2 * 2 * 11 * 2 and len({c.id for c in cases}) == len(cases)
    assert {c.seed for c in cases} == {5, 6} and cases[0].id == "jedi/cat/p00/5" and cases[0].case == "cat/p00/5"
    jedi, base = ([c.case for c in cases if c.method == m] for m in ("jedi", "base"))
    assert jedi == base, "every method draws the same subjects, prompts and seeds"
    # live subjects get the live list, objects the object list: prompt 10 differs
    p10 = {c.subject: c.eval_prompt for c in cases if c.prompt_id == "p10"}
    assert p10 == {"cat": "a cat wearing a red hat", "backpack": "a backpack with a wheat field in the background"}


def test_protocols_share_cases_and_each_takes_its_own_sample_count(dreambooth):
    selection = {"subjects": ["dog"], "prompts": 1, "samples": None}
    ev = EvaluationConfig(protocols=["dreambooth", "simple", "selfdistill"], selection=selection)
    cases = plan(load_benchmark(dreambooth), ev, seed=0)
    simple = [c for c in cases if c.prompt_id == "simple"]
    assert len(simple) == 64 and simple[0].id == "jedi/dog/simple/0" and simple[0].eval_prompt == "a photo of a dog"
    # DreamBooth's 4 samples of p00 are the first 4 of paper 000's 50: one image each, drawn once
    assert [c.sample for c in cases if c.prompt_id == "p00"] == list(range(50))
    capped = plan(
        load_benchmark(dreambooth),
        ev.model_copy(update={"selection": ev.selection.model_copy(update={"samples": 3})}),
        0,
    )
    assert len(capped) == 3 + 3


def test_selection_errors_name_the_field_and_what_exists(dreambooth):
    bench = load_benchmark(dreambooth)
    with pytest.raises(ValueError, match="evaluation.selection.subjects: 'unicorn' is not in"):
        select_subjects(bench, ["unicorn"])
    with pytest.raises(ValueError, match=r"'clock' has no photos .*subjects with photos: backpack, cat, dog, teapot"):
        select_subjects(bench, ["clock"])


def test_any_folder_with_the_same_layout_works(dreambooth, tmp_path):
    (tmp_path / "images" / "corgi").mkdir(parents=True)
    for photo in sorted((dreambooth / "images" / "dog").glob("*.jpg"))[:2]:
        (tmp_path / "images" / "corgi" / photo.name).symlink_to(photo)
    (tmp_path / "subjects.json").write_text(json.dumps([{"subject": "corgi", "class": "dog", "live": True}]))
    (tmp_path / "prompts.json").write_text(json.dumps({"object": ["a {0} {1}"], "live": ["a {0} {1} at home"]}))
    ev = EvaluationConfig(selection={"prompts": None, "samples": 1})
    cases = plan(load_benchmark(tmp_path), ev, seed=0)
    assert [(c.id, c.eval_prompt) for c in cases] == [("jedi/corgi/p00/0", "a dog at home")]


def test_a_broken_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="evaluation.benchmark: no such folder"):
        load_benchmark(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="subjects.json missing"):
        load_benchmark(tmp_path)
    (tmp_path / "subjects.json").write_text("[]")
    (tmp_path / "prompts.json").write_text(json.dumps({"object": ["a {0} thing"], "live": []}))
    with pytest.raises(
        ValueError, match=r"prompts.json object\[0\]: a prompt template must be a string containing \{1\}"
    ):
        load_benchmark(tmp_path)
    (tmp_path / "prompts.json").write_text("{")
    with pytest.raises(ValueError, match="prompts.json is not valid JSON"):
        load_benchmark(tmp_path)
