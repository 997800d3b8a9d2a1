"""Wiring: the steps (pure functions elsewhere) joined with I/O and tracking into whole runs.

The CLI, notebooks and the batch job call these; each takes one validated config object.
"""

from __future__ import annotations

import errno
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd

from riskstrat.registry import tracking
from riskstrat.evaluation.held_out import fit_and_evaluate
from riskstrat.modeling.config import TrainConfig, config_to_dict
from riskstrat.modeling.models import model_outcome
from riskstrat.errors import InvalidInputError, RiskstratError
from riskstrat.data.records import LinkedRecords

Stage = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


def load_data(cfg_data, *, stage: Stage = _quiet) -> LinkedRecords:
    """Read and validate a linked data set; switched-off sources are never read (raises ValidationError)."""
    from riskstrat.data.validate import ValidationError, validate_data_dir

    records, report = validate_data_dir(cfg_data.path, out_of_life_events=cfg_data.out_of_life_events,
                                        exclude_sources=cfg_data.exclude_sources,
                                        on_table=lambda name, rows: stage(f"checked {name}: {rows:,} rows"))
    if records is None or not report.ok:
        raise ValidationError(report)
    records.validation = {"rows_dropped": dict(report.dropped),
                          "empty_tables": sorted(i.table for i in report.issues if i.rule == "empty_table"),
                          "warnings": len(report.warnings)}
    dropped = sum(report.dropped.values())
    if dropped or records.validation["empty_tables"]:
        stage(f"validation dropped {dropped:,} rows ({', '.join(f'{t} {n:,}' for t, n in report.dropped.items()) or 'none'})"
              + (f"; empty tables: {', '.join(records.validation['empty_tables'])}"
                 if records.validation["empty_tables"] else ""))
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
    result: object          # evaluation.held_out.TrainingResult
    logged: object | None   # tracking.LoggedRun
    config: TrainConfig | None = None  # as run (index_dates: auto resolved to dates)
    timings: dict[str, float] | None = None  # seconds per stage (TRAINING_STAGES, then per index date)
    refit: object | None = None            # refit.RefitResult (model.refit: latest, logged runs only)
    refit_logged: object | None = None     # tracking.LoggedRun of the refit: the version to promote for scoring


# The stages of a training run, timed into its MLflow run (metrics seconds.<stage>, timings.json).
TRAINING_STAGES = ("load", "features_labels", "fit", "fit_baselines", "evaluate", "log", "refit")


def run_training(cfg: TrainConfig, *, stage: Stage = _quiet, log: bool = True,
                 records: LinkedRecords | None = None, engine=None) -> TrainingRun:
    """Train, evaluate and (if ``log``) track and register one model as configured.

    The features and labels come from the engine ``cfg.engine`` over ``cfg.data`` (or the given
    ``engine``, or the validated ``records`` through the pandas engine); every engine gives the same
    training matrix, labels and model. Refuses (:class:`riskstrat.modeling.guards.InsufficientEventsError`)
    before fitting when a part has fewer events than ``cfg.guards`` asks, and
    (:class:`riskstrat.modeling.guards.DegenerateModelError`, holding the run) after fitting when the model
    is degenerate and ``guards.register_degenerate`` is off; the run is then still logged, tagged
    ``riskstrat.degenerate``, with nothing registered. The stages' seconds are in ``timings`` and
    logged with the run.
    """
    from riskstrat.features.engine import PandasEngine, open_engine
    from riskstrat.features.clinical import feature_table
    from riskstrat.modeling.guards import DegenerateModelError, describe_degenerate
    from riskstrat.features.costs import training_costs
    from riskstrat.data.io import currency_of, data_fingerprint
    from riskstrat.data.data_end import data_end_of
    from riskstrat.outcomes import check_costs_known
    from riskstrat.modeling.train import TablesOnDemand, assemble, check_events, truth_scores

    from riskstrat.data.privacy import check_key_matches

    timings: dict[str, float] = {}
    started = time.perf_counter()
    key_fingerprint = check_key_matches(cfg.data.path)
    if engine is None:
        engine = PandasEngine(records) if records is not None else open_engine(
            cfg.engine, cfg.data, stage=stage, check_every_row=True)
    check_costs_known(cfg.target, row_counts=engine.row_counts, blank_costs=engine.blank_costs)
    found_end = data_end_of(cfg.data.path, engine, configured=cfg.data.extract_end)
    extract_end = found_end.require(cfg.data.path)
    if found_end.warning:
        stage(f"warning: {found_end.warning}")
    timings["load"] = time.perf_counter() - started
    if cfg.index_dates == "auto":
        cfg = cfg.with_index_dates_for(extract_end)
        stage(f"index dates for an extract ending {extract_end.date()}: training "
              f"{', '.join(str(d) for d in cfg.index_dates.train)}; test {cfg.index_dates.test}")
    started = time.perf_counter()
    per_date: dict[str, float] = {}
    data = assemble(engine, cfg, extract_end=extract_end, stage=stage, timings=per_date)
    timings["features_labels"] = time.perf_counter() - started
    tested = "everyone" if cfg.split.mode == "temporal_only" else "held-out people"
    stage(f"{data.counts['train_rows']:,} training rows ({data.counts['train_people']:,} people), "
          f"{data.counts['calibration_rows']:,} calibration rows, {data.counts['test_rows']:,} test rows "
          f"({tested}) at {cfg.index_dates.test}; {len(data.feature_names)} features")
    g = cfg.guards
    check_events(cfg, {"training": data.y_train, "calibration": data.y_cal, "test": data.y_test},
                 TablesOnDemand(engine))
    truth = truth_scores(load_truth(cfg), cfg, data.X_test.index)
    costs = training_costs(currency=currency_of(cfg.data.path), sources=engine.sources, row_counts=engine.row_counts,
                           blank_costs=engine.blank_costs, feature_names=data.feature_names)
    result = fit_and_evaluate(data, cfg, truth=truth, stage=stage, timings=timings,
                              key_fingerprint=key_fingerprint, costs=costs)
    timings.update(per_date)
    logged = None
    if log:
        features = feature_table(data.feature_names)
        low, high = engine.date_range()
        summary = {"row_counts": dict(engine.row_counts), "first_event": str(low.date()) if low is not None else None,
                   "last_event": str(high.date()) if high is not None else None, "extract_end": str(extract_end.date()),
                   **found_end.as_dict(), "sources": engine.sources, "engine": engine.name}
        register = not result.degenerate or g.register_degenerate
        fingerprint = data_fingerprint(cfg.data.path)  # once: the refit below logs it too
        with _store_faults(cfg.tracking.uri):
            logged = tracking.log_training_run(result, cfg, fingerprint=fingerprint,
                                               features=features, config_dict=config_to_dict(cfg),
                                               data_summary=summary, register=register, degenerate=result.degenerate,
                                               timings=timings)
        stage(f"logged run {logged.run_id}; " + (f"registered {logged.model_name} version {logged.model_version}"
                                                 + (" tagged riskstrat.degenerate" if result.degenerate else "")
                                                 if register else "registered nothing (degenerate model)"))
    run = TrainingRun(result, logged, cfg, timings)
    if logged is not None and logged.model_version is not None and not result.degenerate \
            and cfg.model.refit == "latest":
        _refit_and_log(run, engine, extract_end=extract_end, key_fingerprint=key_fingerprint,
                       fingerprint=fingerprint, features=features, stage=stage)
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


