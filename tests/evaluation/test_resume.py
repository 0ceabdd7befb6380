"""A killed run resumes: the rerun generates and scores only the ids missing from the checkpoint."""

from __future__ import annotations

import pandas as pd

from evaluation.job import run_evaluation
from evaluation.store import RunStore
from tests.evaluation.conftest import TINY_RUN, kill_at_first_checkpoint, tiny_config

ONE_PER_BATCH = ["evaluation.compute.generation_batch=1", "evaluation.compute.scoring_batch=1"]


def test_a_killed_run_reruns_only_the_missing_ids(zoo_home, ray_local, tmp_path):
    out = tmp_path / "run"
    done = kill_at_first_checkpoint(["evaluation"], out, ["ray.num_cpus=2", *TINY_RUN, *ONE_PER_BATCH], 240)
    store = RunStore(out)
    assert 0 < len(done) < 8, f"the kill must land mid-run, {len(done)} of 8 were scored"
    before = store.read().set_index("id")

    result = run_evaluation(tiny_config(*ONE_PER_BATCH), out)
    assert result.scored_now == 8 - len(done)
    frame = pd.read_parquet(out / "scores.parquet").set_index("id")
    assert frame.index.is_unique and len(frame) == 8
    pd.testing.assert_frame_equal(frame.loc[before.index], before, check_like=True)
