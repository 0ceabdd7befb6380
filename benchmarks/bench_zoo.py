"""Tiny zoo: build time from nothing, and each tiny model's forward latency on this machine.

Baseline (same run): a fixed 3-layer MLP forward (batch 64, width 512). Ratios = latency / baseline,
which stays comparable across machines of different speed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import timeit
from core import zoo


def _baseline() -> dict[str, float]:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
    )
    x = torch.randn(64, 512)
    with torch.no_grad():
        return timeit(lambda: mlp(x), repeat=20, warmup=3)


def _forwards(home: Path) -> dict[str, callable]:
    image = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8"))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731

    def pipe(name, **kw):
        p = zoo.load(name, "tiny", home=home)
        p.set_progress_bar_config(disable=True)
        return lambda: p(num_inference_steps=2, generator=g(), **kw)

    jedi = zoo.load("jedi", "tiny", home=home)
    jedi.set_progress_bar_config(disable=True)
    clip = zoo.load("clip", "tiny", home=home)
    dino = zoo.load("dino", "tiny", home=home)
    det = zoo.load("detector", "tiny", home=home)
    sam = zoo.load("segmenter", "tiny", home=home)
    llm = zoo.load("llm", "tiny", home=home)
    return {
        "sd (2 steps, 64px)": pipe("sd", prompt="a dog", height=64, width=64),
        "sdxl (2 steps, 64px)": pipe("sdxl", prompt="a dog", height=64, width=64),
        "inpaint (2 steps, 64px)": pipe("inpaint", prompt="a dog", image=image, mask_image=image.convert("L")),
        "pix2pix (2 steps, 64px)": pipe("pix2pix", prompt="make it red", image=image),
        "jedi (2 refs, 2 steps, 64px)": lambda: jedi([image, image], "a dog", num_inference_steps=2, generator=g()),
        "clip image+text": lambda: (clip.encode_images([image]), clip.encode_texts(["a dog"])),
        "dino image": lambda: dino.encode_images([image]),
        "detector": lambda: det.detect(image, "dog", box_threshold=0.0, text_threshold=0.0),
        "segmenter (1 box)": lambda: sam.segment(image, np.array([[8, 8, 40, 40]], dtype=np.float32)),
        "llm (8 new tokens)": lambda: llm.generate(["describe a teapot"], max_new_tokens=8),
    }


def run() -> dict:
    base = _baseline()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        start = time.perf_counter()
        built = zoo.build("tiny", home=home)
        build_s = time.perf_counter() - start
        per_family = {r.family: round(r.seconds, 3) for r in built}
        forwards = {}
        for name, fn in _forwards(home).items():
            t = timeit(fn, repeat=5, warmup=1)
            forwards[name] = {**t, "ratio_to_baseline": t["median_s"] / base["median_s"]}
    print(f"   baseline MLP forward: {base['median_s'] * 1e3:.2f} ms")
    print(f"   zoo build from nothing: {build_s:.1f} s ({build_s / base['median_s']:.0f}x baseline)")
    for name, t in forwards.items():
        print(f"   {name:26s} {t['median_s'] * 1e3:8.1f} ms  {t['ratio_to_baseline']:8.1f}x baseline")
    return {
        "baseline": {"what": "3-layer MLP 512 wide, batch 64", **base},
        "zoo_build_s": build_s,
        "zoo_build_ratio_to_baseline": build_s / base["median_s"],
        "build_s_per_family": per_family,
        "forward": forwards,
    }
