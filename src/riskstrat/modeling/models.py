"""The risk models: LightGBM with held-out calibration, a logistic baseline and the prior-use rule.

A fitted model is a :class:`RiskModel`: feature names, the estimator and its calibrator. It gives
calibrated risks (``predict_risk``), raw log-odds (``raw_score``), both from one pass of the model
(``risk_and_raw_score``: the calibrator maps the raw score, which is what it was fitted on) and
exact per-person SHAP contributions (``contributions``, LightGBM's native TreeSHAP) for explanations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from riskstrat.modeling.calibration import MarginCalibrator, fit_margin_calibrator
from riskstrat.errors import InvalidInputError
from riskstrat.outcomes import parse_outcome

RISK_FLOOR, RISK_CEILING = 0.0005, 0.995


def _as_matrix(X: pd.DataFrame | np.ndarray, feature_names: list[str]) -> pd.DataFrame:
    """``X``'s features as a float64 frame, for the scikit-learn estimators (fitted on frames)."""
    if isinstance(X, np.ndarray):
        return pd.DataFrame(_checked_matrix(X, feature_names), columns=feature_names, copy=False)
    missing = [f for f in feature_names if f not in X.columns]
    if missing:
        raise InvalidInputError(f"the data lack {len(missing)} feature(s) the model was trained on: {missing[:8]}")
    return X[feature_names].astype("float64")


def _checked_matrix(M: np.ndarray, feature_names: list[str]) -> np.ndarray:
    if M.ndim != 2 or M.shape[1] != len(feature_names) or M.dtype != np.float64:
        raise ValueError(f"a feature matrix must be float64 with one column per feature ({len(feature_names)}), "
                         f"got {M.dtype} of shape {M.shape}: make it with RiskModel.feature_matrix")
    return M


def feature_matrix(X: pd.DataFrame | np.ndarray, feature_names: list[str]) -> np.ndarray:
    """The columns ``feature_names`` of ``X`` as one float64 array in column-major (Fortran) order.

    That is the layout LightGBM predicts from as it is: handed a frame, or a row slice of one (a
    strided view), its ``predict`` makes a row-major copy itself, element by element, on every call.
    Built once, one copy a column, the matrix serves every model with these features. An array
    already made by this function is returned as it is.
    """
    if isinstance(X, np.ndarray):
        return _checked_matrix(X, feature_names)
    return np.asfortranarray(_as_matrix(X, feature_names).to_numpy(dtype="float64"))


