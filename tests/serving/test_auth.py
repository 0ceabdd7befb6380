"""API keys (env var, secret file, dev mode) and the per-key token bucket."""

from __future__ import annotations

import pytest

from core.config.serving import AuthConfig
from serving.auth import KeyRing, RateLimiter, check_dev_mode
from serving.errors import ApiError

KEY_A = "a" * 32
KEY_B = "b" * 32


def test_keys_from_env_and_file(tmp_path):
    secret = tmp_path / "keys"
    secret.write_text(f"\n{KEY_B}\n\n")
    ring = KeyRing.load(AuthConfig(api_keys_env="MY_KEYS", api_keys_file=secret), {"MY_KEYS": f" {KEY_A} ,"})
    assert not ring.dev_mode and len(ring.digests) == 2
    assert "2 keys" in ring.describe() and KEY_A not in ring.describe()
    id_a = ring.identify(f"Bearer {KEY_A}")
    assert id_a == ring.identify(f"bearer {KEY_A}") and len(id_a) == 8 and id_a not in KEY_A
    assert ring.identify(f"Bearer {KEY_B}") != id_a
    for header in (None, "", KEY_A, f"Basic {KEY_A}", "Bearer ", "Bearer " + "c" * 32):
        with pytest.raises(ApiError) as info:
            ring.identify(header)
        assert info.value.detail.status == 401 and info.value.headers == {"WWW-Authenticate": "Bearer"}


def test_bad_key_sources_are_start_up_errors(tmp_path):
    with pytest.raises(ValueError, match="api_keys_file: .* does not exist"):
        KeyRing.load(AuthConfig(api_keys_file=tmp_path / "missing"), {})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="holds no keys"):
        KeyRing.load(AuthConfig(api_keys_file=tmp_path / "empty"), {})
    with pytest.raises(ValueError, match="shorter than 16"):
        KeyRing.load(AuthConfig(), {"S3JEDI_API_KEYS": "short"})


def test_dev_mode_only_on_loopback():
    ring = KeyRing.load(AuthConfig(), {})
    assert ring.dev_mode and "DEV MODE" in ring.describe()
    # Without keys the rate-limit bucket is the client's address (ports differ per connection, addresses do not).
    assert ring.identify(None, ("127.0.0.1", 50000)) == ring.identify(None, ("127.0.0.1", 50001)) == "client 127.0.0.1"
    assert ring.identify(None, ("::1", 50000)) == "client ::1"
    for host in ("127.0.0.1", "::1", "localhost"):
        check_dev_mode(ring, host)
    for host in ("0.0.0.0", "10.1.2.3", "example.org"):
        with pytest.raises(ValueError, match="serving.host"):
            check_dev_mode(ring, host)
    check_dev_mode(KeyRing.load(AuthConfig(), {"S3JEDI_API_KEYS": KEY_A}), "0.0.0.0")


def test_token_bucket_per_key():
    limiter = RateLimiter(per_minute=60, burst=3)
    for _ in range(3):
        limiter.take("k", now=100.0)
    with pytest.raises(ApiError) as info:
        limiter.take("k", now=100.0)
    assert info.value.detail.status == 429 and info.value.headers == {"Retry-After": "1"}
    limiter.take("other", now=100.0)  # buckets are per key
    limiter.take("k", now=101.0)  # one token back after a second at 60/min
    with pytest.raises(ApiError):
        limiter.take("k", now=101.5)
    for _ in range(3):
        limiter.take("client 127.0.0.1", now=100.0)
    with pytest.raises(ApiError) as info:
        limiter.take("client 127.0.0.1", now=100.0)
    assert "for client 127.0.0.1 (dev mode: one bucket per client address)" in info.value.detail.message
