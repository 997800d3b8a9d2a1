"""Evaluation metrics for risk scores: discrimination, calibration, list performance, drift.

Every metric is a plain function ``fn(y_true, y_score, *, ...)`` on arrays, so it plugs into
:func:`bootstrap_ci` and :func:`riskstrat.evaluation.metric_frame` (and fairlearn's ``MetricFrame``) unchanged.
``y_true`` is binary (0/1 or bool); ``y_score`` is any score where higher means riskier, and
``y_prob`` a predicted probability in [0, 1]. Plotting lives in :mod:`riskstrat.evaluation.plots`.

scikit-learn 1.9 has no calibration slope/intercept and no PPV at the top k%, so they are here.

Rules that keep a figure from depending on row order or on an optimiser's silence:

- **Ties at a list's cut-off** count fractionally: a list of the top ``k`` that must choose ``s`` of
  ``t`` people tied at the cut-off counts each of them as ``s / t`` of a person
  (:func:`top_k_weights`): the expected value under random tie-breaking. The published lists choose
  whole people (ties by id, :func:`riskstrat.modeling.tiers.top_fraction_mask`), so a metric gives the
  list's size exactly and its events as the expectation over who of the tied is chosen.
- **A calibration slope that cannot be estimated** (constant predicted risk, outcome perfectly
  separated by the risk, optimiser not converged) is NaN with a reason (:func:`calibration_fit`) and a
  :class:`NotEstimableWarning`, never the optimiser's last value.
- **Bootstrap intervals** resample events and non-events separately (stratified by outcome, so no
  resample lacks a class), count the resamples that gave a value, and are not given with fewer than
  :data:`MIN_EVENTS_FOR_INTERVAL` events or non-events (:class:`Interval`, reason "too few events").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from sklearn import metrics as skm

from riskstrat.modeling.tiers import assign_tiers

__all__ = [
    "MIN_EVENTS_FOR_INTERVAL",
    "NOT_ESTIMABLE",
    "CalibrationFit",
    "Interval",
    "NotEstimableWarning",
    "auprc",
    "auroc",
    "auroc_ci",
    "bootstrap_ci",
    "brier",
    "calibration_fit",
    "calibration_intercept",
    "calibration_slope",
    "case_finding_table",
    "cost_by_decile",
    "cost_capture",
    "cost_summary",
    "decision_curve",
    "events_per_1000_flagged",
    "integrated_calibration_index",
    "logistic_recalibration",
    "number_needed_to_flag",
    "observed_expected_by_tier",
    "observed_expected_ratio",
    "recalibrate",
    "recalibration_table",
    "smoothed_calibration",
    "paired_auroc_difference",
    "net_benefit",
    "newcombe_difference",
    "observed_expected_by_decile",
    "observed_expected_interval",
    "ppv_at_top",
    "psi",
    "psi_of_shares",
    "sensitivity_at_top",
    "summarise",
    "top_k_mask",
    "top_k_weights",
    "wilson_interval",
]

# Probabilities are clipped before taking logits so that 0 and 1 give finite values.
_LOGIT_CLIP = 1e-6
# Below this many events (or non-events) no bootstrap interval is given: with fewer, the resamples
# repeat the same handful of events and a percentile interval claims a precision the data lack (with
# one event in 20 rows an unstratified AUROC interval excluded 0.5). 10 is the usual floor for a
# binary outcome (10 events per estimated quantity; Peduzzi et al. 1996).
MIN_EVENTS_FOR_INTERVAL = 10
TOO_FEW_EVENTS = "too few events"


class NotEstimableWarning(UserWarning):
    """A statistic could not be estimated on these rows (it is reported as NaN with its reason)."""


class Interval(tuple):
    """A ``(low, high)`` interval that also says how it was made: ``n_used`` resamples of ``n_boot``
    gave a value, and ``reason`` says why there is none (low and high NaN), e.g. "too few events".

    It unpacks as a pair, so ``low, high = bootstrap_ci(...)`` works.
    """

    def __new__(cls, low: float, high: float, *, n_used: int = 0, n_boot: int = 0, reason: str = ""):
        self = super().__new__(cls, (float(low), float(high)))
        self.n_used, self.n_boot, self.reason = int(n_used), int(n_boot), reason
        return self

    @property
    def low(self) -> float:
        return self[0]

    @property
    def high(self) -> float:
        return self[1]

    @classmethod
    def none(cls, reason: str, *, n_boot: int = 0) -> "Interval":
        return cls(float("nan"), float("nan"), n_boot=n_boot, reason=reason)


# ----------------------------------------------------------------------------- validation


def _check_scores(y_score, *, name: str = "y_score") -> np.ndarray:
    score = np.asarray(y_score, dtype=float)
    if score.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {score.shape}")
    if score.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(score).any():
        raise ValueError(f"{name} contains NaN")
    return score


def _check_inputs(
    y_true, y_score, *, both_classes: bool = True, probability: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(y, score)``: same length, y binary 0/1 (optionally both present), no NaN."""
    score = _check_scores(y_score, name="y_prob" if probability else "y_score")
    y_raw = np.asarray(y_true)
    if y_raw.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {y_raw.shape}")
    if len(y_raw) != len(score):
        raise ValueError(
            f"y_true and y_score have different lengths ({len(y_raw)} and {len(score)})"
        )
    try:
        y_float = y_raw.astype(float)
    except (TypeError, ValueError):
        raise ValueError("y_true must be binary (0/1 or bool)") from None
    if np.isnan(y_float).any():
        raise ValueError("y_true contains NaN")
    if not np.isin(y_float, (0.0, 1.0)).all():
        found = np.unique(y_float)[:5]
        raise ValueError(f"y_true must be binary (0/1 or bool), found values {found}")
    y = y_float.astype(np.int64)
    if both_classes and (y.min() == y.max()):
        raise ValueError(f"y_true has only one class ({y[0]}); both 0 and 1 are needed")
    if probability and ((score < 0).any() or (score > 1).any()):
        raise ValueError("y_prob must lie in [0, 1]")
    return y, score


def _check_fraction(fraction: float) -> float:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return float(fraction)


def _logit(y_prob: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(y_prob, _LOGIT_CLIP, 1 - _LOGIT_CLIP))


# ----------------------------------------------------------------------------- discrimination


def auroc(y_true, y_score) -> float:
    """Area under the ROC curve (the C statistic).

    Example: ``auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])`` is 0.75 (3 of the 4 positive-negative
    pairs are ranked correctly).
    """
    y, score = _check_inputs(y_true, y_score)
    return float(skm.roc_auc_score(y, score))


