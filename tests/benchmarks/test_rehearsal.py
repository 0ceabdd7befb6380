"""The GPU plans of the benchmarks, rehearsed on CPU (``S3JEDI_BENCH_REHEARSE=1``).

GPU time is scarce: the production-shaped models, half precision, bf16 autocast and the Serve
deployment on the SD1.4 shape must already have run before a GPU run starts. These
run the benchmarks' own ``run()`` with the GPU plan at CPU sizes (production: ~9 minutes and ~17 GB of RAM,
its fp32 training step with AdamW on the 860M UNet; serving ~3 minutes: slow).
"""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def rehearse(monkeypatch):
    monkeypatch.setenv("S3JEDI_BENCH_REHEARSE", "1")


def test_production_plan_runs_on_the_shape_models_in_half_precision(rehearse):
    from benchmarks import bench_production

    out = bench_production.run()
    assert out["rehearsal"] and out["device"] == "cpu"
    assert out["sdxl"]["model"] == "shape" and out["sdxl"]["dtype"] == "torch.float16"
    assert out["sdxl"]["s_per_image"] > 0
    sampling = out["jedi_sampling"]
    assert sampling["dtype"] == "torch.float16" and set(sampling["per_set_size"]) == {2, 3, 4}
    assert all(math.isfinite(r["ratio_per_image_pass"]) and r["ratio"] > 0 for r in sampling["per_set_size"].values())
    steps = out["training_step"]["results"]
    assert set(steps) == {"bf16", "fp32", "bf16+ckpt", "fp32+ckpt"}
    assert all(r["images_per_s"] > 0 for r in steps.values())


def test_serving_plan_serves_the_sd14_shape_with_batching(rehearse, zoo_home):
    from benchmarks import bench_serving

    out = bench_serving.run()
    assert out["rehearsal"] and out["workload"]["model"] == "shape"
    assert out["replica"]["dtype"] == "float16"
    assert out["serve"][16]["mean_batch_size"] > 1, "concurrent requests were not batched"
    assert (
        out["serve_unbatched"][16]["requests"] == out["workload"]["levels"][16] if "levels" in out["workload"] else True
    )
    assert out["batching_gain_c16"] > 0 and out["overhead_p50_ratio_c1"] > 0
