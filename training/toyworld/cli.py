"""``s3jedi toyworld data|train`` (also ``python -m training toyworld ...`` for ``ray job submit``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail

app = typer.Typer(help="ToyWorld: rendered data with an answer key, and the toy JeDi recipe.", no_args_is_help=True)


@app.command("data")
def data_cmd(
    out: Annotated[Path | None, typer.Option(help="data root (default: <toyworld.train.out>/data)")] = None,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Render same-subject sets (S3 Parquet schema) and single captioned images with a Ray Data job."""
    from core import storage
    from core.ray_runtime import init_ray
    from core.toyworld.dataset import write_dataset

    cfg = config_from(config, set_)
    root = str(out) if out is not None else storage.join(cfg.toyworld.train.out, "data")
    try:
        init_ray(cfg.ray)
        summary = write_dataset(root, cfg.toyworld.data, cfg.seed)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps({k: v for k, v in summary.items() if not k.endswith("subjects")}, indent=1))


@app.command("train")
def train_cmd(config: ConfigOpt = "tiny", set_: SetOpt = None) -> None:
    """The full recipe: data, base pipeline (VAE fit), base stage, JeDi stage, ship the checkpoints.
    Rerun with the same settings to resume; finished steps are skipped."""
    from training.toyworld.recipe import run_recipe

    cfg = config_from(config, set_)
    try:
        summary = run_recipe(cfg)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(summary, indent=1, default=str))
