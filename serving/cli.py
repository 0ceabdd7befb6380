"""``s3jedi serve ...`` / ``python -m serving ...``: run the Serve app, or write its Serve config file."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail

app = typer.Typer(
    help=(
        "Serve personalized text-to-image over HTTP with Ray Serve. Without a sub-command: start the app "
        "(local Ray, or the cluster in RAY_ADDRESS) and serve until Ctrl-C."
    ),
    invoke_without_command=True,
    no_args_is_help=False,
)


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a container stop) shuts down as cleanly as Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@app.callback()
def serve_cmd(ctx: typer.Context, config: ConfigOpt = "tiny", set_: SetOpt = None) -> None:
    """Start the serving app and block until Ctrl-C / SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return
    from ray import serve

    from serving.app import start
    from serving.auth import KeyRing

    cfg = config_from(config, set_)
    try:
        typer.echo(KeyRing.load(cfg.serving.auth).describe())
        # The SIGTERM handler goes in once Ray runs (ray.init installs its own, which aborts) and before
        # the deployment: a client can see the app ready while serve.run is still returning.
        url = start(cfg, on_ray_started=_stop_on_sigterm)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.echo("stopping")
        serve.shutdown()
        return
    typer.echo(f"serving on {url} — API docs {url}docs, demo page {url}demo/ (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        serve.shutdown()


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the Serve config YAML")] = Path(
        "serve-config.yaml"
    ),
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Write the Serve config file for `serve deploy` or a RayService's serveConfigV2."""
    from ray.serve.schema import ServeDeploySchema

    from serving.app import serve_config

    cfg = config_from(config, set_)
    try:
        document = serve_config(cfg)
        ServeDeploySchema.model_validate(document)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Ray Serve config written by `s3jedi serve build`; deploy with `serve deploy FILE` or embed it\n"
        "# as a RayService's spec.serveConfigV2. API keys are not here: mount them (serving.auth).\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    typer.echo(f"wrote {out}")


def main() -> None:
    app()
