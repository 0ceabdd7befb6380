"""The training shell itself: which checkpoint a run continues from, which settings it may not change
unnoticed, which failures it retries, and what it says while it trains.

The failure cases run a real fine-tuning recipe on local Ray with one thing added by a subclass
defined here (a worker that dies right after a checkpoint, an attempt counter): the shell's code
paths are the production ones.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.config import load_config
from tests.finetune.conftest import ft_config
from training.finetune.recipe import SubjectJob, SubjectRecipe
from training.jedi.recipe import JeDiRecipe
from training.shell import checkpoint as ckpt
from training.shell.ray_run import local_run_dir, run_dir
from training.shell.resume import check_resume
from training.shell.trainer import fit


@pytest.fixture(scope="module")
def dog_dir(dreambooth) -> Path:
    return dreambooth / "images" / "dog"


def _checkpoint(run: Path, step: int, **meta) -> Path:
    directory = run / ckpt.name(step)
    directory.mkdir(parents=True)
    (directory / "weights.safetensors").write_bytes(b"x" * 100)
    ckpt.write_meta(directory, {"step": step, **meta})
    return directory


def test_the_newest_complete_checkpoint_on_storage_is_found(tmp_path):
    run = tmp_path / "run"
    _checkpoint(run, 2)
    _checkpoint(run, 4)
    cut = _checkpoint(run, 6)
    (cut / "weights.safetensors").write_bytes(b"x" * 40)  # a kill during the upload
    legacy = run / ckpt.name(5)  # written before meta listed its files: only Ray's record vouches for it
    legacy.mkdir()
    ckpt.write_json(legacy, ckpt.META, {"step": 5})
    (run / ckpt.name(8)).mkdir()  # no meta at all
    path, meta = ckpt.on_storage(str(run))
    assert Path(path).name == "checkpoint-0000004" and meta["step"] == 4
    assert ckpt.on_storage(str(run), complete_only=False)[1]["step"] == 6, "settings are read from any readable meta"
    assert ckpt.on_storage(str(tmp_path / "nothing")) is None


def _jedi(cfg):
    return JeDiRecipe(cfg)


def _subject(cfg):
    return SubjectRecipe.of(cfg, SubjectJob("dog", "photos/dog", "dog", "ti", "dog-ti"))


def _scene(cfg):
    from training.multiconcept.em import SceneRecipe

    return SceneRecipe(cfg, scene="scenes/duo", subject_id="duo-multiconcept")


@pytest.mark.parametrize(
    ("make", "changes", "named", "harmless"),
    [
        (
            _jedi,
            ["train.jedi.optim.lr=1e-3", "train.jedi.steps=60"],
            ["train.jedi.optim.lr", "train.jedi.steps"],
            ["train.jedi.run.log_every=5", "train.jedi.scaling.num_workers=2", "train.jedi.validate_every=5"],
        ),
        (
            _subject,
            ["finetune.ti.train.optim.lr=1e-3", "finetune.resolution=32"],
            ["finetune.resolution", "plan.stages[0].optim.lr"],
            ["finetune.run.checkpoint_every=7", "finetune.concurrency=5", "finetune.validate_every=3"],
        ),
        (
            _scene,
            ["multiconcept.token_optim.lr=1e-3"],
            ["multiconcept.token_optim.lr"],
            ["multiconcept.run.num_to_keep=3", "multiconcept.sample_steps=9"],
        ),
    ],
    ids=["jedi", "finetune", "multiconcept"],
)
def test_resuming_with_changed_training_settings_is_refused_naming_them(tmp_path, make, changes, named, harmless):
    storage = [f"{s}.run.storage_path={tmp_path}" for s in ("train.jedi", "finetune", "multiconcept")]
    recipe = make(load_config("tiny", storage))
    where = run_dir(recipe.run)
    _checkpoint(Path(where), 3, settings=recipe.settings())
    check_resume(where, recipe.settings(), recipe.run_field, "check")  # the same settings resume
    check_resume(where, make(load_config("tiny", [*storage, *harmless])).settings(), recipe.run_field, "check")

    changed = make(load_config("tiny", [*storage, *changes]))
    with pytest.raises(ValueError) as refused:
        check_resume(where, changed.settings(), changed.run_field, "check")
    message = str(refused.value)
    assert message.startswith(f"{recipe.run_field}.name: run {where} has a checkpoint at step 3")
    assert all(field in message for field in named), message
    assert f"--set {recipe.run_field}.name=NEW" in message and "--set train.resume=force" in message
    check_resume(where, changed.settings(), changed.run_field, "force")

    legacy = Path(where) / ckpt.name(4)  # written before settings were recorded: resumes as it always did
    legacy.mkdir()
    ckpt.write_json(legacy, ckpt.META, {"step": 4, "config_hash": "0123"})
    check_resume(where, changed.settings(), changed.run_field, "check")


class CountedRecipe(SubjectRecipe):
    """A subject recipe that counts its attempts in the run directory."""

    def setup(self, worker):
        with (local_run_dir(self.run) / "attempts").open("a") as f:
            f.write("attempt\n")
        super().setup(worker)


def test_an_error_no_rerun_can_fix_fails_at_once(ray_local, zoo_home, tmp_path, dog_dir):
    """Class images that are not there: Ray Train used to restart the worker max_failures times."""
    cfg = ft_config(tmp_path, "finetune.run.max_failures=2", "finetune.dreambooth.train.steps=2")
    recipe = CountedRecipe.of(cfg, SubjectJob("dog", str(dog_dir), "dog", "dreambooth", "dog-db", str(tmp_path / "no")))
    local_run_dir(recipe.run).mkdir(parents=True)
    with pytest.raises(ValueError, match="class images: .* lacks 2 of 2 images"):
        fit(recipe)
    assert (local_run_dir(recipe.run) / "attempts").read_text().count("attempt") == 1


class KilledAfterCheckpoint(SubjectRecipe):
    """Its worker process dies right after the shell reported the step-4 checkpoint (first attempt
    only): the checkpoint is on storage, Ray Train has most likely not recorded it yet."""

    def batch(self, step: int):
        marker = local_run_dir(self.run) / "killed"
        if step == 5 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().batch(step)


@pytest.mark.slow
def test_a_worker_killed_right_after_a_checkpoint_continues_from_it(ray_local, zoo_home, tmp_path, dog_dir):
    from safetensors.torch import load_file

    from core.subjects import EMBEDDINGS_FILE

    settings = ["finetune.ti.train.steps=6", "finetune.run.checkpoint_every=2", "finetune.run.max_failures=1"]
    cfg = ft_config(tmp_path / "killed", *settings)
    job = SubjectJob("dog", str(dog_dir), "dog", "ti", "dog-ti")
    result = fit(KilledAfterCheckpoint.of(cfg, job))
    assert (local_run_dir(KilledAfterCheckpoint.of(cfg, job).run) / "killed").exists(), "the worker was not killed"
    assert result.metrics["step"] == 6 and result.metrics["restored_from_step"] == 4

    straight = ft_config(tmp_path / "straight", *settings)
    fit(SubjectRecipe.of(straight, replace(job)), in_process=True)
    resumed = load_file(str(tmp_path / "killed" / "store" / "dog-ti" / EMBEDDINGS_FILE))
    reference = load_file(str(tmp_path / "straight" / "store" / "dog-ti" / EMBEDDINGS_FILE))
    torch.testing.assert_close(resumed["<sks>"], reference["<sks>"], atol=1e-6, rtol=0)


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_progress_lines_namespaced_tags_and_validation_images(zoo_home, tmp_path, dog_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = ft_config(tmp_path, "finetune.ti.train.steps=4", "finetune.run.log_every=2", "finetune.validate_every=2")
    recipe = SubjectRecipe.of(cfg, SubjectJob("dog", str(dog_dir), "dog", "ti", "dog-ti"))
    handler = Records()
    logging.getLogger("s3jedi.train").addHandler(handler)
    try:
        fit(recipe, in_process=True)
    finally:
        logging.getLogger("s3jedi.train").removeHandler(handler)
    progress = [r for r in handler.records if " step " in r.getMessage()]
    assert [r.getMessage() for r in progress] == ["finetune-tiny/dog-ti step 2/4", "finetune-tiny/dog-ti step 4/4"]
    assert {"loss", "it/s", "eta"} <= set(progress[0].fields) and progress[-1].fields["eta"] == "0:00:00"

    run = local_run_dir(recipe.run)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/grad_norm", "train/steps_per_s"} <= set(scalars), scalars
    assert all(t.startswith(("train/", "val/")) for t in scalars)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert events.Tags()["images"] == ["val/samples"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]


class CountedJeDi(JeDiRecipe):
    """JeDi, counting its attempts in the run directory."""

    def setup(self, worker):
        with (local_run_dir(self.run) / "attempts").open("a") as f:
            f.write("attempt\n")
        super().setup(worker)


@pytest.mark.slow
def test_an_error_inside_the_data_pipeline_fails_at_once(ray_local, zoo_home, tmp_path, dog_dir):
    """A captions source without its ``caption`` column: the map reading it fails inside Ray Data, which
    has retried it by its own rules already; a restart would read the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [(dog_dir / "00.jpg").read_bytes()], "text": ["a dog"]}), tmp_path / "c.parquet")
    overrides = {
        "train.jedi.run.storage_path": str(tmp_path / "runs"),
        "train.jedi.run.max_failures": 2,
        "train.jedi.data.sources": f"[{{kind: captions, path: {tmp_path / 'c.parquet'}}}]",
        "train.jedi.data.resolution": 32,
        "train.jedi.scaling.cpus_per_worker": 0.5,
        "train.jedi.steps": 2,
    }
    recipe = CountedJeDi(load_config("tiny", [f"{k}={v}" for k, v in overrides.items()]))
    local_run_dir(recipe.run).mkdir(parents=True)
    from ray.exceptions import UserCodeException

    with pytest.raises(UserCodeException, match="caption"):  # the KeyError, as Ray Data passes it on
        fit(recipe)
    assert (local_run_dir(recipe.run) / "attempts").read_text().count("attempt") == 1
