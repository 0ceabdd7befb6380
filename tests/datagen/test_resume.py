"""Resuming: after kill -9 of a running build's driver, and after finished shards were damaged, a rerun
ends with exactly the sets of an uninterrupted build."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from typer.testing import CliRunner

from cluster.cli import app
from core.s3 import iter_sets, read_rejects, read_summary
from datagen.pipeline import build
from tests.conftest import REPO
from tests.datagen.conftest import TINY, tiny_config

FUSED = "datagen.execution=fused"  # a run-only setting: resuming with it must not change the data


def _sets(root: str) -> dict[str, tuple]:
    out = {}
    for s in iter_sets(root):
        assert s.set_id not in out, f"duplicate set {s.set_id}"
        pixels = tuple(im.tobytes() for im in s.images)
        out[s.set_id] = (s.subject, pixels, tuple(m.tobytes() for m in s.masks), tuple(s.prompts), s.style)
    return out


def _rejects(root: str) -> list[tuple]:
    return sorted(tuple(r.values()) for r in read_rejects(root).to_pylist())


def _kill_mid_run(out, log_path) -> None:
    """Start ``python -m datagen`` and kill -9 its driver once one shard is complete and another is under way."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    sets = [a for o in (*TINY, FUSED, "ray.num_cpus=2") for a in ("--set", o)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "datagen", "--out", str(out), *sets],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while not (list((out / "_done").glob("*.json")) and list((out / "_parts").rglob("*.parquet"))):
            assert proc.poll() is None, f"the build ended before it could be killed:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no shard completed in 300 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        try:  # the driver's local Ray (its agents outlive a killed driver) goes with its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_build_resumes_to_the_uninterrupted_result(reference_build, tmp_path):
    out = tmp_path / "killed"
    _kill_mid_run(out, tmp_path / "driver.log")
    done = list((out / "_done").glob("*.json"))
    assert not (out / "summary.json").exists() and 1 <= len(done) < 3, "killed mid-run"

    resumed = build(tiny_config(FUSED), str(out))
    assert resumed.resumed
    assert 0 < resumed.summary["this_run"]["sets"] < reference_build.summary["sets"], "completed work is kept"
    assert _sets(str(out)) == _sets(reference_build.root)
    assert _rejects(str(out)) == _rejects(reference_build.root)
    for key in ("sets", "images", "subjects_requested", "rejects_by_reason"):
        assert resumed.summary[key] == reference_build.summary[key]


def _cli(*args: str):
    return CliRunner().invoke(app, ["datagen", *args])


def test_damaged_shards_are_rebuilt_on_resume_and_said_so(reference_build, tmp_path):
    """A finished shard cut to half and another scrambled: the rerun finds both, rebuilds them from their
    subjects, says so, and ends with exactly the sets, rejects and counts of the undamaged build."""
    root = tmp_path / "damaged"
    shutil.copytree(reference_build.root, root)
    cut = root / "sets" / "shard-00000.parquet"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    scrambled = root / "sets" / "shard-00002.parquet"
    data = bytearray(scrambled.read_bytes())
    data[len(data) // 4 : len(data) // 2] = np.random.default_rng(0).bytes(len(data) // 2 - len(data) // 4)
    scrambled.write_bytes(bytes(data))

    result = _cli("--out", str(root), *[a for o in (*TINY, FUSED) for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    assert re.search(
        r"rebuilt 2 damaged shard\(s\): shard-00000 \(sets/shard-00000\.parquet: not a readable Parquet file "
        r"\(footer: .*\)\); shard-00002 \(sets/shard-00002\.parquet differs from the checksum in its marker\)",
        result.output,
    ), result.output
    summary = read_summary(str(root))
    assert set(summary["this_run"]["rebuilt_shards"]) == {"shard-00000", "shard-00002"}
    assert summary["this_run"]["subjects"] == 4, "the subjects of the two damaged shards, no other"
    assert _sets(str(root)) == _sets(reference_build.root)
    assert _rejects(str(root)) == _rejects(reference_build.root)
    for key in ("sets", "images", "subjects_requested", "rejects_by_reason", "shards"):
        assert summary[key] == reference_build.summary[key]
    assert _cli("show", str(root), "--verify").exit_code == 0
