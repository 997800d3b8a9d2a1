"""The evaluation report's SHAP figures: ``shap.TreeExplainer`` on a seeded sample, equal to LightGBM's
``pred_contrib`` (what the lists' reasons use), drawn headless with readable feature names, embedded
and explained in the report, and with no person identifier in the figures, the report or the messages.

One small LightGBM model trained here (600 people, 5 features, 20 trees).
"""

from __future__ import annotations

import base64
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from riskstrat.evaluation._shap import feature_label, shap_figures, shap_sample
from riskstrat.pipelines.evaluate import global_drivers
from riskstrat.modeling.models import RiskModel

GENERIC = "ae_attendances__urgent_care__count_90d"
FEATURES = ["age", "emergency_admissions_0_3m", GENERIC, "ltc_copd", "cost_total_12m"]


@pytest.fixture(scope="module")
def people() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 600
    X = pd.DataFrame({"age": rng.uniform(18, 95, n), "emergency_admissions_0_3m": rng.poisson(0.3, n).astype(float),
                      GENERIC: rng.poisson(0.5, n).astype(float), "ltc_copd": rng.integers(0, 2, n).astype(float),
                      "cost_total_12m": rng.gamma(0.5, 2000, n)},
                     index=pd.Index([f"PERSON{i:06d}" for i in range(n)], name="person_id"))
    X.loc[X.index[::17], "cost_total_12m"] = np.nan  # missing values: grey dots, not an error
    logit = -3 + 0.03 * (X["age"] - 50) + 0.8 * X["emergency_admissions_0_3m"] + 0.5 * X[GENERIC] + X["ltc_copd"]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@pytest.fixture(scope="module")
def model(people) -> RiskModel:
    from lightgbm import LGBMClassifier

    X, y = people
    estimator = LGBMClassifier(n_estimators=20, num_leaves=7, min_child_samples=10, verbose=-1, n_jobs=1)
    estimator.fit(X[FEATURES], y)
    return RiskModel("lightgbm", "emergency_admission", FEATURES, estimator)


def test_tree_explainer_equals_lightgbm_pred_contrib_on_the_seeded_sample(model, people):
    X, _ = people
    sample = shap_sample(model, X, n=250, seed=3)
    drawn = X.sample(250, random_state=3)  # the same people, in the same order
    native = model.estimator.booster_.predict(model.feature_matrix(drawn), pred_contrib=True)
    assert sample.n == 250 and sample.n_people == len(X) and sample.agrees
    np.testing.assert_allclose(sample.values.to_numpy(), native[:, :-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(sample.data.to_numpy(), model.feature_matrix(drawn))
    assert sample.base_value == pytest.approx(native[0, -1], abs=1e-9)
    # What the lists' reasons read: RiskModel.contributions, the same numbers.
    contributions, _ = model.contributions(drawn)
    np.testing.assert_allclose(sample.values.to_numpy(), contributions.to_numpy(), rtol=0, atol=1e-9)
    # Seeded: the same sample again; and never more people than there are.
    assert shap_sample(model, X, n=250, seed=3).values.equals(sample.values)
    assert shap_sample(model, X.head(40), n=250).n == 40


def test_a_model_other_than_lightgbm_has_no_shap_figures(people):
    X, _ = people
    assert global_drivers(RiskModel("logistic", "x", FEATURES, object()), X) == (None, {}, None)


def _texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def test_summary_and_dependence_figures_speak_in_words_and_say_it_is_a_sample(model, people):
    X, _ = people
    drivers, figures, sample = global_drivers(model, X, n=300, seed=1, n_dependence=2)
    top = list(drivers["feature"][:2])
    assert list(figures) == ["shap_summary", *(f"dependence_{name}" for name in top)]
    summary = figures["shap_summary"]
    labels = [t.get_text() for t in summary.axes[0].get_yticklabels()]
    assert "Urgent-care visits in the last 90 days" in labels and "COPD (long-term condition)" in labels
    assert not any("__" in t or "_0_3m" in t for t in labels), labels  # no code names
    assert any("random sample of 300 of the 600" in t for t in _texts(summary))
    assert len(summary.axes) == 2  # the beeswarm and its colour bar, drawn on our Agg figure
    for name in top:
        texts = _texts(figures[f"dependence_{name}"])
        assert any(feature_label(name) in t for t in texts) and any("sample of 300" in t for t in texts)
    # Made headless, on Agg canvases, none left open in pyplot (which shap imports).
    import matplotlib.pyplot as plt

    assert {type(f.canvas).__name__ for f in figures.values()} == {"FigureCanvasAgg"} and plt.get_fignums() == []


def test_no_person_identifier_in_the_figures_or_the_messages(model, people):
    X, _ = people
    messages = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample = shap_sample(model, X, n=300, seed=1, stage=messages.append)
    messages += [str(w.message) for w in caught]
    assert isinstance(sample.values.index, pd.RangeIndex) and isinstance(sample.data.index, pd.RangeIndex)
    figures = shap_figures(sample, n_dependence=3)
    ids = set(X.index)
    for name, fig in figures.items():
        assert not [t for t in _texts(fig) if any(p in t for p in ids) or "PERSON" in t], name
        from riskstrat.report import _png

        png = _png(fig)
        assert b"PERSON" not in png  # nor in the PNG's text chunks
    assert not [m for m in messages if "PERSON" in m]


def test_report_embeds_the_shap_figures_and_explains_them(model, people, tmp_path):
    from riskstrat.evaluation import evaluate_scores, subgroup_attributes
    from riskstrat.report import write_evaluation

    X, y = people
    drivers, figures, sample = global_drivers(model, X, n=300, seed=1)
    scores = {"candidate": model.estimator.predict_proba(X[FEATURES])[:, 1],
              "prior_use": X["emergency_admissions_0_3m"].to_numpy()}
    evaluation = evaluate_scores(y, scores, subgroup_attributes(X), n_boot=5, min_group_events=5)
    context = {"model_name": "m", "model_version": "1", "as_of": "2024-11-01", "extract_end": "2025-10-31",
               "outcome_words": "an emergency admission", "horizon_days": 365, "n_unlabelled": 0,
               "against": None, "data_dir": "/data", "data_sha256": "0" * 64, "sources": ["persons"],
               "feature_spec_hash": None, "created": "2026-12-01", "n_boot": 5, "min_group_events": 5,
               "training_overlap": None, "unseen": None, "baselines": {}, "shap": sample.describe()}
    out = write_evaluation(tmp_path / "report", evaluation, context, drivers=drivers, extra_figures=figures)
    html = (out / "report.html").read_text(encoding="utf-8")
    for name in figures:
        png = (out / "figures" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and base64.b64encode(png).decode("ascii") in html, name
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for words in ("How the model uses each feature", "Each dot is one person of a random sample of 300 of the 600 "
                  "people evaluated", "not what causes the outcome", "checked equal to LightGBM's own",
                  "Dependence plots of the top features", "blue low to red high"):
        assert words in text, words
    assert "PERSON" not in html
