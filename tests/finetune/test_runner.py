"""The real entry point on local Ray: several subjects and methods at once, failures, pruning, resume, outputs.

One command fine-tunes dog with DreamBooth-LoRA (prior preservation, class images drawn by a Ray Data
job) and with Textual Inversion, next to a subject whose photo is unreadable; a second command with
more steps resumes both runs. Two-stage and CoRe run the same loop in-process (Ray Train's local mode).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from core.subjects import EMBEDDINGS_FILE, INSTANCE_LATENTS_FILE, LORA_FILE, read_card
from tests.finetune.conftest import FAST, ft_config
from training.cli import app as training_app
from training.finetune.recipe import SubjectRecipe
from training.finetune.runner import plan_jobs
from training.shell import checkpoint as ckpt
from training.shell.trainer import fit

RUN = [
    "finetune.run.checkpoint_every=1",
    "finetune.run.num_to_keep=2",
    "finetune.run.max_failures=0",
    "finetune.concurrency=2",
]


def invoke(app, args: list[str], settings: list[str]):
    """Run the CLI; the report is the JSON object on stdout (Ray forwards worker warnings there too)."""
    result = CliRunner().invoke(app, [*args, *[a for s in settings for a in ("--set", s)]])
    text = result.stdout
    try:
        report, _ = json.JSONDecoder().raw_decode(text[text.index("{\n") :])
    except (ValueError, json.JSONDecodeError):
        raise AssertionError(f"no JSON report (exit {result.exit_code}): {result.output[-3000:]}") from result.exception
    return result.exit_code, {s["subject_id"]: s for s in report["subjects"]}


def settings(tmp: Path, steps: int) -> list[str]:
    """``ft_config``'s settings as ``--set`` lines."""
    return [
        *FAST,
        *RUN,
        f"finetune.run.storage_path={tmp / 'runs'}",
        f"finetune.store={tmp / 'store'}",
        f"finetune.dreambooth.train.steps={steps}",
        f"finetune.ti.train.steps={steps}",
    ]


def tensorboard_steps(run_dir: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(run_dir / "tensorboard"))
    mux.Reload()
    return sorted(e.step for run in mux.Runs() for e in mux.Scalars(run, "train/loss"))


