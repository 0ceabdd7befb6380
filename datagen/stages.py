"""The builder's stages in pipeline order, derived from what each stage module declares (``datagen.stage``).

The built-in stages are listed once, below. A stage from outside the project (a plug-in, a test) is
added with ``register(stage, after=...)``: its config section becomes ``datagen.<name>``, and the
pipeline, the actor classes, the model checks and the provenance pick it up. Everything here reads the
current list, so nothing else changes when a stage is added.
"""

from __future__ import annotations

from core.config import S3JediConfig
from core.config.datagen import add_stage_section, remove_stage_section
from datagen import backgrounds, collages, consistency, instances, stylize, subjects
from datagen.stage import Stage

BUILT_IN: tuple[Stage, ...] = (
    subjects.STAGE,
    collages.STAGE,
    instances.STAGE,
    consistency.STAGE,
    backgrounds.STAGE,
    stylize.STAGE,
)
_added: list[tuple[Stage, str]] = []


def register(stage: Stage, after: str) -> None:
    """Add ``stage`` to the pipeline right after the stage named ``after`` (in this process: register it
    before the config is loaded, in the process that runs the build)."""
    names = [s.name for s in pipeline()]
    if stage.name in names:
        raise ValueError(f"a datagen stage named {stage.name!r} exists already")
    if after not in names:
        raise ValueError(f"register({stage.name!r}, after={after!r}): no such stage; stages: {', '.join(names)}")
    if stage.load is None or "resources" not in stage.section.model_fields:
        raise ValueError(f"stage {stage.name!r}: an added stage needs load() and a section with resources")
    add_stage_section(stage.name, stage.section)
    _added.append((stage, after))


def unregister(name: str) -> None:
    _added[:] = [(s, after) for s, after in _added if s.name != name]
    remove_stage_section(name)


def pipeline() -> tuple[Stage, ...]:
    """Every stage in the order a subject goes through them, stage 1 (subjects) first."""
    order = list(BUILT_IN)
    for stage, after in _added:
        order.insert([s.name for s in order].index(after) + 1, stage)
    return tuple(order)


def image_stages() -> tuple[Stage, ...]:
    """The stages after stage 1, which Ray Data runs on each subject as a ``WorkRow``."""
    return tuple(s for s in pipeline() if s.load is not None)


def names() -> tuple[str, ...]:
    return tuple(s.name for s in pipeline())


def versions() -> dict[str, str]:
    return {s.name: s.version for s in pipeline()}


def model_families(cfg: S3JediConfig) -> tuple[str, ...]:
    """The zoo families this build loads, in pipeline order (no LLM with the template backend)."""
    families = [f for s in pipeline() for f in s.families]
    if cfg.datagen.subjects.backend == "template":
        families.remove("llm")
    return tuple(dict.fromkeys(families))
