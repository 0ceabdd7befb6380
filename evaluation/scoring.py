"""Which backbones score a run, how they are loaded, and what is recorded about them."""

from __future__ import annotations

from core import zoo
from core.config import S3JediConfig
from core.metrics.foregrounds import MaskSettings
from core.metrics.suite import MetricSuite

FAMILY = {"clip_secondary": "clip"}
"""Zoo family of a backbone role, where the role is not itself a family name."""


def backbone_refs(cfg: S3JediConfig) -> dict[str, str]:
    """Zoo reference of every model that scores: the evaluation section pins its own CLIP/DINO or
    falls back to ``models.*``; detector and segmenter only when masked scores are on."""
    sc = cfg.evaluation.scoring
    refs = {"clip": sc.clip or cfg.models.clip, "dino": sc.dino or cfg.models.dino}
    if sc.clip_secondary:
        refs["clip_secondary"] = sc.clip_secondary
    if sc.masked:
        refs.update(detector=cfg.models.detector, segmenter=cfg.models.segmenter)
    return refs


def describe_scoring(cfg: S3JediConfig) -> dict:
    """Everything that decides what a score means, from the config alone (part of the resume fingerprint)."""
    sc = cfg.evaluation.scoring
    settings = sc.model_dump(mode="json", exclude={"clip", "clip_secondary", "dino"})
    return {"backbones": backbone_refs(cfg), **settings}


def build_suite(cfg: S3JediConfig, device: str = "cpu") -> MetricSuite:
    """Load the backbones (fp32, eval mode) and wrap them in the metric suite."""
    refs = backbone_refs(cfg)
    sc = cfg.evaluation.scoring
    models = {key: zoo.load(FAMILY.get(key, key), ref, home=cfg.home, device=device) for key, ref in refs.items()}
    return MetricSuite(
        models["clip"],
        models["dino"],
        clip_secondary=models.get("clip_secondary"),
        detector=models.get("detector"),
        segmenter=models.get("segmenter"),
        mask_settings=MaskSettings(sc.box_threshold, sc.text_threshold, sc.max_instances) if sc.masked else None,
        batch_size=cfg.evaluation.compute.encoder_batch,
    )
