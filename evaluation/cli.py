"""``s3jedi eval`` / ``python -m evaluation``: every method on the benchmark, or compare methods and runs.

The run options are shorthands for ``--set evaluation.…`` overrides, so the resolved config saved
with the run records them like any other setting. Fine-tuning methods are trained by the training
app, which evaluation may not import: ``make_app`` takes its trainer, and ``s3jedi eval`` (in
``cluster``) passes it; ``python -m evaluation`` has none and draws fine-tuned subjects from a store
only (``--reuse-store``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail
from core.config.jedi import sampling_overrides

if TYPE_CHECKING:
    from evaluation.finetuning import Trainer

HELP = (
    "The DreamBooth benchmark as one Ray job: fine-tunes, draws and scores every method (JeDi, the base model, "
    "DreamBooth, TI, two-stage, CoRe, self-distillation) and writes the papers' tables; `compare` diffs methods and runs."
)


def _names(items: list[str] | None) -> list[str]:
    return [n.strip() for item in items or [] for n in item.split(",") if n.strip()]


def overrides(
    methods: list[str] | None = None,
    protocols: list[str] | None = None,
    reference: str | None = None,
    reuse_store: str | None = None,
    refs: int | None = None,
    subjects: list[str] | None = None,
    prompts: int | None = None,
    samples: int | None = None,
    benchmark: Path | None = None,
    skip_bad_photos: bool = False,
) -> list[str]:
    """The ``--set`` assignments the run options stand for."""
    out = []
    for field, names in (
        ("methods", _names(methods)),
        ("protocols", _names(protocols)),
        ("selection.subjects", _names(subjects)),
    ):
        if names:
            out.append(f"evaluation.{field}={json.dumps(names)}")
    values = {
        "reference": reference,
        "finetuned.store": json.dumps(reuse_store) if reuse_store else None,
        "generation.references": refs,
        "selection.prompts": prompts,
        "selection.samples": samples,
        "benchmark": json.dumps(str(benchmark)) if benchmark is not None else None,
        "selection.skip_bad_photos": "true" if skip_bad_photos else None,
    }
    return out + [f"evaluation.{k}={v}" for k, v in values.items() if v is not None]


def _fmt(x) -> str:
    return "–" if x is None or x != x else f"{x:.4f}"


def _print_summary(result) -> None:
    from evaluation.method_table import seconds_cell
    from evaluation.metric_info import ALL
    from evaluation.protocols import label
    from evaluation.report import method_label

    summary = result.summary
    for protocol in summary["protocols"]:
        table = Table(title=f"{protocol['name']}: {protocol['label']} ({summary['confidence']:.0%} CI)")
        table.add_column("method")
        for metric in protocol["metrics"]:
            table.add_column(label(protocol["name"], metric), justify="right")
        table.add_column("images", justify="right")
        table.add_column("first image, s", justify="right")
        for row in (r for r in protocol["rows"] if r["subject"] == ALL):
            est = row["metrics"]
            cells = [
                f"{_fmt(est[m]['mean'])} [{_fmt(est[m]['lo'])}, {_fmt(est[m]['hi'])}]" for m in protocol["metrics"]
            ]
            first = seconds_cell(summary["costs"][row["method"]]["first_image_s"])
            table.add_row(method_label(row["method"]), *cells, str(row["images"]), first)
        Console().print(table)
    failed = [o for o in summary["finetuning"] if o["status"] != "done"]
    for o in failed:
        typer.secho(f"warning: fine-tuning {o['method']} on {o['subject']} failed: {o['error']}", fg="yellow", err=True)
    Console().print(
        f"{result.out_dir}: {result.planned} images, {result.scored_now} scored now; report: {result.report}"
    )


def _print_comparisons(comparisons, confidence: float) -> None:
    from evaluation.metric_info import LABELS

    for comparison in comparisons:
        for warning in comparison.warnings:
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
        kind = "paired" if comparison.paired else "unpaired"
        table = Table(title=f"B − A, protocol {comparison.protocol} ({kind}, {confidence:.0%} CI)")
        for column in ("metric", "A", "B", "B − A", "CI", ""):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for d in comparison.differences:
            significant = d.diff.n and (d.diff.lo > 0 or d.diff.hi < 0)
            table.add_row(
                LABELS[d.metric],
                _fmt(d.a.mean),
                _fmt(d.b.mean),
                f"{d.diff.mean:+.4f}" if d.diff.n else "–",
                f"[{_fmt(d.diff.lo)}, {_fmt(d.diff.hi)}]",
                "*" if significant else "",
            )
        Console().print(f"A = {comparison.a}\nB = {comparison.b}")
        Console().print(table)
    Console().print("* the interval excludes 0")


def make_app(trainer: Trainer | None) -> typer.Typer:
    """The ``eval`` command group; ``trainer`` fine-tunes the fine-tuning methods' subjects."""
    app = typer.Typer(help=HELP, invoke_without_command=True, pretty_exceptions_enable=False)

    @app.callback()
    def run(
        ctx: typer.Context,
        methods: Annotated[
            list[str] | None,
            typer.Option(
                help="methods, comma-separated or repeated: jedi, base, dreambooth, ti, two-stage, core, selfdistill "
                "(evaluation.methods; default jedi)"
            ),
        ] = None,
        protocols: Annotated[
            list[str] | None,
            typer.Option(help="dreambooth, simple, core, selfdistill (evaluation.protocols; default dreambooth)"),
        ] = None,
        reference: Annotated[
            str | None, typer.Option(help="method the others are compared with (default: the first)")
        ] = None,
        reuse_store: Annotated[
            str | None,
            typer.Option(help="draw fine-tuned subjects already in this store instead of fine-tuning them"),
        ] = None,
        refs: Annotated[
            int | None, typer.Option(help="JeDi reference photos k (evaluation.generation.references)")
        ] = None,
        guidance: Annotated[
            str | None,
            typer.Option(help="JeDi guidance: paper, paper-unknown or decomposed (evaluation.generation.guidance)"),
        ] = None,
        image_guidance: Annotated[
            float | None, typer.Option(help="JeDi image guidance λ (evaluation.generation.image_guidance_scale)")
        ] = None,
        joint_targets: Annotated[
            bool | None,
            typer.Option(
                help="JeDi: draw a prompt's images together in shared sets (evaluation.generation.joint_targets)"
            ),
        ] = None,
        subjects: Annotated[
            list[str] | None, typer.Option(help="subjects, comma-separated or repeated (default: all with photos)")
        ] = None,
        prompts: Annotated[int | None, typer.Option(help="first N prompts per subject")] = None,
        samples: Annotated[int | None, typer.Option(help="images per prompt, at most")] = None,
        benchmark: Annotated[Path | None, typer.Option(help="DreamBooth-layout folder")] = None,
        skip_bad_photos: Annotated[
            bool, typer.Option("--skip-bad-photos", help="leave unreadable photos out (listed in the report)")
        ] = False,
        out: Annotated[
            Path | None, typer.Option(help="run directory (default outputs/eval/<methods>-<fingerprint>)")
        ] = None,
        config: ConfigOpt = "tiny",
        set_: SetOpt = None,
    ) -> None:
        """Fine-tune, generate and score; rerunning into the same --out resumes (nothing finished runs again)."""
        if ctx.invoked_subcommand is not None:
            return
        from evaluation.job import run_evaluation

        options = overrides(
            methods, protocols, reference, reuse_store, refs, subjects, prompts, samples, benchmark, skip_bad_photos
        )
        sampling = sampling_overrides("evaluation.generation", guidance, image_guidance, joint_targets)
        cfg = config_from(config, [*options, *sampling, *(set_ or [])])
        try:
            result = run_evaluation(cfg, out, trainer)
        except USER_ERRORS as exc:
            raise fail(str(exc)) from None
        _print_summary(result)

    @app.command()
    def compare(
        run_a: Annotated[str, typer.Argument(help="A: RUN or RUN:METHOD (the baseline)")],
        run_b: Annotated[
            str | None,
            typer.Argument(help="B: RUN or RUN:METHOD; without it, every method of A against A's reference"),
        ] = None,
        protocol: Annotated[str | None, typer.Option(help="whose images and scores (default: A's first)")] = None,
        reference: Annotated[str | None, typer.Option(help="with A alone: the baseline method")] = None,
        bootstrap: Annotated[int, typer.Option(min=10, max=1_000_000, help="bootstrap resamples")] = 1000,
        confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="confidence level")] = 0.95,
        seed: Annotated[int, typer.Option(min=0, help="bootstrap seed")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """Print B − A per score with a bootstrap CI, paired over the cases (subject, prompt, seed) both have."""
        from evaluation.comparison import Side, compare_sides, compare_with_reference

        try:
            if run_b is None:
                found = compare_with_reference(Path(run_a), reference, protocol, bootstrap, confidence, seed)
            else:
                found = [compare_sides(Side.parse(run_a), Side.parse(run_b), protocol, bootstrap, confidence, seed)]
        except USER_ERRORS as exc:
            raise fail(str(exc)) from None
        if as_json:
            typer.echo(json.dumps([c.to_dict() for c in found], indent=1))
            return
        _print_comparisons(found, confidence)

    return app


app = make_app(None)
