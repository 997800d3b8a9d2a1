"""RiskModel: the calibrated risk from one pass of the model equals scikit-learn's calibrated path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.modeling.config import LightGBMConfig
from riskstrat.modeling.models import RISK_CEILING, RISK_FLOOR, RiskModel, fit_lightgbm, fit_logistic


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
    expected = model.predict_risk(X)
    np.testing.assert_allclose(model.risk_from_raw_score(raw), expected, rtol=0, atol=0)
    # A probability in place of the margin would give another risk: the test can tell them apart.
    assert np.abs(model.risk_from_raw_score(1 / (1 + np.exp(-raw))) - expected).max() > 1e-3


def test_the_margin_calibrator_equals_scikit_learns_calibrated_classifier(fitted):
    """The calibrator on the raw margin gives the risks scikit-learn's public calibrated classifier
    (the model calibrated over its features, as riskstrat did before) gives, to 1e-12."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from riskstrat.modeling.calibration import MarginCalibrator

    model, X = fitted
    X_cal, y_cal = _people(600, 2)
    reference = CalibratedClassifierCV(FrozenEstimator(model.estimator), method=model.calibrator.method)
    reference.fit(X_cal.astype("float64"), y_cal)
    expected = np.clip(reference.predict_proba(X.astype("float64"))[:, 1], RISK_FLOOR, RISK_CEILING)
    assert isinstance(model.calibrator, MarginCalibrator)
    np.testing.assert_allclose(model.predict_risk(X), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.risk_and_raw_score(X)[0], expected, rtol=0, atol=1e-12)
    # A model saved with the feature-level calibrator still predicts through it (in two passes).
    old = RiskModel("lightgbm", "t", model.feature_names, model.estimator, reference)
    assert old.risk_from_raw_score(old.raw_score(X)) is None
    np.testing.assert_allclose(old.risk_and_raw_score(X)[0], expected, rtol=0, atol=0)


def test_the_margin_calibrator_refuses_an_unknown_method():
    from riskstrat.modeling.calibration import MarginCalibrator

    with pytest.raises(ValueError, match="sigmoid"):
        MarginCalibrator(method="platt").fit(np.array([0.0, 1.0]), np.array([0, 1]))


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

    from riskstrat.modeling.models import LogScaled, _signed_log1p, fit_logistic

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
    # As a training matrix arrives: people at several dates (a repeated text index), a nullable column.
    stacked = X.set_axis(pd.Index([f"p{i % 150}" for i in range(len(X))], dtype="str")).astype({"count": "Float64"})
    np.testing.assert_allclose(LogScaled().fit_transform(stacked), expected, rtol=1e-12, atol=1e-12)

    old = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), FunctionTransformer(_signed_log1p),
                        StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(X.astype("float64"), y)
    model = fit_logistic(X, y)
    np.testing.assert_allclose(model.estimator.predict_proba(X)[:, 1], old.predict_proba(X.astype("float64"))[:, 1],
                               atol=1e-8)


def test_log_scaled_a_few_columns_at_a_time_equals_the_whole_matrix_bit_for_bit():
    from riskstrat.modeling.models import _COLUMN_BLOCK, LogScaled

    rng = np.random.default_rng(5)
    k = 2 * _COLUMN_BLOCK + 3  # three blocks, the last one short
    X = pd.DataFrame(rng.gamma(0.7, 3.0, (500, k)) * rng.choice([-1.0, 1.0, 1.0], (500, k)),
                     columns=[f"f{j}" for j in range(k)])
    X[X > 6] = np.nan
    X["f4"] = np.nan
    # The whole matrix at once, column-major: how the transform was computed before it went by blocks.
    A = X.to_numpy(dtype="float64", copy=True, na_value=np.nan).copy(order="F")
    median = np.array([np.nanmedian(c) if (~np.isnan(c)).any() else 0.0 for c in A.T])
    np.copyto(A, np.broadcast_to(median, A.shape), where=np.isnan(A))
    A = np.sign(A) * np.log1p(np.abs(A))
    mean, scale = np.array([c.mean() for c in A.T]), np.array([c.std() for c in A.T])
    scale[scale == 0] = 1.0
    expected = (A - mean) / scale
    ours = LogScaled()
    fitted = ours.fit_transform(X)
    assert fitted.flags["C_CONTIGUOUS"]  # the solver's layout: it takes the array without copying it
    np.testing.assert_array_equal(fitted, expected)
    again = ours.transform(X)
    assert again.flags["F_CONTIGUOUS"]  # predictions read a column-major array, as before
    np.testing.assert_array_equal(again, expected)


# ----------------------------------------------------------------------------- one feature matrix per chunk


