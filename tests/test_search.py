"""Optional optuna search over LightGBM's parameters: only training people, reproducible, never worse."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.modeling.config import ConfigError, LightGBMConfig, SearchConfig, load_config
from riskstrat.modeling.search import TUNED, inner_split, tune_lightgbm


def rows(n_people: int = 1500, dates: int = 2, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Person x date rows whose outcome depends on an interaction of two features."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{i}" for i in range(n_people)], dates)
    X = pd.DataFrame({"a": rng.normal(size=ids.size), "b": rng.normal(size=ids.size),
                      "noise": rng.normal(size=ids.size)}, index=pd.Index(ids, name="person_id"))
    logit = -2 + 1.5 * (X["a"] > 0) * X["b"]
    y = (rng.random(ids.size) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


SPACE = SearchConfig(enabled=True, n_trials=4, timeout_minutes=None, validation_fraction=0.3)
BASE = LightGBMConfig(n_estimators=80, early_stopping_rounds=10, learning_rate=0.03, min_child_samples=200)


def test_inner_split_keeps_each_person_on_one_side():
    X, _ = rows()
    valid = inner_split(X.index, fraction=0.3, seed=1)
    per_person = pd.Series(valid, index=X.index).groupby(level=0).nunique()
    assert (per_person == 1).all()
    assert 0.2 < valid.mean() < 0.4
    np.testing.assert_array_equal(valid, inner_split(X.index, fraction=0.3, seed=1))


def test_search_starts_from_the_configured_parameters_and_never_returns_worse():
    X, y = rows()
    best, trials = tune_lightgbm(X, y, base=BASE, space=SPACE, seed=3)
    assert len(trials) == 4 and (trials["state"] == "COMPLETE").all()
    first = trials.iloc[0]
    for name in TUNED:
        assert first[name] == pytest.approx(getattr(BASE, name))
    assert trials["log_loss"].min() <= first["log_loss"]
    chosen = trials.loc[trials["log_loss"].idxmin()]
    for name in TUNED:
        assert getattr(best, name) == pytest.approx(chosen[name])
        low, high = getattr(SPACE, name)
        assert low <= getattr(best, name) <= high
    # What the search does not tune is kept.
    assert (best.n_estimators, best.max_depth, best.early_stopping_rounds) == (80, BASE.max_depth, 10)
    assert trials["auroc"].between(0.5, 1).all()


def test_search_is_reproducible():
    X, y = rows(800)
    a, ta = tune_lightgbm(X, y, base=BASE, space=SPACE, seed=7)
    b, tb = tune_lightgbm(X, y, base=BASE, space=SPACE, seed=7)
    assert a == b
    pd.testing.assert_frame_equal(ta.drop(columns=["datetime_start", "datetime_complete", "duration"], errors="ignore"),
                                  tb.drop(columns=["datetime_start", "datetime_complete", "duration"], errors="ignore"))


def test_search_refuses_a_validation_part_with_one_outcome():
    X, _ = rows(300)
    with pytest.raises(ValueError, match="both outcomes"):
        tune_lightgbm(X, np.zeros(len(X), int), base=BASE, space=SPACE, seed=1)


@pytest.mark.parametrize(("override", "message"), [
    ("model.search.num_leaves=[40, 8]", r"num_leaves: the range must be positive and low <= high"),
    ("model.search.subsample=[0.5, 1.5]", r"ranges must end at or below 1"),
    ("model.search.n_trial=5", r"model\.search\.n_trial: Extra inputs are not permitted"),
    ("model.search.validation_fraction=1", r"model\.search\.validation_fraction"),
])
def test_bad_search_settings_fail_naming_the_setting(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
