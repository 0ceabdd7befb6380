"""Progress displays: a redrawn bar in a terminal, a few paced log lines elsewhere; a quiet terminal."""

from __future__ import annotations

import io
import logging
import os

import pytest
from rich.console import Console

from core import logs, progress
from core.progress import LogPacer, Progress, duration_text, eta, rate_text


@pytest.fixture
def terminal(monkeypatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(progress, "_console", Console(file=out, force_terminal=True, width=120))
    return out


def test_rates_durations_and_eta_read_naturally():
    assert rate_text(10, 4, "img") == "2.50 img/s"
    assert rate_text(3, 120, "sets") == "1.50 sets/min"
    assert rate_text(0, 5, "img") == "- img/s"
    assert [duration_text(s) for s in (7, 75, 3725, None)] == ["7s", "1m15s", "1h02m05s", "-"]
    assert eta(2, 8, 10.0) == pytest.approx(30.0) and eta(0, 8, 10.0) is None and eta(2, None, 1.0) is None


def test_a_log_line_is_due_at_each_quarter_and_after_a_quiet_minute(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    pacer = LogPacer(total=8, every_s=60)
    due = [pacer.due(done) for done in range(1, 9)]
    assert due == [False, True, False, True, False, True, False, True]
    endless = LogPacer(total=None, every_s=60)
    now[0] = 30.0
    assert not endless.due(5)
    now[0] = 61.0
    assert endless.due(6) and not endless.due(7)


def test_outside_a_terminal_the_bar_is_four_log_lines(caplog, monkeypatch):
    monkeypatch.setattr(progress, "_console", Console(file=io.StringIO(), force_terminal=False))
    with Progress(total=20, desc="generate + score", unit="img") as bar:
        for _ in range(20):
            bar.update()
    records = [r for r in caplog.records if r.name == "s3jedi.progress"]
    assert [r.getMessage() for r in records] == ["generate + score"] * 4
    assert [r.fields["done"] for r in records] == ["5/20", "10/20", "15/20", "20/20"]
    assert records[-1].fields["eta"] == "0s" and records[0].fields["rate"].endswith("img/s")


def test_in_a_terminal_the_bar_shows_counts_rate_and_postfix(terminal):
    assert list(Progress(range(5), desc="fit VAE", unit="step")) == [0, 1, 2, 3, 4]
    bar = Progress(total=3, desc="subjects", unit="subject")
    with bar:
        bar.update(3)
        bar.set_postfix(loss="0.5")
    text = terminal.getvalue()
    assert "fit VAE" in text and "5/5" in text
    assert "subjects" in text and "3/3" in text and "loss=0.5" in text and "subject/" in text


def test_the_quiet_environment_and_the_verbose_switch(monkeypatch):
    monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
    env = logs.library_env()
    assert env["TQDM_DISABLE"] == "1" and env["RAY_DATA_LOG_LEVEL"] == "WARNING" and logs.ray_log_level() == "WARNING"
    monkeypatch.setenv(logs.VERBOSE_ENV, "1")
    assert logs.library_env() == {logs.VERBOSE_ENV: "1"} and logs.ray_log_level() == "INFO"


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_expected_warnings_are_silenced_and_real_ones_kept(monkeypatch):
    monkeypatch.delenv(logs.VERBOSE_ENV, raising=False)
    for key in logs.library_env():
        monkeypatch.delenv(key, raising=False)
    logs.quiet_libraries()
    assert os.environ["TQDM_DISABLE"] == "1"
    auth = logging.getLogger(logs.RAY_AUTH_LOGGER)
    expected = logging.getLogger(next(iter(logs.EXPECTED_WARNINGS)))
    train = logging.getLogger("ray.train.some_module")
    seen = Collect()
    for logger in (auth, expected, train):
        logger.addHandler(seen)
    try:
        auth.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
        auth.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
        expected.warning("Progress bars disabled.")
        train.info("Started training worker group")
        train.warning("a real warning")
    finally:
        for logger in (auth, expected, train):
            logger.removeHandler(seen)
    assert seen.messages == [
        "Token authentication is disabled for this Ray cluster. Anyone with network access ...",
        "a real warning",
    ]
