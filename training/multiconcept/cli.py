"""``s3jedi multiconcept ...`` / ``python -m training multiconcept ...``: the same code locally and under ``ray job submit``.

``s3jedi multiconcept --scene DIR`` learns one token per concept of a scene folder (see
``training.multiconcept.scene``) and publishes them with a UNet LoRA as ``<scene>-multiconcept``;
``s3jedi multiconcept scene --out DIR`` writes a scene with known masks from the DreamBooth photos.
Draw with a result through ``s3jedi finetune sample <scene>-multiconcept --prompt "<c0> next to <c1>"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, config_from, fail
from core.paths import REPO_ROOT

app = typer.Typer(help="Concept-driven EM: learn several concepts from scenes without masks.", no_args_is_help=True)
DEFAULT_PHOTOS = REPO_ROOT.parent / "shared" / "dreambooth" / "images"


@app.callback(invoke_without_command=True)
def multiconcept_cmd(
    ctx: typer.Context,
    scene: Annotated[str | None, typer.Option(help="scene folder (images/, scene.json, optional masks/)")] = None,
    config: ConfigOpt = "tiny",
    set_: SetOpt = None,
) -> None:
    """Learn a scene's concepts; rerun with the same multiconcept.run.name to resume."""
    if ctx.invoked_subcommand:
        return
    from training.multiconcept.runner import run_scene

    if not scene:
        raise fail("--scene: required (a scene folder; `s3jedi multiconcept scene --out DIR` writes one)")
    cfg = config_from(config, set_)
    try:
        summary = run_scene(cfg, scene)
    except (*USER_ERRORS, RuntimeError) as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(summary, indent=1, default=str))


@app.command("scene")
def scene_cmd(
    out: Annotated[str, typer.Option(help="scene folder to write (local path or URI)")],
    photos: Annotated[Path, typer.Option(help="DreamBooth-layout folder of subject folders")] = DEFAULT_PHOTOS,
    subjects: Annotated[str, typer.Option(help="two subject folder names, comma-separated")] = "dog,cat",
    background: Annotated[str, typer.Option(help="subject folder whose photo becomes the background")] = "backpack",
    images: Annotated[int, typer.Option(min=1, max=64)] = 2,
    side: Annotated[int, typer.Option(min=32, max=2048, help="image side in pixels")] = 256,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Write a synthetic scene with known masks: two subjects pasted onto a blurred background photo."""
    from training.multiconcept.synthetic import synthetic_scene

    names = tuple(s.strip() for s in subjects.split(",") if s.strip())
    if len(names) != 2:
        raise fail(f"--subjects: give exactly two subject folder names, got {subjects!r}")
    for name in (*names, background):
        if not (photos / name).is_dir():
            raise fail(f"--photos: no subject folder {photos / name}")
    path = synthetic_scene(photos, out, names, background, images, side, seed)
    typer.echo(json.dumps({"scene": path}, indent=1))
