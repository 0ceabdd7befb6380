"""The shipped ToyWorld checkpoints personalize: the science, checked where the answer is known.

These run the trained models in ``assets/toyworld`` (not random ones), so they fail if a change to the
JeDi model, the pipeline or the loading code stops identity from flowing from the references.
Thresholds sit well below what the shipped weights measure (docs/toyworld.md) and well above chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.config import load_config
from core.toyworld.world import novel_subjects
from evaluation.toyworld.demo import run_demo
from evaluation.toyworld.experiment import load_pipeline, pipeline_size
from evaluation.toyworld.loss_gap import eval_timesteps, loss_gaps, target_losses
from evaluation.toyworld.trials import make_trials
from tests.conftest import REPO

SHIPPED = REPO / "assets" / "toyworld"


@pytest.fixture(scope="module")
def jedi():
    return load_pipeline(str(SHIPPED / "jedi"))


def test_right_references_beat_a_decoys_for_every_novel_subject(jedi):
    size = pipeline_size(jedi)
    trials = make_trials(seed=0, per_subject=1, max_refs=2, size=size)
    ts = eval_timesteps(jedi.scheduler.config.num_train_timesteps, 4)
    right = target_losses(jedi, trials, 2, size, ts)
    wrong = target_losses(jedi, trials, 2, size, ts, decoy=True)
    alone = target_losses(jedi, trials, 0, size, ts)
    gaps = loss_gaps(right, wrong)
    # Measured: every gap 0.57-1.70, mean 1.09; the right references also beat no references at all.
    assert (gaps > 0.2).all(), gaps
    assert right.mean() < alone.mean() < wrong.mean()
    off = target_losses(jedi, trials, 2, size, ts, decoy=True, coupled=False)
    np.testing.assert_allclose(off, alone, rtol=1e-5, atol=1e-7)


def test_demo_draws_novel_subjects_in_the_prompted_scenes(tmp_path: Path):
    cfg = load_config("tiny")
    results = [run_demo(cfg, s, 2, tmp_path) for s in novel_subjects()[:3]]
    # Measured at the defaults (paper guidance, λ = 2, joint targets): identity 4/4 for each of the three
    # subjects, every scene right; chance is 1/48.
    assert all(r["novel"] and r["scene_accuracy"] == 1.0 for r in results)
    assert np.mean([r["identity"] for r in results]) >= 0.5
    assert all(Path(r["grid"]).is_file() for r in results)
