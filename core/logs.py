"""Structured logging: ``key=value`` lines for people, JSON lines for log collectors; a quiet terminal.

Set ``S3JEDI_LOG_FORMAT=json`` on a cluster so Loki/Cloud Logging can index fields; the default is
readable in a terminal and in ``ray job logs``.

A job's terminal carries the project's own lines and progress displays. The libraries underneath
speak up too: Ray at INFO from the driver and from every worker (forwarded with a ``(pid=...)``
prefix), Ray Data's progress as log lines when the output is not a terminal, tqdm bars from
diffusers/transformers loading a pipeline inside each worker. Unless ``S3JEDI_VERBOSE`` is set
(``s3jedi --verbose``), ``library_env`` switches those off for the driver and, through the Ray
runtime environment, for every worker, and ``quiet_ray_worker`` (the workers' setup hook) keeps Ray
at WARNING and silences the warnings that are expected by construction (``EXPECTED_WARNINGS``).
Ray's own log files keep everything.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time

_CONFIGURED = False
VERBOSE_ENV = "S3JEDI_VERBOSE"
RAY_WORKER_SETUP_HOOK = "core.logs.quiet_ray_worker"
EXPECTED_WARNINGS = {
    # Where the project shows its own progress it switches Ray Data's bars off, and Ray Data warns
    # about exactly that, once per process.
    "ray.data._internal.progress": logging.ERROR,
    # A local Ray starts without the dashboard, so the State API that Ray Train's placement-group
    # cleaner polls every second is absent; the cleaner only matters if a driver dies mid-run.
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": logging.ERROR,
}
RAY_TRAIN_REPORT_LOGGER = ("train", "v2", "_internal", "execution", "context.py")
"""Ray Train logs every ``ray.train.report`` at INFO through a logger named by this file's path, so
outside the ``ray`` logger; the project reports training progress itself."""
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
RAY_AUTH_DEFAULT_NOTICE = "Token authentication is enabled for this Ray cluster"
"""A local Ray turns token authentication on by default and says so at every start; its warning that
authentication is *off* stays."""


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        if self.as_json:
            payload = {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
                **fields,
            }
            return json.dumps(payload, default=str)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{stamp} {record.levelname.lower():5s} {record.name}: {record.getMessage()}" + (
            f" {extra}" if extra else ""
        )


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record: a live progress display (``core.progress``)
    redirects it to print lines above itself."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: str | None = None) -> None:
    global _CONFIGURED
    if _CONFIGURED:
        return
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(os.environ.get("S3JEDI_LOG_FORMAT", "text") == "json"))
    root = logging.getLogger("s3jedi")
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("S3JEDI_LOG_LEVEL", "INFO"))
    root.propagate = False
    _CONFIGURED = True


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false")


def ray_log_level() -> str:
    """Level of Ray's own loggers (driver, Ray Train): WARNING unless verbose."""
    return "INFO" if verbose() else "WARNING"


def library_env() -> dict[str, str]:
    """Environment variables that turn the libraries' progress bars and chatter off (none if verbose).

    Set before the process imports the libraries: tqdm and transformers read them at import.
    """
    if verbose():
        return {VERBOSE_ENV: "1"}
    return {
        "TQDM_DISABLE": "1",  # every tqdm bar: diffusers/transformers loading, "Writing model shards"
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "DIFFUSERS_VERBOSITY": "error",
        "RAY_DATA_LOG_LEVEL": "WARNING",  # Ray Data's execution plans and progress-as-log-lines
    }


def quiet_libraries() -> None:
    """Quiet this process (a driver): the library environment (what the user set wins) and Ray's
    loggers. Call it before the libraries are imported, as the ``s3jedi`` command does."""
    for key, value in library_env().items():
        os.environ.setdefault(key, value)
    quiet_ray_loggers()


def quiet_ray_worker() -> None:
    """The setup hook every Ray worker of a job runs first (``runtime_env["worker_process_setup_hook"]``)."""
    import ray

    # Ray Train's placement-group cleaner looks its cluster up by auto-discovery, which fails with a
    # traceback when several Ray instances run on one machine; a worker knows its own cluster.
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    quiet_ray_loggers()


def quiet_ray_loggers() -> None:
    """Ray's loggers at WARNING (unless verbose), expected warnings off. Ray Serve configures its
    logger when imported, so a driver runs this again once Ray is up (``core.ray_runtime.init_ray``)."""
    if verbose():
        return
    for name in ("ray", "ray.serve", "ray.data"):  # the last two configure their own level when imported
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, level in EXPECTED_WARNINGS.items():
        logging.getLogger(name).setLevel(level)
    ray_spec = importlib.util.find_spec("ray")
    if ray_spec is not None and ray_spec.submodule_search_locations:
        report_logger = os.path.join(ray_spec.submodule_search_locations[0], *RAY_TRAIN_REPORT_LOGGER)
        logging.getLogger(report_logger).setLevel(logging.WARNING)
    auth = logging.getLogger(RAY_AUTH_LOGGER)
    if _drop_auth_default_notice not in auth.filters:
        auth.addFilter(_drop_auth_default_notice)


def _drop_auth_default_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(RAY_AUTH_DEFAULT_NOTICE)


def get_logger(name: str) -> logging.LoggerAdapter:
    """A logger whose calls take fields: ``log.info("built", family="sd", seconds=0.4)``."""
    setup_logging()
    return _FieldsAdapter(logging.getLogger(f"s3jedi.{name}"), {})


class _FieldsAdapter(logging.LoggerAdapter):
    def log(self, level, msg, *args, **fields):  # type: ignore[override]
        if self.isEnabledFor(level):
            self.logger.log(level, msg, *args, extra={"fields": fields}, stacklevel=2)

    def debug(self, msg, *args, **fields):  # type: ignore[override]
        self.log(logging.DEBUG, msg, *args, **fields)

    def info(self, msg, *args, **fields):  # type: ignore[override]
        self.log(logging.INFO, msg, *args, **fields)

    def warning(self, msg, *args, **fields):  # type: ignore[override]
        self.log(logging.WARNING, msg, *args, **fields)

    def error(self, msg, *args, **fields):  # type: ignore[override]
        self.log(logging.ERROR, msg, *args, **fields)
