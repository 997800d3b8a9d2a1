"""The evaluation statistics that must not depend on row order or an optimiser's silence, each against
a reference library's value on fixed data (statsmodels, scipy) or a hand-computed expectation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from scipy.stats import chi2

from riskstrat.evaluation import metrics as m
from riskstrat.evaluation._evaluate import subgroup_metric_set
from riskstrat.evaluation.drift import psi_against, status
from riskstrat.modeling.profile import variable_profile


@pytest.fixture(scope="module")
def normal_data():
    rng = np.random.default_rng(11)
    p = expit(rng.normal(-1.5, 1.0, size=1500))
    return rng.binomial(1, expit(0.2 + 0.8 * logit(p))), p


# ----------------------------------------------------------------------------- top-k ties


def test_top_k_with_ties_is_the_expectation_whatever_the_row_order():
    # 100 people: 4 scored 0.9 (3 events), 12 tied at 0.5 (4 events), the rest 0.1 (2 events).
    score = np.r_[[0.9] * 4, [0.5] * 12, [0.1] * 84]
    y = np.r_[[1, 1, 1, 0], [1] * 4 + [0] * 8, [1, 1] + [0] * 82]
    # Top 10%: 10 places, 4 above the tie, 6 of the 12 tied: expected events 3 + 4 * 6/12 = 5.
    expected_ppv, expected_sensitivity = 5 / 10, 5 / 9
    rng = np.random.default_rng(0)
    for _ in range(20):
        order = rng.permutation(100)
        assert m.ppv_at_top(y[order], score[order], fraction=0.1) == pytest.approx(expected_ppv, abs=1e-12)
        assert m.sensitivity_at_top(y[order], score[order], fraction=0.1) == pytest.approx(expected_sensitivity)
        assert m.number_needed_to_flag(y[order], score[order], fraction=0.1) == pytest.approx(2.0)
        row = m.case_finding_table(y[order], score[order], fractions=[0.1]).iloc[0]
        assert row["n_flagged"] == 10 and row["events_caught"] == pytest.approx(5.0)
    # Breaking the tie by row order instead gave anything from 3 + 0 to 3 + 4 events.
    caught = {int(y[o][m.top_k_mask(score[o], 0.1)].sum()) for o in (rng.permutation(100) for _ in range(200))}
    assert len(caught) > 2
    # The events-listed share per group uses the same expectation at the population's cut-off.
    share = subgroup_metric_set(y, score, list_fraction=0.1)["events_listed_top_10pct"]
    assert share(y, score) == pytest.approx(5 / 9)


# ----------------------------------------------------------------------------- calibration slope


def test_calibration_slope_and_interval_equal_statsmodels_logit(normal_data):
    import statsmodels.api as sm

    y, p = normal_data
    ref = sm.Logit(y, sm.add_constant(logit(p))).fit(disp=0)
    fit = m.calibration_fit(y, p)
    assert fit.intercept == pytest.approx(ref.params[0], abs=1e-6)
    assert fit.slope == pytest.approx(ref.params[1], abs=1e-6)
    assert fit.slope_se == pytest.approx(ref.bse[1], rel=1e-5)
    np.testing.assert_allclose([fit.slope_ci_low, fit.slope_ci_high], ref.conf_int()[1], rtol=1e-5)
    assert fit.estimable and m.calibration_slope(y, p) == fit.slope


@pytest.mark.parametrize(("y", "p", "reason"), [
    (np.r_[[1] * 30, [0] * 70], np.full(100, 0.3), "constant predicted risk"),
    (np.r_[[1] * 30, [0] * 70], np.r_[np.linspace(0.6, 0.9, 30), np.linspace(0.05, 0.5, 70)],
     "the outcome is perfectly separated by the predicted risk"),
    (np.r_[[1] * 30, [0] * 70], np.r_[np.linspace(0.5, 0.9, 30), np.linspace(0.05, 0.5, 70)],  # quasi: a tie at 0.5
     "the outcome is perfectly separated by the predicted risk"),
])
def test_a_slope_that_cannot_be_estimated_is_nan_with_a_reason_and_a_warning(y, p, reason):
    with pytest.warns(m.NotEstimableWarning, match="not estimable"):
        fit = m.calibration_fit(y, p)
    assert np.isnan(fit.slope) and np.isnan(fit.slope_ci_low) and fit.reason == reason and not fit.estimable
    with pytest.warns(m.NotEstimableWarning):
        summary = m.summarise(y, p, n_boot=20)
    assert np.isnan(summary["calibration_slope"]) and summary["calibration_slope_not_estimable"] == m.NOT_ESTIMABLE[reason]
    with pytest.warns(m.NotEstimableWarning):
        table = m.recalibration_table(y, p)
    assert table.loc["logistic"].isna().all()


# ----------------------------------------------------------------------------- ICI


def test_ici_equals_the_mean_distance_from_statsmodels_lowess_without_clipping():
    from statsmodels.nonparametric.smoothers_lowess import lowess

    rng = np.random.default_rng(3)
    p = np.sort(rng.uniform(0.001, 0.35, size=600))  # distinct values: no pooling
    y = rng.binomial(1, np.clip(1.6 * p - 0.05, 0, 1))  # a curve that dips below 0 at the low end
    smooth = lowess(y, p, frac=0.75, it=0, delta=0.0, return_sorted=False)
    assert smooth.min() < 0  # the smoothed curve leaves [0, 1]: clipping it would change the ICI
    assert m.integrated_calibration_index(y, p) == pytest.approx(np.mean(np.abs(smooth - p)), abs=1e-10)
    clipped = np.mean(np.abs(np.clip(smooth, 0, 1) - p))
    assert abs(m.integrated_calibration_index(y, p) - clipped) > 1e-4
    curve = m.smoothed_calibration(y, p, n_grid=1000)
    np.testing.assert_allclose(curve["observed"], smooth, atol=1e-10)


def _local_linear_loop(x, y, weight, at, *, frac):
    """The loess as it was first written, one point at a time: the reference the vectorised one must equal."""
    import math

    total = weight.sum()
    k = min(total, max(2.0, math.floor(frac * total + 1e-10)))
    out = np.empty(len(at))
    for j, x0 in enumerate(at):
        d = np.abs(x - x0)
        order = np.argsort(d, kind="stable")
        reach = np.searchsorted(np.cumsum(weight[order]), k - 1e-9)
        h = d[order[min(reach, len(order) - 1)]] * max(1.0, frac)
        if h == 0:
            here = d == 0
            out[j] = weight[here] @ y[here] / weight[here].sum()
            continue
        w = weight * (1 - np.clip(d / h, 0, 1) ** 3) ** 3
        sw = w.sum()
        mx, my = w @ x / sw, w @ y / sw
        sxx = w @ ((x - mx) ** 2)
        slope = (w @ ((x - mx) * (y - my))) / sxx if sxx > 0 else 0.0
        out[j] = my + slope * (x0 - mx)
    return out


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the "one x" case, in both
@pytest.mark.parametrize("case", ["pooled", "ties", "narrow", "wide", "heavy point", "one x", "long grid"])
def test_the_vectorised_loess_equals_the_loop_one_point_at_a_time(case, monkeypatch):
    rng = np.random.default_rng(sum(map(ord, case)))
    n = {"long grid": 700}.get(case, 300)
    x = np.sort(rng.uniform(0, 0.6, size=n))
    if case == "ties":
        x = np.round(x, 2)  # many rows at one distance from a point: the stable order decides the window
    if case == "one x":
        x = np.full(n, 0.2)  # no spread: the slope is 0, every point gets the weighted mean
    y = rng.uniform(0, 1, size=n)
    weight = rng.integers(1, 40, size=n).astype(float)
    frac = {"narrow": 0.02, "wide": 1.7, "heavy point": 0.01}.get(case, 0.75)
    if case == "heavy point":
        weight[n // 2] = 10 * weight.sum()  # one row outweighs the window: radius 0 there, its own mean
    at = np.concatenate([x, rng.uniform(-0.1, 0.7, size=50)])
    if case == "long grid":
        monkeypatch.setattr(m, "_LOESS_BLOCK", 3 * n + 7)  # several blocks, the last one short
    expected = _local_linear_loop(x, y, weight, at, frac=frac)
    got = m._local_linear(x, y, weight, at, frac=frac)
    # A window whose every row sits on its edge has no weight (0/0 in both): NaN in the same places.
    assert np.isfinite(expected).mean() > 0.8
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    if case == "heavy point":
        assert got[n // 2] == pytest.approx(y[n // 2], abs=1e-12)


# ----------------------------------------------------------------------------- PSI


def test_psi_newly_missing_values_are_a_small_shift_and_a_real_shift_still_warns():
    rng = np.random.default_rng(5)
    reference = rng.normal(size=20_000)
    profile = variable_profile(reference)
    assert profile["missing"] == 0
    now = rng.normal(size=20_000)
    now[:400] = np.nan  # 2% newly missing: was 0.203 with the 1e-6 floor ("warn")
    assert status(psi_against(profile, now)) == "stable" and psi_against(profile, now) < 0.02
    lots = rng.normal(size=20_000)
    lots[:6000] = np.nan  # 30% newly missing: a real change
    assert status(psi_against(profile, lots)) == "alert"
    shifted = rng.normal(0.5, 1.0, size=20_000)
    shifted[:400] = np.nan
    assert status(psi_against(profile, shifted)) in ("warn", "alert")
    # The plain PSI: an empty reference bin merges with its neighbour (identical shares -> 0).
    assert m.psi_of_shares([0.5, 0.0, 0.5], [0.45, 0.05, 0.5]) == pytest.approx(0.0)


# ----------------------------------------------------------------------------- O/E intervals


def test_o_e_by_decile_and_tier_carry_garwood_intervals(normal_data):
    y, p = normal_data
    for table in (m.observed_expected_by_decile(y, p), m.observed_expected_by_tier(y, p)):
        o, e = table["observed"].to_numpy(float), table["expected"].to_numpy(float)
        low = np.where(o > 0, chi2.ppf(0.025, 2 * np.maximum(o, 1)) / 2, 0.0) / e
        np.testing.assert_allclose(table["o_e_ci_low"], low, rtol=1e-10)
        np.testing.assert_allclose(table["o_e_ci_high"], chi2.ppf(0.975, 2 * o + 2) / 2 / e, rtol=1e-10)
        assert (table["o_e_ci_low"] <= table["o_e_ratio"]).all() and (table["o_e_ratio"] <= table["o_e_ci_high"]).all()
