"""PSI against a stored profile: 0 for identical data, large for shifted, equal to metrics.psi."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.evaluation import metrics
from riskstrat.evaluation.drift import bin_counts, drift_report, psi_against, status
from riskstrat.modeling.profile import reference_profile, variable_profile


@pytest.fixture(scope="module")
def reference():
    return np.random.default_rng(0).normal(size=5000)


def test_psi_against_a_profile_equals_the_psi_of_the_sample(reference):
    shifted = np.random.default_rng(1).normal(0.3, 1.2, size=3000)
    profile = variable_profile(reference)
    assert psi_against(profile, shifted) == pytest.approx(metrics.psi(reference, shifted), rel=1e-12)
    assert psi_against(profile, reference) == pytest.approx(0.0, abs=1e-12)
    assert psi_against(profile, reference + 1.0) > 0.25


def test_missing_values_are_a_bin_of_their_own():
    ref = np.r_[np.arange(90.0), [np.nan] * 10]
    profile = variable_profile(ref)
    assert profile["missing"] == pytest.approx(0.1)
    assert psi_against(profile, ref) == pytest.approx(0.0, abs=1e-12)
    # Half missing now: (0.5 - 0.1) * ln(5) from the missing bin, plus the present bins shrinking.
    now = np.r_[np.arange(0.0, 90.0, 1.8), [np.nan] * 50]
    expected_missing_term = 0.4 * np.log(5)
    assert psi_against(profile, now) > expected_missing_term


def test_drift_report_flags_the_shifted_feature(reference):
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"age": reference, "cost": rng.exponential(size=5000)})
    score = rng.uniform(size=5000)
    profile = reference_profile(X, score, described="test set at 2024-11-01")
    later = X.assign(age=X["age"] + 1.0, cost=X["cost"] * 1.1)
    report = drift_report(profile, later, score)
    assert report["alert"] == ["age"] and report["score_status"] == "stable"
    assert report["features"]["age"] > 0.25 and report["reference"] == "test set at 2024-11-01"
    assert [status(v) for v in (0.05, 0.1, 0.2, 0.3)] == ["stable", "stable", "warn", "alert"]


@pytest.mark.parametrize("n_edges", [1, 3, 16, 17, 40])
def test_bin_counts_equal_a_binary_search_per_value(n_edges):
    # bin_counts compares values with each edge for a profile's few edges (a binary search beyond): the same
    # counts as searchsorted(side="right") per value, with missing, infinite, -0.0 and values on an edge.

    rng = np.random.default_rng(n_edges)
    for _ in range(20):
        x = rng.integers(-3, 12, 3000).astype(float)
        x[rng.random(3000) < 0.2] = np.nan
        x[rng.random(3000) < 0.03] = np.inf
        x[rng.random(3000) < 0.03] = -np.inf
        x[rng.random(3000) < 0.05] = -0.0
        edges = np.sort(rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 7.0, 11.0, np.inf], n_edges))  # repeats too
        present = x[~np.isnan(x)]
        want = np.append(np.bincount(np.searchsorted(edges, present, side="right"), minlength=n_edges + 1),
                         np.isnan(x).sum())
        got = bin_counts({"edges": edges.tolist()}, x)
        assert got.dtype == np.int64 and got.tolist() == want.tolist()
    assert bin_counts({"edges": [0.5]}, np.array([])).tolist() == [0, 0, 0]
