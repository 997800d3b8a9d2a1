"""Optional hyperparameter search for LightGBM (optuna), on training people only.

The search never sees the calibration or the test people. It splits the *training* people (by a
seeded hash of their id, so one person's rows from several index dates stay together) into an
inner-fit and an inner-validation part, fits LightGBM with early stopping on the inner-validation
part for each trial, and minimises its log loss (a proper scoring rule: it rewards calibration as
well as ranking). The configured parameters are always the first trial, so the search can only
return something at least as good on the inner-validation people.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

from riskstrat.modeling.config import LightGBMConfig, SearchConfig
from riskstrat.errors import InvalidInputError
from riskstrat.modeling.models import auto_lightgbm
from riskstrat.modeling.split import person_groups

TUNED = ("learning_rate", "num_leaves", "min_child_samples", "subsample", "colsample_bytree", "reg_lambda")


def inner_split(person_ids: pd.Index, *, fraction: float, seed: int) -> np.ndarray:
    """True for rows whose person falls in the inner-validation part."""
    groups = person_groups(person_ids, test_fraction=fraction, calibration_fraction=0.0, seed=seed + 1)
    return (groups.reindex(person_ids) == "test").to_numpy()


def suggest(trial, space: SearchConfig) -> dict:
    """One point of the search space."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "num_leaves": trial.suggest_int("num_leaves", *space.num_leaves, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", *space.min_child_samples, log=True),
        "subsample": trial.suggest_float("subsample", *space.subsample),
        "colsample_bytree": trial.suggest_float("colsample_bytree", *space.colsample_bytree),
        "reg_lambda": trial.suggest_float("reg_lambda", *space.reg_lambda, log=True),
    }


def _clamp(value, low, high):
    return min(max(value, low), high)


def tune_lightgbm(X: pd.DataFrame, y: np.ndarray, *, base: LightGBMConfig, space: SearchConfig, seed: int,
                  stage: Callable[[str], None] = lambda m: None) -> tuple[LightGBMConfig, pd.DataFrame]:
    """Search LightGBM's parameters on the training rows; return the best parameters and every trial."""
    import lightgbm as lgb
    import optuna
    from sklearn.metrics import roc_auc_score

    base, _ = auto_lightgbm(base, n_rows=len(y))  # settings left to auto: chosen from all the training rows
    valid = inner_split(X.index, fraction=space.validation_fraction, seed=seed)
    if y[valid].min() == y[valid].max() or y[~valid].min() == y[~valid].max():
        raise InvalidInputError("the hyperparameter search needs both outcomes among the inner-fit and the "
                         "inner-validation training people: add people or raise model.search.validation_fraction")
    X = X.astype("float64")
    X_fit, y_fit, X_val, y_val = X[~valid], y[~valid], X[valid], y[valid]
    started = time.monotonic()

    def objective(trial) -> float:
        params = suggest(trial, space)
        clf = lgb.LGBMClassifier(
            n_estimators=base.n_estimators, max_depth=base.max_depth, subsample_freq=1, n_jobs=base.n_jobs,
            random_state=seed, deterministic=True, force_row_wise=True, verbose=-1, **params)
        clf.fit(X_fit, y_fit, eval_X=(X_val,), eval_y=(y_val,), eval_metric="binary_logloss",
                callbacks=[lgb.early_stopping(base.early_stopping_rounds, verbose=False)])
        p = clf.predict_proba(X_val)[:, 1]
        trial.set_user_attr("best_iteration", int(clf.best_iteration_ or base.n_estimators))
        # riskstrat.evaluation.metrics.auroc without its input check (both outcomes are on each side, refused
        # above; p are probabilities): the trials' AUROC is a diagnostic of the search, on the modeling layer.
        trial.set_user_attr("auroc", float(roc_auc_score(y_val, p)))
        loss = float(clf.best_score_["valid_0"]["binary_logloss"])
        stage(f"search trial {trial.number + 1}/{space.n_trials}: log loss {loss:.5f}, "
              f"AUROC {trial.user_attrs['auroc']:.4f} ({time.monotonic() - started:.0f}s)")
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    # The configured parameters first (clamped into the space), so the search cannot do worse.
    study.enqueue_trial({name: _clamp(getattr(base, name), *getattr(space, name)) for name in TUNED})
    study.optimize(objective, n_trials=space.n_trials,
                   timeout=space.timeout_minutes * 60 if space.timeout_minutes else None)
    trials = study.trials_dataframe(attrs=("number", "value", "params", "user_attrs", "state"))
    trials = trials.rename(columns=lambda c: c.replace("params_", "").replace("user_attrs_", ""))
    trials = trials.rename(columns={"value": "log_loss"})
    best = base.model_copy(update=study.best_params)
    stage(f"search done: {len(study.trials)} trials, best log loss {study.best_value:.5f} "
          f"(trial {study.best_trial.number + 1}; the configured parameters scored {study.trials[0].value:.5f})")
    return best, trials
