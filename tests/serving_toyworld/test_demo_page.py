"""The demo page shows real personalization: with the ToyWorld checkpoints, a visitor picks a novel
subject's renders as references, and the images that come back show that subject in scenes the prompts
name (which never name the subject); the ToyWorld oracle reads it back. A seed read off the page
reproduces its image through the API."""

from __future__ import annotations

import re

import httpx
import numpy as np

from core.toyworld.oracle import read
from core.toyworld.world import novel_subjects
from tests.browser import chromium_page, result_images


def test_novel_subject_references_personalize_in_the_browser(toy_served):
    subject = novel_subjects()[0]
    examples = httpx.get(f"{toy_served.url}/v1/examples", timeout=30).json()["examples"]
    assert [e["name"] for e in examples] == [s.name for s in novel_subjects()]
    example = examples[0]
    with chromium_page() as page:
        page.goto(toy_served.url + "/demo/")
        page.wait_for_selector("#examples:not([hidden])")
        page.select_option("#example", label=subject.name)
        page.wait_for_function("document.querySelectorAll('#previews img').length === 3")
        assert page.input_value("#prompts").splitlines() == example["prompts"]
        page.click("#personalize-button")
        page.wait_for_function("document.querySelectorAll('img.result').length === 3", timeout=240_000)
        assert page.is_hidden("#error")
        images = result_images(page)
        captions = page.locator("#results figcaption span").all_text_contents()

    # The server's own previews are the references it sent: the example's renders, 16 px.
    assert [im.shape for im in images] == [(16, 16, 3)] * 3
    readings = [read(im) for im in images]
    scenes = [p.removeprefix("a thing on the ") for p in example["prompts"]]
    assert [r.scene for r in readings] == scenes, readings  # the prompted scenes, not the references'
    assert all(r.colour == subject.colour for r in readings), readings
    assert sum(r.is_subject(subject) for r in readings) >= 2, readings  # shape too (JeDi-3: 0.65–0.73)

    seeds = [int(re.search(r"\(seed (\d+)\)$", c).group(1)) for c in captions]
    assert seeds == [seeds[0] + k for k in range(3)] and seeds[0] < 2**53
    again = httpx.post(
        f"{toy_served.url}/v1/personalize",
        json={
            "references": [{"image": r} for r in example["references"]],
            "prompts": example["prompts"],
            "seed": seeds[0],
        },
        timeout=240,
    )
    assert again.status_code == 200, again.text
    from tests.serving.test_api import decode

    for shown, reproduced in zip(images, decode(again.json()), strict=True):
        assert np.abs(shown.astype(int) - reproduced.astype(int)).max() <= 1
