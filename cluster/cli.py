"""The ``s3jedi`` command line. Every sub-command has ``--help``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cluster import eval_training, manifests, submit, toyworld_cli, zoo_cli
from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail
from core.config import to_yaml
from core.logs import VERBOSE_ENV, quiet_libraries
from core.paths import REPO_ROOT
from datagen import cli as datagen_cli
from evaluation import cli as evaluation_cli
from serving import cli as serving_cli
from training import cli as training_cli
from training.finetune import cli as finetune_cli
from training.multiconcept import cli as multiconcept_cli
from training.selfdistill import cli as selfdistill_cli

app = typer.Typer(
    help="s3jedi: build same-subject image sets (S3), train JeDi, serve personalized text-to-image.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(zoo_cli.app, name="zoo")
app.add_typer(datagen_cli.app, name="datagen")
app.add_typer(evaluation_cli.make_app(eval_training.train_subjects), name="eval")
app.add_typer(training_cli.app, name="train")
app.add_typer(finetune_cli.app, name="finetune")
app.add_typer(selfdistill_cli.app, name="selfdistill")
app.add_typer(multiconcept_cli.app, name="multiconcept")
app.add_typer(serving_cli.app, name="serve")
app.add_typer(submit.app, name="submit")
app.add_typer(manifests.app, name="manifests")
app.add_typer(toyworld_cli.app, name="toyworld")


@app.callback()
def options(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="keep every library's output: Ray at INFO from driver and workers, Ray Data's progress log, "
            "tqdm bars of model loading (otherwise off; Ray's log files keep everything)",
        ),
    ] = False,
) -> None:
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    quiet_libraries()


config_app = typer.Typer(help="Inspect configuration profiles.", no_args_is_help=True)
app.add_typer(config_app, name="config")
DEFAULT_REFERENCES = REPO_ROOT.parent / "shared" / "dreambooth" / "images" / "dog"


@config_app.command("show")
def config_show(config: ConfigOpt = "tiny", set_: SetOpt = None) -> None:
    """Print the resolved config (profile + overrides, validated) as YAML."""
    typer.echo(to_yaml(config_from(config, set_)), nl=False)


@app.command()
def doctor(
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Versions of torch/CUDA/Ray/diffusers, GPUs seen, which models are present, the Ray address."""
    from cluster.doctor import report

    rep = report(config_from(config, set_))
    if as_json:
        typer.echo(json.dumps(rep, indent=1))
        return
    for section, rows in rep.items():
        table = Table(title=section, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for k, v in rows.items():
            table.add_row(k, v)
        Console().print(table)


@app.command()
def demo(
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("outputs/demo"),
    references: Annotated[Path, typer.Option(help="folder of reference photos of one subject")] = DEFAULT_REFERENCES,
    train_steps: Annotated[int, typer.Option(min=1, help="JeDi training steps")] = 10,
) -> None:
    """Run the main job end to end on the tiny default (see README for what it does today)."""
    from cluster.demo import run_demo, summary_lines

    cfg = config_from(config, set_)
    try:
        summary = run_demo(cfg, out, references, train_steps)
    except (*USER_ERRORS, RuntimeError) as exc:
        raise fail(str(exc)) from None
    typer.echo("\n".join(summary_lines(summary)))
    typer.secho(f"demo finished: outputs in {out} (demo-summary.json has every number)", fg=typer.colors.GREEN)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
