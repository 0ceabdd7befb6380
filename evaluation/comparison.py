"""``eval compare``: how run B differs from run A, metric by metric, with confidence intervals.

Runs are comparable only when they were scored the same way (same backbones, preprocessing and
mask settings); a difference there is an error, not a footnote. Runs may differ in everything
else, typically the generator. When they share case ids the comparison is paired.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from evaluation.statistics import Difference, compare
from evaluation.store import first_difference, read_scores


@dataclass
class Comparison:
    differences: list[Difference]
    paired: bool
    common: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "paired": self.paired,
            "common_ids": self.common,
            "warnings": self.warnings,
            "differences": [asdict(d) for d in self.differences],
        }


def _protocol_rows(run: Path, protocol: str):
    frame, info = read_scores(run)
    rows = frame[frame["protocol"] == protocol]
    if rows.empty:
        have = ", ".join(sorted(frame["protocol"].unique())) or "none"
        raise ValueError(f"--protocol: run {run} has no {protocol!r} images (it has: {have})")
    return rows, info


def compare_runs(run_a: Path, run_b: Path, protocol: str, resamples: int, confidence: float, seed: int) -> Comparison:
    a, info_a = _protocol_rows(run_a, protocol)
    b, info_b = _protocol_rows(run_b, protocol)
    diff = first_difference(info_a["fingerprint"]["scoring"], info_b["fingerprint"]["scoring"])
    if diff:
        raise ValueError(f"runs were scored differently ({diff}); their scores are not comparable")
    common = len(set(a["id"]) & set(b["id"]))
    warnings = []
    if common and (common < len(a) or common < len(b)):
        warnings.append(f"paired over the {common} ids both runs scored (A has {len(a)}, B has {len(b)})")
    if not common:
        warnings.append("the runs share no (subject, prompt, seed) ids; comparing them unpaired")
    return Comparison(compare(a, b, resamples, confidence, seed), bool(common), common, warnings)
