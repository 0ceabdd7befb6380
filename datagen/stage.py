"""What a stage of the builder declares about itself; the builder derives everything else from it.

A stage module ends with ``STAGE = Stage(...)``. From these declarations come the pipeline order
(``datagen.stages``), the Ray actor class that runs the stage (``ray_stages.actor_class``), the models
checked before a build starts, the model references and stage versions recorded with every shard, and
the rows of the progress and summary tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.config import S3JediConfig
from core.config.base import Section
from core.config.datagen import StageResources
from datagen.rows import WorkRow


@dataclass(frozen=True)
class Stage:
    name: str
    """Its name everywhere: traces, rejects, provenance, the config section ``datagen.<name>``."""
    version: str
    """Bump when its output changes for the same input; recorded in every shard's provenance."""
    families: tuple[str, ...]
    """The zoo families it loads (``models.<family>``): resolved before a build starts, recorded as provenance."""
    section: type[Section]
    """Its config section class, found at ``cfg.datagen.<name>``; an image stage's has ``resources``."""
    load: Callable[[S3JediConfig, str], Callable[[WorkRow], WorkRow]] | None = None
    """``load(cfg, device)`` → the stage's ``WorkRow -> WorkRow`` callable, models loaded. None for stage 1
    (subjects), which runs before the image stages with its own backends (``ray_stages.subject_pipeline``)."""

    def settings(self, cfg: S3JediConfig) -> Section:
        return getattr(cfg.datagen, self.name)

    def resources(self, cfg: S3JediConfig) -> StageResources:
        return self.settings(cfg).resources

    @property
    def class_name(self) -> str:
        """``collages`` → ``Collages``: the name of its Ray actor class, which Ray Data's operators show."""
        return "".join(part.title() for part in self.name.replace("-", "_").split("_"))


def device(res: StageResources) -> str:
    return "cuda" if res.num_gpus > 0 else "cpu"