@contextmanager
def _store_faults(configured_uri):
    """A corrupt or locked MLflow store is the environment's fault, not a bug: its failure becomes
    :func:`riskstrat.registry.tracking.store_problem`'s refusal; anything else is raised as it is."""
    try:
        yield
    except Exception as exc:
        problem = tracking.store_problem(exc, tracking.tracking_uri(configured_uri))
        if problem is None:
            raise
        raise problem from exc


def _refit_and_log(run: TrainingRun, engine, *, extract_end, key_fingerprint, fingerprint: dict,
                   features: pd.DataFrame, stage: Stage) -> None:
    """The refit for deployment of a logged, registered run (riskstrat.modeling.refit), logged and registered as
    its own version; into ``run.refit`` and ``run.refit_logged``."""
    from riskstrat.modeling.refit import refit_for_deployment

    cfg, logged = run.config, run.logged
    started = time.perf_counter()
    run.refit = refit_for_deployment(engine, cfg, run.result, extract_end=extract_end,
                                     of_version=logged.model_version, of_run=logged.run_id,
                                     key_fingerprint=key_fingerprint, stage=stage)
    seconds = time.perf_counter() - started
    run.timings["refit"] = seconds
    with _store_faults(cfg.tracking.uri):
        run.refit_logged = tracking.log_refit_run(run.refit, cfg, parent=logged, features=features,
                                                  config_dict=config_to_dict(cfg), fingerprint=fingerprint,
                                                  seconds=seconds)
    stage(f"logged the refit as run {run.refit_logged.run_id}; registered {logged.model_name} version "
          f"{run.refit_logged.model_version} (refit of version {logged.model_version}, inheriting its evaluation)")


# --------------------------------------------------------------------------------------------
# Monthly scoring


# The ways on from a cost refusal, as a scoring run's user gives them.
SCORING_COST_OPTIONS = ("--currency-rate RATE (currency_rate in the scoring config)",
                        "--without-costs (without_costs: true)")


class ModelDataMismatchError(RiskstratError, ValueError):
    """The data cannot give the features a model was trained on."""


class FeatureSpecMismatchError(RiskstratError):
    """A model was trained on feature definitions other than the running code's (a refusal: exit 2)."""


def check_feature_spec(loaded, *, stage: Stage = _quiet):
    """The features a loaded model (:class:`riskstrat.registry.tracking.LoadedModel`) was trained on, as a
    :class:`riskstrat.features.spec.FeatureSpec` that scoring builds exactly: its stored spec
    (``feature_spec`` in its metadata), or, for a model trained before specs were stored, the clinical
    spec when its ``feature_spec_hash`` is this code's :func:`riskstrat.features.spec.spec_hash`.

    Refuses (:class:`FeatureSpecMismatchError`) a spec this code cannot build (another derive version, a
    spec changed since training) and an old model whose hash differs from this code's. A model trained
    before the hash was recorded is let through with a warning (``stage``), with the clinical spec.

    No override: the features would be computed in a way the model never saw, with nothing to show for
    it in the risks; the remedy always exists (retrain, or run the version that trained the model).
    """
    from riskstrat.features.spec import CLINICAL, FeatureSpec, FeatureSpecError, spec_hash

    meta = loaded.risk_model.metadata
    trained, running = meta.get("feature_spec_hash"), spec_hash()
    what = f"{loaded.name} version {loaded.version}"
    by = f"riskstrat {meta['riskstrat_version']}" if meta.get("riskstrat_version") else "the version that trained it"
    stored = meta.get("feature_spec")
    if stored is not None:
        try:
            spec = FeatureSpec.from_dict(stored, what=f"the feature spec of {what}")
        except FeatureSpecError as exc:
            raise FeatureSpecMismatchError(
                f"{what} was trained on features defined differently from this version of riskstrat ({exc}): its "
                f"risks would come from features it never saw. Retrain it with this version (riskstrat train, then "
                f"evaluate and promote), or use {by} to score with it. Nothing was written") from None
        if trained is not None and trained != spec.hash():
            raise FeatureSpecMismatchError(
                f"{what}: its stored feature spec (hash {spec.hash()}) is not the one it records ({trained}); retrain "
                f"it. Nothing was written")
        return spec
    if trained is None:
        stage(f"warning: {what} records no feature-definition hash (it was trained before riskstrat recorded "
              f"one), so it cannot be checked that this version of riskstrat builds its features as they were "
              f"when it was trained; retrain it to have the check")
        return CLINICAL
    if trained != running:
        raise FeatureSpecMismatchError(
            f"{what} was trained on features defined differently from this version of riskstrat (feature "
            f"definitions {trained} when trained, {running} now): its risks would come from features it never "
            f"saw. Retrain it with this version (riskstrat train, then evaluate and promote), or use {by} to score "
            f"with it. Nothing was written")
    return CLINICAL


