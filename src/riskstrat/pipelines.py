"""Wiring: the steps (pure functions elsewhere) joined with I/O and tracking into whole runs.

The CLI, notebooks and the batch job call these; each takes one validated config object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from riskstrat.config import TrainConfig, config_to_dict
from riskstrat.errors import RiskstratError
from riskstrat.records import LinkedRecords

Stage = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


def load_data(cfg_data, *, stage: Stage = _quiet) -> LinkedRecords:
    """Read and validate a linked data set; switched-off sources are never read (raises ValidationError)."""
    from riskstrat.validate import load_records

    records = load_records(cfg_data.path, out_of_life_events=cfg_data.out_of_life_events,
                           exclude_sources=cfg_data.exclude_sources,
                           on_table=lambda name, rows: stage(f"checked {name}: {rows:,} rows"))
    counts = records.row_counts()
    stage(f"loaded {counts['persons']:,} people and {sum(counts.values()) - counts['persons']:,} events "
          f"from {cfg_data.path} ({', '.join(records.sources) or 'no event tables'})")
    return records


def load_truth(cfg: TrainConfig) -> pd.DataFrame | None:
    """The synthetic data set's ground truth, read only for the oracle comparison."""
    path = cfg.evaluation.truth_path or Path(cfg.data.path) / "ground_truth" / "truth.parquet"
    return pd.read_parquet(path) if Path(path).exists() else None


@dataclass
class TrainingRun:
    result: object          # train.TrainingResult
    logged: object | None   # tracking.LoggedRun
    config: TrainConfig | None = None  # as run (index_dates: auto resolved to dates)


def run_training(cfg: TrainConfig, *, stage: Stage = _quiet, log: bool = True,
                 records: LinkedRecords | None = None) -> TrainingRun:
    """Train, evaluate and (if ``log``) track and register one model as configured.

    Refuses (:class:`riskstrat.guards.InsufficientEventsError`) before fitting when a part has fewer
    events than ``cfg.guards`` asks, and (:class:`riskstrat.guards.DegenerateModelError`, holding
    the run) after fitting when the model is degenerate and ``guards.register_degenerate`` is off;
    the run is then still logged, tagged ``riskstrat.degenerate``, with nothing registered.
    """
    from riskstrat import tracking
    from riskstrat.features import feature_table
    from riskstrat.guards import DegenerateModelError, check_minimum_events, describe_degenerate
    from riskstrat.io import data_fingerprint
    from riskstrat.train import assemble, extract_end_of, fit_and_evaluate, truth_scores

    records = records if records is not None else load_data(cfg.data, stage=stage)
    extract_end = extract_end_of(cfg.data.path, records, cfg.data.extract_end)
    if cfg.index_dates == "auto":
        cfg = cfg.with_index_dates_for(extract_end)
        stage(f"index dates for an extract ending {extract_end.date()}: training "
              f"{', '.join(str(d) for d in cfg.index_dates.train)}; test {cfg.index_dates.test}")
    data = assemble(records, cfg, extract_end=extract_end, stage=stage)
    tested = "everyone" if cfg.split.mode == "temporal_only" else "held-out people"
    stage(f"{data.counts['train_rows']:,} training rows ({data.counts['train_people']:,} people), "
          f"{data.counts['calibration_rows']:,} calibration rows, {data.counts['test_rows']:,} test rows "
          f"({tested}) at {cfg.index_dates.test}; {len(data.feature_names)} features")
    g = cfg.guards
    check_minimum_events({"training": data.y_train, "calibration": data.y_cal, "test": data.y_test},
                         minimums={"training": g.min_events_train, "calibration": g.min_events_calibration,
                                   "test": g.min_events_test}, target=cfg.target.name, records=records,
                         tables=tuple(cfg.target.tables), temporal_only=cfg.split.mode == "temporal_only")
    truth = truth_scores(load_truth(cfg), cfg, data.X_test.index)
    result = fit_and_evaluate(data, cfg, truth=truth, stage=stage)
    logged = None
    if log:
        features = feature_table()
        features = features[features["name"].isin(data.feature_names)]
        low, high = records.date_range()
        summary = {"row_counts": records.row_counts(), "first_event": str(low.date()) if low is not None else None,
                   "last_event": str(high.date()) if high is not None else None, "extract_end": str(extract_end.date()),
                   "sources": records.sources}
        register = not result.degenerate or g.register_degenerate
        logged = tracking.log_training_run(result, cfg, fingerprint=data_fingerprint(cfg.data.path),
                                           features=features, config_dict=config_to_dict(cfg), data_summary=summary,
                                           register=register, degenerate=result.degenerate)
        stage(f"logged run {logged.run_id}; " + (f"registered {logged.model_name} version {logged.model_version}"
                                                 + (" tagged riskstrat.degenerate" if result.degenerate else "")
                                                 if register else "registered nothing (degenerate model)"))
    run = TrainingRun(result, logged, cfg)
    if result.degenerate and (logged is None or logged.model_version is None):
        where = f"run {logged.run_id} is logged with the tag riskstrat.degenerate" if logged else "nothing was logged"
        raise DegenerateModelError(
            f"the {cfg.target.name.replace('_', ' ')} model is degenerate and was not registered: "
            f"{describe_degenerate(result.degenerate, min_distinct_scores=g.min_distinct_scores)}. "
            f"{where[0].upper() + where[1:]}. Usually the data hold too little signal for this outcome: more "
            f"people or index dates, or another outcome; to register it anyway (promote and score will still "
            f"refuse it unless forced), set guards.register_degenerate=true",
            reasons=result.degenerate, run=run)
    return run


