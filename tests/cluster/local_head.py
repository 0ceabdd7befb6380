"""A private local Ray head for the job-submission tests: ``ray start --head --block`` with token auth.

Other Ray instances may run on the same machine, so nothing here is shared or discovered: every port
is chosen free, the session lives in its own short temporary directory (Ray's socket paths must stay
under 108 characters), the token is written to a file of the test's own and passed by path (never to
``~/.ray``), and shutdown signals only this head's process group, then kills by pid any process still
running from its directory. ``ray stop`` is never used: it stops every Ray on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalHead:
    num_cpus: int = 2
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="s3jr-", dir="/tmp")))
    dashboard_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def token_path(self) -> Path:
        return self.root / "auth_token"

    @property
    def log_path(self) -> Path:
        return self.root / "ray-start.log"

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a client process that should reach this head and nothing else."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "RAY_API"))}
        env.update(RAY_AUTH_TOKEN_PATH=str(self.token_path), **extra)
        return env

    def start(self) -> LocalHead:
        self.token_path.write_text(secrets.token_hex(32))
        env = self.client_env(
            RAY_AUTH_MODE="token",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # stop at once instead of draining for 30 s
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        ports = {
            "port": free_port(),
            "dashboard-port": self.dashboard_port,
            "dashboard-agent-listen-port": free_port(),
            "dashboard-agent-grpc-port": free_port(),
            "runtime-env-agent-port": free_port(),
            "metrics-export-port": free_port(),
            "ray-client-server-port": free_port(),
        }
        cmd = [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            "--object-store-memory=300000000",
            "--disable-usage-stats",
            f"--temp-dir={self.root / 'ray'}",
            *(f"--{name}={port}" for name, port in ports.items()),
        ]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.address}/api/gcs_healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray head did not become healthy in {START_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def leftover_pids(self) -> list[int]:
        """Processes whose command line names this head's private directory (so they are ours)."""
        marker = str(self.root).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids


def run_cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``s3jedi ARGS`` in a fresh process, as a user runs it (exit code, stdout and stderr apart)."""
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
