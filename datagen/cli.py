"""``s3jedi datagen ...`` / ``python -m datagen ...``: the same command locally and under ``ray job submit``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail

app = typer.Typer(
    help="Build the S3 dataset: LLM subjects → SDXL collages → instances → CLIP filter → backgrounds → styles.",
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def datagen(
    ctx: typer.Context,
    out: Annotated[str | None, typer.Option("--out", "-o", help="output directory or URI; rerun it to resume")] = None,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Build (or resume) an S3 dataset under --out, as configured in datagen.* (see `s3jedi config show`)."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise fail("--out is required (the dataset directory or URI)")
    from datagen.pipeline import build
    from datagen.summary import StageFailedError

    cfg = config_from(config, set_)
    console = Console(stderr=True)
    try:
        result = build(cfg, out, console)
    except (*USER_ERRORS, StageFailedError) as exc:
        raise fail(str(exc), code=1 if isinstance(exc, StageFailedError) else 2) from None
    s = result.summary
    console.print(
        f"[green]S3 dataset[/green] {result.root}: {s['sets']} sets, {s['images']} images "
        f"({s['this_run']['sets']} made by this run in {s['this_run']['wall_s']:.0f}s)",
        soft_wrap=True,  # never break the path
    )
    rebuilt = s["this_run"].get("rebuilt_shards") or {}
    if rebuilt:
        console.print(
            f"[yellow]rebuilt {len(rebuilt)} damaged shard(s)[/yellow]: "
            + "; ".join(f"{name} ({why})" for name, why in rebuilt.items()),
            soft_wrap=True,
        )


@app.command()
def show(
    root: Annotated[str, typer.Argument(help="dataset directory or URI")],
    verify: Annotated[
        bool,
        typer.Option("--verify", help="also check every finished shard against its marker (footer, rows, checksum)"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print summary.json as it is")] = False,
) -> None:
    """Print a dataset's summary: sets, images, per-stage counts and reject reasons (exit 1 if --verify finds damage)."""
    import json

    from core.s3 import read_summary
    from datagen.show import render, verify_shards

    try:
        summary = read_summary(root)
    except FileNotFoundError as exc:
        raise fail(f"{root}: no summary.json ({exc})") from None
    console = Console()
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        try:
            render(root, summary, console)
        except USER_ERRORS as exc:
            raise fail(str(exc)) from None
    if verify and not verify_shards(root, console):
        raise typer.Exit(1)


def main() -> None:
    app()
