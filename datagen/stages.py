"""The image stages in pipeline order, with what each needs: a loader, a version, its resources.

A stage module exposes ``STAGE`` (its name), ``VERSION`` (bump when its output changes for the same
input; recorded with every set) and ``load(cfg, device)`` returning a callable ``WorkRow -> WorkRow``.
"""

from __future__ import annotations

from types import ModuleType

from core.config import S3JediConfig
from core.config.datagen import StageResources
from datagen import backgrounds, collages, consistency, instances, stylize, subjects

IMAGE_STAGES: dict[str, ModuleType] = {m.STAGE: m for m in (collages, instances, consistency, backgrounds, stylize)}
STAGE_ORDER: tuple[str, ...] = (subjects.STAGE, *IMAGE_STAGES)
MODEL_FAMILIES = {
    "collages": ("sdxl",),
    "instances": ("detector", "segmenter"),
    "consistency": ("clip",),
    "backgrounds": ("inpaint",),
    "stylize": ("pix2pix",),
}


def stage_versions() -> dict[str, str]:
    return {subjects.STAGE: subjects.VERSION, **{name: m.VERSION for name, m in IMAGE_STAGES.items()}}


def resources(cfg: S3JediConfig, stage: str) -> StageResources:
    return getattr(cfg.datagen, stage).resources


def device(res: StageResources) -> str:
    return "cuda" if res.num_gpus > 0 else "cpu"
