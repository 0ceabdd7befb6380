from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import load_config
from evaluation.store import RunStore
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import REPO

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


def kill_at_first_checkpoint(command: list[str], out: Path, settings: list[str], limit_s: float) -> set[str]:
    """Run ``python -m <command> --out OUT --set ...`` and kill it, driver and the local Ray it started,
    once its first scored batch is checkpointed; returns the ids it had scored."""
    args = [sys.executable, "-m", *command, "--out", str(out)]
    for assignment in settings:
        args += ["--set", assignment]
    # Its own session, so the kill takes the driver and the local Ray it started, nothing else.
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    store = RunStore(out)
    deadline = time.monotonic() + limit_s
    try:
        while not list(store.parts.glob("part-*.parquet")):
            assert proc.poll() is None, f"the run ended before writing a part: {proc.stderr.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, f"no scored batch within {limit_s:.0f} s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return store.done_ids()
