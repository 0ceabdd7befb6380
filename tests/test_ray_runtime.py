"""Joining or starting Ray: the helper every entry point uses."""

from __future__ import annotations

import pytest

from core.cli_options import USER_ERRORS
from core.paths import workdir
from core.ray_runtime import RayStartError, init_ray, ray_address_summary


def test_local_ray_runs_tasks_and_init_is_idempotent(ray_local):
    @ray_local.remote
    def square(x: int) -> int:
        return x * x

    assert ray_local.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    assert init_ray() is not None  # a second call joins the running instance instead of failing
    assert ray_local.available_resources().get("CPU", 0) <= 2


def test_workers_resolve_relative_paths_from_the_drivers_directory_and_stay_quiet(ray_local):
    @ray_local.remote
    def where() -> tuple[str, str | None]:
        import os

        from core import storage

        before = os.getcwd()
        os.chdir("/")  # as Ray Train does with its workers
        try:
            return storage.resolve("runs"), os.environ.get("TQDM_DISABLE")
        finally:
            os.chdir(before)

    assert ray_local.get(where.remote()) == (str(workdir() / "runs"), "1")


def test_address_summary_follows_ray_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert ray_address_summary() == "join ray://head:10001 (RAY_ADDRESS)"
    monkeypatch.delenv("RAY_ADDRESS")
    assert "local" in ray_address_summary()


RAYLET_TIMEOUT = (
    "The current node timed out during startup. This could happen because some of the raylet failed to "
    "startup or the GCS has become overloaded."
)


def _ray_start_failing(monkeypatch, failures: int) -> list[dict]:
    """``ray.init`` raising what Ray raises when its raylet does not register within 30 s (the
    machine under load), ``failures`` times, then starting nothing: the calls it got."""
    import ray

    calls: list[dict] = []

    def init(**kwargs):
        calls.append(kwargs)
        if len(calls) <= failures:
            raise Exception(RAYLET_TIMEOUT)  # Ray raises a bare Exception here (ray/_private/node.py)

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: "context")
    return calls


def test_a_start_up_timeout_is_retried_once(monkeypatch):
    calls = _ray_start_failing(monkeypatch, failures=1)
    assert init_ray() == "context" and len(calls) == 2 and calls[0] == calls[1]


def test_a_start_up_that_times_out_twice_is_one_line_with_the_cause(monkeypatch):
    calls = _ray_start_failing(monkeypatch, failures=2)
    with pytest.raises(RayStartError) as info:
        init_ray()
    message = str(info.value)
    assert len(calls) == 2 and "\n" not in message
    assert "did not register within 30 s" in message and "tried twice" in message and "ray.num_cpus" in message
    assert isinstance(info.value, USER_ERRORS)  # the CLIs print it as their one error line