def auprc(y_true, y_score) -> float:
    """Area under the precision-recall curve, as average precision (no interpolation).

    Its chance level is the prevalence, so compare it with ``mean(y_true)``.
    Example: ``auprc([0, 1], [0.2, 0.9])`` is 1.0.
    """
    y, score = _check_inputs(y_true, y_score)
    return float(skm.average_precision_score(y, score))


def brier(y_true, y_prob) -> float:
    """Brier score: mean squared difference between predicted probability and outcome.

    Example: ``brier([0, 1], [0.2, 0.6])`` is ``(0.04 + 0.16) / 2 = 0.1``.
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    return float(np.mean((prob - y) ** 2))


def _too_few_for_interval(y: np.ndarray) -> str:
    """"too few events" when y has fewer than MIN_EVENTS_FOR_INTERVAL events or non-events, else ""."""
    events = int(y.sum())
    if min(events, len(y) - events) < MIN_EVENTS_FOR_INTERVAL:
        return (f"{TOO_FEW_EVENTS} ({events} events, {len(y) - events} without; an interval needs "
                f"{MIN_EVENTS_FOR_INTERVAL} of each)")
    return ""


def _interval_inputs(y_true, y_score, *, alpha: float, n_boot: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The checked outcome and score of a bootstrap interval, and why there can be none ("" if it can)."""
    y, score = _check_inputs(y_true, y_score, both_classes=False)
    _check_alpha(alpha)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    return y, score, _too_few_for_interval(y)


def _stratified_draws(y: np.ndarray, *, n_boot: int, seed: int):
    """``n_boot`` bootstrap resamples (row positions) stratified by outcome: the events and the
    non-events are each resampled with replacement to their own number, so every resample has the
    evaluation's prevalence and both classes."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    events, others = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    for _ in range(n_boot):
        yield np.concatenate([events[rng.integers(0, len(events), size=len(events))],
                              others[rng.integers(0, len(others), size=len(others))]])


def _percentiles(values, *, alpha: float, n_boot: int) -> Interval:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return Interval.none("no resample gave a value", n_boot=n_boot)
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return Interval(low, high, n_used=len(values), n_boot=n_boot)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true,
    y_score,
    *,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``metric(y_true, y_score)`` (an :class:`Interval`).

    Resamples are stratified by outcome (:func:`_stratified_draws`). A resample where the metric
    has no value (it raises ValueError or gives NaN) is not used; ``n_used`` counts those that were.
    With fewer than :data:`MIN_EVENTS_FOR_INTERVAL` events or non-events there is no interval
    (NaN, reason "too few events").
    Example: ``low, high = bootstrap_ci(auroc, y, p, n_boot=500, seed=1)``.
    """
    y, score, reason = _interval_inputs(y_true, y_score, alpha=alpha, n_boot=n_boot)
    if reason:
        return Interval.none(reason, n_boot=n_boot)
    values = []
    for idx in _stratified_draws(y, n_boot=n_boot, seed=seed):
        try:
            values.append(float(metric(y[idx], score[idx])))
        except (ValueError, ZeroDivisionError):
            continue
    return _percentiles(values, alpha=alpha, n_boot=n_boot)


def _tie_groups(score: np.ndarray) -> tuple[np.ndarray, int]:
    """Each row's group of equal scores, numbered in increasing score order, and the number of groups."""
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.empty(len(score), dtype=np.int64)
    group[order] = np.cumsum(starts) - 1
    return group, int(starts.sum())


def _weighted_auroc(group: np.ndarray, n_groups: int, w_pos: np.ndarray, w_neg: np.ndarray) -> float:
    """AUROC when row i counts w_pos[i] times as a positive and w_neg[i] times as a negative:
    the share of positive-negative pairs ranked correctly, ties counting one half."""
    pos = np.bincount(group, weights=w_pos, minlength=n_groups)
    neg = np.bincount(group, weights=w_neg, minlength=n_groups)
    below = np.cumsum(neg) - neg  # negatives with a lower score
    return float(np.dot(pos, below + 0.5 * neg) / (pos.sum() * neg.sum()))


def _bootstrap_aurocs(y: np.ndarray, scores: Sequence[np.ndarray], *, n_boot: int, seed: int) -> np.ndarray:
    """The AUROC of each score on the same resamples, shape (n_boot, len(scores)).

    The draws are bootstrap_ci's (stratified by outcome, so every resample has both classes). A
    resample is a weighting of the rows (how often each was drawn) over scores sorted once, so it
    costs O(n) instead of a sort: about five times faster on a quarter of a million rows.
    """
    n = len(y)
    ranked = [_tie_groups(s) for s in scores]
    positive = y.astype(bool)
    draws = []
    for idx in _stratified_draws(y, n_boot=n_boot, seed=seed):
        weight = np.bincount(idx, minlength=n).astype(np.float64)
        w_pos = np.where(positive, weight, 0.0)
        draws.append([_weighted_auroc(group, k, w_pos, weight - w_pos) for group, k in ranked])
    return np.asarray(draws)


