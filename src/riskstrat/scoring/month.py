"""The month's people, features and scores: what scoring asks of the features wherever an engine keeps
them (:class:`MonthFeatures`; in memory: :class:`InMemoryFeatures`), the models' outputs
(:class:`PersonScores`), their reasons (:func:`explain_people`), and who is left out of the cohort.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from riskstrat.quiet import no_stage
from riskstrat.data.records import LinkedRecords
from riskstrat.evaluation import drift
from riskstrat.features.clinical import cohort_rules
from riskstrat.outcomes import outcome_words
from riskstrat.scoring import lists
from riskstrat.features.reasons import check_additivity, top_reasons
from riskstrat.features.words import ReasonThresholds, reason_thresholds

__all__ = ["EXPLAIN_CHUNK", "InMemoryFeatures", "MonthFeatures", "PersonScores", "cohort_exclusions",
           "explain_people", "month_drift", "outcome_of"]

Stage = Callable[[str], None]


def _chunked(fn, frame: pd.DataFrame, size: int):
    """``fn`` over ``frame`` in chunks of ``size`` rows (bounded memory), results joined; an ``fn``
    that returns a tuple of arrays gives a tuple of joined arrays."""
    parts = [fn(frame.iloc[i:i + size]) for i in range(0, len(frame), size)]
    if not parts:
        return np.zeros(0)
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*parts))
    return np.concatenate(parts)


def outcome_of(model) -> dict:
    """What a risk model predicts, in words for the lists (older models: their target's default words)."""
    described = model.metadata.get("outcome") or {}
    days = int(described.get("horizon_days", 365))
    horizon = "in the next 12 months" if days == 365 else f"in the next {days} days"
    return {"name": described.get("name", model.target), "words": outcome_words(model.metadata, model.target),
            "horizon_days": days, "horizon_words": horizon}


def month_drift(model, features: "MonthFeatures", risk: np.ndarray, *, stage: Stage) -> dict | None:
    """PSI of the risk and of each feature against the model's training-time profile (None for older
    models without one); warnings and alerts go on screen."""
    profile = model.metadata.get("reference_profile")
    if profile is None:
        stage("drift not checked: the model has no reference profile (trained before riskstrat stored one)")
        return None
    report = features.drift_report(profile, risk)
    stage(f"drift against {report['reference']}: risk PSI {report['score_psi']:.3f} ({report['score_status']}); "
          f"{len(report['alert'])} features alert (PSI > 0.25){': ' + ', '.join(report['alert'][:5]) if report['alert'] else ''}, "
          f"{len(report['warn'])} warn (PSI > 0.1)")
    return report


# People explained per chunk: a progress line after each (about 10 s at 4,500 people/s); their
# contributions take about 21 MiB (53 float64 columns).
EXPLAIN_CHUNK = 50_000


def explain_people(model, features: pd.DataFrame, raw_score, *, n: int, currency: str = "GBP",
                   demographic_reasons: bool = False, money_reasons: bool = False, chunk_size: int = EXPLAIN_CHUNK,
                   thresholds: ReasonThresholds | None = None,
                   stage: Stage = no_stage) -> tuple[pd.DataFrame | None, float]:
    """Exact SHAP reasons (:func:`riskstrat.features.reasons.top_reasons`) for every row of ``features``, in
    chunks of ``chunk_size`` people with a progress line after each; returns the reasons (None for
    nobody) and the largest SHAP additivity error against ``raw_score`` (the model's raw score for
    the same rows, already computed by the prediction: no second pass). ``thresholds``: the scored
    population's (:meth:`MonthFeatures.reason_thresholds`; every chunk is said against the same)."""
    raw_score = np.asarray(raw_score, dtype="float64")
    parts, max_error, started = [], 0.0, time.perf_counter()
    for i in range(0, len(features), chunk_size):
        chunk = features.iloc[i:i + chunk_size]
        shap_values, base = model.contributions(chunk)
        max_error = max(max_error, check_additivity(shap_values, base, raw_score[i:i + chunk_size]))
        parts.append(top_reasons(shap_values, chunk, n=n, currency=currency, demographic_reasons=demographic_reasons,
                                 money_reasons=money_reasons, thresholds=thresholds))
        done = min(i + chunk_size, len(features))
        seconds = time.perf_counter() - started
        stage(f"explaining: {done:,} of {len(features):,} people"
              + (f" ({done / seconds:,.0f} people/s)" if seconds > 0 else ""))
    return (pd.concat(parts) if parts else None), max_error


@dataclass
class PersonScores:
    """The models' outputs for one month's people, in the order of ``people``.

    ``people`` (index ``person_id``) holds what :func:`riskstrat.scoring.lists.rank_population` and the
    priority groups read: ``practice_id``, ``sex``, ``age`` and the past year's use and cost
    (the whole feature frame for engines that keep it in memory); ``raw`` is the risk model's raw
    score (the rank order); ``high_cost_risk`` and ``predicted_cost`` are None without those models.
    """

    people: pd.DataFrame
    risk: np.ndarray
    raw: np.ndarray
    high_cost_risk: np.ndarray | None = None
    predicted_cost: np.ndarray | None = None


class MonthFeatures(Protocol):
    """One month's features held where the engine computed them, and what scoring asks of them.

    The Spark engine's stay in Spark (:class:`riskstrat.scoring.spark.SparkMonthFeatures`); every other
    engine's feature frame is wrapped in :class:`InMemoryFeatures` (the wiring chooses:
    :func:`riskstrat.pipelines.score.month_features`). Each method runs the models' own code (:class:`riskstrat.modeling.models.RiskModel`,
    :func:`explain_people`, :func:`riskstrat.evaluation.drift.drift_report`), wherever it runs.
    """

    columns: list[str]  # the feature frame's columns (checked against the models' features)

    def __len__(self) -> int: ...

    def without(self, person_ids) -> tuple["MonthFeatures", int]:
        """The people not in ``person_ids`` (opt-outs) and how many were removed."""
        ...

    def score(self, risk_model, cost_model=None, *, chunk_size: int) -> PersonScores:
        """One pass of each model over every person (:meth:`RiskModel.risk_and_raw_score`, the high-cost
        model's ``predict_risk`` and ``predict_cost``)."""
        ...

    def drift_report(self, profile: dict, risk) -> dict:
        """:func:`riskstrat.evaluation.drift.drift_report` of these features and ``risk``."""
        ...

    def reason_thresholds(self) -> ReasonThresholds:
        """The whole month's :func:`riskstrat.features.words.reason_thresholds` (from
        :func:`~riskstrat.features.words.use_counts` of everyone), for the reasons' words of degree."""
        ...

    def explain(self, model, scores: PersonScores, person_ids: pd.Index | None, *, n: int, currency: str,
                demographic_reasons: bool, money_reasons: bool, chunk_size: int,
                thresholds: ReasonThresholds | None = None,
                stage: Stage = no_stage) -> tuple[pd.DataFrame | None, float, int]:
        """:func:`explain_people` for ``person_ids`` (None: everyone) with their raw scores from ``scores``:
        the reasons (a ``reasons`` column, index ``person_id``), the largest additivity error, and how
        many people were explained."""
        ...

    def release(self) -> None:
        """Free what the engine holds for this month (cached data); nothing is asked of it afterwards."""
        ...


class InMemoryFeatures:
    """The feature frame in memory (pandas and DuckDB engines): the models run on the driver, in chunks."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.columns = list(frame.columns)
        self._rows = len(frame)

    def __len__(self) -> int:
        return self._rows

    def without(self, person_ids) -> tuple["InMemoryFeatures", int]:
        if len(person_ids) == 0:  # nothing to remove: no copy of the month's features (2 GB at 5M people)
            return self, 0
        frame, removed = lists.apply_opt_outs(self.frame, person_ids)
        return InMemoryFeatures(frame), removed

    def score(self, risk_model, cost_model=None, *, chunk_size: int) -> PersonScores:
        features = self.frame
        shared = cost_model is not None and cost_model.feature_names == risk_model.feature_names
        with_cost = cost_model is not None and cost_model.cost_estimator is not None

        def one_chunk(chunk: pd.DataFrame) -> tuple[np.ndarray, ...]:
            # One float64 matrix of the chunk, read by every model (each took its own copy, and LightGBM
            # another of a frame's row slice).
            M = risk_model.feature_matrix(chunk)
            risk, raw = risk_model.risk_and_raw_score(M)
            if cost_model is None:
                return risk, raw
            M_cost = M if shared else cost_model.feature_matrix(chunk)
            high_cost_risk, _ = cost_model.risk_and_raw_score(M_cost)  # one pass, as above
            cost = cost_model.predict_cost(M_cost) if with_cost else np.zeros(0)
            return risk, raw, high_cost_risk, cost

        parts = _chunked(one_chunk, features, chunk_size)
        if not len(features):
            parts = (np.zeros(0),) * (2 if cost_model is None else 4)
        if cost_model is None:
            return PersonScores(features, *parts)
        risk, raw, high_cost_risk, predicted_cost = parts
        return PersonScores(features, risk, raw, high_cost_risk, predicted_cost if with_cost else None)

    def drift_report(self, profile: dict, risk) -> dict:
        return drift.drift_report(profile, self.frame, risk)

    def reason_thresholds(self) -> ReasonThresholds:
        return reason_thresholds(self.frame)

    def explain(self, model, scores: PersonScores, person_ids, *, n, currency, demographic_reasons,
                money_reasons, chunk_size, thresholds=None, stage=no_stage):
        explain = self.frame if person_ids is None else self.frame.loc[np.asarray(person_ids)]
        reasons, max_error = explain_people(
            model, explain, scores.raw[scores.people.index.get_indexer(explain.index)], n=n, currency=currency,
            demographic_reasons=demographic_reasons, money_reasons=money_reasons, chunk_size=chunk_size,
            thresholds=thresholds, stage=stage)
        return reasons, max_error, len(explain)

    def release(self) -> None:
        # The month's features (2 GB at 5M people) are not held while the lists are written.
        self.frame = None


def cohort_exclusions(records: LinkedRecords, as_of, *, min_age: float, max_age: float) -> dict[str, int]:
    """People in the data not scored on ``as_of``, by the first reason that applies (counts only;
    the rules of :func:`riskstrat.features.clinical.cohort_rules`, as :func:`~riskstrat.features.clinical.eligible_persons`)."""
    p = records.persons
    reasons, _ = cohort_rules(p, as_of, min_age=min_age, max_age=max_age)
    counted = np.zeros(len(p), bool)
    out = {}
    for reason, hit in reasons.items():
        hit = np.asarray(hit, bool) & ~counted
        out[reason] = int(hit.sum())
        counted |= hit
    return out
