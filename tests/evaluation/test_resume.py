"""A killed run resumes: the rerun generates and scores only the ids missing from the checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from evaluation.job import run_evaluation
from evaluation.store import RunStore
from tests.conftest import REPO
from tests.evaluation.conftest import TINY_RUN, tiny_config

ONE_PER_BATCH = ["evaluation.compute.generation_batch=1", "evaluation.compute.scoring_batch=1"]


def test_a_killed_run_reruns_only_the_missing_ids(zoo_home, ray_local, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "evaluation", "--out", str(out), "--set", "ray.num_cpus=2"]
    for assignment in [*TINY_RUN, *ONE_PER_BATCH]:
        args += ["--set", assignment]
    # Its own session, so the kill takes the driver and the local Ray it started, nothing else.
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    store = RunStore(out)
    deadline = time.monotonic() + 240
    try:
        while not list(store.parts.glob("part-*.parquet")):
            assert proc.poll() is None, f"the run ended before writing a part: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no scored batch within 240 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = store.done_ids()
    assert 0 < len(done) < 8, f"the kill must land mid-run, {len(done)} of 8 were scored"
    before = store.read().set_index("id")

    result = run_evaluation(tiny_config(*ONE_PER_BATCH), out)
    assert result.scored_now == 8 - len(done)
    frame = pd.read_parquet(out / "scores.parquet").set_index("id")
    assert frame.index.is_unique and len(frame) == 8
    pd.testing.assert_frame_equal(frame.loc[before.index], before, check_like=True)