def models_spec(loaded_models, *, stage: Stage = _quiet):
    """One :class:`~riskstrat.features.spec.FeatureSpec` for models scored together: the union of their
    specs (:func:`check_feature_spec`); a name two models define differently is refused
    (:class:`FeatureSpecMismatchError`)."""
    from riskstrat.features.spec import FeatureSpec, FeatureSpecError

    specs = [check_feature_spec(m, stage=stage) for m in loaded_models]
    try:
        return FeatureSpec.union(specs)
    except FeatureSpecError as exc:
        names = " and ".join(f"{m.name} version {m.version}" for m in loaded_models)
        raise FeatureSpecMismatchError(f"{names}: {exc}. Nothing was written") from None


def check_features_match(model, features: pd.DataFrame, records) -> None:
    """Every model feature must be buildable from this data: same names, and its source present
    (``records``: LinkedRecords or a feature engine, anything with ``has(table)``)."""
    from riskstrat.features.clinical import feature

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


def check_sources_have_rows(models, row_counts: dict[str, int], *, allow: bool) -> list[str]:
    """The tables ``models`` (RiskModels) take features from that are present with no rows.

    An empty feed (an inpatient extract that arrived with its header only) would score everyone as if
    no one had been in hospital: refused (:class:`ModelDataMismatchError`) unless ``allow``; returns
    the empty tables either way (the manifest records them).
    """
    from riskstrat.features.clinical import feature

    used = {feature(f).source for m in models for f in m.feature_names} - {"persons"}
    empty = sorted(t for t in used if t in row_counts and row_counts[t] == 0)
    if empty and not allow:
        raise ModelDataMismatchError(
            f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no rows in this data set, but the models were "
            f"trained with {'it' if len(empty) == 1 else 'them'}: everyone would be scored as if no one had used "
            f"{'that service' if len(empty) == 1 else 'those services'}. Nothing was published. Check the feed "
            f"(an extract with its header only?); if the table really is empty this month, score with "
            f"allow_empty_sources=true")
    return empty


def read_opt_outs(path, *, allow_empty: bool = False):
    """Pseudonymised ids from an opt-out file, in canonical form, with their line numbers
    (:func:`riskstrat.data.privacy.read_opt_outs`); none (an empty :class:`~riskstrat.data.privacy.OptOutIds`)
    when ``path`` is None."""
    from riskstrat.data.privacy import OptOutIds, read_opt_outs as read

    return read(path, allow_empty=allow_empty) if path else OptOutIds()


def read_reidentification(folder, practices) -> dict[str, pd.DataFrame]:
    """Practice-supplied lookups ``<practice_id>.csv`` (person_id, local_id) for the practices listed
    (:func:`riskstrat.data.privacy.read_reidentification_lookup`: every refusal names the file)."""
    from riskstrat.data.privacy import ReidentificationLookupError, read_reidentification_lookup

    folder = Path(folder)
    if not folder.is_dir():
        raise ReidentificationLookupError(
            f"{folder}: re-identification folder not found{' (it is a file)' if folder.exists() else ''}; set "
            f"reidentify_dir to the folder holding the practices' <practice_id>.csv look-ups, or remove the setting")
    lookups = {}
    for pid in practices:
        path = folder / f"{pid}.csv"
        if path.exists():
            lookups[str(pid)] = read_reidentification_lookup(path)
    return lookups


def _as_in_data(ids: pd.Series, lookup: dict[str, str]) -> tuple[pd.Series, int]:
    """Outside ids rewritten as the data write them (canonical match), and how many matched nobody."""
    from riskstrat.data.privacy import canonical_ids

    mapped = canonical_ids(ids).map(lookup)
    return mapped.fillna(ids.astype(object)).astype(object), int(mapped.isna().sum())


def _page_settings(lists_cfg) -> dict:
    """What the practice pages say beyond the numbers: practice names, how to find a person, whom to ask."""
    from riskstrat.scoring import lists
    from riskstrat.data.io import read_user_csv

    names = dict(lists_cfg.practice_names)
    if lists_cfg.practice_names_file is not None:
        table = read_user_csv(lists_cfg.practice_names_file, what="practice names")
        if not {"practice_id", "name"} <= set(table.columns):
            raise InvalidInputError(f"{lists_cfg.practice_names_file}: needs columns practice_id and name, "
                             f"found {list(table.columns)}")
        names = {**dict(zip(table["practice_id"].str.strip(), table["name"].str.strip())), **names}
    return {"practice_names": names, "find_person": lists_cfg.find_person or lists.DEFAULT_FIND_PERSON,
            "contact": lists_cfg.contact or lists.DEFAULT_CONTACT,
            "next_steps": lists_cfg.next_steps or lists.DEFAULT_NEXT_STEPS,
            "suppress_below": lists_cfg.suppress_below, "round_counts_to": lists_cfg.round_counts_to,
            "workbooks": lists_cfg.workbooks, "workers": lists_cfg.write_workers}


# What this month's changes read of last month's population (holdout: when it was kept).
PREVIOUS_COLUMNS = ("person_id", "practice_id", "practice_rank", "tier")


def _unverified(exc: Exception, allow: bool, *, what: str, why: str, month: str, treated: str, stage: Stage) -> dict:
    """A published month that cannot be verified: refused (``exc``'s type, saying what to do) unless
    ``allow``; then a loud warning to ``stage`` and ``{"month", "problem"}`` for the manifest."""
    if not allow:
        raise type(exc)(
            f"{what} cannot be verified, so {why}: {exc}. Nothing was published. To publish {month} treating "
            f"{treated} (recorded in the manifest), set allow_unverified_previous_month=true "
            f"(--allow-unverified-previous-month)") from exc
    stage(f"WARNING: {what} cannot be verified and is treated as absent, as allow_unverified_previous_month asks: "
          f"{treated}. {exc}")
    return {"problem": str(exc)}


