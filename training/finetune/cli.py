"""``s3jedi finetune ...`` / ``python -m training finetune ...``: the same code locally and under ``ray job submit``.

``s3jedi finetune --method dreambooth --subjects ../shared/dreambooth/images`` fine-tunes every subject
folder (one Ray Train run each, ``finetune.concurrency`` at a time), publishes the results to the
subject store and prints a JSON report; the exit code is 1 when any subject failed.
``s3jedi finetune sample SUBJECT --prompt "a photo of {0} {1} on the beach"`` draws with a result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail

app = typer.Typer(
    help="Fine-tune personalization on Ray Train: DreamBooth, Textual Inversion, two-stage TI→UNet, CoRe.",
    no_args_is_help=True,
)


@app.callback(invoke_without_command=True)
def finetune_cmd(
    ctx: typer.Context,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            "-m",
            help="a method, or several comma-separated (default: finetune.method); `s3jedi finetune methods` "
            "lists them",
        ),
    ] = None,
    subjects: Annotated[
        str | None,
        typer.Option(help="a folder of subject folders, one subject folder, or comma-separated subject folders"),
    ] = None,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Fine-tune subjects; rerun with the same finetune.run.name to resume each from its checkpoint."""
    if ctx.invoked_subcommand:
        return
    from core.methods import parse_methods
    from training.finetune.runner import finetune

    if not subjects:
        raise fail("--subjects: required (a folder of subject folders, a subject folder, or a list)")
    cfg = config_from(config, set_)
    try:
        report = finetune(cfg, parse_methods(method or cfg.finetune.method), subjects)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(report.to_dict(), indent=1, default=str))
    if report.failed:
        raise typer.Exit(1)


@app.command("methods")
def methods_cmd(config: ConfigOpt = "tiny", set_: SetOpt = None) -> None:
    """List the registered fine-tuning methods (with those of finetune.plugins)."""
    from core.methods import METHODS

    config_from(config, set_)  # imports the plugins
    rows = [{"method": m.name, "label": m.label, "offered": m.selectable} for m in METHODS.values()]
    typer.echo(json.dumps(rows, indent=1))


@app.command("sample")
def sample_cmd(
    subject: Annotated[str, typer.Argument(help="subject id in the store, or a subject directory")],
    prompt: Annotated[list[str], typer.Option(help="prompt with {0} (token) and {1} (class word); repeatable")],
    out: Annotated[Path, typer.Option(help="output folder")] = Path("outputs/finetune-samples"),
    steps: Annotated[int, typer.Option(min=1, max=1000)] = 4,
    guidance_scale: Annotated[float, typer.Option(min=1.0, max=50.0)] = 7.5,
    side: Annotated[int, typer.Option(min=8, max=2048, help="image side (multiple of 8)")] = 64,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    tto_steps: Annotated[
        int | None,
        typer.Option(min=0, max=1000, help="CoRe test-time optimization steps (default finetune.core.tto_steps)"),
    ] = None,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Draw one image per prompt with a fine-tuned subject (CoRe subjects get test-time optimization)."""
    from core.subjects import SubjectNotFoundError
    from training.finetune.sample import sample_subject

    if side % 8:
        raise fail(f"--side: must be a multiple of 8, got {side}")
    cfg = config_from(config, set_)
    try:
        images = sample_subject(
            cfg, subject, prompt, steps=steps, guidance_scale=guidance_scale, side=side, seed=seed, tto_steps=tto_steps
        )
    except (*USER_ERRORS, SubjectNotFoundError) as exc:
        raise fail(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = out / f"{Path(subject).name}-{i:02d}.png"
        image.save(path)
        paths.append(str(path))
    typer.echo(json.dumps({"subject": subject, "images": paths}, indent=1))
