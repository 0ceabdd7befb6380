"""Joining or starting Ray the same way from every entry point.

``RAY_ADDRESS`` (set by ``ray job submit`` and by KubeRay inside a cluster) or ``ray.address`` in the
config means: join that cluster. Otherwise a local Ray is started, sized to this machine, with the
dashboard off and usage stats disabled, because the common local case is a laptop or a CI runner.
"""

from __future__ import annotations

import os

from core.config.runtime import RayConfig


def init_ray(cfg: RayConfig | None = None, **overrides):
    """Connect to the configured cluster or start a local one; idempotent within a process."""
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    cfg = cfg or RayConfig()
    address = os.environ.get("RAY_ADDRESS") or cfg.address
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict = {"namespace": cfg.namespace, "log_to_driver": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(
            num_cpus=cfg.num_cpus or os.cpu_count(),
            include_dashboard=False,
        )
        if cfg.num_gpus is not None:
            kwargs["num_gpus"] = cfg.num_gpus
    kwargs.update(overrides)
    ray.init(**kwargs)
    return ray.get_runtime_context()


def ray_address_summary() -> str:
    """What ``init_ray`` would do, for ``s3jedi doctor``."""
    addr = os.environ.get("RAY_ADDRESS")
    return f"join {addr} (RAY_ADDRESS)" if addr else "start a local Ray (RAY_ADDRESS not set)"
