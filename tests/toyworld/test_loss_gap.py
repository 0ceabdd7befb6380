"""The loss gap's control: with coupled attention off, references cannot reach the target."""

from __future__ import annotations

import numpy as np
import torch

from core import zoo
from evaluation.toyworld.loss_gap import eval_timesteps, loss_gaps, target_losses
from evaluation.toyworld.trials import make_trials


def test_coupling_off_loss_equals_the_no_reference_loss(zoo_home):
    pipe = zoo.load("jedi", "tiny", home=zoo_home)
    with torch.no_grad():  # the reference channels get weight, so a leak through them would show
        pipe.unet.conv_in.weight[:, 4:9].normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    size = 64
    trials = make_trials(seed=0, per_subject=1, max_refs=2, size=size, subjects=3)
    ts = eval_timesteps(pipe.scheduler.config.num_train_timesteps, 3)
    alone = target_losses(pipe, trials, 0, size, ts)
    for decoy in (False, True):
        off = target_losses(pipe, trials, 2, size, ts, decoy=decoy, coupled=False)
        np.testing.assert_allclose(off, alone, rtol=1e-5, atol=1e-7)
    right = target_losses(pipe, trials, 2, size, ts)
    wrong = target_losses(pipe, trials, 2, size, ts, decoy=True)
    # With coupling on, the references do reach the target: the test above could have failed.
    assert np.abs(right - alone).max() > 1e-4 and np.abs(right - wrong).max() > 1e-4
    np.testing.assert_array_equal(right, target_losses(pipe, trials, 2, size, ts))
    assert loss_gaps(right, wrong).shape == (3,)
    np.testing.assert_allclose(loss_gaps(right, right), 0.0)


def test_trials_never_draw_the_target_in_a_reference_scene():
    trials = make_trials(seed=1, per_subject=5, max_refs=3, size=16)
    assert len(trials) == 8 * 5 and len({t.id for t in trials}) == len(trials)
    for t in trials:
        assert t.target_scene not in t.ref_scenes and t.decoy != t.subject
        assert "thing" in t.prompt and t.subject.shape not in t.prompt and t.subject.colour not in t.prompt
    assert make_trials(seed=1, per_subject=5, max_refs=3, size=16) == trials
