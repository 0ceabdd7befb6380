"""Which backbones score a run, how they are loaded, and what is recorded about them."""

from __future__ import annotations

from core.config import S3JediConfig
from core.metrics.loading import load_suite, scoring_backbones
from core.metrics.suite import MetricSuite


def backbone_refs(cfg: S3JediConfig) -> dict[str, str]:
    """Zoo reference of every model that scores (``core.metrics.loading.scoring_backbones``)."""
    return scoring_backbones(cfg.evaluation.scoring, cfg.models)


def describe_scoring(cfg: S3JediConfig) -> dict:
    """Everything that decides what a score means, from the config alone (part of the resume fingerprint)."""
    sc = cfg.evaluation.scoring
    settings = sc.model_dump(mode="json", exclude={"clip", "clip_secondary", "dino"})
    return {"backbones": backbone_refs(cfg), **settings}


def build_suite(cfg: S3JediConfig, device: str = "cpu") -> MetricSuite:
    """Load the backbones (fp32, eval mode) and wrap them in the metric suite."""
    return load_suite(cfg.evaluation.scoring, cfg.models, cfg.home, device, cfg.evaluation.compute.encoder_batch)
