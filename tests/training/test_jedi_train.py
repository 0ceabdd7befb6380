"""JeDi training through Ray Train on the tiny model: learning, resume, failures, data parallelism."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from core.config import load_config
from tests.conftest import REPO
from training.jedi.recipe import fit
from training.shell import checkpoint as ckpt


def overrides(tmp_path: Path, dreambooth: Path, name: str, **extra) -> list[str]:
    base = {
        "train.jedi.run.storage_path": str(tmp_path / "runs"),
        "train.jedi.run.name": name,
        "train.jedi.data.sources": f"[{{kind: folder, path: {dreambooth / 'images'}}}]",
        "train.jedi.data.resolution": 32,
        "train.jedi.scaling.cpus_per_worker": 0.5,
        "train.jedi.sets_per_worker": 2,
        "train.jedi.run.log_every": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def final_unet(run_dir: Path) -> dict[str, torch.Tensor]:
    last = sorted(run_dir.glob("checkpoint-*"))[-1]
    return ckpt.read_weights(last, "unet")


def losses_from_tensorboard(run_dir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars("train/loss")]


def test_loss_decreases_when_overfitting_a_fixed_set(ray_local, tmp_path, dreambooth):
    cfg = load_config(
        "tiny",
        overrides(
            tmp_path,
            dreambooth,
            "overfit",
            **{
                "train.jedi.steps": 40,
                "train.jedi.optim.lr": 2e-3,
                "train.jedi.optim.schedule": "constant",
                "train.jedi.p_text_drop": 0.0,
                "train.jedi.run.checkpoint_every": 40,
                "train.jedi.data.flip": False,
                "train.jedi.run.log_every": 20,
            },
        ),
    )
    outcome = fit(cfg)
    losses = losses_from_tensorboard(tmp_path / "runs" / "overfit")
    assert len(losses) == 40
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print(f"overfit loss {first:.3f} -> {last:.3f}")
    assert last < 0.8 * first, f"loss did not go down: {first:.3f} -> {last:.3f}"
    assert outcome.metrics["step"] == 40
    export = Path(outcome.export_dir)
    from core.jedi import JeDiPipeline

    pipe = JeDiPipeline.from_pretrained(export)
    assert pipe.spec.max_set_size == 4
    assert (tmp_path / "runs" / "overfit" / "samples" / "step-0000040.png").is_file()


def test_two_workers_equal_one_worker_with_the_doubled_batch(ray_local, tmp_path, dreambooth):
    """DDP correctness: with SGD the update is linear in the gradient, so the two runs must agree to
    float rounding (the all-reduce sums in a different order): tolerance 1e-6 absolute."""
    common = {
        "train.jedi.steps": 2,
        "train.jedi.optim.name": "sgd",
        "train.jedi.optim.lr": 0.5,
        "train.jedi.optim.schedule": "constant",
        "train.jedi.data.min_set_size": 3,
        "train.jedi.data.max_set_size": 3,
        "train.jedi.run.checkpoint_every": 2,
    }
    one = load_config("tiny", overrides(tmp_path, dreambooth, "one", **common, **{"train.jedi.sets_per_worker": 4}))
    two = load_config("tiny", overrides(tmp_path, dreambooth, "two", **common, **{"train.jedi.scaling.num_workers": 2}))
    fit(one)
    fit(two)
    a, b = final_unet(tmp_path / "runs" / "one"), final_unet(tmp_path / "runs" / "two")
    start = load_config("tiny")
    from core import zoo

    base = zoo.load("sd", start.models.sd).unet.state_dict()
    moved = max(float((a[k][:, :4] if k == "conv_in.weight" else a[k]).sub(base[k]).abs().max()) for k in base)
    assert moved > 1e-4, "the step must actually change the weights for the comparison to mean anything"
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def _train_cmd(tmp_path: Path, dreambooth: Path, name: str, steps: int) -> list[str]:
    sets = overrides(
        tmp_path,
        dreambooth,
        name,
        **{"train.jedi.steps": steps, "train.jedi.run.checkpoint_every": 4, "ray.num_cpus": 2},
    )
    return [sys.executable, "-m", "training", "jedi", *[a for s in sets for a in ("--set", s)]]


def train_worker_pids(gcs_address: str) -> list[int]:
    """PIDs of the Ray Train workers of *this* Ray instance (others may run on the machine): children
    of the raylet that talks to our GCS whose process title is ``ray::RayTrainWorker...``."""
    import psutil

    raylets = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"]
        and p.info["cmdline"][0].endswith("raylet")
        and any(a == f"--gcs-address={gcs_address}" for a in p.info["cmdline"])
    ]
    return [c.pid for r in raylets for c in r.children() if "RayTrainWorker" in " ".join(c.cmdline())]


def _committed(run: Path, step: int) -> bool:
    """A checkpoint counts once Ray Train's checkpoint manager has recorded it in its snapshot."""
    snapshot = run / "checkpoint_manager_snapshot.json"
    return snapshot.exists() and f"checkpoint-{step:07d}" in snapshot.read_text()


def _wait_for(predicate, seconds: float = 300) -> bool:
    deadline = time.time() + seconds
    while not predicate() and time.time() < deadline:
        time.sleep(0.2)
    return predicate()


