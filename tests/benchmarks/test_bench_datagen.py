"""The S3 stage benchmark (``benchmarks/bench_datagen.py``, part 3) runs and reports its mechanics.

The GPU entry (every family ``shape``, production sizes) can only run where a GPU is; its CPU
rehearsal is the same function at reduced sizes, so that the code a GPU run depends on has run on
a CPU. Timings are not asserted, only that every stage was reached and reported.
"""

from __future__ import annotations

import math
import os
import sys
import time

import pytest

from benchmarks import bench_datagen
from datagen.stages import image_stages

IMAGE_STAGES = [s.name for s in image_stages()]


def check_mechanics(result: dict, subjects: int) -> None:
    """Every subject reached every stage, each stage reports a throughput, the bottleneck is the stage
    with the most time per subject, and the busy fraction is a fraction or absent."""
    assert result["failed"] is None
    assert result["subjects"] == subjects and result["sets"] == subjects, result["stages"]
    stages = result["stages"]
    assert list(stages) == list(IMAGE_STAGES)
    for name, st in stages.items():
        assert st["rows"] == subjects and st["passed"] == subjects and st["errors"] == 0, (name, st)
        assert st["images"] > 0 and st["seconds"] > 0, (name, st)
        assert st["images_per_s"] is not None and st["images_per_s"] > 0, (name, st)
        assert st["includes_model_load"] == (subjects == 1)
    slowest = max(stages, key=lambda s: stages[s]["seconds_per_subject"])
    assert result["bottleneck"] == slowest
    assert math.isclose(sum(st["share_of_stage_time"] for st in stages.values()), 1.0, abs_tol=0.01)
    busy = result["busy_fraction"]
    assert busy is None or 0.0 <= busy <= 1.0
    assert result["anchor_ray_data"]["images_per_s_per_l4"] == 900 and result["busy_goal"] == 0.8


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_stage(ray_local, zoo_home, monkeypatch):
    monkeypatch.setenv("S3JEDI_BENCH_REHEARSE_SUBJECTS", "1")
    monkeypatch.delenv("S3JEDI_BENCH_REHEARSE_SHAPE", raising=False)
    result = bench_datagen.rehearsal()
    check_mechanics(result, 1)
    assert result["device"] == "cpu" and result["busy_fraction"] is None and result["busy_sampler"] is None
    shape = {f for f, ref in result["models"].items() if ref.startswith("shape")}
    assert shape == set(bench_datagen.REHEARSAL_SHAPE)
    assert result["sizes"]["collages"] == {"size": 64, "steps": 1, "images_per_subject": 2}
    # the collage stage drew what it was asked for; the let-through filters kept a full set downstream
    assert result["stages"]["collages"]["images"] == 2
    assert result["stages"]["backgrounds"]["images"] >= 2


def test_rehearsal_refuses_unknown_shape_families():
    with pytest.raises(ValueError, match="S3JEDI_BENCH_REHEARSE_SHAPE: unknown families \\['sd'\\]"):
        bench_datagen.stages_config("cpu", 1, {"sd", "clip"})


def test_gpu_entry_config_is_the_production_profile_on_shape_models():
    """What the GPU entry will run, checked without a GPU: production sizes, every datagen family
    ``shape``, one GPU shared by five pools."""
    families = [f for s in image_stages() for f in s.families]
    cfg = bench_datagen.stages_config("cuda", 6, set(families))
    d = cfg.datagen
    assert (d.collages.size, d.collages.steps, d.collages.images_per_subject) == (1024, 30, 4)
    assert (d.backgrounds.size, d.backgrounds.steps, d.stylize.steps) == (512, 30, 20)
    assert d.precision == "fp16" and d.subjects.backend == "template"
    assert all(getattr(cfg.models, f).startswith("shape") for f in families)
    assert sum(getattr(d, s).resources.num_gpus for s in IMAGE_STAGES) == pytest.approx(1.0)
    assert d.instances.box_threshold == 0.35 and d.consistency.threshold == -1 and d.stylize.probability == 1


@pytest.mark.gpu
def test_gpu_entry_one_subject(ray_local, monkeypatch):
    """Every family is `shape` here: no tiny model is needed, so the tiny zoo is not built."""
    monkeypatch.setenv("S3JEDI_BENCH_GPU_SUBJECTS", "1")
    result = bench_datagen.gpu_stages()
    check_mechanics(result, 1)
    assert result["device"] == "cuda" and result["gpu"]
    assert isinstance(result["busy_fraction"], float) and result["busy_sampler"]
    assert all(ref.startswith("shape") for ref in result["models"].values())


def _trace(stage: str, start: float, seconds: float, items_in: int, items_out: int) -> dict:
    return {
        "stage": stage,
        "outcome": "passed",
        "seconds": seconds,
        "items_in": items_in,
        "items_out": items_out,
        "at": start + seconds,
    }


def test_stage_stats_leave_out_the_model_load_of_each_stage_first_row():
    """One actor per stage: the first row a stage sees also loads its models, so the steady rate is
    taken over the later rows; collages count the images they draw, the other stages those they read."""
    rows = [
        {"trace": [_trace("collages", 0, 10, 0, 4), _trace("instances", 10, 6, 4, 8)]},
        {"trace": [_trace("collages", 10, 2, 0, 4), _trace("instances", 16, 1, 4, 8)]},
        {"trace": [_trace("collages", 12, 2, 0, 4), _trace("instances", 18, 1, 4, 8)]},
    ]
    stats = bench_datagen.stage_stats(rows)
    assert stats["collages"]["images"] == 12 and stats["collages"]["first_row_s"] == 10
    assert stats["collages"]["images_per_s"] == pytest.approx(8 / 4)
    assert stats["instances"]["images_per_s"] == pytest.approx(8 / 2)
    assert stats["collages"]["seconds_per_subject"] == pytest.approx(2)
    assert stats["consistency"]["rows"] == 0 and stats["consistency"]["images_per_s"] is None
    assert stats["instances"]["intervals"][0] == (10, 16)


def test_busy_is_the_mean_utilization_inside_the_intervals():
    sampler = bench_datagen.GpuSampler()
    sampler.samples = [(0.0, 100.0), (1.0, 50.0), (2.0, 0.0), (3.0, 100.0)]
    assert sampler.busy([(0.0, 3.0)]) == pytest.approx(0.625)
    assert sampler.busy([(0.5, 1.5), (2.5, 3.5)]) == pytest.approx(0.75)
    assert sampler.busy([(10.0, 11.0)]) is None


def test_sampler_reads_nvidia_smi_in_the_background(tmp_path, monkeypatch):
    """A stand-in ``nvidia-smi`` on PATH answering 42 % checks the sampling thread, the parsing and the
    stamps without a GPU; NVML, tried first, is made unimportable so a GPU machine takes this path too."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 42\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    start = time.time()
    with bench_datagen.GpuSampler(interval=0.02) as sampler:
        time.sleep(0.5)
    assert sampler.source.startswith("nvidia-smi") and len(sampler.samples) >= 3
    assert all(u == 42.0 and start <= t <= time.time() for t, u in sampler.samples)
    assert sampler.busy([(start, time.time())]) == pytest.approx(0.42)
