"""Fine-tuned subjects over HTTP are drawn through the one subject contract (``core.subject_pipeline``):
a CoRe subject gets its test-time optimization, and a subject published by an earlier version is served.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core import zoo
from core.subject_pipeline import SubjectPipeline
from serving.models import to_uint8
from tests.serving.adapters import make_ti_subject
from tests.serving.test_api import decode, post

EARLIER = Path(__file__).resolve().parent.parent / "fixtures" / "subjects"
"""Subjects as an earlier version published them (``dog-ti``: textual inversion, token ``<legacy>``)."""


@pytest.fixture
def store(served):
    """The served store, with what a test publishes into it removed afterwards (other tests list it)."""
    before = set(p.name for p in served.store.iterdir())
    yield served.store
    for path in served.store.iterdir():
        if path.name not in before:
            shutil.rmtree(path)


def test_a_core_subject_over_http_runs_its_test_time_optimization(served, store, tiny_sd_pipe):
    make_ti_subject(store, "core-dog", tiny_sd_pipe, method="core", word_norm=True)
    body = {"prompts": ["a photo of {0} on the beach"], "seed": 5, "steps": 2, "subject_id": "core-dog"}
    reply = post(served, "/v1/generate", body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["tto_steps"] == served.cfg.finetune.core.tto_steps == 10
    assert data["images"][0]["prompt"] == "a photo of <sks> on the beach"
    assert post(served, "/v1/generate", {**body, "subject_id": "ti-dog"}).json()["tto_steps"] == 0

    p = data["parameters"]
    local = SubjectPipeline.load(store / "core-dog", zoo.load("sd", "tiny"))

    def draw(tto_steps: int | None) -> np.ndarray:
        drawing = local.draw(
            body["prompts"],
            [5],
            settings=served.cfg.finetune,
            steps=2,
            guidance_scale=p["guidance_scale"],
            height=p["height"],
            width=p["width"],
            tto_steps=tto_steps,
            output_type="np",
        )
        return to_uint8(np.stack(drawing.images))[0]

    over_http = decode(data)[0].astype(int)
    assert np.abs(over_http - draw(None).astype(int)).max() <= 2, "served as the contract draws it"
    assert np.abs(over_http - draw(0).astype(int)).max() > 2, "the optimization changed the image"


def test_a_subject_published_by_an_earlier_version_is_served(served, store):
    shutil.copytree(EARLIER / "dog-ti", store / "dog-ti")
    reply = post(
        served, "/v1/generate", {"prompts": ["a photo of {0} on the beach"], "steps": 2, "subject_id": "dog-ti"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["images"][0]["prompt"] == "a photo of <legacy> on the beach"
    assert decode(reply.json())[0].shape == (64, 64, 3)
