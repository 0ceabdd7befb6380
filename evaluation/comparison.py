"""``eval compare``: how one method's images differ from another's, score by score, with intervals.

A side is a run directory and one of its methods (``RUN:METHOD``; ``RUN`` alone when the run has one
method), so the two sides may be two methods of one run or methods of two runs. They are comparable
only when they were scored the same way (same backbones, preprocessing and mask settings); a
difference there is an error, not a footnote. When they share cases (subject, prompt, seed) the
comparison is paired.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from core.config.evaluation import PROTOCOLS, SelectionConfig
from evaluation.protocols import protocol_rows
from evaluation.statistics import Difference, compare
from evaluation.store import first_difference, read_scores


@dataclass(frozen=True)
class Side:
    run: Path
    method: str | None

    @classmethod
    def parse(cls, text: str) -> Side:
        """``RUN`` or ``RUN:METHOD`` (a directory whose name has a colon is taken whole)."""
        if Path(text).is_dir() or ":" not in text:
            return cls(Path(text), None)
        run, method = text.rsplit(":", 1)
        return cls(Path(run), method)

    def __str__(self) -> str:
        return f"{self.run}:{self.method}" if self.method else str(self.run)


@dataclass
class Comparison:
    a: str
    b: str
    protocol: str
    differences: list[Difference]
    paired: bool
    common: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "protocol": self.protocol,
            "paired": self.paired,
            "common_cases": self.common,
            "warnings": self.warnings,
            "differences": [asdict(d) for d in self.differences],
        }


@dataclass(frozen=True)
class Scored:
    """A finished run's per-image scores and its description."""

    frame: pd.DataFrame
    info: dict

    @classmethod
    def read(cls, run: Path) -> Scored:
        return cls(*read_scores(run))

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.frame["method"]))

    def method(self, side: Side) -> str:
        if side.method is None:
            if len(self.methods) != 1:
                named = ", ".join(f"{side.run}:{m}" for m in self.methods)
                raise ValueError(f"{side.run} holds {len(self.methods)} methods; name one: {named}")
            return self.methods[0]
        if side.method not in self.methods:
            raise ValueError(f"{side}: the run has no {side.method!r} images (it has: {', '.join(self.methods)})")
        return side.method

    def rows(self, method: str, protocol: str) -> pd.DataFrame:
        if protocol not in self.info["protocols"]:
            have = ", ".join(self.info["protocols"])
            raise ValueError(f"--protocol: run {self.info['out']} did not evaluate {protocol!r} (it has: {have})")
        frame = self.frame[self.frame["method"] == method]
        return protocol_rows(frame, protocol, SelectionConfig.model_validate(self.info["selection"]))


def compare_sides(
    a: Side, b: Side, protocol: str | None, resamples: int, confidence: float, seed: int, scored=None
) -> Comparison:
    """B − A over the protocol's images (default: A's first protocol), on the protocol's scores."""
    scored = scored if scored is not None else {}
    for side in (a, b):
        if side.run not in scored:
            scored[side.run] = Scored.read(side.run)
    run_a, run_b = scored[a.run], scored[b.run]
    diff = first_difference(run_a.info["fingerprint"]["scoring"], run_b.info["fingerprint"]["scoring"])
    if diff:
        raise ValueError(f"the runs were scored differently ({diff}); their scores are not comparable")
    protocol = protocol or run_a.info["protocols"][0]
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    method_a, method_b = run_a.method(a), run_b.method(b)
    rows_a, rows_b = run_a.rows(method_a, protocol), run_b.rows(method_b, protocol)
    common = len(set(rows_a["case"]) & set(rows_b["case"]))
    warnings = []
    if common and (common < len(rows_a) or common < len(rows_b)):
        warnings.append(f"paired over the {common} cases both sides scored (A has {len(rows_a)}, B has {len(rows_b)})")
    if not common:
        warnings.append("the sides share no (subject, prompt, seed) cases; comparing them unpaired")
    found = compare(rows_a, rows_b, resamples, confidence, seed, PROTOCOLS[protocol].metrics)
    return Comparison(f"{a.run}:{method_a}", f"{b.run}:{method_b}", protocol, found, bool(common), common, warnings)


def compare_with_reference(
    run: Path, reference: str | None, protocol: str | None, resamples: int, confidence: float, seed: int
) -> list[Comparison]:
    """Every other method of one run against its reference method (default: the run's own)."""
    scored = {run: Scored.read(run)}
    reference = reference or scored[run].info["reference"]
    scored[run].method(Side(run, reference))
    return [
        compare_sides(Side(run, reference), Side(run, m), protocol, resamples, confidence, seed, scored)
        for m in scored[run].methods
        if m != reference
    ]
