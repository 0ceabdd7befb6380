"""What each summarised score is called, what it measures and which way is better.

Kept apart from the statistics so the command line and the report can name metrics without loading
pandas. The definitions are the short form of docs/evaluation.md ("Metrics").
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = "all"
"""The subject value of the summary row that pools every subject."""


@dataclass(frozen=True)
class Metric:
    label: str
    definition: str
    higher_is_better: bool = True

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


_SECOND = "; with the second CLIP (evaluation.scoring.clip_secondary)"
METRICS = {
    "clip_t": Metric("CLIP-T", "text alignment: cosine of CLIP image and CLIP text of the prompt (no special token)"),
    "negclip_t": Metric(
        "NegCLIP-T", "text alignment under NegCLIP (paper 000): cosine of NegCLIP image and NegCLIP text of the prompt"
    ),
    "clip_i": Metric("CLIP-I", "subject fidelity: mean cosine of CLIP image and each real photo of the subject"),
    "mclip_i": Metric("MCLIP-I", "CLIP-I with the subject cut out on both sides (background white)"),
    "dino": Metric("DINO", "subject fidelity: mean cosine of DINO CLS features with each real photo"),
    "mdino": Metric("MDINO", "DINO with the subject cut out on both sides"),
    "clip_t_secondary": Metric("CLIP-T (2nd CLIP)", "CLIP-T" + _SECOND),
    "clip_i_secondary": Metric("CLIP-I (2nd CLIP)", "CLIP-I" + _SECOND),
    "mclip_i_secondary": Metric("MCLIP-I (2nd CLIP)", "MCLIP-I" + _SECOND),
    "hard_negative_acc": Metric(
        "hard-negative acc.",
        "share of the subject's other prompts (same subject, other context) that the image's own prompt beats in CLIP similarity",
    ),
    "conflict_rate": Metric(
        "conflict rate",
        "paper 000: share of images whose CLIP-MI or NegCLIP-T is below its minimum (evaluation.conflict)",
        higher_is_better=False,
    ),
    "conflict": Metric(
        "context lost",
        "share of images at least as close to the bare subject ('a dog') as to their prompt (CLIP; this project's)",
        higher_is_better=False,
    ),
    "mask_found": Metric(
        "subject found", "share of images in which the detector finds the subject (masked scores need it)"
    ),
}
"""Summarised per-image columns, in display order."""

LABELS = {key: metric.label for key, metric in METRICS.items()}
