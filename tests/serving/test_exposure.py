"""Dev mode (no API keys) is decided from where Serve actually listens, not from the config.

Each case runs in its own process with its own Ray, whose Serve proxy is started on 0.0.0.0 first, as
on a cluster that already serves publicly; ``serving.host`` stays 127.0.0.1. No request is sent.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.config.serving import AuthConfig
from serving.auth import KeyRing, check_dev_mode
from serving.demo import free_port
from serving.listeners import Listener
from tests.conftest import REPO

PUBLIC_PROXY = """
import sys
import ray
from ray import serve
ray.init(num_cpus=2, include_dashboard=False, namespace="s3jedi")
serve.start(http_options={"host": "0.0.0.0", "port": int(sys.argv[1])})
"""


def _run(code: str, port: int, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "S3JEDI_API_KEYS")}
    return subprocess.run(
        [sys.executable, "-c", PUBLIC_PROXY + code, str(port)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_dev_mode_decision_reads_the_listeners():
    ring = KeyRing.load(AuthConfig(), {})
    check_dev_mode(ring, "127.0.0.1", [Listener("HTTP", "127.0.0.1", 8000), Listener("HTTP", "::1", 8000)])
    for exposed in (Listener("HTTP", "0.0.0.0", 8000), Listener("gRPC", "::", 9000), Listener("HTTP", "10.0.0.5", 80)):
        with pytest.raises(ValueError, match=f"listens on {exposed.kind}") as info:
            check_dev_mode(ring, "127.0.0.1", [Listener("HTTP", "127.0.0.1", 8000), exposed])
        assert "\n" not in str(info.value) and "api_keys_env" in str(info.value)
    check_dev_mode(KeyRing.load(AuthConfig(), {"S3JEDI_API_KEYS": "k" * 32}), "127.0.0.1", [exposed])


def test_serve_without_keys_refuses_a_proxy_already_on_all_interfaces(zoo_home):
    port = free_port()
    code = f"from serving.cli import main\nsys.argv = ['s3jedi-serve', '--set', 'serving.port={free_port()}']\nmain()\n"
    result = _run(code, port, timeout=240)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert f"HTTP 0.0.0.0:{port}" in errors[0] and "no API keys" in errors[0]
    assert "Traceback" not in result.stderr and "serving on" not in result.stdout


@pytest.mark.slow
def test_a_deployed_gateway_refuses_too(zoo_home):
    """``serve deploy`` of the Serve config file skips ``s3jedi serve``: the gateway replica checks itself."""
    code = (
        "from core.config import load_config\n"
        "from serving.app import application\n"
        "try:\n"
        "    serve.run(application(load_config('tiny')), name='exposed', route_prefix='/')\n"
        "except RuntimeError:\n"
        "    print('DEPLOY FAILED', serve.status().applications['exposed'].deployments['Gateway'].message)\n"
    )
    result = _run(code, free_port(), timeout=400)
    assert "DEPLOY FAILED" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
    assert "no API keys are configured, but the running Serve instance listens on HTTP 0.0.0.0" in result.stdout
