"""The held-out evaluation of a training run: each fitted model measured on the temporal test set.

:func:`riskstrat.modeling.train.fit_models` fits the models and scores the test rows; here they are
measured (metrics with bootstrap intervals, the paired AUROC differences, the O/E table, the metrics
by group, the expected-cost model's capture) and the LightGBM model checked for degeneracy. The groups
are the evaluation report's, measured by the same :func:`~riskstrat.evaluation.metric_frame` (one
definition: the same groups, metrics and small-group flag in training's table and in the report).
:func:`fit_and_evaluate` does both, as a training run does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from riskstrat.evaluation import metrics
from riskstrat.evaluation._evaluate import subgroup_metric_set
from riskstrat.evaluation._frame import MetricFrame, metric_frame
from riskstrat.evaluation._groups import subgroup_attributes
from riskstrat.modeling.config import TrainConfig
from riskstrat.modeling.guards import degenerate_reasons, describe_degenerate
from riskstrat.modeling.models import RiskModel
from riskstrat.modeling.train import FittedModels, TrainingData, fit_models

Stage = Callable[[str], None]


@dataclass
class TrainingResult:
    model: RiskModel
    baselines: dict[str, RiskModel]
    scores: dict[str, np.ndarray]          # test-set score per model (probabilities, except prior_use)
    metrics: dict[str, dict[str, float]]   # per model
    oe_table: pd.DataFrame                 # observed/expected by decile of the primary model
    subgroups: MetricFrame                 # the primary model's metrics by group (the evaluation report's)
    data: TrainingData
    search: pd.DataFrame | None = None     # one row per hyperparameter-search trial, when searched
    degenerate: list[str] = field(default_factory=list)  # guards.degenerate_reasons of the LightGBM model

    def comparison(self) -> pd.DataFrame:
        """One row per model: the headline metrics."""
        cols = ["auroc", "auroc_ci_low", "auroc_ci_high", "auprc", "brier", "calibration_slope",
                "calibration_intercept", "ppv_top_1pct", "ppv_top_5pct", "sensitivity_top_5pct"]
        return pd.DataFrame(self.metrics).T.reindex(columns=cols)


def evaluate(y: np.ndarray, scores: dict[str, np.ndarray], meta: pd.DataFrame, *, top_fractions, n_boot: int,
             seed: int, min_group_events: int = 20) -> tuple[dict[str, dict[str, float]], pd.DataFrame, MetricFrame]:
    """Metrics per model, the primary model's O/E table and its metrics by group.

    ``meta`` holds the test rows' ``age``, ``sex``, ``ethnicity_group``, ``practice_id`` (and
    ``deprivation_decile`` when known), by position; the groups and metrics are the evaluation
    report's (:func:`~riskstrat.evaluation.subgroup_attributes`, :func:`subgroup_metric_set`), and
    groups with fewer than ``min_group_events`` events are flagged ``small``.
    """
    result = {}
    for name, s in scores.items():
        is_prob = name != "prior_use"
        result[name] = metrics.summarise(y, s, is_probability=is_prob, top_fractions=tuple(top_fractions),
                                         n_boot=n_boot, seed=seed)
    primary = scores["lightgbm"]
    for other in ("logistic", "oracle"):
        if other in scores:
            d, lo, hi = metrics.paired_auroc_difference(y, primary, scores[other], n_boot=n_boot, seed=seed)
            result["lightgbm"].update({f"auroc_minus_{other}": d, f"auroc_minus_{other}_ci_low": lo,
                                       f"auroc_minus_{other}_ci_high": hi})
    oe = metrics.observed_expected_by_decile(y, primary)
    subgroups = metric_frame(subgroup_metric_set(y, primary), y, primary, sensitive_features=subgroup_attributes(meta),
                             min_events=min_group_events)
    return result, oe, subgroups


def _group_columns(data: TrainingData) -> pd.DataFrame:
    """The test rows' group columns: ``meta_test`` with the deprivation decile when it is a feature."""
    meta = data.meta_test
    if "deprivation_decile" in data.X_test and "deprivation_decile" not in meta:
        meta = meta.assign(deprivation_decile=data.X_test["deprivation_decile"].to_numpy())
    return meta


def evaluate_fitted(fitted: FittedModels, cfg: TrainConfig, *, truth: np.ndarray | None = None,
                    stage: Stage = lambda m: None, timings: dict[str, float] | None = None) -> TrainingResult:
    """The fitted models measured on the test rows (``truth``: the oracle's risk for them, when the data
    are synthetic); a degenerate LightGBM model is tagged ``degenerate`` in its metadata.

    ``timings`` (when given) receives the seconds of ``evaluate`` (metrics and bootstrap intervals).
    """
    timings = {} if timings is None else timings
    started = time.perf_counter()
    data, lgbm, scores = fitted.data, fitted.model, dict(fitted.scores)
    if truth is not None:
        scores["oracle"] = truth
    cost_metrics = {}
    if fitted.cost_predictions is not None:
        cost_metrics = metrics.cost_summary(data.cost_test, fitted.cost_predictions,
                                            top_fraction=cfg.target.top_fraction)
        stage(f"expected-cost model fitted: predicted/observed total {cost_metrics['cost_ratio']:.2f}, "
              f"the top {cfg.target.top_fraction:.0%} by predicted cost carry "
              f"{cost_metrics['cost_captured_top']:.0%} of next-year cost")
    stage("baselines fitted; evaluating on the temporal test set")
    result, oe, subgroups = evaluate(data.y_test, scores, _group_columns(data),
                                     top_fractions=cfg.evaluation.top_fractions, n_boot=cfg.evaluation.n_bootstrap,
                                     seed=cfg.split.seed)
    result["lightgbm"].update(cost_metrics)
    if truth is not None:
        for name in result:
            if name != "oracle":
                result[name]["auroc_gap_to_oracle"] = result["oracle"]["auroc"] - result[name]["auroc"]
    m = result["lightgbm"]
    degenerate = degenerate_reasons(best_iteration=lgbm.metadata["best_iteration"], test_scores=scores["lightgbm"],
                                    auroc_ci=(m.get("auroc_ci_low"), m.get("auroc_ci_high")),
                                    min_distinct_scores=cfg.guards.min_distinct_scores)
    if degenerate:
        lgbm.metadata["degenerate"] = ",".join(degenerate)
        stage("the LightGBM model is degenerate: "
              + describe_degenerate(degenerate, min_distinct_scores=cfg.guards.min_distinct_scores))
    timings["evaluate"] = time.perf_counter() - started
    return TrainingResult(lgbm, fitted.baselines, scores, result, oe, subgroups, data, search=fitted.search,
                          degenerate=degenerate)


def fit_and_evaluate(data: TrainingData, cfg: TrainConfig, *, truth: np.ndarray | None = None,
                     stage: Stage = lambda m: None, timings: dict[str, float] | None = None,
                     key_fingerprint: str | None = None, costs: dict | None = None) -> TrainingResult:
    """Fit LightGBM and the baselines (:func:`riskstrat.modeling.train.fit_models`), score the temporal test
    set, compute the metrics (:func:`evaluate_fitted`); ``timings`` receives ``fit``, ``fit_baselines`` and
    ``evaluate``."""
    fitted = fit_models(data, cfg, stage=stage, timings=timings, key_fingerprint=key_fingerprint, costs=costs)
    return evaluate_fitted(fitted, cfg, truth=truth, stage=stage, timings=timings)
