"""RiskModel: the calibrated risk from one pass of the model equals scikit-learn's calibrated path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.config import LightGBMConfig
from riskstrat.models import RISK_CEILING, RISK_FLOOR, fit_lightgbm, fit_logistic


def _people(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.poisson(2, size=n).astype(float),
                      "c": rng.uniform(size=n)}, index=pd.Index([f"p{i}" for i in range(n)], name="person_id"))
    X.loc[X.index[::7], "c"] = np.nan  # LightGBM's missing values take their own branch
    logit = -2.5 + 1.2 * X["a"] + 0.4 * X["b"]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)
    return X, y


@pytest.fixture(scope="module", params=["sigmoid", "isotonic"])
def fitted(request):
    X, y = _people(1200, 1)
    X_cal, y_cal = _people(600, 2)
    params = LightGBMConfig(n_estimators=40, min_child_samples=20, early_stopping_rounds=10, n_jobs=1)
    return fit_lightgbm(X, y, X_cal, y_cal, params=params, calibration=request.param, target="t"), _people(800, 3)[0]


def test_one_pass_risk_equals_the_calibrated_path(fitted):
    model, X = fitted
    risk, raw = model.risk_and_raw_score(X)
    np.testing.assert_allclose(raw, model.raw_score(X), rtol=0, atol=0)
    np.testing.assert_allclose(risk, model.predict_risk(X), rtol=0, atol=1e-12)
    assert ((risk >= RISK_FLOOR) & (risk <= RISK_CEILING)).all()
    assert len(np.unique(raw)) > 20  # a real model, not a constant


def test_one_pass_reads_the_raw_margin_not_the_probability(fitted):
    model, X = fitted
    raw = model.raw_score(X)
    calibrated = model.calibrator.calibrated_classifiers_[0].calibrators[0]
    expected = np.clip(calibrated.predict(raw), RISK_FLOOR, RISK_CEILING)
    np.testing.assert_allclose(model.risk_from_raw_score(raw), expected, rtol=0, atol=0)
    # A probability in place of the margin would give another risk: the test can tell them apart.
    assert np.abs(np.clip(calibrated.predict(1 / (1 + np.exp(-raw))), RISK_FLOOR, RISK_CEILING) - expected).max() > 1e-3


def test_models_without_a_margin_calibrator_fall_back_to_predict_risk():
    X, y = _people(500, 4)
    model = fit_logistic(X.fillna(0), y, target="t")
    assert model.risk_from_raw_score(model.raw_score(X.fillna(0))) is None
    risk, raw = model.risk_and_raw_score(X.fillna(0))
    np.testing.assert_array_equal(risk, model.predict_risk(X.fillna(0)))
    np.testing.assert_array_equal(raw, model.raw_score(X.fillna(0)))


def test_log_scaled_equals_the_three_scikit_learn_steps():
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from riskstrat.models import LogScaled, _signed_log1p, fit_logistic

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"count": rng.poisson(2.0, 400).astype(float), "cost": rng.gamma(1.0, 900.0, 400),
                      "signed": rng.normal(0, 5, 400), "constant": np.full(400, 7.0), "empty": np.full(400, np.nan),
                      "int_col": rng.integers(0, 4, 400)})
    X.loc[X.index % 5 == 0, "count"] = np.nan
    X.loc[X.index % 9 == 0, "signed"] = np.nan
    y = (rng.random(400) < 0.3 + 0.1 * (X["count"].fillna(0) > 2)).astype(int)
    steps = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                          FunctionTransformer(_signed_log1p), StandardScaler())
    expected = steps.fit_transform(X.astype("float64"))
    ours = LogScaled()
    np.testing.assert_allclose(ours.fit_transform(X), expected, rtol=1e-12, atol=1e-12)
    later = X.sample(frac=0.5, random_state=1)  # transform of other rows uses what fit learnt
    np.testing.assert_allclose(ours.transform(later), steps.transform(later.astype("float64")), rtol=1e-12, atol=1e-12)
    assert not X.isna().sum().eq(0).all()  # the input still has its gaps: transformed on a copy

    old = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), FunctionTransformer(_signed_log1p),
                        StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(X.astype("float64"), y)
    model = fit_logistic(X, y)
    np.testing.assert_allclose(model.estimator.predict_proba(X)[:, 1], old.predict_proba(X.astype("float64"))[:, 1],
                               atol=1e-8)
