"""``s3jedi zoo``: build the tiny models, list what the config points at."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core import zoo
from core.cli_options import ConfigOpt, SetOpt, config_from, fail
from core.paths import s3jedi_home, zoo_dir
from core.zoo.build import is_built

app = typer.Typer(
    help="The model zoo: tiny stand-ins built here, production checkpoints by name.", no_args_is_help=True
)


@app.command("build")
def build_cmd(
    profile: Annotated[str, typer.Option(help="profile to build (only 'tiny' is built locally)")] = "tiny",
    family: Annotated[list[str] | None, typer.Option("--family", "-f", help="only these families")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even if up to date")] = False,
    home: Annotated[Path | None, typer.Option(help="zoo home (default $S3JEDI_HOME)")] = None,
) -> None:
    """Write the tiny models in their libraries' own formats, idempotently, with a checksum manifest."""
    try:
        with Console().status(f"building the {profile} zoo under {zoo_dir(profile, home)} ..."):
            results = zoo.build(profile, family, home=home, force=force)
    except (ValueError, KeyError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    table = Table(title=f"{profile} zoo at {zoo_dir(profile, home)}")
    for col in ("family", "status", "seconds", "size"):
        table.add_column(col, overflow="fold")
    for r in results:
        size = sum(p.stat().st_size for p in r.path.rglob("*") if p.is_file())
        table.add_row(r.family, r.status, f"{r.seconds:.2f}", f"{size / 1e6:.1f} MB")
    Console().print(table)


@app.command("list")
def list_cmd(config: ConfigOpt = "tiny", set_: SetOpt = None) -> None:
    """Every family, its library, its production checkpoint and what the config selects."""
    cfg = config_from(config, set_)
    tiny_root = zoo_dir("tiny", cfg.home)
    table = Table(title=f"model families (config {cfg.profile}, home {cfg.home or s3jedi_home()})")
    for col in ("family", "library", "selected", "production", "tiny built"):
        table.add_column(col, overflow="fold")
    for name, fam in sorted(zoo.all_families().items()):
        table.add_row(
            name, fam.library, getattr(cfg.models, name), fam.production, "yes" if is_built(name, tiny_root) else "no"
        )
    Console().print(table)
