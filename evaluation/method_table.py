"""The method comparison every report shows, shaped like the papers' tables: one row per method, a
column per score with its confidence interval, the cost columns, and the paired differences from a
reference method. The DreamBooth benchmark (per protocol) and ToyWorld (oracle identity and scene
accuracy) build it from the same data: per method, an estimate (mean, lo, hi, n) per score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

COST_HEADER = ["fine-tuning s / subject", "GPU-s / subject", "s / image", "time to first image, s"]
COST_KEYS = ["finetune_s", "finetune_gpu_s", "s_per_image", "first_image_s"]
NOT_MEASURED = "–"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    higher_is_better: bool = True

    @property
    def heading(self) -> str:
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}"


@dataclass
class MethodRow:
    key: str
    label: str
    estimates: dict[str, dict]
    """score → estimate (mean, lo, hi, n)."""
    images: int
    cost: dict[str, float | None] = field(default_factory=dict)
    """``COST_KEYS`` → seconds (None: not measured)."""
    difference: dict[str, dict] | None = None
    """score → estimate of this method − the reference, paired (None for the reference itself)."""


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def estimate_cell(est: dict | None, digits: int = 4) -> str:
    if not est or not est["n"] or _missing(est["mean"]):
        return NOT_MEASURED
    return f"{est['mean']:.{digits}f} [{est['lo']:.{digits}f}, {est['hi']:.{digits}f}]"


def difference_cell(est: dict | None, digits: int = 4) -> str:
    """``+0.0123 [+0.0010, +0.0240] *``: the star marks an interval that excludes 0."""
    if not est or not est["n"] or _missing(est["mean"]):
        return NOT_MEASURED
    star = " *" if est["lo"] > 0 or est["hi"] < 0 else ""
    return f"{est['mean']:+.{digits}f} [{est['lo']:+.{digits}f}, {est['hi']:+.{digits}f}]{star}"


def seconds_cell(value: float | None) -> str:
    if _missing(value):
        return NOT_MEASURED
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def comparison_blocks(
    rows: list[MethodRow], columns: list[Column], reference: str, confidence: float, unit: str = "images"
) -> list[tuple]:
    """The methods table (scores with intervals, counts, costs) and the paired-differences table."""
    ci = f"{confidence:.0%} CI"
    with_costs = any(r.cost for r in rows)
    header = ["method", *(c.heading for c in columns), unit, *(COST_HEADER if with_costs else [])]
    table = [
        [
            r.label + (" (reference)" if r.key == reference else ""),
            *(estimate_cell(r.estimates.get(c.key)) for c in columns),
            str(r.images),
            *((seconds_cell(r.cost.get(k)) for k in COST_KEYS) if with_costs else []),
        ]
        for r in rows
    ]
    blocks: list[tuple] = [
        ("table", header, table),
        ("p", f"Mean [{ci}] per score; intervals are percentile bootstrap over {unit}."),
    ]
    compared = [r for r in rows if r.difference is not None]
    if compared:
        ref_label = next((r.label for r in rows if r.key == reference), reference)
        blocks += [
            (
                "p",
                f"**Paired differences from {ref_label}**: method − {ref_label}, {unit} paired (same subject, "
                f"prompt and seed), mean [{ci}]; * = the interval excludes 0.",
            ),
            (
                "table",
                ["method", *(f"Δ {c.heading}" for c in columns), f"paired {unit}"],
                [
                    [
                        r.label,
                        *(difference_cell(r.difference.get(c.key)) for c in columns),
                        str(max((e["n"] for e in r.difference.values()), default=0)),
                    ]
                    for r in compared
                ],
            ),
        ]
    return blocks
