"""The report of a run with several methods, from per-image scores with known answers: a table per
protocol with intervals, paired differences from the reference, cost columns, the published anchors
marked as published, and the settings as tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.config import load_config
from evaluation.report import write_report
from evaluation.summary import summarize_run

METHODS = ["jedi", "base", "dreambooth"]
SCORES = ["clip_t", "clip_i", "mclip_i", "dino", "mdino"]


def scored_frame() -> pd.DataFrame:
    """2 subjects × 2 prompts × 2 seeds per method; DreamBooth scores JeDi's CLIP-I + 0.05 on every case."""
    rng = np.random.default_rng(0)
    cases = [(s, p, seed) for s in ("cat", "dog") for p in ("p00", "p01") for seed in (0, 1)]
    jedi = rng.uniform(0.3, 0.9, size=(len(cases), len(SCORES)))
    shift = {"jedi": 0.0, "base": -0.2, "dreambooth": 0.05}
    rows = []
    for method in METHODS:
        for (subject, prompt_id, seed), values in zip(cases, jedi, strict=True):
            rows.append(
                {
                    "id": f"{method}/{subject}/{prompt_id}/{seed}",
                    "case": f"{subject}/{prompt_id}/{seed}",
                    "method": method,
                    "subject": subject,
                    "prompt_id": prompt_id,
                    "template": "a {0} {1} wearing a hat" if prompt_id == "p01" else "a {0} {1} in the snow",
                    "sample": seed,
                    "seed": seed,
                    "generation_s": 0.5 if method == "jedi" else 0.25,
                    **dict(zip(SCORES, values + shift[method], strict=True)),
                }
            )
    return pd.DataFrame(rows)


FINETUNING = {
    ("dreambooth", s): {
        "method": "dreambooth",
        "subject": s,
        "subject_id": f"{s}-dreambooth",
        "status": "done",
        "seconds": 30.0,
        "gpu_seconds": 0.0,
        "error": None,
    }
    for s in ("cat", "dog")
}


def run_info(backbone: str) -> dict:
    return {
        "generators": {
            "jedi": {"model": "/runs/jedi/export", "references": 3, "guidance_scale": 3.0},
            "base": {"model": "sd14"},
            "dreambooth": {"method": "dreambooth", "training": {"base_model": "sd14", "plan": {"steps": 400}}},
        },
        "benchmark": "/data/dreambooth",
        "subjects": ["cat", "dog"],
        "config_hash": "abc",
        "fingerprint_hash": "def",
        "finished": "2026-01-01 00:00:00",
        "fingerprint": {"scoring": {"backbones": {"clip": backbone, "dino": backbone}}},
        "scorers": {
            "clip": {"model": "/zoo/clip", "library": "open_clip", "preprocess": {"size": 224, "mean": [0.5, 0.5]}},
            "text": "prompt without the special token",
        },
    }


@pytest.fixture(scope="module")
def summary():
    cfg = load_config(
        "tiny",
        [f"evaluation.methods={json.dumps(METHODS)}", 'evaluation.protocols=["dreambooth", "core"]'],
    )
    return summarize_run(cfg, scored_frame(), METHODS, FINETUNING)


def test_paired_differences_and_costs_per_method(summary):
    dreambooth, core = summary["protocols"]
    diff = dreambooth["differences"]["dreambooth"]["clip_i"]
    assert diff["paired"] and diff["mean"] == pytest.approx(0.05) and diff["lo"] == pytest.approx(0.05)
    assert dreambooth["differences"]["base"]["clip_t"]["mean"] == pytest.approx(-0.2)
    assert "jedi" not in dreambooth["differences"], "the reference is not compared with itself"
    # paper 003's protocol leaves the outfit prompt (p01) out of the identity scores only
    overall = {r["method"]: r for r in core["rows"] if r["subject"] == "all"}
    assert overall["jedi"]["metrics"]["mclip_i"]["n"] == 4 and overall["jedi"]["metrics"]["clip_t"]["n"] == 8
    assert summary["costs"]["dreambooth"] == {
        "finetune_s": 30.0,
        "finetune_gpu_s": 0.0,
        "s_per_image": 0.25,
        "first_image_s": 30.25,
    }
    assert summary["costs"]["jedi"]["first_image_s"] == 0.5


def test_the_report_has_a_table_per_protocol_with_costs_and_published_anchors(summary, tmp_path):
    page = write_report(tmp_path, run_info("hf-hub:timm/vit_base_patch32_clip_224.openai"), summary, {}).read_text()
    assert "Protocol dreambooth" in page and "Protocol core" in page
    assert "JeDi (reference)" in page and "Paired differences from JeDi" in page
    assert "+0.0500 [+0.0500, +0.0500] *" in page, "DreamBooth's constant CLIP-I gain, significant"
    assert "time to first image, s" in page and "<td>30.2</td>" in page
    assert "Published, not measured here: Stable Diffusion 1.4" in page and "0.9011" in page
    assert "<td>higher</td>" in page and "Tiny random models" not in page
    markdown = (tmp_path / "report.md").read_text()
    assert "| DreamBooth |" in markdown or "| DreamBooth" in markdown
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["summary"]["reference"] == "jedi" and {p["protocol"] for p in data["published"]} == {
        "dreambooth",
        "core",
    }


def test_tiny_models_get_a_banner_and_settings_are_tables(summary, tmp_path):
    page = write_report(tmp_path, run_info("tiny"), summary, {}).read_text()
    assert "Tiny random models (clip, dino)" in page
    assert "<td>guidance scale</td><td>3</td>" in page and '{"model"' not in page
    assert "preprocess: size=224, mean=0.5, 0.5" in page
