"""Metrics against hand-worked cases and simulated data with a known answer; figure smoke tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from riskstrat.evaluation import metrics as m
from riskstrat.evaluation import plots

# A 10-person list case worked by hand. Ranked by score the people are
# idx 0 (y=1), 1 (0), 3 (1), 8 (0), 9 (0), 6 (0), 5 (0), 4 (0), 2 (0), 7 (1): 3 events in all.
Y10 = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0])
S10 = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.4, 0.05, 0.6, 0.5])


@pytest.fixture(scope="module")
def simulated():
    """Outcomes drawn from known probabilities, so the true model is perfectly calibrated."""
    rng = np.random.default_rng(42)
    p = expit(rng.normal(-2.0, 1.0, size=20_000))
    y = rng.binomial(1, p)
    return y, p


# ----------------------------------------------------------------------------- discrimination


def test_auroc_perfect_and_reversed_ranking():
    y = [0, 0, 1, 1]
    assert m.auroc(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert m.auroc(y, [0.4, 0.3, 0.2, 0.1]) == 0.0


def test_auroc_by_hand():
    # Positive-negative pairs: (.35>.1) yes, (.35>.4) no, (.8>.1) yes, (.8>.4) yes -> 3/4.
    assert m.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # A tie counts half.
    assert m.auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_auprc_by_hand():
    # Ranked: pos (P=1, R=.5), neg, pos (P=2/3, R=1): AP = .5*1 + .5*2/3.
    assert m.auprc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_brier_by_hand():
    assert m.brier([0, 1], [0.2, 0.6]) == pytest.approx((0.04 + 0.16) / 2)
    assert m.brier([True, False], [1.0, 0.0]) == 0.0


# ----------------------------------------------------------------------------- lists


@pytest.mark.parametrize(
    ("fraction", "ppv", "sensitivity"),
    [
        (0.1, 1.0, 1 / 3),  # k = 1: idx 0
        (0.2, 0.5, 1 / 3),  # k = 2: idx 0, 1
        (0.25, 2 / 3, 2 / 3),  # k = ceil(2.5) = 3: idx 0, 1, 3
        (0.3, 2 / 3, 2 / 3),
        (0.5, 2 / 5, 2 / 3),
        (1.0, 0.3, 1.0),
    ],
)
def test_ppv_and_sensitivity_at_top_by_hand(fraction, ppv, sensitivity):
    assert m.ppv_at_top(Y10, S10, fraction=fraction) == pytest.approx(ppv)
    assert m.sensitivity_at_top(Y10, S10, fraction=fraction) == pytest.approx(sensitivity)


def test_top_k_mask_breaks_ties_by_row_order():
    scores = [0.1, 0.9, 0.5, 0.9]
    assert m.top_k_mask(scores, 0.25).tolist() == [False, True, False, False]
    assert m.top_k_mask(scores, 0.5).tolist() == [False, True, False, True]
    assert m.top_k_mask([0.5] * 4, 0.5).tolist() == [True, True, False, False]


def test_top_k_mask_size_is_ceil_without_float_noise():
    scores = np.arange(100.0)
    assert m.top_k_mask(scores, 0.07).sum() == 7  # 0.07 * 100 = 7.000000000000001 in floats
    assert m.top_k_mask(scores, 0.005).sum() == 1
    assert m.top_k_mask(np.arange(1000.0), 0.005).sum() == 5
    assert m.top_k_mask(np.arange(1001.0), 0.005).sum() == math.ceil(5.005)


def test_net_benefit_by_hand():
    y = [1, 1, 0, 0]
    p = [0.9, 0.6, 0.7, 0.1]
    # pt = 0.5: treat idx 0, 1, 2 -> TP 2, FP 1: 2/4 - 1/4 * 1.
    assert m.net_benefit(y, p, threshold=0.5) == pytest.approx(0.25)
    # pt = 0.2: same people, weight 0.25.
    assert m.net_benefit(y, p, threshold=0.2) == pytest.approx(0.5 - 0.25 * 0.25)
    assert m.net_benefit(y, p, threshold=0.95) == 0.0


# ----------------------------------------------------------------------------- calibration


def test_calibration_of_true_probabilities(simulated):
    y, p = simulated
    assert m.calibration_slope(y, p) == pytest.approx(1.0, abs=0.1)
    assert m.calibration_intercept(y, p) == pytest.approx(0.0, abs=0.1)


def test_calibration_slope_below_one_when_over_extreme(simulated):
    y, p = simulated
    slope = m.calibration_slope(y, expit(2 * logit(p)))
    assert slope < 1
    assert slope == pytest.approx(0.5, abs=0.1)


def test_calibration_intercept_positive_when_predictions_too_low(simulated):
    y, p = simulated
    too_low = expit(logit(p) - 1.0)
    assert m.calibration_intercept(y, too_low) > 0
    assert m.calibration_intercept(y, too_low) == pytest.approx(1.0, abs=0.1)
    assert m.calibration_intercept(y, expit(logit(p) + 1.0)) < 0


def test_calibration_intercept_by_hand():
    # Everyone predicted 10%, 20% have the event: the shift is logit(0.2) - logit(0.1).
    y = np.array([1] * 20 + [0] * 80)
    p = np.full(100, 0.1)
    assert m.calibration_intercept(y, p) == pytest.approx(logit(0.2) - logit(0.1), abs=1e-8)


def test_observed_expected_sums_to_totals(simulated):
    y, p = simulated
    table = m.observed_expected_by_decile(y, p)
    assert list(table.columns) == [
        "decile", "n", "observed", "expected", "observed_rate", "expected_rate", "o_e_ratio", "o_e_ci_low", "o_e_ci_high",
    ]
    assert table["decile"].tolist() == list(range(1, 11))
    assert table["n"].sum() == len(y)
    assert (table["n"] == 2000).all()
    assert table["observed"].sum() == y.sum()
    assert table["expected"].sum() == pytest.approx(p.sum())
    assert table["expected_rate"].is_monotonic_increasing
    assert table["o_e_ratio"].to_numpy() == pytest.approx(
        (table["observed"] / table["expected"]).to_numpy()
    )


def test_observed_expected_ties_split_by_row_order():
    y = np.array([1, 0, 0, 1, 0])
    table = m.observed_expected_by_decile(y, np.full(5, 0.4), n_bins=2)
    # Rank bins: rows 0-2 -> group 1, rows 3-4 -> group 2 (sizes differ by at most one).
    assert table["n"].tolist() == [3, 2]
    assert table["observed"].tolist() == [1, 1]
    assert table["expected"].tolist() == pytest.approx([1.2, 0.8])


# ----------------------------------------------------------------------------- bootstrap, summary


def test_bootstrap_ci_contains_estimate_and_is_seeded(simulated):
    y, p = simulated
    y, p = y[:2000], p[:2000]
    low, high = m.bootstrap_ci(m.auroc, y, p, n_boot=100, seed=3)
    assert low < m.auroc(y, p) < high
    assert m.bootstrap_ci(m.auroc, y, p, n_boot=100, seed=3) == (low, high)


def test_no_interval_with_one_event_in_20_rows():
    # One event in 20 rows: an unstratified bootstrap skipped the resamples that missed it and gave
    # (1.0, 1.0), an interval that excludes 0.5. Now there is none, and the reason says why.
    y = np.zeros(20, dtype=int)
    y[0] = 1
    for interval in (m.bootstrap_ci(m.auroc, y, np.linspace(1, 0, 20), n_boot=50),
                     m.auroc_ci(y, np.linspace(1, 0, 20), n_boot=50)):
        low, high = interval
        assert np.isnan(low) and np.isnan(high) and interval.reason.startswith("too few events")
        assert interval.n_used == 0
    assert all(np.isnan(v) for v in m.paired_auroc_difference(y, np.linspace(1, 0, 20), np.ones(20))[1:])
    # At the minimum (10 events, 10 without) there is one, from every resample.
    y10 = np.r_[np.ones(m.MIN_EVENTS_FOR_INTERVAL, int), np.zeros(10, int)]
    interval = m.auroc_ci(y10, np.random.default_rng(0).uniform(size=20), n_boot=50)
    assert np.isfinite(interval.low) and interval.n_used == interval.n_boot == 50 and not interval.reason


def test_bootstrap_is_stratified_by_outcome_and_counts_its_resamples(simulated):
    y, p = simulated
    y, p = y[:600], p[:600]
    seen = []

    def events_in_resample(yt, ys):
        seen.append(int(yt.sum()))
        if len(seen) % 4 == 0:
            raise ValueError("no value on this resample")
        return float(np.mean(ys))

    interval = m.bootstrap_ci(events_in_resample, y, p, n_boot=40, seed=2)
    assert set(seen) == {int(y.sum())}  # every resample keeps the number of events
    assert interval.n_boot == 40 and interval.n_used == 30  # the 10 that gave no value are counted out


def test_auroc_ci_is_bootstrap_ci_of_auroc_without_resorting(simulated):
    y, p = simulated
    y, p = y[:2000], np.round(p[:2000], 2)  # rounded: many tied scores
    for seed in (0, 3):
        assert m.auroc_ci(y, p, n_boot=60, seed=seed) == pytest.approx(
            m.bootstrap_ci(m.auroc, y, p, n_boot=60, seed=seed), abs=1e-12)
    with pytest.raises(ValueError, match="n_boot must be at least 1"):
        m.auroc_ci(y, p, n_boot=0)


def test_paired_auroc_difference_matches_resampling_both_scores(simulated):
    y, p = simulated
    y, a = y[:1500], p[:1500]
    b = np.round(a + np.random.default_rng(1).normal(0, 0.05, len(a)), 2)
    d, low, high = m.paired_auroc_difference(y, a, b, n_boot=40, seed=5)
    rng, draws = np.random.default_rng(5), []
    events, others = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    for _ in range(40):  # the reference: resample events and non-events, both AUROCs with scikit-learn
        idx = np.r_[events[rng.integers(0, len(events), len(events))], others[rng.integers(0, len(others), len(others))]]
        draws.append(m.auroc(y[idx], a[idx]) - m.auroc(y[idx], b[idx]))
    assert d == pytest.approx(m.auroc(y, a) - m.auroc(y, b))
    assert (low, high) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])), abs=1e-12)
    assert low < d < high


def test_summarise_keys_and_values(simulated):
    y, p = simulated
    y, p = y[:3000], p[:3000]
    out = m.summarise(y, p, n_boot=50)
    expected_keys = {
        "auroc", "auroc_ci_low", "auroc_ci_high", "bootstrap_resamples_used", "auprc", "prevalence", "n",
        "n_positive", "brier", "calibration_slope", "calibration_slope_ci_low", "calibration_slope_ci_high",
        "calibration_slope_not_estimable", "calibration_intercept",
        "ppv_top_0.5pct", "sensitivity_top_0.5pct", "ppv_top_1pct", "sensitivity_top_1pct",
        "ppv_top_2pct", "sensitivity_top_2pct", "ppv_top_5pct", "sensitivity_top_5pct",
    }
    assert set(out) == expected_keys
    assert all(isinstance(v, float) for v in out.values())
    assert out["n"] == 3000 and out["n_positive"] == y.sum()
    assert out["prevalence"] == pytest.approx(y.mean())
    assert out["auroc"] == m.auroc(y, p)
    assert out["auroc_ci_low"] < out["auroc"] < out["auroc_ci_high"]
    assert out["ppv_top_5pct"] == m.ppv_at_top(y, p, fraction=0.05)
    assert out["bootstrap_resamples_used"] == 50 and out["calibration_slope_not_estimable"] == 0
    assert out["calibration_slope_ci_low"] < out["calibration_slope"] < out["calibration_slope_ci_high"]


def test_summarise_of_a_plain_score_has_no_calibration_keys():
    out = m.summarise(Y10, S10 * 7, is_probability=False, top_fractions=(0.2, 0.07), n_boot=20)
    assert "brier" not in out and "calibration_slope" not in out
    assert out["ppv_top_20pct"] == 0.5
    assert "sensitivity_top_7pct" in out


# ----------------------------------------------------------------------------- drift
# (metrics by group: riskstrat.evaluation.metric_frame, tests/test_evaluation.py)


def test_psi_zero_for_identical_and_large_for_shifted():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert m.psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert m.psi(reference, rng.normal(size=5000)) < 0.1
    assert m.psi(reference, reference + 0.5) > 0.1


# ----------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: m.auroc([0, 1, 1], [0.1, 0.2]), "different lengths"),
        (lambda: m.auroc([0, 2], [0.1, 0.2]), "binary"),
        (lambda: m.auroc(["no", "yes"], [0.1, 0.2]), "binary"),
        (lambda: m.auroc([1, 1], [0.1, 0.2]), "only one class"),
        (lambda: m.auroc([0, 1], [0.1, np.nan]), "NaN"),
        (lambda: m.auroc([0, np.nan], [0.1, 0.2]), "NaN"),
        (lambda: m.brier([0, 1], [0.1, 1.2]), r"\[0, 1\]"),
        (lambda: m.summarise([0, 0], [0.1, 0.2]), "only one class"),
        (lambda: m.summarise([0, 1], [0.1, np.nan]), "NaN"),
        (lambda: m.top_k_mask([0.1, 0.2], 0), "fraction"),
        (lambda: m.sensitivity_at_top([0, 0], [0.1, 0.2], fraction=0.5), "at least one positive"),
        (lambda: m.net_benefit([0, 1], [0.1, 0.2], threshold=1.0), "threshold"),
        (lambda: m.observed_expected_by_decile([0, 1], [0.1, 0.2]), "n_bins"),
        (lambda: m.psi([0.1, np.nan], [0.1, 0.2]), "NaN"),
    ],
)
def test_input_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- figures


@pytest.fixture(scope="module")
def two_models(simulated):
    y, p = simulated
    y, p = y[:2000], p[:2000]
    noisy = expit(logit(p) + np.random.default_rng(5).normal(0, 1, size=len(p)))
    return y, {"true": p, "noisy": noisy}


@pytest.mark.parametrize(
    ("make", "n_lines"),
    [
        (plots.roc_figure, 3),  # two models + chance diagonal
        (plots.pr_figure, 3),  # two models + prevalence
        (plots.calibration_figure, 3),  # two models + perfect-calibration diagonal
        (plots.topk_ppv_figure, 3),  # two models + prevalence
    ],
)
def test_figures_have_one_line_per_model_plus_reference(make, n_lines, two_models):
    from matplotlib.figure import Figure

    y, models = two_models
    fig = make(y, models)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == n_lines
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("true") for label in labels)


def test_roc_legend_shows_auroc(two_models):
    y, models = two_models
    fig = plots.roc_figure(y, models)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"true (AUROC {m.auroc(y, models['true']):.3f})" in labels


def test_save_figure_writes_png_atomically(tmp_path, two_models):
    y, models = two_models
    target = tmp_path / "figs" / "roc.png"
    returned = plots.save_figure(plots.roc_figure(y, models), target)
    assert returned == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in target.parent.iterdir()] == ["roc.png"]  # no temp file left behind


def test_figure_functions_reject_empty_model_dict():
    with pytest.raises(ValueError, match="at least one model"):
        plots.roc_figure(Y10, {})
