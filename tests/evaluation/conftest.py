from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_config
from tests.browser import CHROMIUM, CHROMIUM_ARGS

TINY_RUN = [
    "evaluation.selection.subjects=[dog, cat]",
    "evaluation.selection.prompts=2",
    "evaluation.selection.samples=2",
]
"""The tiny end-to-end run: 2 subjects × 2 prompts × 2 samples (the tiny profile's 64 px, 2 steps)."""


def tiny_config(*overrides: str):
    return load_config("tiny", [*TINY_RUN, *overrides])


def render(page_path: Path) -> dict:
    """Open a page in headless Chromium (Debian's, never a downloaded one) and report what rendered."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            return {
                "title": page.title(),
                "tables": page.locator("table").count(),
                "text": page.inner_text("body"),
                "images": page.evaluate(
                    "Array.from(document.images).map(i => ({src: i.getAttribute('src'), w: i.naturalWidth}))"
                ),
                "screenshot": page.screenshot(full_page=True),
                "errors": errors,
            }
        finally:
            browser.close()


@pytest.fixture(scope="module")
def jedi_run(zoo_home, ray_local, tmp_path_factory):
    """The tiny JeDi run, made once per module."""
    from evaluation.job import run_evaluation

    out = tmp_path_factory.mktemp("eval") / "jedi"
    return run_evaluation(tiny_config(), out)