def previous_month(output_dir, month: str, *, allow_unverified: bool = False,
                   stage: Stage = _quiet) -> tuple[str | None, pd.DataFrame | None, dict | None]:
    """The latest earlier month published in ``output_dir`` (every month link, or month folder of an
    earlier riskstrat, named YYYY-MM, whatever it holds): ``(its name, its population, None)``, or
    ``(None, None, None)`` when there is none.

    Last month is verified before it is used (:func:`riskstrat.scoring.published.read_population`), read from
    the run folder :func:`riskstrat.scoring.publish.month_run` resolves (never through the month link
    again): its manifest must parse and be that month's, its ``population.parquet`` must be there,
    a regular file with the SHA-256 the manifest records and the columns :data:`PREVIOUS_COLUMNS`.
    A month with a file missing is not skipped for an older one: if it cannot be verified, the run
    is refused (:class:`riskstrat.scoring.published.PublishedMonthError`, saying what to restore or rescore)
    by default: a tampered month is something a person must look at. With ``allow_unverified`` the
    month is treated as absent instead (no changes since it, no population-shrink check against
    it): a loud warning goes to ``stage`` and the third value, ``{"month", "problem"}``, is for the
    manifest to record, so a bad month cannot block the lists for ever.
    """
    from riskstrat.scoring.publish import published_months
    from riskstrat.scoring.published import PublishedMonthError, read_population

    root = Path(output_dir)
    if not root.is_dir():
        return None, None, None
    # Through publish.month_run: a month link riskstrat did not make is refused, never read.
    earlier = published_months(root, before=month)
    if not earlier:
        return None, None, None
    last, folder = earlier[-1]
    try:
        _, population = read_population(folder, month=last, columns=PREVIOUS_COLUMNS, optional=("holdout",))
    except PublishedMonthError as exc:
        problem = _unverified(exc, allow_unverified, what=f"last month ({last})", month=month,
                              why="this month's changes (new, left, tier moves) cannot be worked out from it",
                              treated=f"{last} as absent (everyone listed counts as new, and the population is not "
                                      f"compared with it)", stage=stage)
        return None, None, {"month": last, **problem}
    return last, population, None


def _chunked(fn, frame: pd.DataFrame, size: int):
    """``fn`` over ``frame`` in chunks of ``size`` rows (bounded memory), results joined; an ``fn``
    that returns a tuple of arrays gives a tuple of joined arrays."""
    parts = [fn(frame.iloc[i:i + size]) for i in range(0, len(frame), size)]
    if not parts:
        return np.zeros(0)
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*parts))
    return np.concatenate(parts)


def _outcome_of(model) -> dict:
    """What a risk model predicts, in words for the lists (older models: their target's default words)."""
    from riskstrat.outcomes import outcome_words

    described = model.metadata.get("outcome") or {}
    days = int(described.get("horizon_days", 365))
    horizon = "in the next 12 months" if days == 365 else f"in the next {days} days"
    return {"name": described.get("name", model.target), "words": outcome_words(model.metadata, model.target),
            "horizon_days": days, "horizon_words": horizon}


def _drift(model, features: "MonthFeatures", risk: np.ndarray, *, stage: Stage) -> dict | None:
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
                   stage: Stage = _quiet) -> tuple[pd.DataFrame | None, float]:
    """Exact SHAP reasons (:func:`riskstrat.scoring.reasons.top_reasons`) for every row of ``features``, in
    chunks of ``chunk_size`` people with a progress line after each; returns the reasons (None for
    nobody) and the largest SHAP additivity error against ``raw_score`` (the model's raw score for
    the same rows, already computed by the prediction: no second pass)."""
    from riskstrat.scoring.reasons import check_additivity, top_reasons

    raw_score = np.asarray(raw_score, dtype="float64")
    parts, max_error, started = [], 0.0, time.perf_counter()
    for i in range(0, len(features), chunk_size):
        chunk = features.iloc[i:i + chunk_size]
        shap_values, base = model.contributions(chunk)
        max_error = max(max_error, check_additivity(shap_values, base, raw_score[i:i + chunk_size]))
        parts.append(top_reasons(shap_values, chunk, n=n, currency=currency, demographic_reasons=demographic_reasons,
                                 money_reasons=money_reasons))
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

    An engine that scores in place (:meth:`riskstrat.features.spark.SparkEngine.month_features`)
    provides its own; every other engine's feature frame is wrapped in :class:`InMemoryFeatures`
    (:func:`month_features`). Each method runs the models' own code (:class:`riskstrat.modeling.models.RiskModel`,
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

    def explain(self, model, scores: PersonScores, person_ids: pd.Index | None, *, n: int, currency: str,
                demographic_reasons: bool, money_reasons: bool, chunk_size: int,
                stage: Stage = _quiet) -> tuple[pd.DataFrame | None, float, int]:
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

    def __len__(self) -> int:
        return len(self.frame)

    def without(self, person_ids) -> tuple["InMemoryFeatures", int]:
        from riskstrat.scoring import lists

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
        from riskstrat.evaluation.drift import drift_report

        return drift_report(profile, self.frame, risk)

    def explain(self, model, scores: PersonScores, person_ids, *, n, currency, demographic_reasons,
                money_reasons, chunk_size, stage=_quiet):
        explain = self.frame if person_ids is None else self.frame.loc[np.asarray(person_ids)]
        reasons, max_error = explain_people(
            model, explain, scores.raw[scores.people.index.get_indexer(explain.index)], n=n, currency=currency,
            demographic_reasons=demographic_reasons, money_reasons=money_reasons, chunk_size=chunk_size,
            stage=stage)
        return reasons, max_error, len(explain)

    def release(self) -> None:
        return None


