"""Calibration on a classifier's raw margin: Platt (sigmoid) or isotonic, through scikit-learn's public API.

A :class:`MarginCalibrator` maps a raw score (LightGBM's log-odds, ``decision_function``) to a
probability. It is fitted on the margins of a held-out calibration set, the way
``CalibratedClassifierCV(FrozenEstimator(clf))`` calibrates ``clf`` (it reads ``decision_function``
too), so its risks equal that calibrated classifier's ``predict_proba`` (tested to 1e-12); but it
takes the margin itself, so one pass over the trees gives both the rank score and the risk, with
no reach into scikit-learn's private calibration classes.

>>> import numpy as np
>>> margin = np.linspace(-3, 3, 20)
>>> cal = MarginCalibrator(method="isotonic").fit(margin, (margin > 0).astype(int))
>>> cal.predict(np.array([-5.0, 5.0])).tolist()
[0.0, 1.0]
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

METHODS = ("sigmoid", "isotonic")


class RawMargin(ClassifierMixin, BaseEstimator):
    """A binary "classifier" whose decision function is its input's one column: the margin itself.

    Frozen inside ``CalibratedClassifierCV``, it lets scikit-learn calibrate margins computed
    elsewhere (by the model, once) through its public API.
    """

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = 1
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X, dtype="float64").reshape(len(X), -1)[:, 0]

    def predict(self, X) -> np.ndarray:  # scikit-learn's checks ask every classifier for one
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


class MarginCalibrator:
    """A probability from a raw margin: ``method`` is "sigmoid" (Platt) or "isotonic"."""

    def __init__(self, method: str = "sigmoid"):
        self.method = method

    def fit(self, margin, y) -> MarginCalibrator:
        """Fit on the calibration set's margins and 0/1 outcomes."""
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {self.method!r}")
        M = _column(margin)
        self.calibrated_ = CalibratedClassifierCV(FrozenEstimator(RawMargin().fit(M, y)), method=self.method)
        self.calibrated_.fit(M, y)
        return self

    def predict(self, margin) -> np.ndarray:
        """The calibrated probability of the outcome for each margin."""
        return self.calibrated_.predict_proba(_column(margin))[:, 1]


def _column(margin) -> np.ndarray:
    return np.asarray(margin, dtype="float64").reshape(-1, 1)


def fit_margin_calibrator(estimator, X_cal, y_cal, *, method: str) -> MarginCalibrator:
    """``estimator``'s calibrator, fitted on its ``decision_function`` over the calibration rows."""
    return MarginCalibrator(method=method).fit(estimator.decision_function(X_cal), y_cal)
