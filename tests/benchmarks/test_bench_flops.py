"""FLOP counts on the meta device: known answers for coupled attention, and the production report."""

from __future__ import annotations

import pytest

from benchmarks import bench_flops
from core import zoo


@pytest.fixture(scope="module")
def meta_unet(zoo_home):
    return zoo.load("jedi", "tiny", home=zoo_home).unet.to("meta")


def _count(unet, batch: int, layout: int | None) -> dict:
    return bench_flops.unet_flops(unet, batch, 64, layout=layout, context=unet.config.cross_attention_dim)


def test_coupled_attention_costs_grow_with_the_square_of_the_set(meta_unet):
    """A set of N coupled: self-attention over N·L tokens, N²·L² scores; N independent images: N·L².
    So coupled minus independent attention is (N² − N)·S for a per-image self-attention cost S: the
    difference for N = 3 is exactly 3× the one for N = 2, and a set of 1 is the base model exactly."""
    assert _count(meta_unet, 1, 1) == _count(meta_unet, 1, None)
    extra = {n: _count(meta_unet, n, n)["attention_flops"] - _count(meta_unet, n, 1)["attention_flops"] for n in (2, 3)}
    assert extra[2] > 0 and extra[3] == 3 * extra[2]


def test_production_report_on_the_published_shapes():
    out = bench_flops.jedi_vs_plain()
    ratios = [out["per_set_size"][n]["ratio_per_image_pass"] for n in (2, 3, 4)]
    assert 1.0 < ratios[0] < ratios[1] < ratios[2], "coupling costs more per image-pass as sets grow"
    assert 0.7 < out["one_image_pass_tflops"] < 0.9  # SD1.x UNet at 512²: ~0.4 TMAC per pass
    train = bench_flops.training()
    forward = out["one_image_pass_tflops"] * out["per_set_size"][3]["ratio_per_image_pass"]
    assert train["tflops_per_image"] / forward == pytest.approx(3.0, rel=0.15)  # backward ≈ 2 × forward
    assert train["paper_a100_hours"] == 32 * 36 and train["a100_hours_at_typical_mfu"] > 0
    sdxl = bench_flops.sdxl()
    optimized = sdxl["published_a100"]["optimized"]
    assert 0 < optimized["mfu"] < 1 and optimized["s_at_same_mfu"]["A100 SXM"] == pytest.approx(2.5)