def month_features(engine, index_date, *, min_age: float, max_age: float, spec=None, costs=None) -> MonthFeatures:
    """The features for scoring on ``index_date``: the engine's own :class:`MonthFeatures` when it
    scores in place (its ``month_features`` method), else its feature frame in memory; ``spec`` (a
    :class:`riskstrat.features.spec.FeatureSpec`, default the clinical one) says which features.
    ``costs`` (:class:`riskstrat.features.costs.CostHandling`) converts or blanks the cost features once they are built."""
    own = getattr(engine, "month_features", None)
    changes = costs is not None and costs.changes_features
    if own is not None:
        return own(index_date, min_age=min_age, max_age=max_age, spec=spec, **({"costs": costs} if changes else {}))
    frame = engine.features(index_date, min_age=min_age, max_age=max_age, spec=spec)
    return InMemoryFeatures(costs.apply(frame) if changes else frame)


class PublishedButNotTrackedError(RiskstratError):
    """The month was published, complete, but recording it in MLflow failed; ``manifest`` holds it."""

    def __init__(self, message: str, manifest: dict):
        super().__init__(message)
        self.manifest = manifest


def cohort_exclusions(records: LinkedRecords, as_of, *, min_age: float, max_age: float) -> dict[str, int]:
    """People in the data not scored on ``as_of``, by the first reason that applies (counts only;
    the rules of :func:`riskstrat.features.clinical.cohort_rules`, as :func:`~riskstrat.features.clinical.eligible_persons`)."""
    from riskstrat.features.clinical import cohort_rules

    p = records.persons
    reasons, _ = cohort_rules(p, as_of, min_age=min_age, max_age=max_age)
    counted = np.zeros(len(p), bool)
    out = {}
    for reason, hit in reasons.items():
        hit = np.asarray(hit, bool) & ~counted
        out[reason] = int(hit.sum())
        counted |= hit
    return out


def _counted(counts: dict[str, int]) -> str:
    """``{"died": 3, "not_registered": 0}`` -> ``"died 3"`` (``"none"`` when all are zero)."""
    return ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in counts.items() if n) or "none"


def _published_population(output_dir, month: str, *, allow_unverified: bool = False,
                          stage: Stage = _quiet) -> int | None:
    """How many people the month already published in ``output_dir`` scored (its manifest, read by
    :func:`riskstrat.scoring.published.read_manifest` from the run folder :func:`riskstrat.scoring.publish.month_run`
    resolves), or None when the month is not published. A manifest that cannot be believed, or
    lacks ``counts.scored``, is refused as :func:`previous_month` refuses last month: unless
    ``allow_unverified``, then a warning and None (no population-shrink check)."""
    from riskstrat.scoring.publish import month_run
    from riskstrat.scoring.published import MANIFEST, ManifestError, PublishedMonthError, read_manifest

    if not Path(output_dir).is_dir():
        return None
    folder = month_run(output_dir, month)
    if folder is None:
        return None
    try:
        manifest = read_manifest(folder / MANIFEST, month=month)
        counts = manifest.get("counts")
        scored = counts.get("scored") if isinstance(counts, dict) else None
        if not isinstance(scored, int) or isinstance(scored, bool) or scored < 0:
            raise ManifestError(f"{folder / MANIFEST} (month {month}) has no count of the people scored "
                                f"(counts.scored); rescore the month to publish it afresh")
    except PublishedMonthError as exc:
        _unverified(exc, allow_unverified, what=f"{month} as published", month=month,
                    why="this run's population cannot be compared with it",
                    treated=f"{month} as published as absent (the population is not compared with it)",
                    stage=stage)
        return None
    return scored


def _file_digest(path) -> dict | None:
    from riskstrat.data.io import file_sha256

    path = Path(path)
    return {"path": str(path.resolve()), "sha256": file_sha256(path)} if path.is_file() else None


def _os_error(exc: OSError, what: str) -> RiskstratError:
    """An OS fault while writing, as a refusal a person can act on."""
    from riskstrat.scoring.publish import PublishError

    where = f" ({exc.filename})" if exc.filename else ""
    advice = {errno.ENOSPC: "the disk is full: free space and run again",
              errno.EDQUOT: "the disk quota is used up: free space and run again",
              errno.EROFS: "the file system is read-only: choose a writable output_dir",
              errno.EACCES: "permission denied: make the output folder writable or choose another output_dir",
              errno.EPERM: "permission denied: make the output folder writable or choose another output_dir",
              errno.ENAMETOOLONG: "a file name is too long: check the practice ids"}.get(exc.errno, exc.strerror
                                                                                              or str(exc))
    return PublishError(f"could not {what}{where}: {advice}. Nothing was published; the month already there "
                        f"(if any) is untouched")