def auroc_ci(y_true, y_score, *, n_boot: int = 200, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the AUROC (an :class:`Interval`).

    The same resamples and result as ``bootstrap_ci(auroc, ...)``, computed without re-sorting
    each resample (see :func:`_bootstrap_aurocs`); none with too few events.
    """
    y, score, reason = _interval_inputs(y_true, y_score, alpha=alpha, n_boot=n_boot)
    if reason:
        return Interval.none(reason, n_boot=n_boot)
    draws = _bootstrap_aurocs(y, [score], n_boot=n_boot, seed=seed)[:, 0]
    return _percentiles(draws, alpha=alpha, n_boot=n_boot)


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationFit:
    """The logistic recalibration of y on logit(p): ``intercept`` and ``slope`` with the slope's Wald
    interval (from the observed information, as statsmodels' ``Logit``), or NaN and ``reason`` when
    the slope cannot be estimated."""

    intercept: float
    slope: float
    slope_se: float
    slope_ci_low: float
    slope_ci_high: float
    reason: str = ""

    @property
    def estimable(self) -> bool:
        return not self.reason


# Why a slope cannot be estimated: the reason's words, and a number for a flat metrics dict (MLflow
# holds numbers only); 0 means estimable.
NOT_ESTIMABLE = {"constant predicted risk": 1, "the outcome is perfectly separated by the predicted risk": 2,
                 "the fit did not converge": 3}


def _not_estimable(reason: str) -> CalibrationFit:
    warnings.warn(f"calibration slope not estimable: {reason}", NotEstimableWarning, stacklevel=3)
    nan = float("nan")
    return CalibrationFit(nan, nan, nan, nan, nan, reason)


def calibration_fit(y_true, y_prob, *, alpha: float = 0.05) -> CalibrationFit:
    """Logistic regression of y on logit(p) by unpenalised maximum likelihood (scipy; scikit-learn 1.9
    deprecates ``penalty=None``), p clipped to [1e-6, 1 - 1e-6] before the logit.

    The slope is not estimable (NaN, a ``reason`` and a :class:`NotEstimableWarning`) when logit(p)
    is constant (no slope to fit), when the outcome is separated by p (every event's p at or above
    every non-event's, or the reverse: the likelihood has no maximum, the slope runs off to infinity)
    or when the optimiser does not converge.
    """
    y, prob = _check_inputs(y_true, y_prob, probability=True)
    _check_alpha(alpha)
    x = _logit(prob)
    if np.ptp(x) == 0:
        return _not_estimable("constant predicted risk")
    events, others = x[y == 1], x[y == 0]
    if events.min() >= others.max() or events.max() <= others.min():
        return _not_estimable("the outcome is perfectly separated by the predicted risk")

    def nll(beta):
        eta = beta[0] + beta[1] * x
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta))

    def grad(beta):
        resid = special.expit(beta[0] + beta[1] * x) - y
        return np.array([resid.sum(), resid @ x])

    def hess(beta):
        w = special.expit(beta[0] + beta[1] * x)
        w = w * (1 - w)
        return np.array([[w.sum(), w @ x], [w @ x, w @ (x * x)]])

    fit = optimize.minimize(nll, x0=np.array([0.0, 1.0]), jac=grad, hess=hess, method="trust-exact")
    if not fit.success or not np.all(np.isfinite(fit.x)) or np.abs(grad(fit.x)).max() > 1e-4 * max(1.0, len(y)):
        return _not_estimable("the fit did not converge")
    try:
        cov = np.linalg.inv(hess(fit.x))
    except np.linalg.LinAlgError:
        return _not_estimable("the fit did not converge")
    se = float(math.sqrt(cov[1, 1])) if cov[1, 1] > 0 else float("nan")
    z = float(stats.norm.ppf(1 - alpha / 2))
    slope = float(fit.x[1])
    return CalibrationFit(float(fit.x[0]), slope, se, slope - z * se, slope + z * se)


def logistic_recalibration(y_true, y_prob) -> tuple[float, float]:
    """``(intercept, slope)`` of the logistic regression of y on logit(p): the logistic recalibration.

    ``expit(intercept + slope * logit(p))`` are the recalibrated probabilities; (0, 1) is ideal.
    Both NaN when the slope is not estimable (:func:`calibration_fit`).
    """
    fit = calibration_fit(y_true, y_prob)
    return fit.intercept, fit.slope


def calibration_slope(y_true, y_prob) -> float:
    """Calibration slope: the coefficient of logit(p) in a logistic regression of y on logit(p).

    1 is ideal; below 1 the predictions are too extreme (over-fitted), above 1 too modest.
    NaN (with a :class:`NotEstimableWarning`) when it cannot be estimated (:func:`calibration_fit`).
    Example: outcomes drawn from p give a slope near 1; the same outcomes scored with
    ``expit(2 * logit(p))`` give a slope near 0.5.
    """
    return calibration_fit(y_true, y_prob).slope


def calibration_intercept(y_true, y_prob) -> float:
    """Calibration-in-the-large: the intercept ``a`` of ``logit P(y=1) = a + logit(p)``.

    logit(p) enters as a fixed offset, so ``a`` is the single shift that makes the expected number
    of events match the observed number. 0 is ideal; above 0 the predictions are too low, below 0
    too high. p is clipped to [1e-6, 1 - 1e-6] before the logit.
    Example: if every p is 0.1 and 20% of people have the event, ``a = logit(0.2) - logit(0.1)``.
    """
    y, prob = _check_inputs(y_true, y_prob, probability=True)
    offset = _logit(prob)
    n_events = float(y.sum())

    # Score equation of the 1-D likelihood; strictly decreasing in a, so one root.
    def score_eq(a: float) -> float:
        return n_events - float(special.expit(a + offset).sum())

    lo, hi = -1.0, 1.0
    while score_eq(lo) < 0:
        lo *= 2
    while score_eq(hi) > 0:
        hi *= 2
    return float(optimize.brentq(score_eq, lo, hi, xtol=1e-12))


def _rank_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-size bins 1..n_bins by rank (lowest values in bin 1); ties broken by row order."""
    n = len(values)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    return ranks * n_bins // n + 1


def observed_expected_by_decile(y_true, y_prob, *, n_bins: int = 10) -> pd.DataFrame:
    """Observed and expected events by risk group, one row per group (1 = lowest risk).

    Groups are equal-size by rank of ``y_prob`` (sizes differ by at most one); tied
    probabilities are split by row order, so the result is deterministic. Columns: ``decile``,
    ``n``, ``observed`` (events), ``expected`` (sum of p), ``observed_rate``, ``expected_rate``,
    ``o_e_ratio`` (NaN where nothing is expected) and its exact Poisson 95% interval ``o_e_ci_low``,
    ``o_e_ci_high`` (:func:`observed_expected_interval`: the observed count is Poisson, the expected
    taken as fixed, as for a standardised mortality ratio).
    Example: ``observed_expected_by_decile(y, p)["observed"].sum() == sum(y)``.
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if len(y) < n_bins:
        raise ValueError(f"need at least n_bins={n_bins} rows, got {len(y)}")
    frame = pd.DataFrame({"decile": _rank_bins(prob, n_bins), "y": y, "p": prob})
    table = (
        frame.groupby("decile", sort=True)
        .agg(n=("y", "size"), observed=("y", "sum"), expected=("p", "sum"))
        .reset_index()
    )
    table["observed_rate"] = table["observed"] / table["n"]
    table["expected_rate"] = table["expected"] / table["n"]
    table["o_e_ratio"] = table["observed"] / table["expected"].where(table["expected"] > 0)
    return _with_oe_interval(table)


def _with_oe_interval(table: pd.DataFrame) -> pd.DataFrame:
    table["o_e_ci_low"], table["o_e_ci_high"] = _poisson_ratio_interval(table["observed"].to_numpy(),
                                                                        table["expected"].to_numpy())
    return table


# ----------------------------------------------------------------------------- case-finding lists


def top_k_mask(y_score, fraction: float) -> np.ndarray:
    """Boolean mask of the ``ceil(fraction * n)`` highest scores: one list of whole people.

    Ties at the cut-off are broken by row order (earlier rows first), so the list always has
    exactly k people and the same input always gives the same list. Metrics do not use it (their
    value would depend on the row order): they use :func:`top_k_weights`.
    Example: ``top_k_mask([0.1, 0.9, 0.5, 0.9], 0.5)`` is ``[False, True, False, True]``.
    """
    score = _check_scores(y_score)
    fraction = _check_fraction(fraction)
    n = len(score)
    # The small tolerance stops float noise (0.07 * 100 = 7.000000000000001) adding a person.
    k = _n_listed(fraction, n)
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    return mask


def _n_listed(fraction: float, n: int) -> int:
    # The small tolerance stops float noise (0.07 * 100 = 7.000000000000001) adding a person.
    return min(n, max(1, math.ceil(fraction * n - 1e-9)))


def top_k_weights(y_score, fraction: float) -> np.ndarray:
    """Each row's chance of being on the list of the ``k = ceil(fraction * n)`` highest scores when
    ties at the cut-off are broken at random: 1 above the cut-off, ``s / t`` for each of the ``t``
    people tied at it when ``s`` places are left, 0 below. The weights sum to k, and do not depend
    on the order of the rows.

    >>> top_k_weights([0.9, 0.5, 0.5, 0.5, 0.1], 0.4).tolist()
    [1.0, 0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 0.0]
    """
    score = _check_scores(y_score)
    k = _n_listed(_check_fraction(fraction), len(score))
    kth = np.partition(score, len(score) - k)[len(score) - k]
    above, tied = score > kth, score == kth
    weight = above.astype(float)
    weight[tied] = (k - above.sum()) / tied.sum()
    return weight


def ppv_at_top(y_true, y_score, *, fraction: float) -> float:
    """Positive predictive value of the list of the top ``fraction`` by score, ties at the cut-off
    counted fractionally (:func:`top_k_weights`: the expected value under random tie-breaking).

    Example: with 10 people and ``fraction=0.2`` the list holds 2; if one has the event, PPV = 0.5.
    """
    y, score = _check_inputs(y_true, y_score, both_classes=False)
    weight = top_k_weights(score, fraction)
    return float(weight @ y / weight.sum())


def sensitivity_at_top(y_true, y_score, *, fraction: float) -> float:
    """Share of all events that fall on the list of the top ``fraction`` by score (ties at the
    cut-off counted fractionally, :func:`top_k_weights`).

    Example: 10 people, 3 events, a 2-person list holding one of them: sensitivity = 1/3.
    """
    y, score = _check_inputs(y_true, y_score, both_classes=False)
    if y.sum() == 0:
        raise ValueError("sensitivity needs at least one positive in y_true")
    return float(top_k_weights(score, fraction) @ y / y.sum())


def net_benefit(y_true, y_prob, *, threshold: float) -> float:
    """Net benefit of treating everyone with ``y_prob >= threshold``: TP/n - FP/n * pt/(1 - pt).

    Example: treating nobody (threshold above every p) gives 0.
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    treat = prob >= threshold
    n = len(y)
    tp = np.sum(treat & (y == 1))
    fp = np.sum(treat & (y == 0))
    return float(tp / n - fp / n * threshold / (1 - threshold))


# ----------------------------------------------------------------------------- summaries


def _pct_label(fraction: float) -> str:
    return f"{fraction * 100:g}"


def summarise(
    y_true,
    y_score,
    *,
    is_probability: bool = True,
    top_fractions: Sequence[float] = (0.005, 0.01, 0.02, 0.05),
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """The headline metrics of one model on one dataset, as a flat dict ready to log.

    Keys: ``auroc``, ``auroc_ci_low``, ``auroc_ci_high`` (percentile bootstrap, stratified; NaN
    with too few events), ``bootstrap_resamples_used``, ``auprc``, ``prevalence``, ``n``,
    ``n_positive``; if ``is_probability``: ``brier``, ``calibration_slope`` with its Wald interval
    ``calibration_slope_ci_low``/``_high`` and ``calibration_slope_not_estimable`` (0, or the code of
    :data:`NOT_ESTIMABLE`'s reason), ``calibration_intercept``; and for each fraction
    ``ppv_top_{pct}pct`` and ``sensitivity_top_{pct}pct`` with pct = fraction * 100
    (0.005 -> ``ppv_top_0.5pct``, 0.05 -> ``ppv_top_5pct``).
    Example: ``summarise(y, p)["ppv_top_1pct"]``.
    """
    y, score = _check_inputs(y_true, y_score, probability=is_probability)
    for fraction in top_fractions:
        _check_fraction(fraction)
    out: dict[str, float] = {}
    out["auroc"] = auroc(y, score)
    interval = auroc_ci(y, score, n_boot=n_boot, seed=seed)
    out["auroc_ci_low"], out["auroc_ci_high"] = interval
    out["bootstrap_resamples_used"] = float(interval.n_used)
    out["auprc"] = auprc(y, score)
    out["prevalence"] = float(y.mean())
    out["n"] = float(len(y))
    out["n_positive"] = float(y.sum())
    if is_probability:
        out["brier"] = brier(y, score)
        fit = calibration_fit(y, score)
        out["calibration_slope"] = fit.slope
        out["calibration_slope_ci_low"], out["calibration_slope_ci_high"] = fit.slope_ci_low, fit.slope_ci_high
        out["calibration_slope_not_estimable"] = float(NOT_ESTIMABLE.get(fit.reason, 0))
        out["calibration_intercept"] = calibration_intercept(y, score)
    for fraction in top_fractions:
        pct = _pct_label(fraction)
        out[f"ppv_top_{pct}pct"] = ppv_at_top(y, score, fraction=fraction)
        out[f"sensitivity_top_{pct}pct"] = sensitivity_at_top(y, score, fraction=fraction)
    return out


def psi_of_shares(reference, new, *, into: Sequence[int | None] | None = None) -> float:
    """PSI = sum((new - ref) * ln(new / ref)) over cells given as shares (each summing to 1).

    A cell that holds none of the reference has no share to compare with: its term is infinite,
    and flooring the share at a tiny value made the term, and the verdict, depend on the floor (2%
    newly missing values gave 0.2, a "warn", whatever the data). Such a cell is merged with another
    before the sum: ``into[i]`` names the cell that takes cell i; by default (None) an empty cell
    goes to its nearest non-empty neighbour below (above, for the first), as for ordered value bins.
    The merged cell then changes by the share that moved into it, so a small change gives a small
    PSI and a large one a large PSI. A cell the reference holds but the new data leave empty keeps
    its term, the new share floored at 1e-6 (a large, finite term: a real shift).

    >>> round(psi_of_shares([0.5, 0.5, 0.0], [0.5, 0.48, 0.02], into=[None, None, 1]), 6)
    0.0
    """
    ref, cur = np.asarray(reference, dtype=float), np.asarray(new, dtype=float)
    if ref.shape != cur.shape:
        raise ValueError(f"reference and new have {ref.size} and {cur.size} cells")
    ref, cur = _merge_empty_reference_cells(ref, cur, into=into)
    cur = np.clip(cur, _PSI_FLOOR, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


_PSI_FLOOR = 1e-6


def _merge_empty_reference_cells(ref: np.ndarray, cur: np.ndarray, *, into: Sequence[int | None] | None = None
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Cells of zero reference share merged into a neighbour: ``into[i]`` names the cell that takes
    cell i (None: its neighbour below, or above for the first). Returns the shares without them."""
    ref, cur = ref.astype(float).copy(), cur.astype(float).copy()
    empty = np.flatnonzero(ref <= 0)
    if len(empty) == len(ref):
        raise ValueError("the reference holds no one in any cell")
    keep = np.ones(len(ref), dtype=bool)
    for i in empty:
        target = into[i] if into is not None and into[i] is not None else None
        if target is None:
            candidates = [j for j in range(i - 1, -1, -1) if ref[j] > 0] or \
                         [j for j in range(i + 1, len(ref)) if ref[j] > 0]
            target = candidates[0]
        cur[target] += cur[i]
        keep[i] = False
    return ref[keep], cur[keep]


def psi(expected, actual, *, n_bins: int = 10) -> float:
    """Population stability index of ``actual`` against the reference ``expected``.

    Bins are the quantiles of ``expected`` (duplicate edges merged, open-ended outer bins);
    PSI = sum((a - e) * ln(a / e)) over bin shares (:func:`psi_of_shares`: a bin the reference
    leaves empty is merged with its neighbour; one the new data leave empty has its share floored
    at 1e-6). Rule of thumb: < 0.1 stable, 0.1-0.25 some shift, > 0.25 large shift.
    Example: ``psi(last_month_scores, this_month_scores)``; identical samples give 0.
    """
    ref = _check_scores(expected, name="expected")
    new = _check_scores(actual, name="actual")
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    inner_edges = np.unique(np.quantile(ref, np.linspace(0, 1, n_bins + 1)[1:-1]))
    n_cells = len(inner_edges) + 1
    ref_share = np.bincount(np.searchsorted(inner_edges, ref, side="right"), minlength=n_cells) / len(ref)
    new_share = np.bincount(np.searchsorted(inner_edges, new, side="right"), minlength=n_cells) / len(new)
    return psi_of_shares(ref_share, new_share)


def cost_summary(cost_true, cost_pred, *, top_fraction: float = 0.05) -> dict[str, float]:
    """How well predicted cost finds the costly: MAE, total ratio, and the share of all observed
    cost carried by the top ``top_fraction`` by prediction (vs. by actual cost, the ceiling).

    >>> cost_summary([0, 0, 10, 90], [1, 2, 50, 60], top_fraction=0.25)["cost_captured_top"]
    0.9
    """
    y = _check_scores(cost_true, name="cost_true")
    p = _check_scores(cost_pred, name="cost_pred")
    if y.shape != p.shape:
        raise ValueError(f"cost_true and cost_pred differ in length ({y.size} vs {p.size})")
    total = y.sum()
    if total <= 0:
        raise ValueError("cost_true sums to zero: no cost to capture")
    top_pred = top_k_weights(p, _check_fraction(top_fraction))
    top_true = top_k_weights(y, top_fraction)
    return {"cost_mae": float(np.mean(np.abs(y - p))), "cost_ratio": float(p.sum() / total),
            "cost_captured_top": float(top_pred @ y / total),
            "cost_captured_top_ceiling": float(top_true @ y / total)}


def cost_capture(cost_true, scores: Mapping[str, object], *, fractions: Sequence[float] = (0.01, 0.05),
                 ceiling: bool = True) -> pd.DataFrame:
    """What each ranking's list catches of next-year cost: one row per (model, list size).

    For the top ``fraction`` by each score (:func:`top_k_weights`, ties at the cut-off counted
    fractionally): ``flagged`` people, their
    ``cost_flagged`` (sum of actual cost), ``cost_share`` (of everyone's actual cost) and
    ``mean_cost_flagged``. With ``ceiling`` a row ``by actual cost`` per list size gives the most
    any ranking could catch.

    >>> t = cost_capture([0, 10, 30, 60], {"m": [0.1, 0.9, 0.2, 0.8]}, fractions=[0.5])
    >>> t[["model", "cost_share", "mean_cost_flagged"]].values.tolist()
    [['m', 0.7, 35.0], ['by actual cost', 0.9, 45.0]]
    """
    cost = _check_scores(cost_true, name="cost_true")
    total = cost.sum()
    if total <= 0:
        raise ValueError("cost_true sums to zero: no cost to capture")
    rankings = dict(scores)
    if ceiling:
        rankings["by actual cost"] = cost
    rows = []
    for name, score in rankings.items():
        score = _check_scores(score)
        if score.shape != cost.shape:
            raise ValueError(f"score {name!r} has {score.size} values, cost_true {cost.size}")
        for fraction in fractions:
            flagged = top_k_weights(score, fraction)
            caught = float(flagged @ cost)
            rows.append({"model": name, "list": f"top {_pct_label(fraction)}%", "fraction": float(fraction),
                         "flagged": int(round(flagged.sum())), "cost_flagged": caught, "cost_share": caught / total,
                         "mean_cost_flagged": caught / flagged.sum()})
    return pd.DataFrame(rows, columns=["model", "list", "fraction", "flagged", "cost_flagged", "cost_share",
                                       "mean_cost_flagged"])


def cost_by_decile(cost_true, cost_pred, *, n_bins: int = 10) -> pd.DataFrame:
    """Predicted against actual cost by group of predicted cost (1 = lowest; equal sizes by rank,
    ties by row order): ``n``, ``mean_predicted``, ``mean_actual`` and ``actual_to_predicted``.

    >>> cost_by_decile([0, 10, 30, 50], [5, 5, 20, 60], n_bins=2)["mean_actual"].tolist()
    [5.0, 40.0]
    """
    y = _check_scores(cost_true, name="cost_true")
    p = _check_scores(cost_pred, name="cost_pred")
    if y.shape != p.shape:
        raise ValueError(f"cost_true and cost_pred differ in length ({y.size} vs {p.size})")
    if len(y) < n_bins:
        raise ValueError(f"need at least n_bins={n_bins} rows, got {len(y)}")
    frame = pd.DataFrame({"decile": _rank_bins(p, n_bins), "actual": y, "predicted": p})
    table = (frame.groupby("decile", sort=True)
             .agg(n=("actual", "size"), mean_predicted=("predicted", "mean"), mean_actual=("actual", "mean"))
             .reset_index())
    table["actual_to_predicted"] = table["mean_actual"] / table["mean_predicted"].where(table["mean_predicted"] > 0)
    return table


def paired_auroc_difference(y_true, score_a, score_b, *, n_boot: int = 200, alpha: float = 0.05,
                            seed: int = 0) -> tuple[float, float, float]:
    """AUROC(a) - AUROC(b) on the same people, with a paired percentile bootstrap interval.

    Resampling people once for both scores keeps their correlation, so the interval is much
    narrower than comparing two separate intervals. Resamples are stratified by outcome; no
    interval (NaN) with fewer than :data:`MIN_EVENTS_FOR_INTERVAL` events or non-events.

    >>> d, lo, hi = paired_auroc_difference([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [0.2, 0.1, 0.9, 0.8], n_boot=0)
    >>> d
    0.0
    """
    y, a = _check_inputs(y_true, score_a)
    _, b = _check_inputs(y_true, score_b)
    diff = auroc(y, a) - auroc(y, b)
    if n_boot <= 0 or _too_few_for_interval(y):
        return float(diff), float("nan"), float("nan")
    both = _bootstrap_aurocs(y, [a, b], n_boot=n_boot, seed=seed)  # the same resamples for both
    low, high = np.quantile(both[:, 0] - both[:, 1], [alpha / 2, 1 - alpha / 2])
    return float(diff), float(low), float(high)


# ----------------------------------------------------------------------------- evaluation additions
# Calibration beyond slope and intercept (ICI, O/E, recalibration), case finding in the field's
# words (number needed to flag, events per 1,000 flagged) and the decision curve.


def observed_expected_ratio(y_true, y_prob) -> float:
    """Observed events over expected events (sum of p): 1 is ideal, above 1 the model under-predicts.

    Example: ``observed_expected_ratio([1, 0, 0, 0], [0.1, 0.1, 0.1, 0.1])`` is 2.5.
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    expected = prob.sum()
    return float(y.sum() / expected) if expected > 0 else float("nan")


def observed_expected_interval(y_true, y_prob, *, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Garwood) Poisson interval for observed/expected, the expected count taken as fixed:
    the interval of the observed count O divided by E, as for a standardised mortality ratio.

    Example: 10 events against 8 expected: ``(chi2(0.025, 20) / 2, chi2(0.975, 22) / 2) / 8``,
    about (0.60, 2.30).
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return _poisson_ratio_interval(float(y.sum()), float(prob.sum()), alpha=alpha)


def _poisson_ratio_interval(observed, expected, *, alpha: float = 0.05):
    """Exact (Garwood) interval of observed/expected, elementwise; NaN where nothing is expected."""
    observed, expected = np.asarray(observed, dtype=float), np.asarray(expected, dtype=float)
    low = np.where(observed > 0, stats.chi2.ppf(alpha / 2, 2 * np.maximum(observed, 1e-300)) / 2, 0.0)
    high = stats.chi2.ppf(1 - alpha / 2, 2 * observed + 2) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(expected > 0, low / np.where(expected > 0, expected, 1), np.nan)
        high = np.where(expected > 0, high / np.where(expected > 0, expected, 1), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def wilson_interval(events: int, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion ``events / n``.

    Example: ``wilson_interval(0, 10)`` is about (0, 0.278): unlike the Wald interval it is not
    (0, 0) when nothing happened.
    """
    if n < 1 or not 0 <= events <= n:
        raise ValueError(f"need 0 <= events <= n and n >= 1, got {events} of {n}")
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = events / n
    centre = 2 * n * p + z * z
    spread = z * math.sqrt(z * z + 4 * n * p * (1 - p))
    denominator = 2 * (n + z * z)
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def newcombe_difference(events_a: int, n_a: int, events_b: int, n_b: int, *,
                        alpha: float = 0.05) -> tuple[float, float, float]:
    """``p_a - p_b`` of two independent proportions with Newcombe's hybrid score interval
    (Newcombe 1998, method 10: built from the two Wilson intervals).

    Chosen over the Wald interval because its coverage stays near 95% with few events or rates
    near 0 (hospital outcomes in a small hold-out), where Wald's is too narrow and can shrink to
    nothing when one group has no events.
    Example (Newcombe's first): 56/70 against 48/80 gives 0.2 (0.0524 to 0.3339).
    """
    pa, pb = events_a / max(n_a, 1), events_b / max(n_b, 1)
    la, ua = wilson_interval(events_a, n_a, alpha=alpha)
    lb, ub = wilson_interval(events_b, n_b, alpha=alpha)
    difference = pa - pb
    return (float(difference), float(difference - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)),
            float(difference + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)))


def _local_linear(x: np.ndarray, y: np.ndarray, weight: np.ndarray, at: np.ndarray, *, frac: float) -> np.ndarray:
    """Tricube-weighted local linear regression of y on x, evaluated at ``at`` (loess, degree 1, no
    robustness iterations: statsmodels' ``lowess(..., it=0)``, R's ``loess`` with ``degree=1``).

    Row i stands for ``weight[i]`` people. The window around each point holds the nearest
    ``floor(frac * total weight)`` people (at least 2; statsmodels and R count the same way), its
    radius is the distance to the farthest of them; a ``frac`` above 1 widens the radius by that
    factor, as R's ``loess`` does for a span above 1.
    """
    total = weight.sum()
    k = min(total, max(2.0, math.floor(frac * total + 1e-10)))
    at = np.asarray(at, dtype=float)
    h = _window_radius(x, weight, at, k - 1e-9) * max(1.0, frac)
    out = np.empty(len(at))
    # Points a block at a time, a row of the block's arrays per point: small enough to stay in cache.
    step = max(1, _LOESS_BLOCK // max(1, len(x)))
    for start in range(0, len(at), step):
        block = slice(start, start + step)
        out[block] = _local_linear_block(x, y, weight, at[block], h[block])
    return out


# Cells (points x rows) in a block of the loess's arrays.
_LOESS_BLOCK = 1 << 14


def _window_radius(x, weight, at, k) -> np.ndarray:
    """For each point of ``at``, the smallest distance |x_i - point| within which the rows' weights add up
    to ``k`` (the distance of the farthest row when none does): the loess window's radius, found by
    bisection over x sorted (the rows within a distance of a point are a run of it) instead of sorting
    the distances from every point."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    cum = np.concatenate([[0.0], np.cumsum(weight[order])])
    n, m = len(xs), len(at)
    split = np.searchsorted(xs, at, side="right")  # rows [0, split) at or left of the point, the rest right
    steps = int(n).bit_length() + 1

    def dist(idx):
        return np.abs(xs[np.clip(idx, 0, n - 1)] - at)

    def within(r):
        """Weight of the rows at most r from each point (|x - point| computed as the loess does)."""
        # Left: the first index in [0, split) whose distance is <= r (distances fall towards the point).
        lo, hi = np.zeros(m, dtype=np.int64), split.copy()
        for _ in range(steps):
            mid = (lo + hi) // 2
            go = (lo < hi) & (dist(mid) > r)
            lo, hi = np.where(go, mid + 1, lo), np.where((lo < hi) & ~go, mid, hi)
        first = lo
        # Right: the first index in [split, n) whose distance is > r (distances rise away from it).
        lo, hi = split.copy(), np.full(m, n, dtype=np.int64)
        for _ in range(steps):
            mid = (lo + hi) // 2
            go = (lo < hi) & (dist(mid) <= r)
            lo, hi = np.where(go, mid + 1, lo), np.where((lo < hi) & ~go, mid, hi)
        return cum[lo] - cum[first]

    # The nearest radius on the left: the largest i < split whose distance already gathers k
    # (the weight within d_i grows as i moves away from the point).
    lo, hi = np.zeros(m, dtype=np.int64), split.copy()  # first i in [0, split) that does not gather k
    for _ in range(steps):
        mid = (lo + hi) // 2
        go = (lo < hi) & (within(dist(mid)) >= k)
        lo, hi = np.where(go, mid + 1, lo), np.where((lo < hi) & ~go, mid, hi)
    left = np.where(lo > 0, dist(lo - 1), np.inf)
    # On the right: the first j >= split whose distance gathers k.
    lo, hi = split.copy(), np.full(m, n, dtype=np.int64)
    for _ in range(steps):
        mid = (lo + hi) // 2
        go = (lo < hi) & (within(dist(mid)) < k)
        lo, hi = np.where(go, mid + 1, lo), np.where((lo < hi) & ~go, mid, hi)
    right = np.where(lo < n, dist(lo), np.inf)
    h = np.minimum(left, right)
    return np.where(np.isfinite(h), h, np.maximum(dist(np.zeros(m, dtype=np.int64)), dist(np.full(m, n - 1))))


def _local_linear_block(x, y, weight, at, h) -> np.ndarray:
    """:func:`_local_linear` at the points ``at`` with window radii ``h``, one row of arrays per point."""
    d = np.abs(x[None, :] - at[:, None])
    out = np.empty(len(at))
    tied = h == 0  # every one of the k nearest sits at the point itself: their mean
    if tied.any():
        here = d[tied] == 0
        out[tied] = (here * weight) @ y / (here @ weight)
    fit = ~tied
    if fit.any():
        # The tricube weight (1 - min(d/h, 1)^3)^3 in place (cubes as products: within an ulp of ** 3).
        w = d[fit]  # a copy (boolean index)
        w /= h[fit][:, None]
        np.minimum(w, 1, out=w)
        cube = w * w
        cube *= w
        np.subtract(1, cube, out=cube)
        np.multiply(cube, cube, out=w)
        w *= cube
        w *= weight
        sw = w.sum(axis=1)
        mx, my = w @ x / sw, w @ y / sw
        dx = x - mx[:, None]
        sxy = np.einsum("ij,ij,ij->i", w, dx, y - my[:, None])
        dx *= dx
        sxx = np.einsum("ij,ij->i", w, dx)
        slope = np.divide(sxy, sxx, out=np.zeros(len(sxx)), where=sxx > 0)
        out[fit] = my + slope * (at[fit] - mx)
    return out


def _binned(prob: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean p, event rate, people) per distinct p, or per equal-size rank bin if p has more than
    ``n_bins`` distinct values: the loess then costs the same at any population size."""
    values, inverse = np.unique(prob, return_inverse=True)
    if len(values) > n_bins:
        inverse = _rank_bins(prob, n_bins) - 1
    count = np.bincount(inverse).astype(float)
    keep = count > 0
    x = np.bincount(inverse, weights=prob)[keep] / count[keep]
    rate = np.bincount(inverse, weights=y)[keep] / count[keep]
    return x, rate, count[keep]


def smoothed_calibration(y_true, y_prob, *, frac: float = 0.75, n_grid: int = 200,
                         n_bins: int = 2000) -> pd.DataFrame:
    """The smoothed calibration curve: loess of the outcome on the predicted probability
    (:func:`_local_linear`, span ``frac``).

    People are first pooled by distinct p, or into ``n_bins`` equal-size rank bins when p takes
    more values (each bin enters the loess weighted by its size), so the cost does not grow with
    the population. The curve is evaluated at the distinct pooled p when there are at most
    ``n_grid``, else at ``n_grid`` quantiles. Columns ``predicted`` and ``observed`` (the smoothed
    event rate, not clipped: at the extremes a local line can leave [0, 1], and a plot may clip it
    for display).
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    if not frac > 0:
        raise ValueError(f"frac must be positive, got {frac}")
    x, rate, count = _binned(prob, y.astype(float), n_bins)
    grid = x if len(x) <= n_grid else np.unique(np.quantile(prob, np.linspace(0, 1, n_grid)))
    smooth = _local_linear(x, rate, count, grid, frac=frac)
    return pd.DataFrame({"predicted": grid, "observed": smooth})


def integrated_calibration_index(y_true, y_prob, *, frac: float = 0.75, n_bins: int = 2000) -> float:
    """Integrated calibration index (Austin & Steyerberg 2019): the mean, over people, of
    |smoothed observed rate - predicted probability|, the loess fitted to (p, y) and evaluated at
    each person's own p, not clipped to [0, 1].

    The smoother is the local linear loess of :func:`_local_linear` with span 0.75 and no
    robustness iterations, equal to statsmodels' ``lowess(y, p, frac=0.75, it=0)``. (Austin and
    Steyerberg fitted R's ``loess``, whose default is local quadratic; the local linear fit is the
    common reimplementation and is what the tests check against.) With more than ``n_bins``
    distinct p, people are pooled into ``n_bins`` equal-size rank bins first (as
    :func:`smoothed_calibration`) and each person takes the curve at their bin, interpolated; at or
    below ``n_bins`` distinct values the fit is exact. 0 is ideal; it is on the probability scale.

    Example: 10 people at p = 0.1 with 2 events and 10 at p = 0.5 with 5 events: the curve passes
    through 0.2 and 0.5, so ICI = (10 * 0.1 + 10 * 0) / 20 = 0.05 (with a window over everyone).
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    if not frac > 0:
        raise ValueError(f"frac must be positive, got {frac}")
    x, rate, count = _binned(prob, y.astype(float), n_bins)
    smooth = _local_linear(x, rate, count, x, frac=frac)
    observed = np.interp(prob, x, smooth)
    return float(np.mean(np.abs(observed - prob)))


def recalibrate(y_prob, *, intercept: float, slope: float = 1.0) -> np.ndarray:
    """``expit(intercept + slope * logit(p))``: probabilities after recalibration."""
    prob = _check_scores(y_prob, name="y_prob")
    return special.expit(intercept + slope * _logit(prob))


def recalibration_table(y_true, y_prob) -> pd.DataFrame:
    """The model as it is, recalibrated in the large and recalibrated logistically, side by side
    (as OHDSI's PatientLevelPrediction reports at external validation).

    "in the large" shifts every logit by the calibration-in-the-large intercept (slope kept at 1);
    "logistic" applies the fitted intercept and slope. Both are fitted on these same rows, so they
    show what recalibration on this population would achieve, not an independent test of it.
    Neither changes the ranking, so AUROC and the lists stay the same. Where the slope is not
    estimable (:func:`calibration_fit`) the logistic row is NaN. Columns: ``intercept``,
    ``slope`` (applied), ``o_e_ratio``, ``calibration_intercept``, ``calibration_slope``, ``ici``,
    ``brier``; index ``as trained``, ``in the large``, ``logistic``.
    """
    y, prob = _check_inputs(y_true, y_prob, probability=True)
    a_large = calibration_intercept(y, prob)
    a_log, b_log = logistic_recalibration(y, prob)
    variants = {"as trained": (0.0, 1.0, prob),
                "in the large": (a_large, 1.0, recalibrate(prob, intercept=a_large)),
                "logistic": (a_log, b_log, recalibrate(prob, intercept=a_log, slope=b_log))}
    rows = {}
    for name, (a, b, p) in variants.items():
        if not np.all(np.isfinite(p)):
            rows[name] = dict.fromkeys(["intercept", "slope", "o_e_ratio", "calibration_intercept",
                                        "calibration_slope", "ici", "brier"], float("nan"))
            continue
        rows[name] = {"intercept": a, "slope": b, "o_e_ratio": observed_expected_ratio(y, p),
                      "calibration_intercept": calibration_intercept(y, p),
                      "calibration_slope": calibration_slope(y, p),
                      "ici": integrated_calibration_index(y, p), "brier": brier(y, p)}
    return pd.DataFrame(rows).T.rename_axis("recalibration")


def observed_expected_by_tier(y_true, y_prob, *, cutoffs=None) -> pd.DataFrame:
    """Observed and expected events by risk tier (:func:`riskstrat.modeling.tiers.assign_tiers`, highest
    tier first). Columns as :func:`observed_expected_by_decile` (the O/E interval included) with
    ``tier`` for ``decile``.
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    tier = assign_tiers(pd.Series(prob), cutoffs=cutoffs)
    frame = pd.DataFrame({"tier": tier.array, "y": y, "p": prob})
    table = (frame.groupby("tier", sort=True, observed=False)
             .agg(n=("y", "size"), observed=("y", "sum"), expected=("p", "sum")).reset_index())
    table["tier"] = table["tier"].astype(str)
    table["observed_rate"] = table["observed"] / table["n"].where(table["n"] > 0)
    table["expected_rate"] = table["expected"] / table["n"].where(table["n"] > 0)
    table["o_e_ratio"] = table["observed"] / table["expected"].where(table["expected"] > 0)
    return _with_oe_interval(table)


def number_needed_to_flag(y_true, y_score, *, fraction: float) -> float:
    """People on the list of the top ``fraction`` per event caught: 1 / PPV (inf if none caught),
    with :func:`ppv_at_top`'s expected value at tied cut-offs.

    Example: a 2-person list holding one event: 2.0.
    """
    ppv = ppv_at_top(y_true, y_score, fraction=fraction)
    return float(1 / ppv) if ppv > 0 else float("inf")


def events_per_1000_flagged(y_true, y_score, *, fraction: float) -> float:
    """Events among every 1,000 people on the list of the top ``fraction``: 1000 * PPV."""
    return 1000.0 * ppv_at_top(y_true, y_score, fraction=fraction)


def case_finding_table(y_true, y_score, *, fractions=(0.005, 0.01, 0.02, 0.05), masks=None) -> pd.DataFrame:
    """What a list of each size finds: one row per fraction (top k% by score).

    Columns ``list`` ("top 1%"), ``fraction``, ``n_flagged``, ``events_caught``, ``ppv``,
    ``sensitivity``, ``number_needed_to_flag``, ``events_per_1000_flagged``. ``n_flagged`` is the
    list's size (whole people, as published); ``events_caught`` is the expected number under random
    tie-breaking at the cut-off (:func:`top_k_weights`), so it can be fractional when scores tie
    there. ``masks`` (optional, one boolean array per fraction) gives the lists' members instead
    (e.g. the tiers, which never split a tie).
    """
    y, score = _check_inputs(y_true, y_score, both_classes=False)
    total = y.sum()
    rows = []
    for i, fraction in enumerate(fractions):
        weight = (top_k_weights(score, _check_fraction(fraction)) if masks is None
                  else np.asarray(masks[i], dtype=float))
        n_flagged = float(weight.sum())
        caught = float(weight @ y)
        ppv = caught / n_flagged
        rows.append({"list": f"top {_pct_label(fraction)}%", "fraction": float(fraction),
                     "n_flagged": int(round(n_flagged)), "events_caught": caught, "ppv": ppv,
                     "sensitivity": caught / total if total else float("nan"),
                     "number_needed_to_flag": 1 / ppv if ppv > 0 else float("inf"),
                     "events_per_1000_flagged": 1000 * ppv})
    return pd.DataFrame(rows)


def decision_curve(y_true, y_prob, *, thresholds=None) -> pd.DataFrame:
    """Net benefit of the model, of flagging everyone and of flagging no one, by threshold pt.

    NB = TP/n - FP/n * pt/(1 - pt) (:func:`net_benefit`); flagging everyone gives
    prevalence - (1 - prevalence) * pt/(1 - pt). Default thresholds: 0.01 to 0.50 by 0.01.
    """
    y, prob = _check_inputs(y_true, y_prob, both_classes=False, probability=True)
    if thresholds is None:
        thresholds = np.round(np.arange(0.01, 0.505, 0.01), 2)
    prevalence = y.mean()
    rows = []
    for pt in thresholds:
        odds = pt / (1 - pt)
        rows.append({"threshold": float(pt), "net_benefit_model": net_benefit(y, prob, threshold=pt),
                     "net_benefit_all": float(prevalence - (1 - prevalence) * odds), "net_benefit_none": 0.0})
    return pd.DataFrame(rows)
