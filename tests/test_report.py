"""How the evaluation report writes its tables and draws its dependence plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.report import column_label, fmt, table


@pytest.mark.parametrize("name, label", [
    ("auroc_ci_low", "AUROC CI low"), ("ppv_top_1pct", "PPV top 1%"), ("sensitivity_top_0.5pct", "sensitivity top 0.5%"),
    ("o_e_ratio", "O/E"), ("n_events", "events"), ("mean_abs_shap", "mean |SHAP|"),
    ("events_per_1000_flagged", "events per 1,000 flagged"), ("calibration_intercept", "calibration intercept"),
    ("stop_5pct", "stop 5pct"), ("group", "group"),
])
def test_column_labels(name, label):
    assert column_label(name) == label


@pytest.mark.parametrize("value, digits, shown", [
    (-0.0001, 3, "0.000"), (-0.01, 3, "-0.010"), (937.5, 0, "938"), (875.0, 0, "875"), (1234.56, 1, "1,234.6"),
    (0.0059, 4, "0.0059"),
])
def test_fmt(value, digits, shown):
    assert fmt(value, digits) == shown


def test_table_sets_text_left_numbers_right_and_mutes_rows():
    frame = pd.DataFrame({"group": ["1 (most deprived)", "2"], "n": [72, 555], "small": [True, False],
                          "cost": ["£1,234", "£56"], "share": ["17.8%", "2.0%"], "auroc": [0.81234, float("nan")]})
    t = table(frame, muted=frame["small"], digits={"auroc": 2})
    assert t["columns"] == ["group", "n", "small", "cost", "share", "AUROC"]
    assert t["rows"] == [["1 (most deprived)", "72", "yes", "£1,234", "17.8%", "0.81"], ["2", "555", "", "£56", "2.0%", "-"]]
    assert t["text"] == [True, False, True, False, False, False]
    assert t["muted"] == [True, False]
    assert table(frame)["muted"] == [False, False]


def test_dependence_plot_spreads_a_long_tail_on_a_symmetric_log_axis():
    from riskstrat.evaluation.plots import dependence_figure

    rng = np.random.default_rng(0)
    cost = np.concatenate([np.zeros(50), rng.lognormal(5, 2, 950)])   # many zeros, a long tail
    age = rng.uniform(18, 95, 1000)
    shap = rng.normal(size=1000)
    assert dependence_figure(cost, shap, feature="cost_total_12m").axes[0].get_xscale() == "symlog"
    assert dependence_figure(age, shap, feature="age").axes[0].get_xscale() == "linear"
    assert dependence_figure(age - 50, shap, feature="centred").axes[0].get_xscale() == "linear"  # negatives: as they are
