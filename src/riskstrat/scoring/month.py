"""The month's people, features and scores: what scoring asks of the features wherever an engine keeps
them (:class:`MonthFeatures`; in memory: :class:`InMemoryFeatures`, or derived a block of people at a
time from the aggregates: :class:`BlockedFeatures`), the models' outputs
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
from riskstrat.features.spec import PersonAggregates
from riskstrat.features.words import (USE_MEASURES, ReasonThresholds, reason_thresholds, thresholds_from_counts,
                                      use_counts)

__all__ = ["BLOCK_SIZE", "EXPLAIN_CHUNK", "RANKING_COLUMNS", "BlockedFeatures", "InMemoryFeatures", "MonthFeatures",
           "PersonScores", "cohort_exclusions", "explain_people", "month_drift", "outcome_of"]

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
    chunks = (features.iloc[i:i + chunk_size] for i in range(0, len(features), chunk_size))
    return _explain_chunks(model, chunks, raw_score, n=n, currency=currency, demographic_reasons=demographic_reasons,
                           money_reasons=money_reasons, thresholds=thresholds, stage=stage)


def _explain_chunks(model, chunks, raw_score, *, n: int, currency: str, demographic_reasons: bool,
                    money_reasons: bool, thresholds: ReasonThresholds | None,
                    stage: Stage) -> tuple[pd.DataFrame | None, float]:
    """:func:`explain_people` of the feature frames ``chunks`` (people in the order of ``raw_score``)."""
    raw_score = np.asarray(raw_score, dtype="float64")
    parts, max_error, started, done = [], 0.0, time.perf_counter(), 0
    for chunk in chunks:
        shap_values, base = model.contributions(chunk)
        max_error = max(max_error, check_additivity(shap_values, base, raw_score[done:done + len(chunk)]))
        parts.append(top_reasons(shap_values, chunk, n=n, currency=currency, demographic_reasons=demographic_reasons,
                                 money_reasons=money_reasons, thresholds=thresholds))
        done += len(chunk)
        seconds = time.perf_counter() - started
        stage(f"explaining: {done:,} of {len(raw_score):,} people"
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


# The features lists.rank_population and the priority groups read (besides practice_id and sex).
RANKING_COLUMNS = ("age", "emergency_admissions_0_3m", "emergency_admissions_3_12m", "ae_attendances_0_3m",
                   "ae_attendances_3_12m", "emergency_bed_days_12m", "cost_total_12m")

# The features the reason thresholds' use counts read (:func:`riskstrat.features.words.use_counts`).
USE_COLUMNS = ("age", *dict.fromkeys(c for columns in USE_MEASURES.values() for c in columns))

# People whose features are derived at once when scoring has not said (its chunk_size does).
BLOCK_SIZE = 200_000


class BlockedFeatures:
    """The month's aggregates in memory (:class:`riskstrat.features.spec.PersonAggregates`, each in the
    smallest type that holds it exactly), the feature frame derived from them a block of people at a
    time and never held whole (at 5M people it would be 6.4 GB in float64): the folder engines' month.

    :meth:`score` makes one pass over the blocks (``chunk_size`` people each) and keeps of each block
    the models' outputs, the columns the ranking reads (:data:`RANKING_COLUMNS`), the counts the risk
    model's drift check reads and the counts of the reason thresholds; :meth:`explain` derives the
    explained people's rows again. Each block's frame is those rows of the whole frame, bit for bit, so
    every number is the whole frame's (the same files as :class:`InMemoryFeatures`). ``costs``
    (:class:`riskstrat.features.costs.CostHandling`) converts or blanks the cost features of each block;
    ``rows``: the positions of the people scored (None: all; opt-outs leave theirs out)."""

    def __init__(self, aggregates: PersonAggregates, *, costs=None, rows: np.ndarray | None = None,
                 columns: list[str] | None = None):
        self.aggregates, self.costs, self.rows = aggregates, costs, rows
        self.columns = list(columns) if columns is not None else aggregates.columns
        self._rows = len(aggregates) if rows is None else len(rows)
        self._size = BLOCK_SIZE
        self._counted: tuple | None = None  # (the profile, its drift counts, the use counts) of the scoring pass

    def __len__(self) -> int:
        return self._rows

    def _positions(self, start: int, stop: int):
        return slice(start, stop) if self.rows is None else self.rows[start:stop]

    def _frame(self, rows) -> pd.DataFrame:
        frame = self.aggregates.frame(rows)
        return frame if self.costs is None else self.costs.apply(frame)

    @property
    def frame(self) -> pd.DataFrame:
        """The whole feature frame of the people scored, derived at once (what :class:`InMemoryFeatures`
        holds; the scoring run never asks for it: at millions of people it is gigabytes)."""
        return self._frame(self._positions(0, len(self)))

    def _blocks(self, size: int):
        """:meth:`_block` of each ``size`` people in turn, every block derived into the first one's memory
        (read a block before asking for the next: it is overwritten)."""
        first = None
        for start in range(0, len(self), size):
            n = min(size, len(self) - start)
            into = None if first is None else first.reshape(-1)[:len(first) * n].reshape(len(first), n)
            block, at = self._block(self._positions(start, start + size), into=into)
            first = block if first is None else first
            yield block, at

    def without(self, person_ids) -> tuple["BlockedFeatures", int]:
        if len(person_ids) == 0:
            return self, 0
        everyone = self.aggregates.people.index
        rows = np.arange(len(everyone)) if self.rows is None else self.rows
        kept, removed = lists.apply_opt_outs(pd.DataFrame({"_row": rows}, index=everyone[rows]), person_ids)
        return BlockedFeatures(self.aggregates, costs=self.costs, rows=kept["_row"].to_numpy(),
                               columns=self.columns), removed

    def _block(self, rows, *, into: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
        """The features of the people at ``rows`` with a row per column (no frame around them: the models,
        the drift and the use counts read each column as one contiguous array) and each column's row."""
        block, columns = self.aggregates.block(rows, into=into)
        if self.costs is not None:
            self.costs.apply_block(block, columns)
        return block, {name: i for i, name in enumerate(columns)}

    def score(self, risk_model, cost_model=None, *, chunk_size: int) -> PersonScores:
        self._size = chunk_size
        shared = cost_model is not None and cost_model.feature_names == risk_model.feature_names
        with_cost = cost_model is not None and cost_model.cost_estimator is not None
        profile = risk_model.metadata.get("reference_profile")
        drift_counts = {name: np.zeros(len(p["edges"]) + 2, dtype=np.int64)
                        for name, p in (profile or {"features": {}})["features"].items() if name in self.columns}
        ranking = [c for c in RANKING_COLUMNS if c in self.columns]
        outputs: list[list[np.ndarray]] = [[] for _ in range(2 if cost_model is None else 4)]
        kept: dict[str, list[np.ndarray]] = {c: [] for c in ranking}
        uses = []
        for block, at in self._blocks(chunk_size):
            M = _model_matrix(risk_model, block, at)  # one matrix read by every model, as InMemoryFeatures.score
            parts = list(risk_model.risk_and_raw_score(M))
            if cost_model is not None:
                M_cost = M if shared else _model_matrix(cost_model, block, at)
                parts.append(cost_model.risk_and_raw_score(M_cost)[0])
                parts.append(cost_model.predict_cost(M_cost) if with_cost else np.zeros(0))
            del M
            for out, part in zip(outputs, parts):
                out.append(np.asarray(part))
            for name, p in zip(drift_counts, (profile["features"][n] for n in drift_counts)):
                drift_counts[name] += drift.bin_counts(p, block[at[name]])
            uses.append(_use_counts(block, at))
            for c in ranking:
                # A copy: the block's memory is filled again by the next block (and a view would keep a
                # 2-D block alive: at 5M people every block, 300 MB each, held to the end of the pass).
                kept[c].append(block[at[c]].copy())
        self._counted = (profile, drift_counts, uses)
        everyone = self.aggregates.people
        them = everyone if self.rows is None else everyone.iloc[self.rows]
        people = pd.DataFrame({c: _joined(kept.pop(c), "float64") for c in ranking}, index=them.index)
        people["practice_id"] = them["practice_id"].astype("string")  # as feature_frame makes them
        people["sex"] = them["sex"]
        people.index.name = "person_id"
        risk, raw, *cost = (_joined(out, "float64") for out in outputs)
        if cost_model is None:
            return PersonScores(people, risk, raw)
        return PersonScores(people, risk, raw, cost[0], cost[1] if with_cost else None)

    def drift_report(self, profile: dict, risk) -> dict:
        if self._counted is not None and self._counted[0] is profile:
            counts = self._counted[1]
        else:  # not the profile counted while scoring: a pass of its own
            counts = {name: np.zeros(len(p["edges"]) + 2, dtype=np.int64)
                      for name, p in profile["features"].items() if name in self.columns}
            for block, at in self._blocks(self._size):
                for name in counts:
                    counts[name] += drift.bin_counts(profile["features"][name], block[at[name]])
        return drift.drift_report_of_counts(profile, counts, risk)

    def reason_thresholds(self) -> ReasonThresholds:
        uses = self._counted[2] if self._counted is not None else [_use_counts(*b) for b in self._blocks(self._size)]
        return thresholds_from_counts(pd.concat(uses, ignore_index=True)) if uses else reason_thresholds(
            self._frame(slice(0, 0)))

    def explain(self, model, scores: PersonScores, person_ids, *, n, currency, demographic_reasons,
                money_reasons, chunk_size, thresholds=None, stage=no_stage):
        ids = scores.people.index if person_ids is None else pd.Index(np.asarray(person_ids))
        at = scores.people.index.get_indexer(ids)  # scores.people is in the order of self's people
        if (at < 0).any():
            raise KeyError(f"{int((at < 0).sum())} people to explain are not among the people scored")
        rows = at if self.rows is None else self.rows[at]
        chunks = (self._frame(rows[i:i + chunk_size]) for i in range(0, len(rows), chunk_size))
        reasons, max_error = _explain_chunks(model, chunks, scores.raw[at], n=n, currency=currency,
                                             demographic_reasons=demographic_reasons, money_reasons=money_reasons,
                                             thresholds=thresholds, stage=stage)
        return reasons, max_error, len(ids)

    def release(self) -> None:
        # The aggregates (about a third of the frame they make) are not held while the lists are written.
        self.aggregates = self._counted = None


def _model_matrix(model, block: np.ndarray, at: dict[str, int]) -> np.ndarray:
    """``model``'s feature matrix (:meth:`RiskModel.feature_matrix`: float64, column-major) of a block with a
    row per column: a view of it, without a copy, when the model's features are consecutive rows in its
    order (the month's features are the models' own), else those rows taken once."""
    names = model.feature_names
    if not all(name in at for name in names):  # refused as a frame without them is
        return model.feature_matrix(pd.DataFrame({name: block[i] for name, i in at.items()}, copy=False))
    first = at[names[0]] if names else 0
    if [at[name] for name in names] == list(range(first, first + len(names))):
        return block[first:first + len(names)].T
    return block.take([at[name] for name in names], axis=0).T


def _use_counts(block: np.ndarray, at: dict[str, int]) -> pd.DataFrame:
    """:func:`riskstrat.features.words.use_counts` of a block with a row per column (the columns it reads only)."""
    return use_counts(pd.DataFrame({c: block[at[c]] for c in USE_COLUMNS if c in at}, copy=False))


def _joined(parts: list[np.ndarray], dtype: str) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


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
