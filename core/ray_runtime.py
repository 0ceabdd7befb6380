"""Joining or starting Ray the same way from every entry point.

``RAY_ADDRESS`` (set by ``ray job submit`` and by KubeRay inside a cluster) or ``ray.address`` in the
config means: join that cluster. Otherwise a local Ray is started, sized to this machine, with the
dashboard off and usage stats disabled, because the common local case is a laptop or a CI runner.
Its workers get the quiet library environment of ``core.logs`` (a submitted job gets it from its
runtime environment); every worker gets the driver's working directory (``core.paths.workdir``).
"""

from __future__ import annotations

import os

from core.config.runtime import RayConfig
from core.logs import RAY_WORKER_SETUP_HOOK, get_logger, library_env, quiet_ray_loggers, ray_log_level
from core.paths import WORKDIR_ENV, workdir

log = get_logger("ray_runtime")
START_ATTEMPTS = 2
RAYLET_TIMEOUT = "timed out during startup"
"""How Ray says that a new local node's raylet did not register with its GCS within its fixed 30 s
(``ray/_private/node.py``): seen on a machine under load, and usually gone on a second try."""


class RayStartError(RuntimeError):
    """Ray could not be started; the message is one line with the cause and what to do."""


def init_ray(cfg: RayConfig | None = None, **overrides):
    """Connect to the configured cluster or start a local one; idempotent within a process."""
    import ray

    if ray.is_initialized():
        quiet_ray_loggers()  # libraries imported since (Ray Serve) configured their loggers at INFO
        return ray.get_runtime_context()
    cfg = cfg or RayConfig()
    address = os.environ.get("RAY_ADDRESS") or cfg.address
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ[WORKDIR_ENV] = str(workdir())  # relative config paths keep meaning this directory
    env_vars = {WORKDIR_ENV: os.environ[WORKDIR_ENV]}
    kwargs: dict = {"namespace": cfg.namespace, "log_to_driver": True, "logging_level": ray_log_level()}
    if address:
        kwargs.update(address=address, runtime_env={"env_vars": env_vars})  # merged with a job's own
    else:
        kwargs.update(
            num_cpus=cfg.num_cpus or os.cpu_count(),
            include_dashboard=False,
            runtime_env={
                "env_vars": {**library_env(), **env_vars},
                "worker_process_setup_hook": RAY_WORKER_SETUP_HOOK,
            },
        )
        if cfg.num_gpus is not None:
            kwargs["num_gpus"] = cfg.num_gpus
    kwargs.update(overrides)
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(**kwargs)
            break
        except Exception as exc:  # Ray raises a bare Exception for this one
            if RAYLET_TIMEOUT not in str(exc):
                raise
            if attempt == START_ATTEMPTS:
                raise RayStartError(
                    f"ray: the local Ray's raylet did not register within 30 s (tried twice), which happens "
                    f"when the machine is overloaded; retry when it is less busy, or start fewer workers "
                    f"(--set ray.num_cpus=N, now {kwargs.get('num_cpus', 'auto')})"
                ) from None
            log.warning("Ray start-up timed out (the machine is busy); retrying once")
    quiet_ray_loggers()
    return ray.get_runtime_context()


def ray_address_summary() -> str:
    """What ``init_ray`` would do, for ``s3jedi doctor``."""
    addr = os.environ.get("RAY_ADDRESS")
    return f"join {addr} (RAY_ADDRESS)" if addr else "start a local Ray (RAY_ADDRESS not set)"
