"""The whole s3jedi configuration: one typed tree, loaded from a YAML profile plus overrides."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.config.base import Section
from core.config.cluster import ClusterSection
from core.config.datagen import DatagenSection
from core.config.evaluation import EvaluationConfig
from core.config.finetune import FinetuneSection
from core.config.models import ModelsConfig
from core.config.multiconcept import MultiConceptSection
from core.config.runtime import RayConfig
from core.config.selfdistill import SelfDistillSection
from core.config.serving import ServingConfig
from core.config.toyworld import ToyWorldSection
from core.config.training import TrainSection


class S3JediConfig(Section):
    profile: str = Field("tiny", description="name of the profile, recorded with every output")
    seed: int = Field(0, ge=0, description="root seed; every stage derives its own from it")
    home: Path | None = Field(None, description="S3JEDI_HOME override (zoo and caches)")
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    datagen: DatagenSection = Field(default_factory=DatagenSection)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    selfdistill: SelfDistillSection = Field(default_factory=SelfDistillSection)
    multiconcept: MultiConceptSection = Field(default_factory=MultiConceptSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    toyworld: ToyWorldSection = Field(default_factory=ToyWorldSection)
