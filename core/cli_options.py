"""Options shared by every command that reads a config, and the one error path.

They live in ``core`` because each app's own entry point (``python -m datagen ...``, what
``ray job submit`` runs) uses them as well as the ``s3jedi`` CLI in ``cluster``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from core.config import ConfigError, S3JediConfig, load_config
from core.ray_runtime import RayStartError
from core.zoo import ZooError

ConfigOpt = Annotated[
    str,
    typer.Option(
        "--config",
        "-c",
        help="profile name in configs/ (tiny, sd14, sdxl) or a YAML path; relative paths in a config are taken "
        "from the current directory (files s3jedi ships, such as assets/... or ../shared/..., from the "
        "installation if not there)",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a field: --set ray.num_cpus=2 (repeatable)"),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def config_from(config: str, overrides: list[str] | None) -> S3JediConfig:
    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        raise fail(str(exc)) from None


USER_ERRORS = (ConfigError, ZooError, ValueError, FileNotFoundError, RayStartError)