@pytest.fixture(scope="module")
def subjects(tmp_path_factory, dog_dir) -> Path:
    root = tmp_path_factory.mktemp("subjects")
    shutil.copytree(dog_dir, root / "dog")
    (root / "teapot").mkdir()
    shutil.copy(dog_dir / "00.jpg", root / "teapot" / "00.jpg")
    (root / "teapot" / "01.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    return root


@pytest.fixture(scope="module")
def first(ray_local, zoo_home, tmp_path_factory, subjects):
    tmp = tmp_path_factory.mktemp("finetune")
    code, report = invoke(
        training_app, ["finetune", "--method", "dreambooth,ti", "--subjects", str(subjects)], settings(tmp, steps=3)
    )
    return tmp, code, report


def test_one_command_trains_two_methods_and_reports_the_unreadable_subject(first):
    tmp, code, report = first
    assert code == 1, "a failed subject makes the command fail"
    assert sorted(report) == ["dog-dreambooth", "dog-ti", "teapot-dreambooth", "teapot-ti"]
    for sid in ("teapot-dreambooth", "teapot-ti"):
        assert report[sid]["status"] == "failed"
        assert "01.jpg: unreadable image" in report[sid]["error"]
    for sid in ("dog-dreambooth", "dog-ti"):
        assert report[sid]["status"] == "done", report[sid]["error"]
        assert report[sid]["metrics"]["step"] == 3 and report[sid]["metrics"]["restored_from_step"] == -1
        assert report[sid]["published"] == str(tmp / "store" / sid)
    saved = json.loads((tmp / "runs" / "finetune-tiny" / "report.json").read_text())
    assert saved["done"] == 2 and saved["failed"] == 2


def test_checkpoints_are_pruned_and_hold_only_what_was_trained(first):
    tmp, _, _ = first
    for sid, part in (("dog-dreambooth", "unet_lora"), ("dog-ti", "tokens")):
        run = tmp / "runs" / "finetune-tiny" / sid
        assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-0000002", "checkpoint-0000003"]
        names = sorted(p.name for p in (run / "checkpoint-0000003").iterdir())
        assert names == sorted([f"{part}.safetensors", "optimizer.pt", "lr_schedule.pt", "grad_scaler.pt", "meta.json"])
        assert ckpt.read_json(run / "checkpoint-0000003", "meta")["step"] == 3
    classes = list((tmp / "runs" / "class-images").iterdir())
    assert len(classes) == 1 and classes[0].name.startswith("dog-"), "no class images for the failed subject"
    assert sorted(p.name for p in classes[0].iterdir()) == ["00000.png", "00001.png"]


def test_outputs_load_into_a_fresh_pipeline_with_plain_diffusers(first):
    from diffusers import StableDiffusionPipeline

    from core import zoo

    tmp, _, _ = first
    store = tmp / "store"
    lora_card, ti_card = read_card(store / "dog-dreambooth"), read_card(store / "dog-ti")
    assert (lora_card.method, lora_card.tokens, lora_card.weights.present()) == (
        "dreambooth",
        ["sks"],
        {"lora": LORA_FILE},
    )
    assert (ti_card.method, ti_card.tokens, ti_card.weights.present()) == (
        "ti",
        ["<sks>"],
        {"embeddings": EMBEDDINGS_FILE},
    )
    assert lora_card.steps == 3 and lora_card.base_model == "tiny" and lora_card.class_word == "dog"

    def fresh():
        pipe = StableDiffusionPipeline.from_pretrained(zoo.resolve("sd", "tiny"), safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def draw(pipe, prompt):
        return pipe(
            prompt,
            num_inference_steps=2,
            height=32,
            width=32,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images[0]

    base = draw(fresh(), "a photo of sks dog")
    pipe = fresh()
    pipe.load_lora_weights(str(store / "dog-dreambooth"), weight_name=LORA_FILE)
    lora = draw(pipe, "a photo of sks dog")
    assert lora.shape == (32, 32, 3) and np.isfinite(lora).all() and not np.array_equal(lora, base)

    pipe = fresh()
    pipe.load_textual_inversion(str(store / "dog-ti" / EMBEDDINGS_FILE), token="<sks>")
    row = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids("<sks>")]
    trained = ckpt.read_weights(tmp / "runs" / "finetune-tiny" / "dog-ti" / "checkpoint-0000003", "tokens")["rows"]
    assert torch.equal(row.detach(), trained[0])
    assert draw(pipe, "a photo of <sks>").shape == (32, 32, 3)


def test_rerun_with_more_steps_resumes_lora_and_ti_from_their_checkpoints(first, subjects, tmp_path):
    tmp, _, _ = first
    classes = next((tmp / "runs" / "class-images").iterdir())
    stamp = {p.name: p.stat().st_mtime_ns for p in classes.iterdir()}
    args = ["finetune", "--method", "dreambooth,ti", "--subjects", str(subjects / "dog")]
    code, report = invoke(training_app, [*args[:2], "dreambooth", *args[3:]], settings(tmp, steps=5))
    assert code == 1 and report["dog-dreambooth"]["status"] == "failed"
    error = report["dog-dreambooth"]["error"]
    assert "plan.stages[0].steps" in error and "--set train.resume=force" in error, error
    # dog-ti resumes from a checkpoint as an earlier version wrote it: its meta has no settings or files.
    last = tmp / "runs" / "finetune-tiny" / "dog-ti" / "checkpoint-0000003"
    meta = ckpt.read_json(last, "meta")
    ckpt.write_json(last, "meta", {k: meta[k] for k in ("config_hash", "method", "stage", "step", "subject_id")})
    code, report = invoke(training_app, args, [*settings(tmp, steps=5), "train.resume=force"])  # more steps, wanted
    assert code == 0
    for sid in ("dog-dreambooth", "dog-ti"):
        metrics = report[sid]["metrics"]
        assert (metrics["step"], metrics["restored_from_step"]) == (5, 3), metrics
        run = tmp / "runs" / "finetune-tiny" / sid
        assert tensorboard_steps(run) == [1, 2, 3, 4, 5], "steps 1-3 must not run again"
        assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-0000004", "checkpoint-0000005"]
        assert read_card(tmp / "store" / sid).steps == 5
    assert {p.name: p.stat().st_mtime_ns for p in classes.iterdir()} == stamp, "cached class images are reused"

    # The same five steps uninterrupted, in this process: the resumed runs end where it ends.
    from safetensors.torch import load_file

    straight = ft_config(tmp_path, *RUN, "finetune.dreambooth.train.steps=5", "finetune.ti.train.steps=5")
    jobs, _ = plan_jobs(straight, ["dreambooth", "ti"], str(subjects / "dog"))
    for job in jobs:
        fit(SubjectRecipe.of(straight, replace(job, class_images=str(classes))), in_process=True)
    for sid, file in (("dog-dreambooth", LORA_FILE), ("dog-ti", EMBEDDINGS_FILE)):
        resumed, reference = load_file(str(tmp / "store" / sid / file)), load_file(str(tmp_path / "store" / sid / file))
        assert resumed.keys() == reference.keys()
        for key, value in resumed.items():
            torch.testing.assert_close(value, reference[key], atol=1e-5, rtol=0)


def test_two_stage_and_core_write_subjects_that_load_and_sample_with_tto(zoo_home, tmp_path, dog_dir):
    """Both multi-stage methods through the real loop in this process (Ray Train's local mode), class
    images read from a cache folder, then ``s3jedi finetune sample`` with CoRe's test-time optimization."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from PIL import Image

    from cluster.cli import app as s3jedi_app
    from core import zoo
    from training.finetune.class_images import cache_dir

    cfg = ft_config(tmp_path)
    cache = Path(cache_dir(cfg, "dog"))
    cache.mkdir(parents=True)
    for i in range(2):
        Image.open(dog_dir / f"0{i}.jpg").resize((32, 32)).save(cache / f"{i:05d}.png")
    jobs, failed = plan_jobs(cfg, ["two-stage", "core"], str(dog_dir))
    assert not failed
    for job in jobs:
        metrics = fit(SubjectRecipe.of(cfg, replace(job, class_images=str(cache))), in_process=True).metrics
        assert metrics["step"] == {"two-stage": 4, "core": 7}[job.method] and metrics["stage"] == "unet"
    for sid, token in (("dog-two-stage", "<rare>"), ("dog-core", "<sks>")):
        card = read_card(tmp_path / "store" / sid)
        latents = {"instance_latents": INSTANCE_LATENTS_FILE} if sid == "dog-core" else {}
        assert card.tokens == [token] and card.weights.present() == {
            "embeddings": EMBEDDINGS_FILE,
            "unet": "unet",
            **latents,
        }
        pipe = StableDiffusionPipeline.from_pretrained(zoo.resolve("sd", "tiny"), safety_checker=None)
        pipe.unet = UNet2DConditionModel.from_pretrained(str(tmp_path / "store" / sid / "unet"))
        pipe.load_textual_inversion(str(tmp_path / "store" / sid / EMBEDDINGS_FILE), token=token)
        pipe.set_progress_bar_config(disable=True)
        image = pipe(card.instance_prompt(), num_inference_steps=2, height=32, width=32).images[0]
        assert image.size == (32, 32)

    out = tmp_path / "samples"
    result = CliRunner().invoke(
        s3jedi_app,
        [
            "finetune",
            "sample",
            "dog-core",
            "--prompt",
            "a photo of {0} on the beach",
            "--prompt",
            "{0} in the snow",
            "--tto-steps",
            "2",
            "--side",
            "32",
            "--steps",
            "2",
            "--out",
            str(out),
            "--set",
            f"finetune.store={tmp_path / 'store'}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["dog-core-00.png", "dog-core-01.png"]
    result = CliRunner().invoke(
        s3jedi_app, ["finetune", "sample", "nobody", "--prompt", "{0}", "--set", f"finetune.store={tmp_path / 'store'}"]
    )
    assert result.exit_code == 2 and "no subject 'nobody'" in result.output


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_dreambooth_with_the_text_encoder_exports_what_diffusers_loads(zoo_home, tmp_path, dog_dir, mode):
    from core import zoo
    from core.subjects import apply_subject

    cfg = ft_config(
        tmp_path,
        f"finetune.dreambooth.unet.mode={mode}",
        "finetune.dreambooth.train_text_encoder=true",
        "finetune.dreambooth.prior.enabled=false",
        "finetune.dreambooth.train.steps=2",
        "finetune.dreambooth.train.optim.lr=1e-3",
    )
    (job,), _ = plan_jobs(cfg, ["dreambooth"], str(dog_dir))
    fit(SubjectRecipe.of(cfg, job), in_process=True)
    where = tmp_path / "store" / "dog-dreambooth"
    card = read_card(where)
    expected = {"full": {"unet": "unet", "text_encoder": "text_encoder"}, "lora": {"lora": LORA_FILE}}[mode]
    assert card.weights.present() == expected
    base = zoo.load("sd", "tiny")
    ids = base.tokenizer(["a photo of sks dog"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        before = base.text_encoder(ids)[0]
        pipe = apply_subject(zoo.load("sd", "tiny"), where)
        after = pipe.text_encoder(ids)[0]
    assert not torch.allclose(before, after), "the trained text encoder was not loaded"
    pipe.set_progress_bar_config(disable=True)
    assert pipe(card.instance_prompt(), num_inference_steps=2, height=32, width=32).images[0].size == (32, 32)


@pytest.mark.slow
def test_a_killed_worker_is_retried_from_the_subjects_last_checkpoint(ray_local, zoo_home, tmp_path, dog_dir):
    """A subject's worker dies mid-run: Ray Train restarts it from the subject's last committed
    checkpoint (finetune.run.max_failures) and the subject still completes, with the full step count."""
    import os
    import signal
    import threading

    from tests.training.test_jedi_train import _committed, _wait_for, train_worker_pids
    from training.finetune.runner import finetune

    cfg = ft_config(
        tmp_path,
        "finetune.ti.train.steps=200",
        "finetune.run.checkpoint_every=20",
        "finetune.run.log_every=20",
        "finetune.run.max_failures=1",
    )
    run = tmp_path / "runs" / "finetune-tiny" / "dog-ti"
    killed: list[int] = []

    def chaos() -> None:
        _wait_for(lambda: _committed(run, 20))
        for pid in train_worker_pids(ray_local.get_runtime_context().gcs_address):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=chaos)
    thread.start()
    report = finetune(cfg, ["ti"], str(dog_dir))
    thread.join()
    assert killed, "no training worker was found to kill"
    (outcome,) = report.outcomes
    assert outcome.status == "done", outcome.error
    assert outcome.metrics["step"] == 200 and outcome.metrics["restored_from_step"] >= 20
