"""Scoring inside Spark: the month's features stay in Spark, where the models score and explain them.

:class:`SparkMonthFeatures` is the Spark engine's :class:`riskstrat.scoring.month.MonthFeatures` (the
wiring makes it for a :class:`riskstrat.features.spark.SparkEngine`:
:func:`riskstrat.pipelines.score.month_features`). Each step runs riskstrat's own code per partition
(``mapInPandas``), so the numbers are those of the driver's path:

1. the aggregates of each table, one Spark job each (the engine's own query), joined per person
   onto the eligible people (computed on the driver, as :meth:`FolderEngine.features` does, and
   sent to Spark after the opt-outs are removed);
2. :func:`riskstrat.features._folder.per_person` and :func:`riskstrat.features.spec.derive` per
   batch of people (both work row by row), giving the feature frame, cached;
3. the models, pickled once (a :class:`riskstrat.modeling.models.RiskModel` holds the LightGBM classifier,
   its calibrator and the cost regressor) and broadcast: :meth:`RiskModel.risk_and_raw_score`
   of each model and the high-cost model's ``predict_cost`` per batch. Only a narrow row a person comes back (id,
   raw score, risk, high-cost risk, predicted cost and the columns ranking and the priority groups
   read: :data:`RANKING_COLUMNS`); ranking, tiers, hold-out and lists stay pandas, on the driver;
4. drift: :func:`riskstrat.evaluation.drift.bin_counts` per batch, summed;
5. reasons: the listed people's ids and raw scores joined to the feature frame, and
   :func:`riskstrat.scoring.month.explain_people` (exact TreeSHAP, the model's ``contributions``) per
   batch; only their ``reasons`` text comes back.

The month's files are written by the driver with the same writer as every engine (a few MB even
for millions of people), so they are byte-identical to the other engines'.
"""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa

from riskstrat.quiet import no_stage
from riskstrat.evaluation.drift import bin_counts, drift_report_of_counts
from riskstrat.features._folder import per_person
from riskstrat.features.clinical import CONTEXT_COLUMNS, eligible_persons
from riskstrat.features.spark import _PANDAS_WARNING, _to_pandas
from riskstrat.features.spec import CLINICAL, derive
from riskstrat.features.words import USE_MEASURES, thresholds_from_counts, use_counts
from riskstrat.scoring import lists
from riskstrat.scoring.month import RANKING_COLUMNS, PersonScores, explain_people

__all__ = ["RANKING_COLUMNS", "SparkMonthFeatures"]


def _numeric(spec) -> tuple[str, ...]:
    return tuple(spec.features) + tuple(CONTEXT_COLUMNS)  # derive's columns, all float64

_PEOPLE = ("age", "sex", "deprivation_decile")  # what derive reads of the people


def _schema(columns: dict[str, str]) -> str:
    return ", ".join(f"`{name}` {kind}" for name, kind in columns.items())


