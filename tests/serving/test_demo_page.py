"""The demo page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser
is downloaded): upload DreamBooth photos, personalize, see the images; errors reach the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.conftest import KEYS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium package is required for the browser test"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def test_demo_page_personalizes_uploaded_photos(served, page, photos):
    page.goto(served.url + "/")
    assert page.url == served.url + "/demo/"
    page.wait_for_selector("#error:not([hidden])")  # /v1/models without a key
    assert "401" in page.text_content("#error")

    page.fill("#api-key", KEYS["browser"])
    page.dispatch_event("#api-key", "change")
    page.wait_for_function("document.getElementById('server-info').textContent.includes('up to 3 references')")

    page.set_input_files("#references", [str(p) for p in photos[:3]])
    page.wait_for_function("document.querySelectorAll('#previews img').length === 3")
    page.fill("#prompts", "a photo of the dog on the beach\na dog in the snow")
    page.fill("#steps", "2")
    page.fill("#seed", "5")
    page.click("#personalize-button")
    page.wait_for_function("document.querySelectorAll('img.result').length === 2")
    captions = page.locator("#results figcaption").all_text_contents()
    assert captions == ["a photo of the dog on the beach (seed 5)", "a dog in the snow (seed 6)"]
    sizes = page.eval_on_selector_all("img.result", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[64, 64], [64, 64]]
    assert "batch of" in page.text_content("#status")
    assert page.is_hidden("#error")


def test_demo_page_shows_limit_errors_and_generates_with_a_subject(served, page, photos):
    page.set_input_files("#references", [str(p) for p in photos[:4]])
    page.click("#personalize-button")
    page.wait_for_selector("#error:not([hidden])")
    message = page.text_content("#error")
    assert "HTTP 422" in message and "references" in message and "3" in message

    page.select_option("#subject", "lora-dog")
    page.fill("#generate-prompts", "a {0} {1} in the snow")
    page.click("#generate-button")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#results figcaption'))"
        ".some(c => c.textContent.startsWith('a <sks> dog in the snow'))"
    )
    assert page.is_hidden("#error")
