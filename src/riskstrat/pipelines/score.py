"""``riskstrat score``: score everyone as of a date with the champion models and publish the month's lists.

The steps are :mod:`riskstrat.scoring`'s (the checks, the month's features and scores, ranking, lists,
publishing); this module joins them with the data (:mod:`riskstrat.features.engine`), the registry
and the output folder's lock and audit log, and chooses where the models run (:func:`month_features`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

import riskstrat
from riskstrat.quiet import no_stage
from riskstrat.data.data_end import data_end_of
from riskstrat.data.io import currency_of, data_fingerprint, file_sha256
from riskstrat.data.privacy import (PseudonymKeyError, canonical_lookup, check_key_matches, check_opt_out_match,
                                    match_opt_outs)
from riskstrat.data.records import LinkedRecords
from riskstrat.data.validate import ValidationError
from riskstrat.errors import RiskstratError
from riskstrat.features.costs import check_model_costs
from riskstrat.features._folder import FolderEngine
from riskstrat.features.engine import PandasEngine, open_engine
from riskstrat.features.spark import SparkEngine
from riskstrat.modeling import guards
from riskstrat.modeling.config import ScoringConfig, config_to_dict, load_config, path_override
from riskstrat.modeling.tiers import DEFAULT_GROUPS, GroupRule
from riskstrat.outcomes import check_costs_known
from riskstrat.modeling.models import model_outcome
from riskstrat.registry import tracking
from riskstrat.scoring import lists, publish
from riskstrat.scoring.checks import check_features_match, check_sources_have_rows, models_spec
from riskstrat.scoring.facts import FACT_TABLES, person_facts, read_case_managed, read_next_persons
from riskstrat.scoring.inputs import (as_in_data, month_options, page_words, previous_month, unset_page_words, published_population, read_opt_outs,
                                      read_reidentification)
from riskstrat.scoring.month import (EXPLAIN_CHUNK, BlockedFeatures, InMemoryFeatures, MonthFeatures, cohort_exclusions, month_drift,
                                     outcome_of)
from riskstrat.scoring.spark import SparkMonthFeatures

# What `riskstrat score` loads and catches (the config, the refusals), re-exported so that the command
# imports only its pipeline.
__all__ = ["PublishedButNotTrackedError", "SCORING_COST_OPTIONS", "SCORING_STAGES", "StageClock", "month_features",
           "run_scoring", "stage_report",
           "ScoringConfig", "ValidationError", "load_config", "path_override"]

Stage = Callable[[str], None]


# The ways on from a cost refusal, as a scoring run's user gives them.
SCORING_COST_OPTIONS = ("--currency-rate RATE (currency_rate in the scoring config)",
                        "--without-costs (without_costs: true)")


class PublishedButNotTrackedError(RiskstratError):
    """The month was published, complete, but recording it in MLflow failed; ``manifest`` holds it."""

    def __init__(self, message: str, manifest: dict):
        super().__init__(message)
        self.manifest = manifest


def month_features(engine, index_date, *, min_age: float, max_age: float, spec=None, costs=None) -> MonthFeatures:
    """The features for scoring on ``index_date``, where the models will run: kept in Spark for the Spark
    engine (:class:`riskstrat.scoring.spark.SparkMonthFeatures`), the aggregates in memory and the frame
    derived a block of people at a time for DuckDB (:class:`riskstrat.scoring.month.BlockedFeatures`),
    else the engine's feature frame in memory (:class:`riskstrat.scoring.month.InMemoryFeatures`). ``spec`` (a
    :class:`riskstrat.features.spec.FeatureSpec`, default the clinical one) says which features; ``costs``
    (:class:`riskstrat.features.costs.CostHandling`) converts or blanks the cost features once they are built."""
    changes = costs is not None and costs.changes_features
    if isinstance(engine, SparkEngine):
        return SparkMonthFeatures(engine, index_date, min_age=min_age, max_age=max_age, spec=spec,
                                  costs=costs if changes else None)
    if isinstance(engine, FolderEngine):  # the aggregates kept, the frame derived a block of people at a time
        aggregates = engine.person_aggregates(index_date, min_age=min_age, max_age=max_age, spec=spec, compact=True)
        return BlockedFeatures(aggregates, costs=costs if changes else None)
    frame = engine.features(index_date, min_age=min_age, max_age=max_age, spec=spec)
    return InMemoryFeatures(costs.apply(frame) if changes else frame)


def _counted(counts: dict[str, int]) -> str:
    """``{"died": 3, "not_registered": 0}`` -> ``"died 3"`` (``"none"`` when all are zero)."""
    return ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in counts.items() if n) or "none"


def _file_digest(path) -> dict | None:
    path = Path(path)
    return {"path": str(path.resolve()), "sha256": file_sha256(path)} if path.is_file() else None


# The stages of a scoring run, in order; every second of the run is in one (:class:`StageClock`).
SCORING_STAGES = ("startup", "load", "features", "fingerprint", "lock", "audit", "previous_month", "prediction", "drift",
                  "shap", "facts", "writing", "mlflow", "finish")


class StageClock:
    """Seconds per stage with no second left out: each :meth:`lap` gives the time since the previous
    lap to the stage it names (added up when a stage comes back), so the stages sum to the time since
    the clock started. ``started`` (seconds since the epoch, e.g. the process's start) puts the time
    before the clock (interpreter start and imports) in ``startup``."""

    def __init__(self, timings: dict[str, float], *, started: float | None = None):
        self.timings = timings
        if started is not None:
            timings["startup"] = max(time.time() - started, 0.0)
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._last
        self._last = now


def stage_report(timings: dict[str, float], *, wall: float | None = None) -> str:
    """The stages' seconds on one line, in run order, with their total (and the wall time when given)."""
    names = [n for n in SCORING_STAGES if n in timings] + [n for n in timings if n not in SCORING_STAGES]
    total = sum(timings[n] for n in names)
    parts = [f"{n.replace('_', ' ')} {timings[n]:,.2f}" for n in names]
    return (f"seconds: {', '.join(parts)}; "
            f"total {total:,.2f}" + (f" (wall {wall:,.2f})" if wall is not None else ""))


def _os_error(exc: OSError, what: str) -> RiskstratError:
    """An OS fault while writing, as a refusal a person can act on."""
    where = f" ({exc.filename})" if exc.filename else ""
    advice = {errno.ENOSPC: "the disk is full: free space and run again",
              errno.EDQUOT: "the disk quota is used up: free space and run again",
              errno.EROFS: "the file system is read-only: choose a writable output_dir",
              errno.EACCES: "permission denied: make the output folder writable or choose another output_dir",
              errno.EPERM: "permission denied: make the output folder writable or choose another output_dir",
              errno.ENAMETOOLONG: "a file name is too long: check the practice ids"}.get(exc.errno, exc.strerror
                                                                                              or str(exc))
    return publish.PublishError(f"could not {what}{where}: {advice}. Nothing was published; the month already there "
                        f"(if any) is untouched")

def run_scoring(cfg, as_of, *, stage: Stage = no_stage, records: LinkedRecords | None = None,
                timings: dict[str, float] | None = None, started: float | None = None) -> dict:
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
    not in it (a rerun's manifest is byte-identical): they go to the audit log and MLflow, and into
    ``timings`` when given: seconds per stage (:data:`SCORING_STAGES`), every second of the run in one
    (:class:`StageClock`; ``started``, the process's start in seconds since the epoch, adds ``startup``).
    """
    timings = {} if timings is None else timings
    clock = StageClock(timings, started=started)
    as_of = pd.Timestamp(as_of).normalize()
    month = as_of.strftime("%Y-%m")
    for warning in unset_page_words(cfg.lists):
        stage(warning)
    lists.check_holdout_approval(fraction=cfg.lists.holdout_fraction, approval=cfg.lists.holdout_approval)
    found_end = data_end_of(cfg.data.path, configured=cfg.data.extract_end)
    if found_end.end is not None:  # refuse before loading anything
        _check_current(cfg, as_of, found_end.end, stage=stage)
    key_fingerprint = check_key_matches(cfg.data.path, matches_ids=bool(cfg.opt_out_file or cfg.reidentify_dir))
    risk, cost = _champions(cfg, stage=stage)
    models = [risk] + ([cost] if cost else [])
    # Before any data is read: the features the models were trained on, built as stored with them.
    spec = models_spec(models, stage=stage)
    opted_out = read_opt_outs(cfg.opt_out_file, allow_empty=cfg.allow_empty_opt_out)
    # What the flags read besides the records: refused now, before anything is scored.
    case_managed = read_case_managed(cfg.case_managed_file) if cfg.case_managed_file else None
    next_persons = read_next_persons(cfg.next_extract) if cfg.next_extract else None
    # The engine that builds the features: given records, the configured engine over the data folder.
    # Every row checked, as validation does for the pandas engine: the same data are refused by every engine,
    # including linkage errors in rows no feature reads.
    engine = PandasEngine(records) if records is not None else open_engine(cfg.engine, cfg.data, stage=stage,
                                                                           check_every_row=True)
    records = engine.records  # the duckdb engine's holds persons only: all the rest needs of people
    costs = _models_money(cfg, models, engine, stage=stage)
    found_end = _data_end(cfg, as_of, found_end, engine, stage=stage)
    clock.lap("load")
    features = month_features(engine, as_of, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age, spec=spec,
                              costs=costs)
    try:
        _check_models_fit(cfg, models, features, engine, stage=stage)
        features, in_data, counts = _cohort(cfg, as_of, features, records, opted_out, found_end, stage=stage)
        clock.lap("features")
        inputs = _inputs(cfg, key_fingerprint)
        clock.lap("fingerprint")
        manifest = _publish(cfg, as_of, month, models=models, inputs=inputs, timings=timings, clock=clock, stage=stage,
                            score=lambda: _score_month(
                                cfg, as_of, month, risk=risk, cost=cost, records=records, features=features,
                                opted_out=opted_out, in_data=in_data, counts=counts, data_end=found_end.end,
                                data_end_source=found_end.source, inputs=inputs, costs=costs, clock=clock,
                                facts_of=lambda ids: person_facts(
                                    engine.tables(FACT_TABLES, people=ids), ids, as_of, data_end=found_end.end,
                                    case_managed=case_managed, next_persons=next_persons),
                                stage=stage))
    finally:
        features.release()  # what the engine holds for the month (Spark's cache)
    stage(f"wrote {manifest['counts']['practices']} practice lists to {manifest['output_dir']}")
    clock.lap("finish")
    return manifest


def _check_current(cfg, as_of: pd.Timestamp, end: pd.Timestamp, *, stage: Stage) -> None:
    """Refuse data ending too long before ``as_of`` (:func:`riskstrat.modeling.guards.check_data_currency`),
    or, with ``allow_stale_data``, say so."""
    try:
        guards.check_data_currency(as_of, end, max_lag_days=cfg.max_data_lag_days)
    except guards.StaleDataError:  # only the refusal is allowed away: any other fault stays a fault
        if not cfg.allow_stale_data:
            raise
        stage(f"warning: scoring {(as_of - end).days} days after the data end ({end.date()}), as allowed: "
              f"recent events are missing, so risks are too low")


def _champions(cfg, *, stage: Stage):
    """The risk model and the high-cost model (None unless configured) from the registry."""
    allow = cfg.models.allow_degenerate
    risk = tracking.load_model(cfg.models.risk, alias=cfg.models.alias, uri=cfg.tracking.uri, allow_degenerate=allow)
    cost = (tracking.load_model(cfg.models.high_cost, alias=cfg.models.alias, uri=cfg.tracking.uri,
                                allow_degenerate=allow) if cfg.models.high_cost else None)
    stage(f"loaded {risk.name} v{risk.version}" + (f" and {cost.name} v{cost.version}" if cost else ""))
    return risk, cost


def _models_money(cfg, models, engine, *, stage: Stage):
    """How the models' money is read in this data (:class:`riskstrat.features.costs.CostHandling`), or a refusal."""
    for model in models:  # a high-cost model needs health-care costs in the data
        check_costs_known(model_outcome(model.risk_model), row_counts=engine.row_counts, blank_costs=engine.blank_costs)
    # The models' money read as they were trained: same currency, costs where they had them (or told how on).
    return check_model_costs(models, data_currency=currency_of(cfg.data.path), sources=engine.sources,
                             row_counts=engine.row_counts, blank_costs=engine.blank_costs,
                             currency_rate=cfg.currency_rate, without_costs=cfg.without_costs, stage=stage,
                             options=SCORING_COST_OPTIONS)


def _data_end(cfg, as_of: pd.Timestamp, found_end, engine, *, stage: Stage):
    """The data end as configured, else read from where the event volume stops (a stray late date left
    out), checked for currency."""
    if found_end.end is not None:
        return found_end
    found_end = data_end_of(cfg.data.path, engine)
    if found_end.warning:
        stage(f"warning: {found_end.warning}")
    if found_end.end is not None:
        _check_current(cfg, as_of, found_end.end, stage=stage)
    return found_end


def _check_models_fit(cfg, models, features: MonthFeatures, engine, *, stage: Stage) -> None:
    """Every model's features are built from this data, and no table they read is empty (unless allowed)."""
    for model in models:
        check_features_match(model.risk_model, features, engine)
    empty_sources = check_sources_have_rows([m.risk_model for m in models], dict(engine.row_counts),
                                            allow=cfg.allow_empty_sources)
    if empty_sources:
        stage(f"warning: scoring with no rows in {', '.join(empty_sources)}, as allowed (allow_empty_sources)")


def _cohort(cfg, as_of: pd.Timestamp, features: MonthFeatures, records: LinkedRecords, opted_out, found_end, *,
            stage: Stage) -> tuple[MonthFeatures, set, dict]:
    """The month's features without the people who opted out, the opted-out ids found in the data, and the
    manifest's counts of who is scored (cohort exclusions, opt-outs)."""
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
    return features, in_data, counts


def _inputs(cfg, key_fingerprint) -> dict:
    """What the month was made from, for the manifest and the audit log: the data's fingerprint, the key's,
    the opt-out file's and look-ups' hashes, and the config."""
    return {"data": data_fingerprint(cfg.data.path), "pseudonym_key_fingerprint": key_fingerprint,
            "opt_out_file": _file_digest(cfg.opt_out_file) if cfg.opt_out_file else None,
            "reidentify_files": ({p.name: file_sha256(p) for p in sorted(Path(cfg.reidentify_dir).glob("*.csv"))}
                                 if cfg.reidentify_dir and Path(cfg.reidentify_dir).is_dir() else None),
            "config": config_to_dict(cfg)}


def _publish(cfg, as_of: pd.Timestamp, month: str, *, models, inputs: dict, timings: dict, clock: StageClock,
             score: Callable[[], tuple[dict, pd.DataFrame]], stage: Stage) -> dict:
    """Under the output folder's lock: refuse an unwanted republish, ``score()`` (which writes the month),
    then record it in MLflow, each step in the audit log (the order :func:`run_scoring` describes)."""
    audit = {"month": month, "as_of": str(as_of.date()),
             "models": {m.name: {"version": m.version, "run_id": m.run_id} for m in models}}
    with publish.output_lock(cfg.output_dir) as root:
        try:  # before anything is scored: a published month is replaced only when asked
            publish.check_republish(root, month, replace=cfg.replace_existing, models=audit["models"])
        except publish.PublishError as exc:
            publish.append_audit(root, "refused", **audit, error=str(exc))
            raise
        clock.lap("lock")
        publish.append_audit(root, "started", **audit, inputs={k: v for k, v in inputs.items() if k != "config"})
        clock.lap("audit")
        try:
            manifest, summary = score()
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
        clock.lap("audit")
        try:
            # The manifest as published (with its files' hashes): monitor checks the folder's copy against it.
            run_id = tracking.log_scoring_run(json.loads(written), summary, cfg, timings=dict(timings))
        except Exception as exc:  # the month is out, complete: say so, and that a rerun is safe
            publish.append_audit(root, "tracking_failed", **audit, error=f"{type(exc).__name__}: {exc}")
            raise PublishedButNotTrackedError(
                f"the {month} lists were published to {out_dir} and are complete, but recording the run in MLflow "
                f"({cfg.tracking.uri or 'default store'}) failed: {type(exc).__name__}: {exc}. The audit log "
                f"{root / publish.AUDIT_LOG} records the month; run the same command again once MLflow works "
                f"(a rerun writes the same files and records it)", manifest) from exc
        clock.lap("mlflow")
        publish.append_audit(root, "tracked", **audit, mlflow_run_id=run_id)
        clock.lap("audit")
    clock.lap("lock")  # letting the lock go
    return manifest

def _score_month(cfg, as_of, month, *, risk, cost, records, features, opted_out, in_data, counts, data_end,
                 data_end_source, inputs, costs, clock, facts_of, stage) -> tuple[dict, pd.DataFrame]:
    """Score, explain and write one month (the caller holds the output folder's lock); returns the
    manifest and the commissioners' summary. ``costs`` (:class:`riskstrat.features.costs.CostHandling`) says
    which currency the amounts are in (the models' when converted); ``facts_of(person_ids)`` gives the
    listed people's :class:`riskstrat.scoring.facts.PersonFacts`."""
    currency = costs.currency
    prev_month, prev, unverified = previous_month(cfg.output_dir, month, stage=stage,
                                                  allow_unverified=cfg.allow_unverified_previous_month)
    previous_scored = len(prev) if prev is not None else None
    publish.check_population(len(features), previous_scored, max_shrink=cfg.max_population_shrink,
                             allow=cfg.allow_population_shrink, previous_month=prev_month)
    if prev_month is None:  # a rerun of this month: compare with what it published
        published = published_population(cfg.output_dir, month, stage=stage,
                                          allow_unverified=cfg.allow_unverified_previous_month)
        publish.check_population(len(features), published,
                                 max_shrink=cfg.max_population_shrink, allow=cfg.allow_population_shrink,
                                 previous_month=f"{month} as published")
    clock.lap("previous_month")
    size = cfg.chunk_size
    # One pass of each model per person: the calibrated risk comes from the raw score, which also
    # ranks (the same order as the calibrated risk, without its ties).
    scores = features.score(risk.risk_model, cost.risk_model if cost else None, chunk_size=size)
    groups = [GroupRule.model_validate(g) for g in cfg.lists.groups] if cfg.lists.groups else DEFAULT_GROUPS
    population = lists.rank_population(scores.people, scores.risk, high_cost_risk=scores.high_cost_risk,
                                       predicted_cost=scores.predicted_cost, tier_cutoffs=cfg.lists.tiers,
                                       groups=groups, rank_score=scores.raw * risk.risk_model.rank_direction(),
                                       currency=currency)
    clock.lap("prediction")
    drift = month_drift(risk.risk_model, features, scores.risk, stage=stage)
    clock.lap("drift")

    # Explain the people who go on lists (exact TreeSHAP is ~1000x slower than prediction), or
    # everyone with lists.explain = "all".
    if cfg.lists.explain == "all":
        explain, who = None, "people"
    else:
        listed = population.loc[lists.listed_mask(population, list_size=cfg.lists.list_size), "person_id"]
        explain, who = pd.Index(listed.to_numpy()), "listed people"
    # Words of degree ("much use of services") against the whole month's population, whoever is explained.
    thresholds = features.reason_thresholds()
    reasons, max_error, n_explained = features.explain(
        risk.risk_model, scores, explain, n=cfg.lists.reasons, currency=currency,
        demographic_reasons=cfg.lists.demographic_reasons, thresholds=thresholds,
        money_reasons=outcome_of(risk.risk_model)["name"] == "high_cost", chunk_size=min(size, EXPLAIN_CHUNK),
        stage=stage if cfg.lists.explain == "all" else no_stage)
    # Nothing below reads the features: let them go before the facts and the lists (a third of the memory at 5M
    # people); the scores' ``people`` frame is the features too.
    features.release()
    del scores
    clock.lap("shap")
    shap_s = clock.timings["shap"]
    stage(f"explained {n_explained:,} {who} (SHAP additivity error {max_error:.1e}"
          + (f", {n_explained / shap_s:,.0f} people/s)" if cfg.lists.explain == "all" and n_explained
             and shap_s > 0 else ")"))
    # What a clinician checks first, for the listed people only (read from the engine's validated tables).
    facts = facts_of(population.loc[lists.listed_mask(population, list_size=cfg.lists.list_size), "person_id"])
    clock.lap("facts")
    if prev is not None:
        # Last month's ids as this month's data write them (one canonical form).
        in_population = canonical_lookup(population["person_id"])
        prev = prev.assign(person_id=as_in_data(prev["person_id"].astype(str), in_population)[0])
        if in_data:
            # Someone who opted out since last month must not reappear in this month's changes as "left".
            prev = prev.loc[~prev["person_id"].isin(in_data)]
    # The processes that will write the lists start now, beside the run's own work on them.
    options = month_options(cfg)
    writers = lists.start_writers(population["practice_id"], options=options)
    population = lists.mark_lists(population, list_size=cfg.lists.list_size, month=month, previous=prev,
                                  reasons=reasons, holdout_fraction=cfg.lists.holdout_fraction,
                                  seed=cfg.lists.holdout_seed, holdout_exempt_tiers=cfg.lists.holdout_exempt_tiers,
                                  facts=facts.table, exclude_flags=cfg.lists.exclude_flags)
    practice_lists = lists.practice_lists(population, list_size=cfg.lists.list_size, facts=facts.table)
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
            lookup[column], missed = as_in_data(lookup[column], everyone)
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
        "currency": currency, "costs": costs.as_dict(), "outcome": outcome_of(risk.risk_model),
        "counts": {"in_data": len(records.persons), "rows_dropped_by_validation": validation.get("rows_dropped"),
                   "empty_tables": validation.get("empty_tables"), **counts,
                   "reidentify_rows_matching_no_one": lookup_unmatched, "scored": len(population),
                   "listed": int(population["listed"].sum()), "explained": n_explained,
                   "held_out": int(population["holdout"].sum()),
                   "left_off_for_flags": int(population["left_off"].notna().sum()),
                   "practices": len([p for p in practice_lists if p != lists.NO_PRACTICE]), "tiers": tier_counts,
                   "new_this_month": int(population["new_this_month"].sum()),
                   "no_registered_practice": int(no_practice.sum()),
                   "no_registered_practice_listed": int((no_practice & population["listed"]).sum())},
        "no_registered_practice": lists.NO_PRACTICE_NOTE,
        "previous_month": prev_month, "previous_month_unverified": unverified,
        "shap_additivity_max_error": max_error, "drift": drift,
        "output_dir": str(out_dir),
        "holdout": lists.holdout_rule(fraction=cfg.lists.holdout_fraction, seed=cfg.lists.holdout_seed,
                                      exempt_tiers=cfg.lists.holdout_exempt_tiers,
                                      approval=cfg.lists.holdout_approval),
        "flags": facts.as_dict(exclude=cfg.lists.exclude_flags),
        "summary_small_numbers": {"suppress_below": cfg.lists.suppress_below,
                                  "round_counts_to": cfg.lists.round_counts_to},
    }
    lists.write_month(out_dir, population=population, practice_lists=practice_lists, summary=summary,
                      manifest=manifest, reidentify=reidentify, changes=changes,
                      words=page_words(cfg.lists, outcome=manifest["outcome"], groups=groups),
                      options=options, writers=writers)
    clock.lap("writing")
    return manifest, summary