def _map(frame, fn, schema: str):
    """``frame.mapInPandas(fn, schema)`` without PySpark's warning about pandas 3 (see ``spark.py``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_WARNING)
        return frame.mapInPandas(fn, schema)


class _Shipped:
    """An object pickled once and sent to the executors (a broadcast; in the closure on Spark Connect,
    which has no SparkContext)."""

    def __init__(self, spark, obj):
        payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.broadcast, self.payload = spark.sparkContext.broadcast(payload), None
        except Exception:  # Spark Connect
            self.broadcast, self.payload = None, payload

    def value(self):
        return pickle.loads(self.payload if self.broadcast is None else self.broadcast.value)

    def destroy(self) -> None:
        if self.broadcast is not None:
            self.broadcast.destroy()


# ------------------------------------------------------------------ per batch (on the executors)


def _derive_batches(batches, *, sources: list[str], spec, costless, costs=None):
    """The feature frame of each batch of people joined to their aggregates (NULL: no rows)."""
    for batch in batches:
        people = batch[["person_id", *_PEOPLE]].set_index("person_id")
        n = len(batch)
        rows = batch.assign(_person=np.arange(n))  # one row a person: the person key is the row
        values: dict[str, np.ndarray] = {}
        for name in sources:
            values.update(per_person(rows, np.arange(n), n, name, spec.aggregates_for(name)))
        frame = derive(people, values, set(sources), spec=spec, costless=costless)
        yield (costs.apply(frame) if costs is not None else frame).reset_index()


def _score_batches(batches, *, models: _Shipped, outputs: list[str]):
    risk_model, cost_model = models.value()
    for batch in batches:
        X = batch.set_index("person_id")
        out = pd.DataFrame(index=X.index)
        out["risk"], out["raw"] = risk_model.risk_and_raw_score(X)
        if "high_cost_risk" in outputs:
            out["high_cost_risk"] = cost_model.risk_and_raw_score(X)[0]
        if "predicted_cost" in outputs:
            out["predicted_cost"] = cost_model.predict_cost(X)
        for name in RANKING_COLUMNS:
            out[name] = X[name]
        yield out.reset_index()


def _count_batches(batches, *, profiles: dict[str, dict]):
    totals = {name: np.zeros(len(p["edges"]) + 2, dtype=np.int64) for name, p in profiles.items()}
    for batch in batches:
        for name, p in profiles.items():
            totals[name] += bin_counts(p, batch[name].to_numpy(dtype=float, na_value=np.nan))
    yield pd.DataFrame({"feature": list(totals), "counts": [t.tolist() for t in totals.values()]})


def _use_count_batches(batches):
    for batch in batches:
        counts = use_counts(batch)
        yield counts.assign(measure=counts["measure"].astype(object))  # pandas 3's str: Arrow-chunked, not for Spark


def _explain_batches(batches, *, model: _Shipped, options: dict):
    risk_model = model.value()
    for batch in batches:
        X = batch.set_index("person_id")
        reasons, max_error = explain_people(risk_model, X.drop(columns="_raw"), X["_raw"].to_numpy(), **options)
        if reasons is not None:
            yield pd.DataFrame({"person_id": reasons.index.astype(object), "reasons": reasons["reasons"].astype(object),
                                "_max_error": max_error})


# ------------------------------------------------------------------ on the driver


class SparkMonthFeatures:
    """One month's features in Spark (see the module docstring): a :class:`riskstrat.scoring.month.MonthFeatures`.

    Made for a :class:`~riskstrat.features.spark.SparkEngine`; the aggregates are computed (and validation's
    findings about them reported, as :meth:`SparkEngine.features` reports them) when it is made.
    """

    def __init__(self, engine, index_date, *, min_age: float = 18, max_age: float = 120, spec=None, costs=None):
        t = pd.Timestamp(index_date).normalize()
        self.engine, self.spark = engine, engine.spark
        self.people = eligible_persons(engine.records, t, min_age=min_age, max_age=max_age).set_index("person_id")
        self.sources = list(engine.plans)
        self.spec = spec or CLINICAL
        self.columns = [*_numeric(self.spec), "practice_id", "sex", "ethnicity_group"]  # as SparkEngine.features
        self._aggregates = {}
        self._frame = None  # the feature frame, made on first use (after the opt-outs)
        self.costs = costs  # riskstrat.features.costs.CostHandling: cost features converted or blanked per batch
        self._shipped: list[_Shipped] = []
        try:
            for name, plan in engine.plans.items():
                rows = engine._aggregate_rows(plan, t, self.spec.aggregates_for(name)).persist()
                self._aggregates[name] = rows
                _report_findings(engine, name, t, rows)
        except BaseException:
            self.release()
            raise

    def __len__(self) -> int:
        return len(self.people)

    def without(self, person_ids) -> tuple["SparkMonthFeatures", int]:
        if self._frame is not None:
            raise RuntimeError("remove the opt-outs before scoring")
        kept = copy.copy(self)
        kept.people, removed = lists.apply_opt_outs(self.people, person_ids)
        return kept, removed

    def features(self):
        """The feature frame as a (cached) Spark DataFrame: ``person_id`` and the features (float64),
        one row per person of :attr:`people`, equal to :meth:`SparkEngine.features` for them."""
        if self._frame is None:
            p = self.people
            table = pa.table({
                "person_id": pa.array(p.index.astype(object), type=pa.string()),
                "age": pa.array(p["age"].to_numpy(dtype="float64"), type=pa.float64()),
                "sex": pa.array(p["sex"].astype(object).where(p["sex"].notna(), None), type=pa.string()),
                "deprivation_decile": pa.array(p["deprivation_decile"].to_numpy(dtype="float64", na_value=np.nan),
                                               type=pa.float64(), from_pandas=True),
            })
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_PANDAS_WARNING)
                frame = self.spark.createDataFrame(table)
            for name, rows in self._aggregates.items():
                frame = frame.join(rows.select("person_id", *[a.name for a in self.spec.aggregates_for(name)]), "person_id",
                                   "left")
            sources, spec, costless, costs = self.sources, self.spec, self.engine.costless, self.costs
            schema = _schema({"person_id": "string", **{c: "double" for c in _numeric(spec)}})
            self._frame = _map(frame, lambda batches: _derive_batches(batches, sources=sources, spec=spec,
                                                                      costless=costless, costs=costs),
                               schema).persist()
        return self._frame

    def _ship(self, obj) -> _Shipped:
        shipped = _Shipped(self.spark, obj)
        self._shipped.append(shipped)
        return shipped

    def score(self, risk_model, cost_model=None, *, chunk_size: int = 0):
        """One pass of each model over every person, in Spark (Arrow batches bound the memory, not
        ``chunk_size``); the narrow rows come back in the order of :attr:`people`."""
        outputs = ["risk", "raw"]
        if cost_model is not None:
            outputs.append("high_cost_risk")
            if cost_model.cost_estimator is not None:
                outputs.append("predicted_cost")
        models = self._ship((risk_model, cost_model))
        schema = _schema({"person_id": "string", **{c: "double" for c in (*outputs, *RANKING_COLUMNS)}})
        narrow = _to_pandas(_map(self.features(), lambda batches: _score_batches(batches, models=models,
                                                                                 outputs=outputs), schema))
        narrow = narrow.set_index("person_id").reindex(self.people.index)
        if narrow["risk"].isna().any():
            raise RuntimeError("Spark returned no score for some people")  # a bug, not the data's fault
        people = narrow[list(RANKING_COLUMNS)].copy()
        people["practice_id"] = self.people["practice_id"].astype("string")  # as FolderEngine.features
        people["sex"] = self.people["sex"]
        column = {name: narrow[name].to_numpy(dtype="float64") for name in outputs}
        return PersonScores(people, column["risk"], column["raw"], column.get("high_cost_risk"),
                            column.get("predicted_cost"))

    def drift_report(self, profile: dict, risk) -> dict:
        profiles = {name: p for name, p in profile["features"].items() if name in self.columns}
        counted = _to_pandas(_map(self.features().select(*profiles),
                                  lambda batches: _count_batches(batches, profiles=profiles),
                                  "feature string, counts array<bigint>"))
        counts = {name: np.zeros(len(p["edges"]) + 2, dtype=np.int64) for name, p in profiles.items()}
        for name, part in zip(counted["feature"], counted["counts"]):
            counts[name] += np.asarray(part, dtype=np.int64)
        return drift_report_of_counts(profile, counts, risk)

    def reason_thresholds(self):
        """The month's reason thresholds: :func:`riskstrat.features.words.use_counts` per batch, summed on
        the driver (the same numbers as the in-memory path's)."""
        columns = ["age", *dict.fromkeys(c for names in USE_MEASURES.values() for c in names)]
        frame = self.features()
        counts = _to_pandas(_map(frame.select(*[c for c in columns if c in frame.columns]), _use_count_batches,
                                 "measure string, band long, value double, people long"))
        return thresholds_from_counts(counts)

    def explain(self, model, scores, person_ids, *, n: int, currency: str, demographic_reasons: bool,
                money_reasons: bool, chunk_size: int, thresholds=None, stage=no_stage):
        """Reasons for ``person_ids`` (None: everyone), computed in Spark. Spark runs it as one job, so
        ``stage`` hears once, before it starts, how many people and where to follow it (the Spark UI)."""
        from pyspark.sql import functions as F

        ids = scores.people.index if person_ids is None else pd.Index(person_ids)
        raw = scores.raw[scores.people.index.get_indexer(ids)]
        wanted = self.spark.createDataFrame(pa.table({"person_id": pa.array(ids.astype(object), type=pa.string()),
                                                      "_raw": pa.array(raw, type=pa.float64())}))
        if person_ids is not None:
            wanted = F.broadcast(wanted)  # the listed: a few per practice
        options = {"n": n, "currency": currency, "demographic_reasons": demographic_reasons,
                   "money_reasons": money_reasons, "chunk_size": chunk_size, "thresholds": thresholds}
        shipped = self._ship(model)
        ui = getattr(self.spark.sparkContext, "uiWebUrl", None)
        stage(f"explaining {len(ids):,} people in Spark, one job" + (f": follow it at {ui}" if ui else ""))
        out = _to_pandas(_map(self.features().join(wanted, "person_id"),
                              lambda batches: _explain_batches(batches, model=shipped, options=options),
                              "person_id string, reasons string, _max_error double"))
        max_error = float(out["_max_error"].max()) if len(out) else 0.0
        reasons = out.set_index("person_id")[["reasons"]].reindex(ids) if len(ids) else None
        return reasons, max_error, len(ids)

    def release(self) -> None:
        for shipped in self._shipped:
            shipped.destroy()
        self._shipped = []
        if self._frame is not None:
            self._frame.unpersist()
        for rows in self._aggregates.values():
            rows.unpersist()


def _report_findings(engine, name: str, t: pd.Timestamp, rows) -> None:
    """Validation's findings from one table's aggregate rows, counted in Spark and reported by the engine
    as :meth:`FolderEngine._aggregate` reports them (:meth:`FolderEngine._report_findings`)."""
    F = engine._F
    unknown = F.coalesce(F.col("_is_unknown"), F.lit(False)) & F.col("person_id").isNotNull()
    found = rows.agg(F.sum(F.when(unknown, F.col("_rows")).otherwise(0)), F.sum("_n_out_of_life"),
                     F.sum("_rows"), F.sum("_read")).collect()[0]
    n_unknown, n_outside, n_kept, n_read = (int(v or 0) for v in found)
    engine._report_findings(name, t, n_unknown=n_unknown, n_outside=n_outside, n_kept=n_kept, n_read=n_read)
