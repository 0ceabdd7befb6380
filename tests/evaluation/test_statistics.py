"""Bootstrap means, summaries and run differences on data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evaluation.statistics import bootstrap_mean, compare, flat, summarize


def test_bootstrap_interval_is_seeded_and_about_the_normal_width():
    x = np.random.default_rng(0).normal(0.5, 0.1, size=400)
    est = bootstrap_mean(x, resamples=2000, confidence=0.95, seed=1)
    assert est == bootstrap_mean(x, resamples=2000, confidence=0.95, seed=1)
    assert est.mean == pytest.approx(x.mean()) and est.n == 400
    half_width = 1.96 * x.std() / math.sqrt(len(x))
    assert est.hi - est.lo == pytest.approx(2 * half_width, rel=0.15)
    assert est.lo < est.mean < est.hi


def test_bootstrap_skips_nan_and_handles_degenerate_input():
    est = bootstrap_mean([0.2, float("nan"), 0.2], resamples=100, confidence=0.9, seed=0)
    assert (est.mean, est.lo, est.hi, est.n) == (pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.2), 2)
    empty = bootstrap_mean([float("nan")], resamples=100, confidence=0.9, seed=0)
    assert empty.n == 0 and math.isnan(empty.mean)
    assert bootstrap_mean([True, False, True, True], 100, 0.9, 0).mean == 0.75


def frame(values: dict[str, list[float]], ids=None) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    subjects = ["dog", "cat"] * (n // 2)
    return pd.DataFrame(
        {
            "case": ids or [f"{s}/p00/{i}" for i, s in enumerate(subjects)],
            "method": "jedi",
            "subject": subjects,
            **values,
        }
    )


def test_summary_rows_per_subject_and_overall():
    rows = summarize(frame({"clip_t": [0.1, 0.3, 0.2, 0.5]}), resamples=200, confidence=0.95, seed=0)
    assert [(r["method"], r["subject"], r["images"]) for r in rows] == [
        ("jedi", "cat", 2),
        ("jedi", "dog", 2),
        ("jedi", "all", 4),
    ]
    assert rows[0]["metrics"]["clip_t"]["mean"] == pytest.approx(0.4)
    assert rows[2]["metrics"]["clip_t"]["mean"] == pytest.approx(0.275)
    table = flat(rows)
    assert list(table.columns) == ["method", "subject", "images", "clip_t", "clip_t_lo", "clip_t_hi", "clip_t_n"]


def test_paired_difference_cancels_what_the_cases_share():
    rng = np.random.default_rng(0)
    a_vals = rng.uniform(0.2, 0.9, size=100)  # large spread between cases...
    a = frame({"clip_i": list(a_vals)})
    b = frame({"clip_i": list(a_vals + 0.01)})  # ...and a small, consistent improvement
    (d,) = compare(a, b, resamples=500, confidence=0.95, seed=0)
    assert d.paired and d.diff.mean == pytest.approx(0.01)
    assert d.diff.lo == pytest.approx(0.01) and d.diff.hi == pytest.approx(0.01)
    b_other = frame({"clip_i": list(a_vals + 0.01)}, ids=[f"x/{i}" for i in range(100)])
    (u,) = compare(a, b_other, resamples=500, confidence=0.95, seed=0)
    assert not u.paired and u.diff.mean == pytest.approx(0.01)
    assert u.diff.lo < 0 < u.diff.hi, "unpaired, the case spread swamps a 0.01 difference"


def test_paired_compare_uses_only_the_common_ids():
    a = frame({"clip_t": [0.1, 0.2, 0.3, 0.4]})
    b = frame({"clip_t": [0.2, 0.3]}, ids=list(a["case"][:2]))
    (d,) = compare(a, b, resamples=100, confidence=0.9, seed=0)
    assert (d.a.mean, d.b.mean, d.diff.mean) == (pytest.approx(0.15), pytest.approx(0.25), pytest.approx(0.1))
