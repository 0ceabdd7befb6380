"""Headless Chromium for the browser tests (demo page, evaluation report): Debian's /usr/bin/chromium driven by Playwright (no
browser is downloaded)."""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextmanager
def chromium_page(timeout_ms: int = 60_000):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium package is required for the browser tests (make chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


def result_images(page) -> list[np.ndarray]:
    """The generated images shown on the page, decoded from their data URLs."""
    sources = page.eval_on_selector_all("img.result", "imgs => imgs.map(i => i.src)")
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).convert("RGB")) for s in sources]
