"""Which backbones score a run, how they are loaded, and what is recorded about them.

A protocol that reports NegCLIP-T (paper 000's) turns the NegCLIP scorer on; everything else is
``evaluation.scoring`` as configured. The conflict rate of paper 000 is a per-image flag derived
from CLIP-MI and NegCLIP-T with ``evaluation.conflict``'s minimums, so those are part of what a
score means too.
"""

from __future__ import annotations

import numpy as np

from core.config import S3JediConfig
from core.config.evaluation import NEEDS_NEGCLIP, PROTOCOLS, ScoringConfig
from core.metrics.conflict_rate import conflicted
from core.metrics.loading import load_suite, scoring_backbones
from core.metrics.suite import MetricSuite


def scoring_settings(cfg: S3JediConfig) -> ScoringConfig:
    """``evaluation.scoring`` with NegCLIP on when a chosen protocol reports a NegCLIP score."""
    ev = cfg.evaluation
    needs_negclip = any(set(PROTOCOLS[name].metrics) & NEEDS_NEGCLIP for name in ev.protocols)
    return ev.scoring.model_copy(update={"negclip": ev.scoring.negclip or needs_negclip})


def backbone_refs(cfg: S3JediConfig) -> dict[str, str]:
    """Zoo reference of every model that scores (``core.metrics.loading.scoring_backbones``)."""
    return scoring_backbones(scoring_settings(cfg), cfg.models)


def describe_scoring(cfg: S3JediConfig) -> dict:
    """Everything that decides what a score means, from the config alone (part of the resume fingerprint)."""
    settings = scoring_settings(cfg).model_dump(mode="json", exclude={"clip", "clip_secondary", "dino"})
    conflict = cfg.evaluation.conflict.model_dump(mode="json") if settings["negclip"] and settings["masked"] else None
    return {"backbones": backbone_refs(cfg), **settings, "conflict": conflict}


def build_suite(cfg: S3JediConfig, device: str = "cpu") -> MetricSuite:
    """Load the backbones (fp32, eval mode) and wrap them in the metric suite."""
    return load_suite(scoring_settings(cfg), cfg.models, cfg.home, device, cfg.evaluation.compute.encoder_batch)


def conflict_flags(cfg: S3JediConfig, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Paper 000's per-image conflict (CLIP-MI or NegCLIP-T below its minimum) as ``conflict_rate``,
    when both scores are there; its mean over images is the rate."""
    if "mclip_i" not in scores or "negclip_t" not in scores:
        return {}
    c = cfg.evaluation.conflict
    return {"conflict_rate": conflicted(scores["mclip_i"], scores["negclip_t"], c.min_identity, c.min_text)}