def run_scoring(cfg, as_of, *, stage: Stage = _quiet, records: LinkedRecords | None = None) -> dict:
    """Score everyone as of ``as_of`` with the champion models and publish the month's lists.

    Refuses (:class:`riskstrat.modeling.guards.StaleDataError`) a date later than the data end plus
    ``cfg.max_data_lag_days`` unless ``cfg.allow_stale_data``, and champions tagged
    ``riskstrat.degenerate`` unless ``cfg.models.allow_degenerate``. People without a registered
    practice are scored and listed apart (:data:`riskstrat.scoring.lists.NO_PRACTICE`).

    Opt-outs are matched in canonical form (:mod:`riskstrat.data.privacy`); an opt-out file with no ids
    is refused (:class:`riskstrat.data.privacy.OptOutError`) unless ``cfg.allow_empty_opt_out``, and one
    none of whose ids matches anyone, or with an unmatched id that looks mis-pasted (or is not a
    pseudonym while the data's ids all are), unless ``cfg.allow_unmatched_opt_outs`` (:func:`riskstrat.data.privacy.check_opt_out_match`). A month with no
    one scored, or far fewer than the month before, is refused (:class:`riskstrat.scoring.publish.PublishRefusedError`) unless ``cfg.allow_population_shrink``.
    A month already published in ``cfg.output_dir`` is replaced only with ``cfg.replace_existing``
    (:class:`riskstrat.scoring.publish.AlreadyPublishedError` names both runs' models; refused before scoring
    when the models differ), unless the rerun's manifest is byte-identical (a retry).

    Order (decided so that the exit status tells the truth and a retry is safe): take the output
    folder's lock; append "started" to its audit log; score; publish the month in one atomic step
    (:mod:`riskstrat.scoring.publish`); append "published" (files and hashes); record the run in MLflow;
    append "tracked". If MLflow fails after publishing, the month stays published and complete and
    :class:`PublishedButNotTrackedError` says so: rerunning the same command is safe (same inputs give
    the same files, byte for byte) and records it.

    Returns the manifest (also written as ``manifest.json`` and logged to MLflow). Run timings are
    not in it (a rerun's manifest is byte-identical): they go to the audit log and MLflow.
    """
    from riskstrat.scoring import publish
    from riskstrat.registry import tracking
    from riskstrat.features.engine import PandasEngine, open_engine
    from riskstrat.data.data_end import data_end_of
    from riskstrat.modeling.guards import StaleDataError, check_data_currency
    from riskstrat.features.costs import check_model_costs
    from riskstrat.outcomes import check_costs_known
    from riskstrat.data.io import currency_of, data_fingerprint, file_sha256
    from riskstrat.data.privacy import check_key_matches, check_opt_out_match, match_opt_outs

    as_of = pd.Timestamp(as_of).normalize()
    month = as_of.strftime("%Y-%m")

    def data_is_current(end) -> None:
        try:
            check_data_currency(as_of, end, max_lag_days=cfg.max_data_lag_days)
        except StaleDataError:  # only the refusal is allowed away: any other fault stays a fault
            if not cfg.allow_stale_data:
                raise
            stage(f"warning: scoring {(as_of - end).days} days after the data end ({end.date()}), as allowed: "
                  f"recent events are missing, so risks are too low")

    t0 = time.perf_counter()
    found_end = data_end_of(cfg.data.path, configured=cfg.data.extract_end)
    if found_end.end is not None:  # refuse before loading anything
        data_is_current(found_end.end)
    key_fingerprint = check_key_matches(cfg.data.path, matches_ids=bool(cfg.opt_out_file or cfg.reidentify_dir))
    allow = cfg.models.allow_degenerate
    risk = tracking.load_model(cfg.models.risk, alias=cfg.models.alias, uri=cfg.tracking.uri, allow_degenerate=allow)
    cost = (tracking.load_model(cfg.models.high_cost, alias=cfg.models.alias, uri=cfg.tracking.uri,
                                allow_degenerate=allow) if cfg.models.high_cost else None)
    stage(f"loaded {risk.name} v{risk.version}" + (f" and {cost.name} v{cost.version}" if cost else ""))
    # Before any data is read: the features the models were trained on, built as stored with them.
    spec = models_spec([risk] + ([cost] if cost else []), stage=stage)
    opted_out = read_opt_outs(cfg.opt_out_file, allow_empty=cfg.allow_empty_opt_out)
    # The engine that builds the features: given records, the configured engine over the data folder.
    # Every row checked, as validation does for the pandas engine: the same data are refused by every engine,
    # including linkage errors in rows no feature reads.
    engine = PandasEngine(records) if records is not None else open_engine(cfg.engine, cfg.data, stage=stage,
                                                                           check_every_row=True)
    records = engine.records  # the duckdb engine's holds persons only: all the rest needs of people
    for model in [risk] + ([cost] if cost else []):  # a high-cost model needs health-care costs in the data
        check_costs_known(model_outcome(model.risk_model), row_counts=engine.row_counts, blank_costs=engine.blank_costs)
    # The models' money read as they were trained: same currency, costs where they had them (or told how on).
    costs = check_model_costs([risk] + ([cost] if cost else []), data_currency=currency_of(cfg.data.path),
                              sources=engine.sources, row_counts=engine.row_counts, blank_costs=engine.blank_costs,
                              currency_rate=cfg.currency_rate, without_costs=cfg.without_costs, stage=stage,
                              options=SCORING_COST_OPTIONS)
    if found_end.end is None:  # read from where the event volume stops, a stray late date left out
        found_end = data_end_of(cfg.data.path, engine)
        if found_end.warning:
            stage(f"warning: {found_end.warning}")
        if found_end.end is not None:
            data_is_current(found_end.end)
    data_end, data_end_source = found_end.end, found_end.source
    timings = {"load": time.perf_counter() - t0}
    t = time.perf_counter()
    features = month_features(engine, as_of, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age, spec=spec,
                              costs=costs)
    try:
        for model in [risk] + ([cost] if cost else []):
            check_features_match(model.risk_model, features, engine)
        empty_sources = check_sources_have_rows([m.risk_model for m in [risk] + ([cost] if cost else [])],
                                                dict(engine.row_counts), allow=cfg.allow_empty_sources)
        if empty_sources:
            stage(f"warning: scoring with no rows in {', '.join(empty_sources)}, as allowed (allow_empty_sources)")
        n_eligible = len(features)
        excluded = cohort_exclusions(records, as_of, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age)
        # Opt-outs are matched against everyone in the data: ids that match no one at all, that look
        # mis-pasted, or that are not pseudonyms when the data's ids all are, are refused
        # (check_opt_out_match); a few matching no one are people who have left.
        match = match_opt_outs(records.persons["person_id"], opted_out)
        unmatched_warning = check_opt_out_match(match, len(opted_out), file=cfg.opt_out_file,
                                                lines=opted_out.line_numbers(match.unmatched),
                                                allow_unmatched=cfg.allow_unmatched_opt_outs)
        in_data, unmatched = match.matched, len(match.unmatched)
        features, n_opted_out = features.without(in_data)
        timings["features"] = time.perf_counter() - t
        stage(f"features as of {as_of.date()}: {len(records.persons):,} people in the data, "
              f"{sum(excluded.values()):,} outside the cohort ({_counted(excluded)}), "
              f"{n_eligible:,} eligible, {n_opted_out:,} removed (opted out)"
              + (f"; {unmatched:,} of {len(opted_out):,} opt-out ids matched no one in the data" if opted_out else ""))
        if unmatched_warning:
            stage(f"warning: {unmatched_warning}")
        counts = {"excluded_by_cohort": excluded, "eligible": n_eligible, "opted_out_removed": n_opted_out,
                  "opt_out_ids": len(opted_out), "opt_out_ids_matching_no_one": unmatched}
        if found_end.events_after:  # events after a data end read from the event volume: likely mistyped dates
            counts["events_after_data_end"] = found_end.events_after

        models = [risk] + ([cost] if cost else [])
        inputs = {"data": data_fingerprint(cfg.data.path), "pseudonym_key_fingerprint": key_fingerprint,
                  "opt_out_file": _file_digest(cfg.opt_out_file) if cfg.opt_out_file else None,
                  "reidentify_files": ({p.name: file_sha256(p) for p in sorted(Path(cfg.reidentify_dir).glob("*.csv"))}
                                       if cfg.reidentify_dir and Path(cfg.reidentify_dir).is_dir() else None),
                  "config": config_to_dict(cfg)}
        audit = {"month": month, "as_of": str(as_of.date()),
                 "models": {m.name: {"version": m.version, "run_id": m.run_id} for m in models}}

        with publish.output_lock(cfg.output_dir) as root:
            try:  # before anything is scored: a published month is replaced only when asked
                publish.check_republish(root, month, replace=cfg.replace_existing, models=audit["models"])
            except publish.PublishError as exc:
                publish.append_audit(root, "refused", **audit, error=str(exc))
                raise
            publish.append_audit(root, "started", **audit, inputs={k: v for k, v in inputs.items() if k != "config"})
            try:
                manifest, summary = _score_month(
                    cfg, as_of, month, risk=risk, cost=cost, records=records, features=features, opted_out=opted_out,
                    in_data=in_data, counts=counts, data_end=data_end, data_end_source=data_end_source, inputs=inputs,
                    costs=costs, timings=timings, stage=stage)
            except OSError as exc:
                publish.append_audit(root, "failed", **audit, error=f"{type(exc).__name__}: {exc}")
                raise _os_error(exc, f"write the {month} lists") from exc
            except BaseException as exc:
                publish.append_audit(root, "failed", **audit, error=f"{type(exc).__name__}: {exc}")
                raise
            out_dir = Path(manifest["output_dir"])
            run_folder = publish.month_run(root, month)  # once: not through the month link again
            written = publish.read_regular(run_folder / "manifest.json")
            publish.append_audit(root, "published", **audit, output=str(out_dir), run_folder=str(run_folder),
                                 files={**json.loads(written)["files"],
                                        "manifest.json": hashlib.sha256(written).hexdigest()},
                                 opted_out_removed=manifest["counts"]["opted_out_removed"],
                                 timings_seconds={k: round(v, 3) for k, v in timings.items()})
            try:
                # The manifest as published (with its files' hashes): monitor checks the folder's copy against it.
                run_id = tracking.log_scoring_run(json.loads(written), summary, cfg, timings=timings)
            except Exception as exc:  # the month is out, complete: say so, and that a rerun is safe
                publish.append_audit(root, "tracking_failed", **audit, error=f"{type(exc).__name__}: {exc}")
                raise PublishedButNotTrackedError(
                    f"the {month} lists were published to {out_dir} and are complete, but recording the run in MLflow "
                    f"({cfg.tracking.uri or 'default store'}) failed: {type(exc).__name__}: {exc}. The audit log "
                    f"{root / publish.AUDIT_LOG} records the month; run the same command again once MLflow works "
                    f"(a rerun writes the same files and records it)", manifest) from exc
            publish.append_audit(root, "tracked", **audit, mlflow_run_id=run_id)
    finally:
        features.release()  # what the engine holds for the month (Spark's cache)
    stage(f"wrote {manifest['counts']['practices']} practice lists to {out_dir}")
    return manifest


