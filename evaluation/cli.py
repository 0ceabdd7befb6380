"""``s3jedi eval`` / ``python -m evaluation``: run the benchmark, or compare two runs.

The run options are shorthands for ``--set evaluation.…`` overrides, so the resolved config saved
with the run records them like any other setting.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail
from core.config.jedi import sampling_overrides
from evaluation.metric_info import ALL, LABELS

app = typer.Typer(
    help="The DreamBooth benchmark (CLIP-T, CLIP-I, DINO, masked variants) as a Ray job; `compare` diffs two runs.",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
)


def _overrides(
    method: str | None,
    refs: int | None,
    subjects: list[str] | None,
    prompts: int | None,
    samples: int | None,
    benchmark,
    skip_bad_photos: bool = False,
) -> list[str]:
    out = []
    if skip_bad_photos:
        out.append("evaluation.selection.skip_bad_photos=true")
    if method is not None:
        out.append(f"evaluation.generation.method={method}")
    if refs is not None:
        out.append(f"evaluation.generation.references={refs}")
    if subjects:
        names = [n.strip() for item in subjects for n in item.split(",") if n.strip()]
        out.append(f"evaluation.selection.subjects={json.dumps(names)}")
    if prompts is not None:
        out.append(f"evaluation.selection.prompts={prompts}")
    if samples is not None:
        out.append(f"evaluation.selection.samples={samples}")
    if benchmark is not None:
        out.append(f"evaluation.benchmark={json.dumps(str(benchmark))}")
    return out


def _fmt(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.4f}"


@app.callback()
def run(
    ctx: typer.Context,
    method: Annotated[
        str | None, typer.Option(help="generator: jedi, base or finetuned (evaluation.generation.method)")
    ] = None,
    refs: Annotated[int | None, typer.Option(help="JeDi reference photos k (evaluation.generation.references)")] = None,
    guidance: Annotated[
        str | None,
        typer.Option(help="JeDi guidance: paper, paper-unknown or decomposed (evaluation.generation.guidance)"),
    ] = None,
    image_guidance: Annotated[
        float | None, typer.Option(help="JeDi image guidance λ (evaluation.generation.image_guidance_scale)")
    ] = None,
    joint_targets: Annotated[
        bool | None,
        typer.Option(help="JeDi: draw a prompt's images together in shared sets (evaluation.generation.joint_targets)"),
    ] = None,
    subjects: Annotated[
        list[str] | None, typer.Option(help="subjects, comma-separated or repeated (default: all with photos)")
    ] = None,
    prompts: Annotated[int | None, typer.Option(help="first N prompts per subject")] = None,
    samples: Annotated[int | None, typer.Option(help="images per prompt")] = None,
    benchmark: Annotated[Path | None, typer.Option(help="DreamBooth-layout folder")] = None,
    skip_bad_photos: Annotated[
        bool, typer.Option("--skip-bad-photos", help="leave unreadable photos out (listed in the report)")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default outputs/eval/<method>-<fingerprint>)")
    ] = None,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Generate and score the benchmark; rerunning into the same --out resumes (only missing ids run)."""
    if ctx.invoked_subcommand is not None:
        return
    from evaluation.job import run_evaluation

    sampling = sampling_overrides("evaluation.generation", guidance, image_guidance, joint_targets)
    cfg = config_from(
        config,
        [*_overrides(method, refs, subjects, prompts, samples, benchmark, skip_bad_photos), *sampling, *(set_ or [])],
    )
    try:
        result = run_evaluation(cfg, out)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    table = Table(title=f"{result.out_dir} ({result.planned} images, {result.scored_now} scored now)")
    table.add_column("protocol")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95% CI" if cfg.evaluation.report.confidence == 0.95 else "CI", justify="right")
    for row in (r for r in result.summary if r["subject"] == ALL):
        for metric, est in row["metrics"].items():
            table.add_row(row["protocol"], LABELS[metric], _fmt(est["mean"]), f"[{_fmt(est['lo'])}, {_fmt(est['hi'])}]")
    Console().print(table)
    Console().print(f"report: {result.report}")


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="baseline run directory")],
    run_b: Annotated[Path, typer.Argument(help="run directory compared with it")],
    protocol: Annotated[str, typer.Option(help="which protocol's images to compare")] = "prompts",
    bootstrap: Annotated[int, typer.Option(min=10, max=1_000_000, help="bootstrap resamples")] = 1000,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="confidence level")] = 0.95,
    seed: Annotated[int, typer.Option(min=0, help="bootstrap seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print B − A per metric with a bootstrap CI (paired over the ids both runs scored)."""
    from evaluation.comparison import compare_runs

    try:
        result = compare_runs(run_a, run_b, protocol, bootstrap, confidence, seed)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    for warning in result.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    table = Table(title=f"B − A  ({'paired' if result.paired else 'unpaired'}, {confidence:.0%} CI)")
    for column in ("metric", "A", "B", "B − A", "CI", ""):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for d in result.differences:
        significant = d.diff.n and (d.diff.lo > 0 or d.diff.hi < 0)
        table.add_row(
            LABELS[d.metric],
            _fmt(d.a.mean),
            _fmt(d.b.mean),
            f"{d.diff.mean:+.4f}" if d.diff.n else "–",
            f"[{_fmt(d.diff.lo)}, {_fmt(d.diff.hi)}]",
            "*" if significant else "",
        )
    Console().print(f"A = {run_a}\nB = {run_b}")
    Console().print(table)
    Console().print("* the interval excludes 0")
