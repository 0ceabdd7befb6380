"""The report explains itself: metric definitions and directions, a warning for tiny random models,
and the generator and backbones as tables rather than JSON."""

from __future__ import annotations

from evaluation.report import write_report

ESTIMATE = {"mean": 0.5, "lo": 0.4, "hi": 0.6, "n": 4}


def report_text(tmp_path, backbone: str) -> str:
    info = {
        "generator": {"model": "/runs/jedi/export", "method": "jedi", "references": 3, "guidance_scale": 3.0},
        "benchmark": "/data/dreambooth",
        "config_hash": "abc",
        "fingerprint_hash": "def",
        "fingerprint": {"scoring": {"backbones": {"clip": backbone, "dino": backbone}}},
        "scorers": {
            "clip": {"model": "/zoo/clip", "library": "open_clip", "preprocess": {"size": 224, "mean": [0.5, 0.5]}},
            "text": "prompt without the special token",
        },
    }
    summary = [
        {"protocol": "prompts", "subject": s, "images": 4, "metrics": {"clip_t": ESTIMATE, "conflict": ESTIMATE}}
        for s in ("all", "dog")
    ]
    return write_report(tmp_path, info, summary, {}, 0.95).read_text()


def test_the_report_defines_each_metric_and_its_better_direction(tmp_path):
    page = report_text(tmp_path, "hf-hub:timm/vit_base_patch32_clip_224.openai")
    assert "<td>CLIP-T ↑</td><td>text alignment" in page and "<td>higher</td>" in page
    assert "conflict rate ↓" in page and "<td>lower</td>" in page
    assert "CLIP-I ↑" not in page.split("<h2>Metrics</h2>")[1].split("<h2>Published")[0]  # only what was scored
    assert "Tiny random models" not in page


def test_tiny_models_get_a_banner_and_settings_are_tables(tmp_path):
    page = report_text(tmp_path, "tiny")
    assert "<strong>Tiny random models</strong> (clip, dino)" in page
    assert "<td>guidance scale</td><td>3</td>" in page and '{"model"' not in page
    assert "<td>clip</td><td>tiny<br><span class=note>/zoo/clip</span></td>" in page
    assert "preprocess: size=224, mean=0.5, 0.5" in page