def _frame_as_scored(X: pd.DataFrame) -> pd.DataFrame:
    """X as a month's features arrive: extra columns (text, category, integers) around the features, in
    several blocks, and a frame row slice (a strided view) like each chunk of the scoring run."""
    out = X.assign(practice_id=pd.array([f"P{i % 3}" for i in range(len(X))], dtype="str"),
                   sex=pd.Categorical(["female", "male"] * (len(X) // 2) + ["male"] * (len(X) % 2)))
    out["b"] = out["b"].fillna(0).astype("int64")
    return out[["practice_id", "c", "sex", "a", "b"]].iloc[50:650]


def test_feature_matrix_is_the_frame_in_the_model_order_column_major(fitted):
    model, X = fitted
    chunk = _frame_as_scored(X)
    M = model.feature_matrix(chunk)
    expected = chunk[model.feature_names].astype("float64").to_numpy()
    assert M.dtype == np.float64 and M.flags["F_CONTIGUOUS"] and M.shape == (600, 3)
    np.testing.assert_array_equal(M, expected)  # NaN in the same places
    assert model.feature_matrix(M) is M  # a matrix is passed on as it is


def test_predictions_from_the_matrix_equal_the_frame_and_the_bare_booster(fitted):
    model, X = fitted
    chunk = _frame_as_scored(X)
    M = model.feature_matrix(chunk)
    booster = model.estimator.booster_
    # What the models gave before the matrix: LightGBM's own conversion of the float64 frame.
    bare = booster.predict(chunk[model.feature_names].astype("float64"), raw_score=True)
    np.testing.assert_array_equal(model.raw_score(M), bare)
    np.testing.assert_array_equal(model.raw_score(chunk), bare)
    risk_m, raw_m = model.risk_and_raw_score(M)
    risk_f, raw_f = model.risk_and_raw_score(chunk)
    np.testing.assert_array_equal(raw_m, raw_f)
    np.testing.assert_array_equal(risk_m, risk_f)
    np.testing.assert_array_equal(model.predict_risk(M), model.predict_risk(chunk))
    contributions, base = model.contributions(chunk)
    np.testing.assert_array_equal(np.c_[contributions.to_numpy(), base],
                                  booster.predict(chunk[model.feature_names].astype("float64"), pred_contrib=True))


def test_a_matrix_of_the_wrong_shape_or_type_is_refused(fitted):
    model, X = fitted
    M = model.feature_matrix(X)
    with pytest.raises(ValueError, match="one column per feature"):
        model.raw_score(M[:, :2])
    with pytest.raises(ValueError, match="float64"):
        model.raw_score(M.astype("float32"))
    with pytest.raises(ValueError, match="lack 1 feature"):
        model.feature_matrix(X.drop(columns="b"))


def test_in_memory_score_equals_each_model_on_the_frame(fitted):
    from riskstrat.modeling.models import fit_cost_regressor
    from riskstrat.scoring.month import InMemoryFeatures

    model, X = fitted
    Xc, yc = _people(900, 5)
    cost = fit_lightgbm(Xc, yc, *_people(400, 6), calibration="sigmoid", target="high_cost",
                        params=LightGBMConfig(n_estimators=30, min_child_samples=20, early_stopping_rounds=10, n_jobs=1))
    money = np.random.default_rng(7).gamma(0.5, 2000.0, size=len(Xc)) * yc
    cost.cost_estimator = fit_cost_regressor(Xc, money, Xc.iloc[:300], money[:300],
                                             params=LightGBMConfig(n_estimators=20, early_stopping_rounds=5, n_jobs=1))
    frame = _frame_as_scored(X)
    scores = InMemoryFeatures(frame).score(model, cost, chunk_size=256)  # 3 chunks, the last short
    as_frames = {"risk": model.risk_and_raw_score(frame), "hc": cost.risk_and_raw_score(frame)}
    np.testing.assert_array_equal(scores.risk, as_frames["risk"][0])
    np.testing.assert_array_equal(scores.raw, as_frames["risk"][1])
    np.testing.assert_array_equal(scores.high_cost_risk, as_frames["hc"][0])
    np.testing.assert_array_equal(scores.predicted_cost, cost.predict_cost(frame))
    assert scores.people is frame
    alone = InMemoryFeatures(frame).score(model, None, chunk_size=256)
    np.testing.assert_array_equal(alone.risk, scores.risk)
    assert alone.high_cost_risk is None and alone.predicted_cost is None
    without_cost = InMemoryFeatures(frame).score(model, model, chunk_size=1000)  # a cost model without regressor
    np.testing.assert_array_equal(without_cost.high_cost_risk, scores.risk)
    assert without_cost.predicted_cost is None


def test_people_are_ranked_the_way_their_calibrated_risk_reads(fitted):
    """A calibration that falls with the raw score (a Platt fit with a negative slope, as a degenerate
    model can get) turns the rank order round, so rank 1 is the highest risk shown, not the lowest."""
    from riskstrat.modeling.calibration import fit_margin_calibrator
    from riskstrat.scoring.lists import rank_population

    model, X = fitted
    assert model.rank_direction() == 1
    X_cal, y_cal = _people(600, 2)
    upside_down = RiskModel("lightgbm", "t", model.feature_names, model.estimator,
                            fit_margin_calibrator(model.estimator, X_cal.astype("float64"), 1 - y_cal,
                                                  method="sigmoid"))
    assert upside_down.rank_direction() == -1
    people = X.assign(practice_id="P1", sex="female", age=60.0)
    risk, raw = upside_down.risk_and_raw_score(X)
    ranked = rank_population(people, risk, rank_score=raw * upside_down.rank_direction(), groups=())
    assert ranked["risk"].is_monotonic_decreasing
    assert not rank_population(people, risk, rank_score=raw, groups=())["risk"].is_monotonic_decreasing  # before
