"""Driver side of the concept-driven EM: one scene, one run of its recipe (``em.SceneRecipe``).

The run lives at ``<multiconcept.run.storage_path>/<run name>/<subject id>``; a rerun with the same
run name restores the latest checkpoint and continues. A finished run (its ``outputs/summary.json``
written, the subject in the store) is not started again: the driver returns its summary. With
``in_process`` the recipe runs in the calling process (Ray Train's local mode, ``num_workers=0``).
"""

from __future__ import annotations

import json

from core import storage
from core.config import S3JediConfig
from core.logs import get_logger
from core.ray_runtime import init_ray
from core.subjects import make_subject_id
from training.multiconcept.em import SceneRecipe
from training.multiconcept.scene import load_scene
from training.shell.trainer import failure_reason, fit

log = get_logger("multiconcept")


def scene_subject_id(cfg: S3JediConfig, scene_name: str) -> str:
    return make_subject_id(cfg.multiconcept.subject_id.replace("{scene}", "{subject}"), scene_name, "multiconcept")


def run_scene(cfg: S3JediConfig, scene_path: str, in_process: bool = False) -> dict:
    """Train one scene; returns its ``summary.json``. The scene is read (and checked) here first, so a
    bad scene fails with one line before any worker starts."""
    scene = load_scene(scene_path, cfg.multiconcept)
    sid = scene_subject_id(cfg, scene.name)
    recipe = SceneRecipe(cfg, scene=storage.resolve(scene_path), subject_id=sid)
    if recipe.exported():
        log.info("run already finished", subject=sid, path=recipe.summary_path())
        return _read_json(recipe.summary_path())
    init_ray(cfg.ray)
    try:
        fit(recipe, in_process)
    except Exception as exc:  # the run failed, after the restarts a failure is worth
        raise RuntimeError(f"multiconcept {sid}: {failure_reason(exc)}") from exc
    return _read_json(recipe.summary_path())


def _read_json(path: str) -> dict:
    fs, p = storage.filesystem(path)
    with fs.open_input_stream(p) as f:
        return json.loads(f.read())