def test_killed_run_resumes_at_its_last_checkpoint_and_ends_as_if_never_killed(ray_local, tmp_path, dreambooth):
    steps = 10
    fit(
        load_config(
            "tiny",
            overrides(
                tmp_path, dreambooth, "straight", **{"train.jedi.steps": steps, "train.jedi.run.checkpoint_every": 4}
            ),
        )
    )

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(
        _train_cmd(tmp_path, dreambooth, "killed", steps),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert _wait_for(lambda: _committed(run, 4)), "no checkpoint was committed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started: a lost node
    proc.wait()
    assert not (run / "checkpoint-0000010").exists(), "killed too late to test resuming"

    resumed = subprocess.run(
        _train_cmd(tmp_path, dreambooth, "killed", steps),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert '"restored_from_step": 4' in resumed.stdout or '"restored_from_step": 8' in resumed.stdout
    a, b = final_unet(tmp_path / "runs" / "straight"), final_unet(run)
    for k in a:  # same optimizer state, schedule, data position and draws: the same weights
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_a_worker_killed_inside_the_loop_is_survived(ray_local, tmp_path, dreambooth):
    cfg = load_config(
        "tiny",
        overrides(
            tmp_path,
            dreambooth,
            "chaos",
            **{"train.jedi.steps": 10, "train.jedi.run.checkpoint_every": 3, "train.jedi.run.max_failures": 1},
        ),
    )
    run = tmp_path / "runs" / "chaos"
    killed: list[int] = []

    def chaos() -> None:
        _wait_for(lambda: _committed(run, 3))
        for pid in train_worker_pids(ray_local.get_runtime_context().gcs_address):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=chaos)
    thread.start()
    outcome = fit(cfg)
    thread.join()
    assert killed, "the chaos thread found no training worker to kill"
    assert outcome.metrics["step"] == 10
    assert outcome.metrics["restored_from_step"] >= 3


def test_accumulation_ema_checkpointing_and_precomputed_latents(ray_local, tmp_path, dreambooth):
    from training.jedi.precompute import precompute_latents

    cfg = load_config(
        "tiny",
        overrides(
            tmp_path,
            dreambooth,
            "lat",
            **{
                "train.jedi.steps": 2,
                "train.jedi.grad_accum": 2,
                "train.jedi.ema_decay": 0.9,
                "train.jedi.gradient_checkpointing": True,
                "train.jedi.run.checkpoint_every": 2,
            },
        ),
    )
    summary = precompute_latents(cfg, str(tmp_path / "latents"))
    assert (summary.sets, summary.skipped) == (4, 0)
    lat_cfg = load_config(
        "tiny",
        overrides(
            tmp_path,
            dreambooth,
            "lat",
            **{
                "train.jedi.steps": 2,
                "train.jedi.grad_accum": 2,
                "train.jedi.ema_decay": 0.9,
                "train.jedi.gradient_checkpointing": True,
                "train.jedi.run.checkpoint_every": 2,
                "train.jedi.data.sources": f"[{{kind: latents, path: {tmp_path / 'latents'}}}]",
            },
        ),
    )
    outcome = fit(lat_cfg)
    last = tmp_path / "runs" / "lat" / "checkpoint-0000002"
    assert outcome.metrics["step"] == 2 and torch.isfinite(torch.tensor(outcome.metrics["loss"]))
    ema = ckpt.read_state(last, "ema")
    assert ema is not None and ema["decay"] == 0.9
    assert ckpt.read_json(last, "data-rank0")["sources"]["source0"]["consumed"] > 0


def test_bad_training_input_fails_at_start_with_one_line(ray_local, tmp_path):
    from typer.testing import CliRunner

    from training.cli import app

    result = CliRunner().invoke(
        app, ["jedi", "--set", f"train.jedi.data.sources=[{{kind: folder, path: {tmp_path}/nope}}]"]
    )
    assert result.exit_code == 2 and "is not a directory" in result.output
    result = CliRunner().invoke(app, ["jedi", "--set", "train.jedi.precision=fp16"])
    assert result.exit_code == 2 and "precision fp16 needs GPU workers" in result.output


def test_a_source_with_no_usable_set_stops_the_run_with_one_line(ray_local, tmp_path):
    """A folder whose every image is corrupt used to cycle its epochs forever (0 steps, no log line)."""
    from typer.testing import CliRunner

    from training.cli import app

    for name in ("mug", "vase"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "data" / name / f"{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    source = f"[{{kind: folder, path: {tmp_path / 'data'}}}]"
    extra = {"train.jedi.run.max_failures": 0, "train.jedi.data.sources": source}
    args = [part for setting in overrides(tmp_path, tmp_path, "corrupt", **extra) for part in ("--set", setting)]
    result = CliRunner().invoke(app, ["jedi", *args])
    assert result.exit_code == 2, result.output
    # The command's own message is one line (the rest of the output is the workers' logs, forwarded by Ray).
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: data.sources: source source0 (folder "), errors
    assert "no usable set in a whole pass over its 2 sets (2 × UnidentifiedImageError)" in errors[0]


def test_skipped_sets_are_counted_by_reason_in_the_run_metrics(ray_local, tmp_path, dreambooth):
    import shutil

    shutil.copytree(dreambooth / "images" / "dog", tmp_path / "data" / "dog")
    (tmp_path / "data" / "mug").mkdir()
    for i in range(2):
        (tmp_path / "data" / "mug" / f"{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    extra = {
        "train.jedi.data.sources": f"[{{kind: folder, path: {tmp_path / 'data'}}}]",
        "train.jedi.steps": 3,
        "train.jedi.run.checkpoint_every": 3,
    }
    outcome = fit(load_config("tiny", overrides(tmp_path, dreambooth, "skips", **extra)))
    assert outcome.metrics["step"] == 3
    assert outcome.metrics["skipped/source0/UnidentifiedImageError"] >= 1, outcome.metrics
    assert outcome.metrics["skipped_sets"] == outcome.metrics["skipped/source0/UnidentifiedImageError"]
