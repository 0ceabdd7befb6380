"""Loading a metric suite from the scoring settings: which backbones, from where, with which mask settings.

The evaluation job and self-distillation's gold filter score with the same suite; both describe it by a
``ScoringConfig`` (the evaluation section's type), so one loader turns such a section into models.
"""

from __future__ import annotations

from pathlib import Path

from core import zoo
from core.config.evaluation import ScoringConfig
from core.config.models import ModelsConfig
from core.metrics.foregrounds import MaskSettings
from core.metrics.suite import MetricSuite

FAMILY = {"clip_secondary": "clip"}
"""Zoo family of a backbone role, where the role is not itself a family name."""


def scoring_backbones(scoring: ScoringConfig, models: ModelsConfig) -> dict[str, str]:
    """Zoo reference of every model that scores: the section pins its own CLIP/DINO or falls back to
    ``models.*``; NegCLIP (``models.negclip``) only when NegCLIP-T is on, detector and segmenter only
    when masked scores are."""
    refs = {"clip": scoring.clip or models.clip, "dino": scoring.dino or models.dino}
    if scoring.clip_secondary:
        refs["clip_secondary"] = scoring.clip_secondary
    if scoring.negclip:
        refs["negclip"] = models.negclip
    if scoring.masked:
        refs.update(detector=models.detector, segmenter=models.segmenter)
    return refs


def load_suite(
    scoring: ScoringConfig, models: ModelsConfig, home: Path | None, device: str = "cpu", batch_size: int = 32
) -> MetricSuite:
    """Load the backbones (fp32, eval mode) and wrap them in the metric suite."""
    refs = scoring_backbones(scoring, models)
    loaded = {key: zoo.load(FAMILY.get(key, key), ref, home=home, device=device) for key, ref in refs.items()}
    mask_settings = (
        MaskSettings(scoring.box_threshold, scoring.text_threshold, scoring.max_instances) if scoring.masked else None
    )
    return MetricSuite(
        loaded["clip"],
        loaded["dino"],
        clip_secondary=loaded.get("clip_secondary"),
        negclip=loaded.get("negclip"),
        detector=loaded.get("detector"),
        segmenter=loaded.get("segmenter"),
        mask_settings=mask_settings,
        batch_size=batch_size,
    )