@dataclass
class RiskModel:
    """A fitted, calibrated risk model over named features.

    Its predictions take a frame with (at least) the features, or the matrix :meth:`feature_matrix`
    made of one, which several predictions over the same rows can share.
    """

    kind: str                      # "lightgbm" | "logistic"
    target: str
    feature_names: list[str]
    estimator: object
    calibrator: object | None = None
    metadata: dict = field(default_factory=dict)
    cost_estimator: object | None = None  # expected next-year cost (high-cost models only)

    def feature_matrix(self, X: pd.DataFrame) -> np.ndarray:
        """The model's features of ``X``, in its order, as the float64 matrix of :func:`feature_matrix`."""
        return feature_matrix(X, self.feature_names)

    def predict_risk(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probability of the outcome for each row of ``X``."""
        if isinstance(self.calibrator, MarginCalibrator):
            return self.risk_from_raw_score(self.raw_score(X))
        p = (self.calibrator or self.estimator).predict_proba(_as_matrix(X, self.feature_names))[:, 1]
        # Calibrators (isotonic above all) can reach 0 or 1; no model of these records is certain.
        return np.clip(p, RISK_FLOOR, RISK_CEILING)

    def risk_and_raw_score(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated risk and raw score for each row of ``X`` from one pass of the model.

        A LightGBM model's calibrator (:class:`~riskstrat.modeling.calibration.MarginCalibrator`) maps the
        classifier's raw margin (``decision_function``, :meth:`raw_score`) to the risk, so one pass
        over the trees gives both. Models whose calibrator was fitted
        on something else (or that have none) get their risk from :meth:`predict_risk` instead.
        """
        raw = self.raw_score(X)
        risk = self.risk_from_raw_score(raw)
        return (risk if risk is not None else self.predict_risk(X)), raw

    def risk_from_raw_score(self, raw) -> np.ndarray | None:
        """The calibrated risk for raw scores (:meth:`raw_score`), or None when the calibrator does
        not read the raw score (then only :meth:`predict_risk` gives the risk)."""
        mapped = _calibrated_from_margin(self.calibrator, np.asarray(raw, dtype="float64"))
        return None if mapped is None else np.clip(mapped, RISK_FLOOR, RISK_CEILING)

    def rank_direction(self) -> int:
        """1 when the calibrated risk rises with the raw score (every sound model), -1 when it falls:
        a Platt fit with a negative slope, which a model that learned nothing can get. Ranking people by
        ``raw score × rank_direction()`` then follows the risk shown beside the rank.

        A calibrator that does not read the raw score (an older saved model) counts as rising."""
        probe = self.risk_from_raw_score(np.array([-5.0, 5.0]))
        return -1 if probe is not None and probe[1] < probe[0] else 1

    def predict_cost(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Expected health and social care cost over the horizon (pounds), if the model has one."""
        if self.cost_estimator is None:
            raise ValueError(f"the {self.target} model has no cost estimator; the high_cost target trains one")
        # The booster itself, as raw_score does: the scikit-learn wrapper predicts on the n_jobs it
        # was trained with (1 by default), the booster on every core; the values are the same.
        booster = getattr(self.cost_estimator, "booster_", None)
        cost = (booster.predict(self.feature_matrix(X)) if booster is not None
                else self.cost_estimator.predict(_as_matrix(X, self.feature_names)))
        return np.clip(cost, 0, None)

    def raw_score(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Uncalibrated log-odds (LightGBM raw score or logistic decision function)."""
        if self.kind == "lightgbm":
            return self.estimator.booster_.predict(self.feature_matrix(X), raw_score=True)
        return self.estimator.decision_function(_as_matrix(X, self.feature_names))

    def contributions(self, X: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Exact SHAP values on the raw (log-odds) scale and the base value per row.

        For every row, ``contributions.sum(axis=1) + base == raw_score``.
        """
        if self.kind != "lightgbm":
            raise ValueError("SHAP contributions are available for LightGBM models")
        contrib = self.estimator.booster_.predict(self.feature_matrix(X), pred_contrib=True)
        return pd.DataFrame(contrib[:, :-1], index=X.index, columns=self.feature_names), contrib[:, -1]


def model_outcome(risk_model):
    """The outcome a fitted model predicts, rebuilt from its metadata (older models: its target name)."""
    described = dict(risk_model.metadata.get("outcome") or {})
    if not described:
        return parse_outcome({"name": risk_model.target})
    if described.get("kind") != "event":
        described.pop("words", None)  # a property of the built-ins, not a setting
    return parse_outcome(described)


def _calibrated_from_margin(calibrator, margin: np.ndarray) -> np.ndarray | None:
    """``calibrator``'s probability for the raw margins, or None when it does not read the margin.

    Models fitted before calibration moved onto the margin hold a ``CalibratedClassifierCV`` over the
    features: they still predict through it (:meth:`RiskModel.predict_risk`), in two passes.
    """
    if not isinstance(calibrator, MarginCalibrator):
        return None
    return calibrator.predict(margin)


AUTO_SETTINGS = ("n_estimators", "learning_rate", "min_child_samples")


def auto_lightgbm(params, *, n_rows: int):
    """``params`` (a :class:`riskstrat.modeling.config.LightGBMConfig`) with the settings left to ``auto`` (None)
    chosen from ``n_rows``, the number of training rows, and a dict of the values chosen.

    The rule (measured on the synthetic population at 1,000-20,000 people, benchmarks/bench_small_data.py,
    benchmarks/README.md):

    - ``min_child_samples``: ``n_rows // 250``, kept within 20 and 200: 200 (the fixed default before) from
      50,000 rows up, 20 (LightGBM's own default) below 5,000 rows;
    - ``learning_rate``: 0.03, and ``n_estimators``: 1,500 (early stopping picks fewer).

    Settings given in the config (not None) win.

    >>> from riskstrat.modeling.config import LightGBMConfig
    >>> auto_lightgbm(LightGBMConfig(), n_rows=4_000)[1]
    {'n_estimators': 1500, 'learning_rate': 0.03, 'min_child_samples': 20}
    >>> auto_lightgbm(LightGBMConfig(min_child_samples=100), n_rows=60_000)[1]
    {'n_estimators': 1500, 'learning_rate': 0.03}
    """
    rule = {"n_estimators": 1500, "learning_rate": 0.03,
            "min_child_samples": int(min(max(n_rows // 250, 20), 200))}
    chosen = {k: v for k, v in rule.items() if getattr(params, k) is None}
    return params.model_copy(update=chosen), chosen


def fit_lightgbm(X_train: pd.DataFrame, y_train: np.ndarray, X_cal: pd.DataFrame, y_cal: np.ndarray, *,
                 params, calibration: str = "sigmoid", target: str = "", seed: int = 42) -> RiskModel:
    """LightGBM with early stopping on the calibration set, then calibrated on the same held-out set.
    Settings still left to ``auto`` are chosen from the training rows (:func:`auto_lightgbm`)."""
    import lightgbm as lgb

    params, _ = auto_lightgbm(params, n_rows=len(y_train))
    names = list(X_train.columns)
    clf = lgb.LGBMClassifier(
        n_estimators=params.n_estimators, learning_rate=params.learning_rate, num_leaves=params.num_leaves,
        max_depth=params.max_depth, min_child_samples=params.min_child_samples, subsample=params.subsample,
        subsample_freq=1, colsample_bytree=params.colsample_bytree, reg_lambda=params.reg_lambda,
        n_jobs=params.n_jobs, random_state=seed, deterministic=True, force_row_wise=True, verbose=-1,
    )
    clf.fit(X_train.astype("float64"), y_train, eval_X=(X_cal.astype("float64"),), eval_y=(y_cal,),
            eval_metric="binary_logloss",
            callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])
    calibrator = fit_margin_calibrator(clf, X_cal.astype("float64"), y_cal, method=calibration)
    return RiskModel("lightgbm", target, names, clf, calibrator,
                     metadata={"best_iteration": int(clf.best_iteration_ or params.n_estimators)})


def fit_cost_regressor(X_train: pd.DataFrame, cost_train: np.ndarray, X_cal: pd.DataFrame, cost_cal: np.ndarray,
                       *, params, seed: int = 42):
    """Expected next-year cost: LightGBM with a Tweedie loss (many zeros-to-small, a long tail)."""
    import lightgbm as lgb

    params, _ = auto_lightgbm(params, n_rows=len(cost_train))
    reg = lgb.LGBMRegressor(
        objective="tweedie", tweedie_variance_power=1.5, n_estimators=params.n_estimators,
        learning_rate=params.learning_rate, num_leaves=params.num_leaves, max_depth=params.max_depth,
        min_child_samples=params.min_child_samples, subsample=params.subsample, subsample_freq=1,
        colsample_bytree=params.colsample_bytree, reg_lambda=params.reg_lambda, n_jobs=params.n_jobs,
        random_state=seed, deterministic=True, force_row_wise=True, verbose=-1)
    reg.fit(X_train.astype("float64"), cost_train, eval_X=(X_cal.astype("float64"),), eval_y=(cost_cal,),
            callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])
    return reg


def _signed_log1p(X):
    return np.sign(X) * np.log1p(np.abs(X))


def _float_values(X) -> np.ndarray:
    """A frame's or array's values as float64, without a copy where they already are (a frame whose
    features are one float64 block: :class:`riskstrat.modeling.train.PartRows`). A frame is taken whole by
    ``to_numpy``: not column by column through ``np.asarray(X.iloc[:, j])``, which under pandas 3 looks
    each numpy attribute up in the index first (0.7 s a lookup on the 2.2M non-unique person ids of a
    training matrix, 27 s of the logistic baseline's fit at 1M people)."""
    values = X.to_numpy(dtype="float64", na_value=np.nan) if hasattr(X, "to_numpy") else X
    return np.asarray(values, dtype="float64")


# Columns transformed at a time: one block's contiguous copy is small (8 columns of 3M rows: 190 MB), and a
# row of it is one cache line of the row-major input and output.
_COLUMN_BLOCK = 8


class LogScaled:
    """Median-impute, signed log1p, standardise: scikit-learn's ``SimpleImputer(strategy="median",
    keep_empty_features=True)``, ``FunctionTransformer(_signed_log1p)`` and ``StandardScaler()`` in a row.

    Fitting gives one row-major float64 array, the layout the logistic solver asks for (it copies any
    other); transforming gives a column-major one, as before, so the predictions' sums run as they did. Either
    is filled a few columns at a time: each block's columns are copied out contiguous, their
    statistics and values computed there exactly as on whole columns, and written into place. The
    three-step pipeline held about 4.5 copies of the training matrix at its peak (3.9 GiB over a 0.9 GiB
    matrix at 2.2M rows); this holds the input and the result. Equal to the three steps to rounding (tested).
    """

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self._scaled(X, fit=True)

    def transform(self, X) -> np.ndarray:
        return self._scaled(X, fit=False)

    def _scaled(self, X, *, fit: bool) -> np.ndarray:
        values = _float_values(X)
        n, k = values.shape
        out = np.empty((n, k), dtype="float64", order="C" if fit else "F")
        if fit:
            self.median_, self.mean_, self.scale_ = np.zeros(k), np.zeros(k), np.ones(k)
        for lo in range(0, k, _COLUMN_BLOCK):
            hi = min(lo + _COLUMN_BLOCK, k)
            A = np.array(values[:, lo:hi], dtype="float64", order="F", copy=True)  # each column contiguous
            if fit:
                self.median_[lo:hi] = [np.nanmedian(c) if (~np.isnan(c)).any() else 0.0 for c in A.T]
            self._log(A, self.median_[lo:hi])
            if fit:
                mean = np.array([c.mean() for c in A.T])
                var = np.array([c.var() for c in A.T])
                # StandardScaler's test for a constant column (a variance within rounding of 0 is left unscaled)
                eps = np.finfo(np.float64).eps
                constant = var <= n * eps * var + (n * mean * eps) ** 2
                self.mean_[lo:hi], self.scale_[lo:hi] = mean, np.where(constant, 1.0, np.sqrt(var))
            A -= self.mean_[lo:hi]
            A /= self.scale_[lo:hi]
            out[:, lo:hi] = A
            del A
        return out

    @staticmethod
    def _log(A: np.ndarray, median: np.ndarray) -> None:
        """Missing values set to the column's median, then the signed log1p, in place."""
        missing = np.isnan(A)
        if missing.any():
            np.copyto(A, np.broadcast_to(median, A.shape), where=missing)
        del missing
        negative = A < 0
        np.abs(A, out=A)
        np.log1p(A, out=A)
        np.negative(A, out=A, where=negative)

    def get_params(self, deep=True):  # a scikit-learn transformer without parameters
        return {}

    def set_params(self, **params):
        return self


LOGISTIC_BLAS_THREADS = 1  # BLAS threads of the logistic baseline's fit (see fit_logistic)


def fit_logistic(X_train: pd.DataFrame, y_train: np.ndarray, *, target: str = "") -> RiskModel:
    """Logistic regression on the same features (median-imputed, log-scaled counts, standardised)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(LogScaled(), LogisticRegression(C=1.0, max_iter=2000))
    # One BLAS thread: the solver's products are memory-bound, and two OpenBLAS threads on a busy 2-core
    # machine spin on each other (100k people: 9-11 s of CPU with one thread, 15-16 s with two). One
    # thread also gives the same coefficients on every machine (the sums' order depends on the threads).
    with threadpool_limits(limits=LOGISTIC_BLAS_THREADS, user_api="blas"):
        pipe.fit(X_train, y_train)
    return RiskModel("logistic", target, list(X_train.columns), pipe)


def prior_use_score(X: pd.DataFrame) -> np.ndarray:
    """The floor any model must beat: rank by past-year emergency admissions, then A&E visits.

    Returns a ranking score (not a probability). Missing sources count as zero.
    """
    def col(name: str) -> np.ndarray:
        return X[name].fillna(0).to_numpy(dtype=float) if name in X else np.zeros(len(X))

    admissions = col("emergency_admissions_0_3m") + col("emergency_admissions_3_12m")
    ae = col("ae_attendances_0_3m") + col("ae_attendances_3_12m")
    return admissions * 1000 + ae