def _score_month(cfg, as_of, month, *, risk, cost, records, features, opted_out, in_data, counts, data_end,
                 data_end_source, inputs, costs, timings, stage) -> tuple[dict, pd.DataFrame]:
    """Score, explain and write one month (the caller holds the output folder's lock); returns the
    manifest and the commissioners' summary. ``costs`` (:class:`riskstrat.features.costs.CostHandling`) says
    which currency the amounts are in (the models' when converted)."""
    import riskstrat
    from riskstrat.scoring import lists
    from riskstrat.scoring import publish
    from riskstrat.data.privacy import PseudonymKeyError, canonical_lookup
    from riskstrat.modeling.tiers import DEFAULT_GROUPS, GroupRule

    currency = costs.currency
    prev_month, prev, unverified = previous_month(cfg.output_dir, month, stage=stage,
                                                  allow_unverified=cfg.allow_unverified_previous_month)
    previous_scored = len(prev) if prev is not None else None
    publish.check_population(len(features), previous_scored, max_shrink=cfg.max_population_shrink,
                             allow=cfg.allow_population_shrink, previous_month=prev_month)
    if prev_month is None:  # a rerun of this month: compare with what it published
        published = _published_population(cfg.output_dir, month, stage=stage,
                                          allow_unverified=cfg.allow_unverified_previous_month)
        publish.check_population(len(features), published,
                                 max_shrink=cfg.max_population_shrink, allow=cfg.allow_population_shrink,
                                 previous_month=f"{month} as published")

    t = time.perf_counter()
    size = cfg.chunk_size
    # One pass of each model per person: the calibrated risk comes from the raw score, which also
    # ranks (the same order as the calibrated risk, without its ties).
    scores = features.score(risk.risk_model, cost.risk_model if cost else None, chunk_size=size)
    groups = [GroupRule.model_validate(g) for g in cfg.lists.groups] if cfg.lists.groups else DEFAULT_GROUPS
    population = lists.rank_population(scores.people, scores.risk, high_cost_risk=scores.high_cost_risk,
                                       predicted_cost=scores.predicted_cost, tier_cutoffs=cfg.lists.tiers,
                                       groups=groups, rank_score=scores.raw * risk.risk_model.rank_direction(),
                                       currency=currency)
    timings["prediction"] = time.perf_counter() - t
    drift = _drift(risk.risk_model, features, scores.risk, stage=stage)

    # Explain the people who go on lists (exact TreeSHAP is ~1000x slower than prediction), or
    # everyone with lists.explain = "all".
    t = time.perf_counter()
    if cfg.lists.explain == "all":
        explain, who = None, "people"
    else:
        listed = population.loc[lists.listed_mask(population, list_size=cfg.lists.list_size), "person_id"]
        explain, who = pd.Index(listed.to_numpy()), "listed people"
    reasons, max_error, n_explained = features.explain(
        risk.risk_model, scores, explain, n=cfg.lists.reasons, currency=currency,
        demographic_reasons=cfg.lists.demographic_reasons,
        money_reasons=_outcome_of(risk.risk_model)["name"] == "high_cost", chunk_size=min(size, EXPLAIN_CHUNK),
        stage=stage if cfg.lists.explain == "all" else _quiet)
    timings["shap"] = time.perf_counter() - t
    stage(f"explained {n_explained:,} {who} (SHAP additivity error {max_error:.1e}"
          + (f", {n_explained / timings['shap']:,.0f} people/s)" if cfg.lists.explain == "all" and n_explained
             and timings["shap"] > 0 else ")"))

    t = time.perf_counter()
    if prev is not None:
        # Last month's ids as this month's data write them (one canonical form).
        in_population = canonical_lookup(population["person_id"])
        prev = prev.assign(person_id=_as_in_data(prev["person_id"].astype(str), in_population)[0])
        if in_data:
            # Someone who opted out since last month must not reappear in this month's changes as "left".
            prev = prev.loc[~prev["person_id"].isin(in_data)]
    population = lists.mark_lists(population, list_size=cfg.lists.list_size, month=month, previous=prev,
                                  reasons=reasons, holdout_fraction=cfg.lists.holdout_fraction,
                                  seed=cfg.lists.holdout_seed, holdout_exempt_tiers=cfg.lists.holdout_exempt_tiers)
    practice_lists = lists.practice_lists(population, list_size=cfg.lists.list_size)
    summary = lists.suppress_small_numbers(  # commissioners' output, to file and to MLflow alike
        lists.commissioner_summary(population, list_size=cfg.lists.list_size, groups=groups, currency=currency),
        threshold=cfg.lists.suppress_below, round_to=cfg.lists.round_counts_to)
    changes = lists.changes_since(prev, population, list_size=cfg.lists.list_size)
    reidentify, lookup_unmatched = None, 0
    if cfg.reidentify_dir:
        reidentify = read_reidentification(cfg.reidentify_dir, [p for p in practice_lists if p != lists.NO_PRACTICE])
        everyone = canonical_lookup(records.persons["person_id"])
        for pid, lookup in reidentify.items():
            column = "person_id"  # read_reidentification_lookup names the id column so
            lookup[column], missed = _as_in_data(lookup[column], everyone)
            if len(lookup) and missed == len(lookup):
                raise PseudonymKeyError(
                    f"none of the {len(lookup):,} pseudonyms in practice {pid}'s re-identification lookup "
                    f"({Path(cfg.reidentify_dir) / f'{pid}.csv'}) matches anyone in the data: it was made with "
                    f"another key, or for other data. Nothing was published; ask the practice for a lookup made "
                    f"with this month's pseudonyms, or remove the file")
            lookup_unmatched += missed
    no_practice = population["practice_id"].isna()
    tier_counts = population["tier"].astype(str).value_counts().to_dict()
    validation = getattr(records, "validation", {}) or {}
    out_dir = Path(cfg.output_dir) / month
    manifest = {
        "as_of": str(as_of.date()), "month": month, "package_version": riskstrat.__version__,
        "models": {m.name: {"version": m.version, "run_id": m.run_id, "alias": m.alias,
                            **({"degenerate": m.degenerate} if m.degenerate else {})}
                   for m in [risk] + ([cost] if cost else [])},
        "data": inputs["data"], "config": inputs["config"],
        "pseudonym_key_fingerprint": inputs["pseudonym_key_fingerprint"],
        "opt_out_file": inputs["opt_out_file"],
        "data_end": str(data_end.date()) if data_end is not None else None, "data_end_source": data_end_source,
        "currency": currency, "costs": costs.as_dict(), "outcome": _outcome_of(risk.risk_model),
        "counts": {"in_data": len(records.persons), "rows_dropped_by_validation": validation.get("rows_dropped"),
                   "empty_tables": validation.get("empty_tables"), **counts,
                   "reidentify_rows_matching_no_one": lookup_unmatched, "scored": len(population),
                   "listed": int(population["listed"].sum()), "explained": n_explained,
                   "held_out": int(population["holdout"].sum()),
                   "practices": len([p for p in practice_lists if p != lists.NO_PRACTICE]), "tiers": tier_counts,
                   "new_this_month": int(population["new_this_month"].sum()),
                   "no_registered_practice": int(no_practice.sum()),
                   "no_registered_practice_listed": int((no_practice & population["listed"]).sum())},
        "no_registered_practice": lists.NO_PRACTICE_NOTE,
        "previous_month": prev_month, "previous_month_unverified": unverified,
        "shap_additivity_max_error": max_error, "drift": drift,
        "output_dir": str(out_dir),
        "holdout": lists.holdout_rule(fraction=cfg.lists.holdout_fraction, seed=cfg.lists.holdout_seed,
                                      exempt_tiers=cfg.lists.holdout_exempt_tiers),
        "summary_small_numbers": {"suppress_below": cfg.lists.suppress_below,
                                  "round_counts_to": cfg.lists.round_counts_to},
    }
    lists.write_month(out_dir, population=population, practice_lists=practice_lists, summary=summary,
                      manifest=manifest, reidentify=reidentify, changes=changes,
                      outcome_words=manifest["outcome"]["words"], horizon_words=manifest["outcome"]["horizon_words"],
                      groups=groups, replace=cfg.replace_existing, **_page_settings(cfg.lists))
    timings["writing"] = time.perf_counter() - t
    return manifest, summary
