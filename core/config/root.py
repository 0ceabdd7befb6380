"""The whole s3jedi configuration: one typed tree, loaded from a YAML profile plus overrides."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.config.base import Section
from core.config.models import ModelsConfig
from core.config.runtime import RayConfig


class S3JediConfig(Section):
    profile: str = Field("tiny", description="name of the profile, recorded with every output")
    seed: int = Field(0, ge=0, description="root seed; every stage derives its own from it")
    home: Path | None = Field(None, description="S3JEDI_HOME override (zoo and caches)")
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
