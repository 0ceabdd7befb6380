"""Bearer API keys and a per-key rate limit.

Keys come from an environment variable (comma-separated) and/or a file with one key per line — the
shape of a Kubernetes secret mounted as a volume — never from YAML, so a config file or a RayService
manifest can be shared without leaking them. Keys are kept only as SHA-256 digests and compared in
constant time; logs and metrics see an 8-character key id (a digest prefix), never the key.

With no key configured the server runs in **dev mode**: no authentication, which is only allowed when
every listener of the running Serve instance is on a loopback address (``check_dev_mode``, with the
listeners in force from ``serving.listeners``), and is stated at start-up. Rate-limit buckets are then
per client address instead of per key: every local process calling from 127.0.0.1 shares one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.config.serving import AuthConfig
from serving.errors import ApiError
from serving.listeners import Listener

DEV_CLIENT_PREFIX = "client "


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class KeyRing:
    digests: tuple[bytes, ...]
    sources: tuple[str, ...]

    @classmethod
    def load(cls, auth: AuthConfig, environ: Mapping[str, str] | None = None) -> KeyRing:
        environ = os.environ if environ is None else environ
        keys: list[str] = []
        sources: list[str] = []
        from_env = [k.strip() for k in environ.get(auth.api_keys_env, "").split(",") if k.strip()]
        if from_env:
            keys += from_env
            sources.append(f"${auth.api_keys_env} ({len(from_env)})")
        if auth.api_keys_file is not None:
            path = auth.api_keys_file.expanduser()
            if not path.is_file():
                raise ValueError(f"serving.auth.api_keys_file: {path} does not exist")
            from_file = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if not from_file:
                raise ValueError(f"serving.auth.api_keys_file: {path} holds no keys")
            keys += from_file
            sources.append(f"{path} ({len(from_file)})")
        short = [k for k in keys if len(k) < 16]
        if short:
            raise ValueError(f"serving.auth: {len(short)} API key(s) shorter than 16 characters; use long random keys")
        return cls(tuple(dict.fromkeys(_digest(k) for k in keys)), tuple(sources))

    @property
    def dev_mode(self) -> bool:
        return not self.digests

    def describe(self) -> str:
        if self.dev_mode:
            return "auth: DEV MODE, no API keys configured; every request is accepted (loopback only)"
        return f"auth: bearer API keys required ({len(self.digests)} keys from {', '.join(self.sources)})"

    def identify(self, authorization: str | None, client: tuple[str, int] | None = None) -> str:
        """The rate-limit identity of a request: the key id for its ``Authorization`` header (401 if it
        is missing or wrong), or in dev mode its client address (``client``: the ASGI scope's)."""
        if self.dev_mode:
            return DEV_CLIENT_PREFIX + (client[0] if client else "unknown")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "authorization",
                "authorization: send 'Authorization: Bearer <API key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = _digest(token.strip())
        matched = False
        for known in self.digests:  # no early exit: the time taken does not depend on which key matched
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise ApiError(
                401, "authorization", "authorization: unknown API key", headers={"WWW-Authenticate": "Bearer"}
            )
        return digest.hex()[:8]


def check_dev_mode(keys: KeyRing, host: str, listeners: list[Listener] | None = None) -> None:
    """Refuse to serve without keys where anything but this machine could connect: ``host`` (the
    configured bind) and, once Serve runs, ``listeners`` (the binds in force) must all be loopback."""
    if not keys.dev_mode:
        return
    exposed = [str(x) for x in (listeners or []) if not x.loopback]
    if not Listener("HTTP", host, 0).loopback:
        raise ValueError(
            f"serving.host: {host} is not a loopback address and no API keys are configured "
            f"(serving.auth.api_keys_env / api_keys_file); dev mode is only allowed on 127.0.0.1"
        )
    if exposed:
        raise ValueError(
            f"serving.auth: no API keys are configured, but the running Serve instance listens on "
            f"{', '.join(exposed)}, beyond loopback; configure keys (serving.auth.api_keys_env / api_keys_file) "
            "or serve from a Ray cluster whose Serve binds 127.0.0.1"
        )


@dataclass
class RateLimiter:
    """Token bucket per key: ``burst`` requests at once, refilled at ``per_minute``. Per replica, so
    the cluster-wide limit is this times the number of gateway replicas."""

    per_minute: int
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key_id: str, now: float | None = None) -> None:
        """One request of ``key_id`` (a key id, or ``client <address>`` in dev mode); 429 when over."""
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / rate)
                who = (
                    f"for {key_id} (dev mode: one bucket per client address)"
                    if key_id.startswith(DEV_CLIENT_PREFIX)
                    else "for this API key"
                )
                raise ApiError(
                    429,
                    "authorization",
                    f"authorization: rate limit exceeded, more than rate_limit_per_minute {self.per_minute} "
                    f"(burst {self.burst}) {who}; retry in {wait} s",
                    limit=self.per_minute,
                    headers={"Retry-After": str(wait)},
                )
            self._buckets[key_id] = (tokens - 1.0, now)
