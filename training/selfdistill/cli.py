"""``s3jedi selfdistill ...`` / ``python -m training selfdistill ...``: the same code locally and under ``ray job submit``.

``s3jedi selfdistill --subjects ../shared/dreambooth/images`` trains a DreamBooth teacher per subject,
mines and scores samples, trains the student on photos + gold and publishes it to the subject store as
``<subject>-selfdistill``; it prints a JSON report and exits 1 when any subject failed. Draw with a
result through ``s3jedi finetune sample <subject>-selfdistill --prompt "a photo of {0} {1} ..."``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail

app = typer.Typer(help="Filtered self-distillation: teacher → mining → gold filter → student.", no_args_is_help=True)


@app.callback(invoke_without_command=True)
def selfdistill_cmd(
    subjects: Annotated[
        str | None,
        typer.Option(help="a folder of subject folders, one subject folder, or comma-separated subject folders"),
    ] = None,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Self-distil subjects; rerun with the same selfdistill.name to resume."""
    from training.selfdistill.runner import selfdistill

    if not subjects:
        raise fail("--subjects: required (a folder of subject folders, a subject folder, or a list)")
    cfg = config_from(config, set_)
    try:
        report = selfdistill(cfg, subjects)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(report.to_dict(), indent=1, default=str))
    if report.failed:
        raise typer.Exit(1)
