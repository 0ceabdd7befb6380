"""``s3jedi train ...`` / ``python -m training ...``: the same commands locally and under ``ray job submit``."""

from __future__ import annotations

import json

import typer

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail
from training.finetune import cli as finetune_cli
from training.multiconcept import cli as multiconcept_cli
from training.selfdistill import cli as selfdistill_cli
from training.toyworld import cli as toyworld_cli

app = typer.Typer(help="Train models on Ray Train (JeDi; precomputed latents).", no_args_is_help=True)
app.add_typer(finetune_cli.app, name="finetune")
app.add_typer(selfdistill_cli.app, name="selfdistill")
app.add_typer(multiconcept_cli.app, name="multiconcept")
app.add_typer(toyworld_cli.app, name="toyworld")


@app.command("jedi")
def jedi_cmd(config: ConfigOpt = "tiny", set_: SetOpt = None) -> None:
    """Train JeDi (train.jedi.*); rerun with the same run name to resume from the latest checkpoint."""
    from training.jedi.recipe import fit

    cfg = config_from(config, set_)
    try:
        outcome = fit(cfg)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    typer.echo(
        json.dumps(
            {
                "run_dir": outcome.run_dir,
                "export": outcome.export_dir,
                "checkpoint": outcome.checkpoint,
                "metrics": outcome.metrics,
            },
            indent=1,
            default=str,
        )
    )


@app.command("precompute-latents")
def precompute_cmd(
    out: str = typer.Option(..., help="output directory or URI (Parquet); train on it with a `latents` source"),
    actors: int = typer.Option(1, min=1, help="VAE encoder actors (one GPU each when scaling.use_gpu)"),
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Encode the configured training sources with the VAE once (a Ray Data job)."""
    from training.jedi.precompute import precompute_latents

    cfg = config_from(config, set_)
    try:
        summary = precompute_latents(cfg, out, actors)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(summary.__dict__, indent=1))


def main() -> None:
    app()