# --------------------------------------------------------------------------------------------
# Monthly scoring


class ModelDataMismatchError(RiskstratError, ValueError):
    """The data cannot give the features a model was trained on."""


def check_features_match(model, features: pd.DataFrame, records) -> None:
    """Every model feature must be buildable from this data: same names, and its source present
    (``records``: LinkedRecords or a feature engine, anything with ``has(table)``)."""
    from riskstrat.features import feature

    missing = [f for f in model.feature_names if f not in features.columns]
    if missing:
        raise ModelDataMismatchError(f"model {model.target} expects features this version of riskstrat does "
                                     f"not build: {missing[:8]}")
    absent = sorted({feature(f).source for f in model.feature_names
                     if feature(f).source != "persons" and not records.has(feature(f).source)})
    if absent:
        raise ModelDataMismatchError(
            f"the {model.target} model was trained with data from {', '.join(absent)}, which this data set lacks; "
            f"score with data that has it or train a model without it (data.exclude_sources)")


def read_opt_outs(path) -> set[str]:
    """Pseudonymised ids from a file: one per line, or a CSV with a person_id column."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: opt-out file not found")
    text = path.read_text(encoding="utf-8-sig").splitlines()
    first = text[0].strip().lower() if text else ""
    if first in ("person_id", "pseudonym", "id") or "," in first:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
        column = next((c for c in frame.columns if c.strip().lower() in ("person_id", "pseudonym", "id")), None)
        if column is None:
            raise ValueError(f"{path}: a CSV opt-out file needs a person_id column; found {list(frame.columns)}")
        return set(frame[column].dropna().str.strip())
    return {line.strip() for line in text if line.strip()}


def read_reidentification(folder, practices) -> dict[str, pd.DataFrame]:
    """Practice-supplied lookups ``<practice_id>.csv`` (person_id, local_id) for the practices listed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: re-identification folder not found")
    lookups = {}
    for pid in practices:
        path = folder / f"{pid}.csv"
        if path.exists():
            lookups[str(pid)] = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    return lookups


def previous_month(output_dir, month: str) -> tuple[str | None, pd.DataFrame | None]:
    """The latest earlier month's population in ``output_dir`` (folders named YYYY-MM)."""
    root = Path(output_dir)
    if not root.is_dir():
        return None, None
    earlier = sorted(p.name for p in root.iterdir()
                     if p.is_dir() and len(p.name) == 7 and p.name < month and (p / "population.parquet").exists())
    if not earlier:
        return None, None
    return earlier[-1], pd.read_parquet(root / earlier[-1] / "population.parquet")


def _chunked(fn, frame: pd.DataFrame, size: int) -> np.ndarray:
    """``fn`` over ``frame`` in chunks of ``size`` rows (bounded memory), results joined."""
    if not len(frame):
        return np.zeros(0)
    return np.concatenate([fn(frame.iloc[i:i + size]) for i in range(0, len(frame), size)])


