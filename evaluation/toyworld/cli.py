"""``s3jedi toyworld eval|demo``: ``demo`` is this app's command; ``eval`` is built by ``eval_command``
and registered by ``cluster``, which passes it training's fine-tuning of the novel subjects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail
from core.config.jedi import sampling_overrides
from evaluation.toyworld.finetuned import Finetuner

app = typer.Typer(help="ToyWorld experiment: JeDi vs its ablations on novel subjects.", no_args_is_help=True)


def eval_command(finetuner: Finetuner | None = None):
    """The ``eval`` command; ``finetuner`` fine-tunes the subjects of the fine-tuning rows (training's,
    passed in by ``cluster``: evaluation may not import training)."""

    def eval_cmd(
        trials: Annotated[
            int | None, typer.Option(min=1, help="seeds per novel subject (toyworld.eval.trials)")
        ] = None,
        out: Annotated[Path | None, typer.Option(help="report directory (toyworld.eval.out)")] = None,
        config: ConfigOpt = "tiny",
        set_: SetOpt = None,
    ) -> None:
        """Generate and score every condition on the novel subjects; write report.md/.html, grids, results.json."""
        from evaluation.toyworld.experiment import run_experiment
        from evaluation.toyworld.report import MAIN_HEADER, main_table, write_report

        extra = [f"toyworld.eval.trials={trials}"] if trials is not None else []
        extra += [f"toyworld.eval.out={json.dumps(str(out))}"] if out is not None else []
        cfg = config_from(config, [*extra, *(set_ or [])])
        from core import storage

        try:
            result = run_experiment(cfg, finetuner)
            report = write_report(cfg, result, storage.local_path(cfg.toyworld.eval.out))
        except USER_ERRORS as exc:
            raise fail(str(exc)) from None
        table = Table(title=f"ToyWorld, {len(result.trials)} {result.split} trials (95% CI)")
        for column in MAIN_HEADER:
            table.add_column(column, justify="left" if column == "method" else "right")
        for row in main_table(result):
            table.add_row(*row)
        Console().print(table)
        Console().print(f"report: {report}")

    return eval_cmd


@app.command("demo")
def demo_cmd(
    subject: Annotated[
        str | None, typer.Option(help="'colour shape', e.g. 'red square' (default: a novel subject)")
    ] = None,
    references: Annotated[int, typer.Option(min=1, help="reference images")] = 2,
    guidance: Annotated[
        str | None, typer.Option(help="paper, paper-unknown or decomposed (toyworld.eval.guidance)")
    ] = None,
    image_guidance: Annotated[
        float | None, typer.Option(help="image guidance λ (toyworld.eval.image_guidance_scale)")
    ] = None,
    joint_targets: Annotated[
        bool | None, typer.Option(help="draw the new scenes together in shared sets (toyworld.eval.joint_targets)")
    ] = None,
    out: Annotated[Path, typer.Option(help="where the grid goes")] = Path("outputs/toyworld/demo"),
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """References of a novel subject in, the subject in the other scenes out; prints the oracle's reading."""
    from core.toyworld.dataset import subject_of
    from evaluation.toyworld.demo import run_demo

    extra = sampling_overrides("toyworld.eval", guidance, image_guidance, joint_targets)
    cfg = config_from(config, [*extra, *(set_ or [])])
    try:
        summary = run_demo(cfg, subject_of(subject) if subject else None, references, out)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    Console().print_json(json.dumps(summary))
