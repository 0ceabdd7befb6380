"""Means with percentile-bootstrap confidence intervals, per subject and overall, and run differences.

Images are the resampling unit. Scores of one subject (or one prompt) are correlated, so the
intervals are narrower than a subject-level bootstrap would give; with the benchmark's few subjects
a subject-level bootstrap is not meaningful, and published tables report plain means. Resampling is
seeded, so a summary is reproducible. NaN scores (masked scores of images without a detected
subject) are left out and the count of scored images is reported beside each mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from evaluation.metric_info import ALL, LABELS

_MAX_DRAWS = 10_000_000  # resampled values held in memory at once


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    n: int


def _bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    chunk = max(1, _MAX_DRAWS // len(values))
    means = [
        values[rng.integers(0, len(values), size=(min(chunk, resamples - done), len(values)))].mean(axis=1)
        for done in range(0, resamples, chunk)
    ]
    return np.concatenate(means)


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def _estimate(mean: float, draws: np.ndarray, confidence: float, n: int) -> Estimate:
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return Estimate(float(mean), float(lo), float(hi), n)


NO_ESTIMATE = Estimate(float("nan"), float("nan"), float("nan"), 0)


def bootstrap_mean(values, resamples: int, confidence: float, seed: int) -> Estimate:
    """Mean of the finite values with a percentile-bootstrap interval (NaN when none is finite)."""
    x = _finite(values)
    if len(x) == 0:
        return NO_ESTIMATE
    return _estimate(x.mean(), _bootstrap_means(x, resamples, np.random.default_rng(seed)), confidence, len(x))


def metrics_of(frame: pd.DataFrame) -> list[str]:
    """The summarised metrics a table has, in display order."""
    return [m for m in LABELS if m in frame.columns]


def summarize(frame: pd.DataFrame, resamples: int, confidence: float, seed: int) -> list[dict]:
    """One row per (method, subject) and per method over all subjects (``subject == "all"``)."""
    rows = []
    for method, by_method in frame.groupby("method", sort=False):
        groups = [*by_method.groupby("subject", sort=True), (ALL, by_method)]
        for subject, group in groups:
            rows.append(
                {
                    "method": method,
                    "subject": subject,
                    "images": len(group),
                    "metrics": {
                        m: asdict(bootstrap_mean(group[m], resamples, confidence, seed)) for m in metrics_of(frame)
                    },
                }
            )
    return rows


def flat(rows: list[dict]) -> pd.DataFrame:
    """Summary rows as a flat table (``clip_t``, ``clip_t_lo``, ``clip_t_hi``, ``clip_t_n``, ...)."""
    records = []
    for row in rows:
        record = {k: v for k, v in row.items() if k != "metrics"}
        for metric, est in row["metrics"].items():
            record |= {
                metric: est["mean"],
                f"{metric}_lo": est["lo"],
                f"{metric}_hi": est["hi"],
                f"{metric}_n": est["n"],
            }
        records.append(record)
    return pd.DataFrame.from_records(records)


@dataclass(frozen=True)
class Difference:
    metric: str
    a: Estimate
    b: Estimate
    diff: Estimate
    """b − a, with its interval."""
    paired: bool
    """True: resampled over the cases both sides scored (same subject, prompt and seed)."""


def compare(
    a: pd.DataFrame,
    b: pd.DataFrame,
    resamples: int,
    confidence: float,
    seed: int,
    metrics: list[str] | None = None,
    key: str = "case",
) -> list[Difference]:
    """Per metric both sides have (or of ``metrics``): each side's mean, and the difference b − a
    with a bootstrap interval.

    When the sides share cases (``key``: subject, prompt and seed), everything is computed over
    those cases and the difference is paired (the same noise seeds, prompts and subjects on both
    sides, so per-image differences cancel what the cases have in common); otherwise the two sides
    are resampled independently.
    """
    common = sorted(set(a[key]) & set(b[key]))
    if common:  # every estimate over the same cases, so B − A is the difference of the shown means
        a, b = a.set_index(key).loc[common], b.set_index(key).loc[common]
    out = []
    for metric in [m for m in (metrics or metrics_of(a)) if m in a.columns and m in b.columns]:
        est_a = bootstrap_mean(a[metric], resamples, confidence, seed)
        est_b = bootstrap_mean(b[metric], resamples, confidence, seed)
        if common:
            xa, xb = a[metric].to_numpy(dtype=np.float64), b[metric].to_numpy(dtype=np.float64)
            diff = bootstrap_mean(xb - xa, resamples, confidence, seed)
        else:
            diff = _unpaired_difference(a[metric], b[metric], resamples, confidence, seed)
        out.append(Difference(metric, est_a, est_b, diff, bool(common)))
    return out


def _unpaired_difference(a, b, resamples: int, confidence: float, seed: int) -> Estimate:
    xa, xb = _finite(a), _finite(b)
    if not len(xa) or not len(xb):
        return NO_ESTIMATE
    rng = np.random.default_rng(seed)
    draws = _bootstrap_means(xb, resamples, rng) - _bootstrap_means(xa, resamples, rng)
    return _estimate(xb.mean() - xa.mean(), draws, confidence, min(len(xa), len(xb)))