def data_end_of(cfg_data, records=None) -> tuple[pd.Timestamp | None, str]:
    """The last day the data cover and where that came from: ``data.extract_end``, else the data
    set's dataset.json ``extract_end``, else (with ``records``: LinkedRecords or a feature engine) the
    latest event; (None, "") if unknown."""
    from riskstrat.io import dataset_metadata

    if cfg_data.extract_end is not None:
        return pd.Timestamp(cfg_data.extract_end), "data.extract_end"
    meta = dataset_metadata(cfg_data.path)
    if meta.get("extract_end"):
        return pd.Timestamp(meta["extract_end"]), "dataset.json"
    if records is not None:
        latest = records.date_range()[1]
        if latest is not None:
            return pd.Timestamp(latest).normalize(), "latest event"
    return None, ""


def _outcome_of(model) -> dict:
    """What a risk model predicts, in words for the lists (older models: their target's default words)."""
    from riskstrat.outcomes import outcome_words

    described = model.metadata.get("outcome") or {}
    days = int(described.get("horizon_days", 365))
    horizon = "in the next 12 months" if days == 365 else f"in the next {days} days"
    return {"name": described.get("name", model.target), "words": outcome_words(model.metadata, model.target),
            "horizon_days": days, "horizon_words": horizon}


def run_scoring(cfg, as_of, *, stage: Stage = _quiet, records: LinkedRecords | None = None) -> dict:
    """Score everyone as of ``as_of`` with the champion models and write the month's lists.

    Refuses (:class:`riskstrat.guards.StaleDataError`) a date later than the data end plus
    ``cfg.max_data_lag_days`` unless ``cfg.allow_stale_data``, and champions tagged
    ``riskstrat.degenerate`` unless ``cfg.models.allow_degenerate``. People without a registered
    practice are scored and listed apart (:data:`riskstrat.lists.NO_PRACTICE`).

    Returns the manifest (also written as ``manifest.json`` and logged to MLflow).
    """
    import time

    import riskstrat
    from riskstrat import lists, tracking
    from riskstrat.engines import PandasEngine, open_engine
    from riskstrat.guards import check_data_currency
    from riskstrat.io import currency_of, data_fingerprint
    from riskstrat.reasons import check_additivity, top_reasons
    from riskstrat.tiers import DEFAULT_GROUPS, GroupRule

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    as_of = pd.Timestamp(as_of).normalize()
    month = as_of.strftime("%Y-%m")

    def data_is_current(end) -> None:
        try:
            check_data_currency(as_of, end, max_lag_days=cfg.max_data_lag_days)
        except Exception:
            if not cfg.allow_stale_data:
                raise
            stage(f"warning: scoring {(as_of - end).days} days after the data end ({end.date()}), as allowed: "
                  f"recent events are missing, so risks are too low")

    data_end, data_end_source = data_end_of(cfg.data)
    if data_end is not None:  # refuse before loading anything
        data_is_current(data_end)
    allow = cfg.models.allow_degenerate
    risk = tracking.load_model(cfg.models.risk, alias=cfg.models.alias, uri=cfg.tracking.uri, allow_degenerate=allow)
    cost = (tracking.load_model(cfg.models.high_cost, alias=cfg.models.alias, uri=cfg.tracking.uri,
                                allow_degenerate=allow) if cfg.models.high_cost else None)
    stage(f"loaded {risk.name} v{risk.version}" + (f" and {cost.name} v{cost.version}" if cost else ""))
    # The engine that builds the features: given records, the configured engine over the data folder.
    engine = PandasEngine(records) if records is not None else open_engine(cfg.engine, cfg.data, stage=stage)
    if data_end is None:
        data_end, data_end_source = data_end_of(cfg.data, engine)
        if data_end is not None:
            data_is_current(data_end)
    currency = currency_of(cfg.data.path)
    timings["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    features = engine.features(as_of, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age)
    for model in [risk] + ([cost] if cost else []):
        check_features_match(model.risk_model, features, engine)
    n_eligible = len(features)
    opted_out = read_opt_outs(cfg.opt_out_file) if cfg.opt_out_file else set()
    features, n_opted_out = lists.apply_opt_outs(features, opted_out)
    timings["features"] = time.perf_counter() - t
    stage(f"features as of {as_of.date()}: {n_eligible:,} eligible people, {n_opted_out:,} removed (opted out)")

    t = time.perf_counter()
    size = cfg.chunk_size
    risk_values = _chunked(risk.risk_model.predict_risk, features, size)
    high_cost_risk = predicted_cost = None
    if cost:
        high_cost_risk = _chunked(cost.risk_model.predict_risk, features, size)
        if cost.risk_model.cost_estimator is not None:
            predicted_cost = _chunked(cost.risk_model.predict_cost, features, size)
    groups = [GroupRule.model_validate(g) for g in cfg.lists.groups] if cfg.lists.groups else DEFAULT_GROUPS
    # Rank by the model's raw score: the same order as the calibrated risk, without its ties.
    raw = _chunked(risk.risk_model.raw_score, features, size)
    population = lists.rank_population(features, risk_values, high_cost_risk=high_cost_risk,
                                       predicted_cost=predicted_cost, tier_cutoffs=cfg.lists.tiers, groups=groups,
                                       rank_score=raw, currency=currency)
    timings["prediction"] = time.perf_counter() - t

    # Explain the people who go on lists (exact TreeSHAP is ~1000x slower than prediction).
    t = time.perf_counter()
    listed = population.loc[lists.listed_mask(population, list_size=cfg.lists.list_size), "person_id"]
    explain = features.loc[listed.to_numpy()]
    parts, max_error = [], 0.0
    for i in range(0, len(explain), size):
        chunk = explain.iloc[i:i + size]
        shap_values, base = risk.risk_model.contributions(chunk)
        max_error = max(max_error, check_additivity(shap_values, base, risk.risk_model.raw_score(chunk)))
        parts.append(top_reasons(shap_values, chunk, n=cfg.lists.reasons, currency=currency))
    reasons = pd.concat(parts) if parts else None
    timings["shap"] = time.perf_counter() - t
    stage(f"explained {len(explain):,} listed people (SHAP additivity error {max_error:.1e})")

    t = time.perf_counter()
    prev_month, prev = previous_month(cfg.output_dir, month)
    if prev is not None and opted_out:
        # Someone who opted out since last month must not reappear in this month's changes as "left".
        prev = prev.loc[~prev["person_id"].astype(str).isin(opted_out)]
    population = lists.mark_lists(population, list_size=cfg.lists.list_size, month=month, previous=prev,
                                  reasons=reasons, holdout_fraction=cfg.lists.holdout_fraction,
                                  seed=cfg.lists.holdout_seed)
    practice_lists = lists.practice_lists(population, list_size=cfg.lists.list_size)
    summary = lists.commissioner_summary(population, list_size=cfg.lists.list_size, groups=groups, currency=currency)
    changes = lists.changes_since(prev, population, list_size=cfg.lists.list_size)
    reidentify = (read_reidentification(cfg.reidentify_dir, [p for p in practice_lists if p != lists.NO_PRACTICE])
                  if cfg.reidentify_dir else None)
    no_practice = population["practice_id"].isna()
    tier_counts = population["tier"].astype(str).value_counts().to_dict()
    manifest = {
        "as_of": str(as_of.date()), "month": month, "package_version": riskstrat.__version__,
        "models": {m.name: {"version": m.version, "run_id": m.run_id, "alias": m.alias,
                            **({"degenerate": m.degenerate} if m.degenerate else {})}
                   for m in [risk] + ([cost] if cost else [])},
        "data": data_fingerprint(cfg.data.path), "config": config_to_dict(cfg),
        "data_end": str(data_end.date()) if data_end is not None else None, "data_end_source": data_end_source,
        "currency": currency, "outcome": _outcome_of(risk.risk_model),
        "counts": {"eligible": n_eligible, "opted_out_removed": n_opted_out, "scored": len(population),
                   "listed": int(population["listed"].sum()), "held_out": int(population["holdout"].sum()),
                   "practices": len([p for p in practice_lists if p != lists.NO_PRACTICE]), "tiers": tier_counts,
                   "new_this_month": int(population["new_this_month"].sum()),
                   "no_registered_practice": int(no_practice.sum()),
                   "no_registered_practice_listed": int((no_practice & population["listed"]).sum())},
        "no_registered_practice": lists.NO_PRACTICE_NOTE,
        "previous_month": prev_month, "shap_additivity_max_error": max_error,
    }
    out_dir = Path(cfg.output_dir) / month
    manifest["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    lists.write_month(out_dir, population=population, practice_lists=practice_lists, summary=summary,
                      manifest=manifest, reidentify=reidentify, changes=changes,
                      outcome_words=manifest["outcome"]["words"], horizon_words=manifest["outcome"]["horizon_words"])
    timings["writing"] = time.perf_counter() - t
    manifest["timings_seconds"]["writing"] = round(timings["writing"], 3)
    manifest["output_dir"] = str(out_dir)
    tracking.log_scoring_run(manifest, summary, cfg)
    stage(f"wrote {len(practice_lists)} practice lists to {out_dir}")
    return manifest
