"""PSI against a stored profile: 0 for identical data, large for shifted, equal to metrics.psi."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.evaluation import metrics
from riskstrat.evaluation.drift import drift_report, psi_against, status
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
