"""Evaluation metrics against hand-worked cases; the MetricFrame against the metric on each group alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from riskstrat.evaluation import metrics as m
from riskstrat.evaluation import (age_band, deprivation_quintile, evaluate_scores, metric_frame,
                                  subgroup_attributes)

Y10 = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0])
S10 = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.4, 0.05, 0.6, 0.5])


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(7)
    p = expit(rng.normal(-2.0, 1.0, size=20_000))
    return rng.binomial(1, p), p


# ----------------------------------------------------------------------------- calibration


def test_ici_by_hand_two_clusters():
    # 10 people at p=0.1 with 2 events, 10 at p=0.5 with 5: the local line through the two cluster
    # means gives 0.2 and 0.5, so ICI = (10 * |0.2 - 0.1| + 10 * 0) / 20 = 0.05.
    y = np.array([1, 1] + [0] * 8 + [1] * 5 + [0] * 5)
    p = np.array([0.1] * 10 + [0.5] * 10)
    assert m.integrated_calibration_index(y, p, frac=2.0) == pytest.approx(0.05, abs=1e-12)
    curve = m.smoothed_calibration(y, p, frac=2.0)
    np.testing.assert_allclose(curve["observed"], [0.2, 0.5], atol=1e-12)


def test_ici_small_when_calibrated_and_large_when_halved(simulated):
    y, p = simulated
    assert m.integrated_calibration_index(y, p) < 0.01
    # Halving every risk: the smoothed curve follows p, so ICI approaches mean(p) / 2.
    assert m.integrated_calibration_index(y, p / 2) == pytest.approx(np.mean(p) / 2, rel=0.15)


def test_observed_expected_ratio_by_hand():
    assert m.observed_expected_ratio([1, 0, 0, 0], [0.1] * 4) == pytest.approx(2.5)


def test_recalibration_table_side_by_side(simulated):
    y, p = simulated
    too_low = expit(logit(p) - 1.0)
    table = m.recalibration_table(y, too_low)
    assert list(table.index) == ["as trained", "in the large", "logistic"]
    assert table.loc["as trained", "o_e_ratio"] > 1.5
    # In the large: expected equals observed exactly; logistic: intercept 0 and slope 1 after refit.
    assert table.loc["in the large", "o_e_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert table.loc["logistic", "calibration_slope"] == pytest.approx(1.0, abs=1e-4)
    assert table.loc["in the large", "intercept"] == pytest.approx(1.0, abs=0.1)
    assert table.loc["logistic", "ici"] < table.loc["as trained", "ici"]


def test_logistic_recalibration_recovers_a_known_distortion(simulated):
    y, p = simulated
    a, b = m.logistic_recalibration(y, expit(0.5 + 2 * logit(p)))
    # logit(p) = (logit(q) - 0.5) / 2: intercept -0.25, slope 0.5.
    assert a == pytest.approx(-0.25, abs=0.06) and b == pytest.approx(0.5, abs=0.05)


def test_observed_expected_by_tier_by_hand():
    # 1,000 people, risk = rank / 1000; the default tiers hold 5, 45, 150 and 800 people.
    p = np.arange(1, 1001) / 1000
    y = np.zeros(1000, int)
    y[-5:] = 1      # every very-high person has the event
    y[:8] = 1       # and 8 in the low tier
    t = m.observed_expected_by_tier(y, p)
    assert t["tier"].tolist() == ["very high", "high", "moderate", "low"]
    assert t["n"].tolist() == [5, 45, 150, 800]
    assert t["observed"].tolist() == [5, 0, 0, 8]
    assert t.loc[0, "expected"] == pytest.approx(p[-5:].sum())
    assert t.loc[0, "o_e_ratio"] == pytest.approx(5 / p[-5:].sum())


# ----------------------------------------------------------------------------- case finding


@pytest.mark.parametrize(("fraction", "n_flagged", "caught", "nnf", "per_1000"), [
    (0.1, 1, 1, 1.0, 1000.0),      # idx 0
    (0.2, 2, 1, 2.0, 500.0),       # idx 0, 1
    (0.3, 3, 2, 1.5, 2000 / 3),    # idx 0, 1, 3
    (0.5, 5, 2, 2.5, 400.0),
])
def test_case_finding_by_hand(fraction, n_flagged, caught, nnf, per_1000):
    assert m.number_needed_to_flag(Y10, S10, fraction=fraction) == pytest.approx(nnf)
    assert m.events_per_1000_flagged(Y10, S10, fraction=fraction) == pytest.approx(per_1000)
    row = m.case_finding_table(Y10, S10, fractions=[fraction]).iloc[0]
    assert (row["n_flagged"], row["events_caught"]) == (n_flagged, caught)
    assert row["sensitivity"] == pytest.approx(caught / 3)
    assert row["list"] == f"top {fraction * 100:g}%"


def test_number_needed_to_flag_is_infinite_when_nobody_caught():
    assert m.number_needed_to_flag([0, 0, 1], [0.9, 0.5, 0.1], fraction=0.3) == float("inf")


def test_decision_curve_by_hand():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.7, 0.1])
    dc = m.decision_curve(y, p, thresholds=[0.2, 0.5, 0.95])
    # pt=0.5: flag 0, 1, 2 -> 2/4 - 1/4 * 1; treat-all: 0.5 - 0.5 * 1 = 0.
    np.testing.assert_allclose(dc["net_benefit_model"], [0.5 - 0.25 * 0.25, 0.25, 0.0])
    np.testing.assert_allclose(dc["net_benefit_all"], [0.5 - 0.5 * 0.25, 0.0, 0.5 - 0.5 * 19])
    assert (dc["net_benefit_none"] == 0).all()


# ----------------------------------------------------------------------------- groups


def test_age_bands_include_the_priority_groups():
    assert age_band([17.5, 18, 39.99, 40, 55.99, 56, 84.99, 85, 101]).tolist() == [
        "under 18", "18-39", "18-39", "40-55", "40-55", "56-64", "75-84", "85+", "85+"]


def test_deprivation_quintile_from_decile():
    assert deprivation_quintile([1, 2, 3, 4, 9, 10, np.nan]).tolist() == [
        "1 (most deprived)", "1 (most deprived)", "2", "2", "5 (least deprived)", "5 (least deprived)", "unknown"]


def test_subgroup_attributes_from_a_feature_frame():
    frame = pd.DataFrame({"age": [45.0, 90.0], "sex": pd.Series(["female", None], dtype="category", index=["a", "b"]),
                          "deprivation_decile": [1.0, 8.0], "ethnicity_group": ["white", "asian"],
                          "practice_id": ["P1", "P2"]}, index=["a", "b"])
    attrs = subgroup_attributes(frame)
    assert attrs.to_dict("list") == {"age band": ["40-55", "85+"], "sex": ["female", "unknown"],
                                     "deprivation quintile": ["1 (most deprived)", "4"],
                                     "ethnicity group": ["white", "asian"], "GP practice": ["P1", "P2"]}


def test_metric_frame_equals_the_metric_on_each_group_alone(simulated):
    y, p = simulated
    rng = np.random.default_rng(3)
    groups = pd.DataFrame({"sex": rng.choice(["female", "male"], len(y)),
                           "band": rng.choice(["a", "b", "c", None], len(y), p=[0.5, 0.3, 0.195, 0.005])})
    metrics = {"auroc": m.auroc, "o_e": m.observed_expected_ratio,
               "ici": m.integrated_calibration_index}
    mf = metric_frame(metrics, y, p, sensitive_features=groups, min_events=20)
    assert mf.overall["auroc"] == pytest.approx(m.auroc(y, p))
    for attribute in groups:
        keys = groups[attribute].fillna("missing")
        for group in keys.unique():
            alone = (keys == group).to_numpy()
            row = mf.by_group.loc[(attribute, group)]
            assert row["n"] == alone.sum() and row["n_events"] == y[alone].sum()
            for name, fn in metrics.items():
                assert row[name] == pytest.approx(fn(y[alone], p[alone]), rel=1e-12)
    # About 100 people with ~12 events in the missing band: kept, flagged small, left out of the gaps.
    assert bool(mf.by_group.loc[("band", "missing"), "small"])
    gaps = mf.gaps("auroc")
    assert set(gaps["attribute"]) == {"sex", "band"}
    assert "missing" not in set(gaps["lowest_group"]) | set(gaps["highest_group"])


def test_metric_frame_gives_nan_where_a_metric_is_undefined():
    mf = metric_frame({"auroc": m.auroc}, [0, 0, 1, 0], [0.1, 0.2, 0.9, 0.3],
                      sensitive_features={"g": ["x", "x", "y", "y"]}, min_events=0)
    assert np.isnan(mf.by_group.loc[("g", "x"), "auroc"])  # one class only
    assert mf.by_group.loc[("g", "y"), "auroc"] == 1.0


def test_metric_frame_rejects_misaligned_groups():
    with pytest.raises(ValueError, match="sensitive_features has 2 rows, y_true has 3"):
        metric_frame({"auroc": m.auroc}, [0, 1, 0], [0.1, 0.9, 0.2], sensitive_features={"g": ["a", "b"]})


def test_evaluate_scores_headline_and_comparison(simulated):
    y, p = simulated
    rng = np.random.default_rng(1)
    noisy = expit(logit(p) + rng.normal(0, 1.5, len(p)))
    attrs = pd.DataFrame({"sex": rng.choice(["female", "male"], len(y))})
    ev = evaluate_scores(y, {"candidate": p, "champion": noisy}, attrs, n_boot=30, seed=0)
    assert ev.n_events == y.sum()
    assert ev.headline.loc["candidate", "auroc"] == pytest.approx(m.auroc(y, p))
    row = ev.comparison.set_index("versus").loc["champion"]
    assert row["auroc_difference"] == pytest.approx(m.auroc(y, p) - m.auroc(y, noisy))
    assert 0 < row["ci_low"] < row["auroc_difference"] < row["ci_high"]
    assert ev.metrics["minus_champion.auroc_ci_low"] == row["ci_low"]
    assert ev.case_finding["list"].tolist()[:4] == ["top 0.5%", "top 1%", "top 2%", "top 5%"]
    assert ev.case_finding["list"].iloc[4].startswith("tier very high")
    assert ev.metrics["subgroup.min_auroc"] == pytest.approx(ev.subgroups.by_group["auroc"].min())


# ----------------------------------------------------------------------------- cost


COST10 = np.array([0, 100, 50, 900, 10, 20, 0, 5000, 30, 40], dtype=float)   # total 6,150
PRED10 = np.array([10, 90, 40, 1000, 20, 20, 5, 800, 30, 60], dtype=float)   # total 2,075


def test_cost_capture_by_hand():
    # Top 20% by S10 = rows 0 (0.9) and 1 (0.8): cost 0 + 100 = 100 of 6,150; by actual cost rows 7 and 3.
    t = m.cost_capture(COST10, {"m": S10}, fractions=[0.2, 0.5]).set_index(["model", "list"])
    assert t.loc[("m", "top 20%"), "flagged"] == 2
    assert t.loc[("m", "top 20%"), "cost_flagged"] == 100
    assert t.loc[("m", "top 20%"), "cost_share"] == pytest.approx(100 / 6150)
    assert t.loc[("m", "top 20%"), "mean_cost_flagged"] == 50
    # Top 50%: rows 0, 1, 3, 8, 9 (0.9, 0.8, 0.7, 0.6, 0.5): 0 + 100 + 900 + 30 + 40 = 1,070.
    assert t.loc[("m", "top 50%"), "cost_flagged"] == 1070
    assert t.loc[("m", "top 50%"), "mean_cost_flagged"] == 214
    assert t.loc[("by actual cost", "top 20%"), "cost_flagged"] == 5900
    assert t.loc[("by actual cost", "top 50%"), "cost_share"] == pytest.approx((5000 + 900 + 100 + 50 + 40) / 6150)


def test_cost_capture_refuses_no_cost_and_misaligned_scores():
    with pytest.raises(ValueError, match="sums to zero"):
        m.cost_capture(np.zeros(4), {"m": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(ValueError, match="score 'm' has 3 values"):
        m.cost_capture([1.0, 2.0, 3.0, 4.0], {"m": [0.1, 0.2, 0.3]})


def test_cost_by_decile_by_hand():
    # Five groups of two by predicted cost: (5, 10) (20, 20) (30, 40) (60, 90) (800, 1000), rows in
    # predicted order with ties by row order: rows 6, 0 | 4, 5 | 8, 2 | 9, 1 | 7, 3.
    t = m.cost_by_decile(COST10, PRED10, n_bins=5)
    assert t["n"].tolist() == [2] * 5
    assert t["mean_predicted"].tolist() == [7.5, 20.0, 35.0, 75.0, 900.0]
    assert t["mean_actual"].tolist() == [0.0, 15.0, 40.0, 70.0, 2950.0]
    assert t["actual_to_predicted"].iloc[4] == pytest.approx(2950 / 900)


def test_evaluate_scores_cost_evidence_in_the_currency():
    y = (COST10 >= 900).astype(int)  # rows 3 and 7
    attrs = pd.DataFrame({"sex": ["female", "male"] * 5})
    logistic = S10.copy()
    logistic[7] = 0.95  # ranks row 7 (cost 5,000) first
    ev = evaluate_scores(y, {"candidate": S10, "logistic": logistic}, attrs, n_boot=10, seed=0,
                         min_group_events=1, cost_true=COST10, cost_pred=PRED10, currency="USD",
                         cost_fractions=(0.1, 0.2))
    cost = ev.cost
    assert cost.currency == "USD" and cost.total == 6150
    # The candidate's cost model: predicted total 2,075, MAE (10+10+10+100+10+0+5+4200+0+20)/10 = 436.5.
    assert cost.summary["predicted_total"] == 2075
    assert cost.summary["cost_ratio"] == pytest.approx(2075 / 6150)
    assert cost.summary["cost_mae"] == pytest.approx(436.5)
    capture = cost.capture.set_index(["model", "list"])
    # Its own top 10% by predicted cost is row 3 (1,000): 900 caught; by risk S10, row 0: nothing.
    assert capture.loc[("candidate (predicted cost)", "top 10%"), "cost_flagged"] == 900
    assert capture.loc[("candidate", "top 10%"), "cost_flagged"] == 0
    assert capture.loc[("logistic", "top 10%"), "mean_cost_flagged"] == 5000
    assert ev.metrics["logistic.cost_share_top_10pct"] == pytest.approx(5000 / 6150)
    assert ev.metrics["candidate.mean_cost_top_20pct"] == 50
    assert list(ev.comparison["versus"]) == ["logistic"]


def test_cost_report_tables_write_money_in_the_data_sets_currency():
    from riskstrat.evaluation import cost_evidence
    from riskstrat.report import _cost_tables

    tables = _cost_tables(cost_evidence(COST10, {"candidate": S10}, cost_pred=PRED10, currency="USD",
                                        fractions=(0.2,)))
    rows = {r[1]: r for r in tables["capture"]["rows"]}
    assert rows["candidate"][3:5] == ["1.6%", "$50"]
    assert rows["by actual cost"][3:5] == ["95.9%", "$2,950"]
    assert tables["summary"] == {"predicted_total": "$2,075", "actual_total": "$6,150", "ratio": pytest.approx(2075 / 6150),
                                 "mae": "$436"}
