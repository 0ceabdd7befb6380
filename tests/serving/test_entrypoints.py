"""The entry points as a user runs them, each in its own process with its own Ray (slow: ~1 min each)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from serving.client import Client, images
from serving.demo import free_port
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "S3JEDI_API_KEYS")}
    return env


def test_python_m_serving_serves_until_sigterm(zoo_home, photos):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            "--config",
            "tiny",
            "--set",
            f"serving.port={port}",
            "--set",
            "ray.num_cpus=2",
        ],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        client = Client(f"http://127.0.0.1:{port}")
        client.wait_ready(timeout_s=180)
        reply = client.personalize(photos[:3], ["a photo of the dog on the beach"], steps=2, seed=1)
        assert [im.size for im in images(reply)] == [(64, 64)]
        # /readyz can answer before the command has printed its address (serve.run still returning).
        deadline = time.monotonic() + 60
        while not any("serving on" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        reader.join(timeout=30)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "DEV MODE" in output and f"serving on http://127.0.0.1:{port}/" in output and "stopping" in output


def test_serving_demo_step(zoo_home, dreambooth, tmp_path):
    code = (
        "import json, sys; from pathlib import Path; from core.config import load_config; "
        "from serving.demo import run_serving_demo; "
        "print(json.dumps(run_serving_demo(load_config('tiny', ['ray.num_cpus=2']), Path(sys.argv[1]), Path(sys.argv[2]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(dreambooth / "images" / "dog"), str(tmp_path)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["references"] == ["00.jpg", "01.jpg", "02.jpg"] and summary["seeds"] == [0, 1]
    assert all((tmp_path / f"served-{i}.png").is_file() for i in range(2))
