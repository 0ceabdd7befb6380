"""The demo page in headless Chromium: upload DreamBooth photos, personalize, see and download the
images; errors reach the user once, naming the field."""

from __future__ import annotations

import pytest

from tests.browser import chromium_page
from tests.serving.conftest import KEYS


@pytest.fixture(scope="module")
def page(served):
    with chromium_page() as page:
        yield page


def test_demo_page_personalizes_uploaded_photos(served, page, photos):
    page.goto(served.url + "/")
    assert page.url == served.url + "/demo/"
    page.wait_for_selector("#error:not([hidden])")  # /v1/models without a key
    assert "401" in page.text_content("#error")

    page.fill("#api-key", KEYS["browser"])
    page.dispatch_event("#api-key", "change")
    page.wait_for_function("document.getElementById('server-info').textContent.includes('up to 3 references')")
    assert page.is_hidden("#examples")  # this server offers no example sets

    page.set_input_files("#references", [str(p) for p in photos[:3]])
    page.wait_for_function("document.querySelectorAll('#previews img').length === 3")
    page.fill("#prompts", "a photo of the dog on the beach\na dog in the snow")
    page.fill("#steps", "2")
    page.fill("#seed", "5")
    page.click("#personalize-button")
    page.wait_for_function("document.querySelectorAll('img.result').length === 2")
    captions = page.locator("#results figcaption span").all_text_contents()
    assert captions == ["a photo of the dog on the beach (seed 5)", "a dog in the snow (seed 6)"]
    links = page.eval_on_selector_all(
        "a.download", "as => as.map(a => [a.download, a.href === a.closest('figure').querySelector('img').src])"
    )
    assert links == [["s3jedi-seed-5.png", True], ["s3jedi-seed-6.png", True]]
    with page.expect_download() as download:
        page.click("a.download >> nth=0")
    assert download.value.suggested_filename == "s3jedi-seed-5.png"
    sizes = page.eval_on_selector_all("img.result", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[64, 64], [64, 64]]
    assert "batch of" in page.text_content("#status")
    assert page.is_hidden("#error")


def test_demo_page_shows_limit_errors_and_generates_with_a_subject(served, page, photos):
    page.set_input_files("#references", [str(p) for p in photos[:4]])
    page.click("#personalize-button")
    page.wait_for_selector("#error:not([hidden])")
    message = page.text_content("#error")
    assert message.startswith("HTTP 422: references: ") and "3" in message
    assert message.count("references") == 1, message  # the field is named once, not repeated

    page.select_option("#subject", "lora-dog")
    page.fill("#generate-prompts", "a {0} {1} in the snow")
    page.click("#generate-button")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#results figcaption span'))"
        ".some(c => c.textContent.startsWith('a <sks> dog in the snow'))"
    )
    assert page.is_hidden("#error")
