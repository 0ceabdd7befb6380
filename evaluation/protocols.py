"""Which scored images each named protocol counts (``core.config.evaluation.PROTOCOLS``).

A run draws every image once; a protocol is a view of them: its kind of prompt (the benchmark's
list or the simple prompt), its first ``samples`` seeds per prompt, and for paper 003 no identity
score on the prompts that change the subject's appearance (the image still counts for CLIP-T).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from core.config.evaluation import PROTOCOLS, Protocol, SelectionConfig
from evaluation.benchmark import SIMPLE_PROMPT_ID, samples
from evaluation.metric_info import LABELS

IDENTITY = ("clip_i", "mclip_i", "dino", "mdino", "clip_i_secondary", "mclip_i_secondary")
"""Scores that compare the image with the subject's photos."""


def identity_excluded(protocol: Protocol, templates: pd.Series) -> np.ndarray:
    """Which templates the protocol leaves out of its identity scores."""
    if not protocol.identity_excluded:
        return np.zeros(len(templates), dtype=bool)
    pattern = re.compile("|".join(f"(?:{p})" for p in protocol.identity_excluded))
    return templates.map(lambda t: bool(pattern.search(t))).to_numpy(dtype=bool)


def protocol_rows(frame: pd.DataFrame, name: str, selection: SelectionConfig) -> pd.DataFrame:
    """The images ``name`` counts, with its excluded identity scores set to NaN."""
    protocol = PROTOCOLS[name]
    simple = frame["prompt_id"] == SIMPLE_PROMPT_ID
    kind = simple if protocol.prompts == "simple" else ~simple
    rows = frame[kind & (frame["sample"] < samples(protocol, selection))].copy()
    excluded = identity_excluded(protocol, rows["template"])
    if excluded.any():
        rows.loc[excluded, [c for c in IDENTITY if c in rows.columns]] = np.nan
    return rows


def label(name: str, metric: str) -> str:
    """A metric's name in the protocol's paper (CLIP-MI for paper 000's masked CLIP-I)."""
    return PROTOCOLS[name].labels.get(metric, LABELS[metric])
