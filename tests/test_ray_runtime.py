"""Joining or starting Ray: the helper every entry point uses."""

from __future__ import annotations

from core.paths import workdir
from core.ray_runtime import init_ray, ray_address_summary


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
