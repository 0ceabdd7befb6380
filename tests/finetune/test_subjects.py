"""Choosing subjects, their class words and ids; config and command-line errors name the field."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core.config import ConfigError, load_config
from core.methods import METHODS, method_plan, parse_methods
from core.methods.plan import Selection
from core.subjects import make_subject_id as subject_id
from training.cli import app as training_app
from training.finetune.subjects import SubjectDataError, decode_image, discover


def test_a_folder_of_subject_folders_gets_class_words_from_the_benchmark_file(dreambooth):
    specs = discover(str(dreambooth / "images"), load_config().finetune)
    assert [(s.name, s.class_word, s.error) for s in specs] == [
        ("backpack", "backpack", None),
        ("cat", "cat", None),
        ("dog", "dog", None),
        ("teapot", "teapot", None),
    ]


def test_one_folder_a_list_and_class_word_overrides(dreambooth, tmp_path):
    images = dreambooth / "images"
    assert [s.name for s in discover(str(images / "cat"), load_config().finetune)] == ["cat"]
    (tmp_path / "rex").mkdir()
    cfg = load_config("tiny", ["finetune.class_words={rex: dog, cat: kitten}"]).finetune
    specs = discover(f"{images / 'cat'}, {tmp_path / 'rex'}", cfg)
    assert [(s.name, s.class_word) for s in specs] == [("cat", "kitten"), ("rex", "dog")]
    (tmp_path / "nameless").mkdir()
    (tmp_path / "nameless" / "00.jpg").write_bytes((images / "cat" / "00.jpg").read_bytes())
    spec = discover(str(tmp_path / "nameless"), load_config().finetune)[0]
    assert spec.class_word is None and "no class word" in spec.error and "finetune.class_words" in spec.error
    (tmp_path / "classes.json").write_text("{not json")
    with pytest.raises(ValueError, match="finetune.classes: .* must be a JSON list"):
        discover(
            str(tmp_path / "nameless"), load_config("tiny", [f"finetune.classes={tmp_path / 'classes.json'}"]).finetune
        )
    with pytest.raises(ValueError, match="is not a directory"):
        discover(str(tmp_path / "missing"), load_config().finetune)
    with pytest.raises(ValueError, match="neither images nor subject folders"):
        discover(str(tmp_path / "rex"), load_config().finetune)


def test_subject_ids_are_safe_directory_names():
    assert subject_id("{subject}-{method}", "Dog Photos", "two-stage") == "dog-photos-two-stage"
    assert subject_id("{subject}", "cat", "ti") == "cat"


def test_unreadable_images_name_the_file():
    with pytest.raises(SubjectDataError, match="x.jpg: unreadable image"):
        decode_image(b"GIF89a garbage", "x.jpg")


def test_methods_parse_and_plan():
    assert parse_methods("ti, core,ti") == ["ti", "core"]
    with pytest.raises(ValueError, match="choose from dreambooth, ti, two-stage, core"):
        parse_methods("lora")
    cfg = load_config().finetune
    plans = {m: method_plan(cfg, m) for m in ("dreambooth", "ti", "two-stage", "core")}
    assert [(s.name, s.steps, s.optim.lr) for s in plans["two-stage"].stages] == [
        ("token", 100, 5e-4),
        ("unet", 400, 5e-6),
    ]
    assert [(s.name, s.steps, s.optim.lr) for s in plans["core"].stages] == [("token", 300, 5e-3), ("unet", 1000, 2e-6)]
    assert plans["dreambooth"].class_images() == 200
    assert plans["core"].class_images() == 0 and plans["two-stage"].class_images() == 0, "no prior preservation"
    (regularization,) = plans["core"].stages[0].plugins  # CoRe's context regularization, a plug-in of stage 1
    core = regularization.core
    tto_steps = METHODS["core"].inference_step.default_steps(cfg)
    assert (core.lambda_emb, core.lambda_attn, core.rescale_start, core.rescale_end, tto_steps) == (
        1.5e-4,
        0.05,
        120,
        180,
        10,
    )
    assert plans["core"].stages[0].optim.weight_decay == 1e-2 and METHODS["core"].instance_latents
    assert plans["two-stage"].new_token.token == "<rare>" and plans["two-stage"].new_token.initializer == "rare"
    assert plans["dreambooth"].stages[0].prior.num_images == 200 and plans["dreambooth"].identifier == "sks"
    assert plans["core"].stage_of(300) == 0 and plans["core"].stage_of(301) == 1


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("finetune.ti.prompt_template=a photo", "finetune.ti.prompt_template: Value error, 'a photo' must contain {0}"),
        ("finetune.scaling.num_workers=2", "one worker per subject"),
        ("finetune.core.stage1.steps=100", "core.rescale_end (180) exceeds core.stage1.steps (100)"),
        ("finetune.two_stage.stage2.steps=900", "200-800 steps"),
        (
            "finetune.core.animate_prompts=[a photo]",
            "finetune.core.animate_prompts: Value error, 'a photo' must contain {0} exactly once",
        ),
        ("finetune.ti.train.optim.lrr=1", "finetune.ti.train.optim.lrr: unknown field"),
        ("finetune.precision=bf16", "needs GPU workers"),
    ],
)
def test_bad_settings_fail_at_load_naming_the_field(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        load_config("tiny", [override])


def test_partial_overrides_keep_the_methods_own_defaults():
    cfg = load_config("tiny", ["finetune.core.stage2.steps=5", "finetune.run.storage_path=/tmp/x"]).finetune
    assert (cfg.core.stage2.steps, cfg.core.stage2.optim.lr, cfg.core.stage2.optim.schedule) == (5, 2e-6, "constant")
    assert (cfg.run.name, cfg.run.storage_path) == ("finetune-tiny", "/tmp/x")


def test_command_line_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(training_app, ["finetune", "--method", "ti"])
    assert result.exit_code == 2 and "--subjects: required" in result.output
    result = runner.invoke(training_app, ["finetune", "--method", "lora", "--subjects", str(tmp_path)])
    assert result.exit_code == 2 and "--method: 'lora'" in result.output
    result = runner.invoke(training_app, ["finetune", "--subjects", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "is not a directory" in result.output


def test_two_stage_scores_every_200_stage2_steps_up_to_800_in_sd14():
    """Paper 001 §4.1 in the sd14 profile: stage 2 is 800 steps, scored at 200, 400, 600 and 800."""
    plan = method_plan(load_config("sd14").finetune, "two-stage")
    assert [(s.steps, s.optim.lr) for s in plan.stages] == [(100, 5e-4), (800, 5e-6)]
    assert [step for step in range(1, plan.total_steps + 1) if plan.selection_due(step)] == [300, 500, 700, 900]
    ti = load_config("sd14").finetune.ti
    assert ti.train.steps == 3000 and len(ti.captions) == 27
    tiny = method_plan(load_config("tiny").finetune, "two-stage")  # 400 steps: 200 and 400
    assert [step for step in range(1, tiny.total_steps + 1) if tiny.selection_due(step)] == [300, 500]
    short = Selection(every=200, images=1)
    assert [s for s in range(1, 101) if short.due(s, 100)] == [] and [
        s for s in range(1, 301) if short.due(s, 300)
    ] == [
        200,
        300,
    ]
