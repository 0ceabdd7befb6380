"""Structured logging: ``key=value`` lines for people, JSON lines for log collectors.

Set ``S3JEDI_LOG_FORMAT=json`` on a cluster so Loki/Cloud Logging can index fields; the default is
readable in a terminal and in ``ray job logs``.
"""

from __future__ import annotations

import json
import logging
import os
import time

_CONFIGURED = False


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


def setup_logging(level: str | None = None) -> None:
    global _CONFIGURED
    if _CONFIGURED:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter(os.environ.get("S3JEDI_LOG_FORMAT", "text") == "json"))
    root = logging.getLogger("s3jedi")
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("S3JEDI_LOG_LEVEL", "INFO"))
    root.propagate = False
    _CONFIGURED = True


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
