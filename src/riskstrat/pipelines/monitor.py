"""``riskstrat monitor``: the months published by ``riskstrat score``, checked against what happened.

Wiring only: the months' files (``<output_dir>/YYYY-MM/manifest.json`` and ``population.parquet``),
the later data (:mod:`riskstrat.data.load`), each month's model's outcome definition from the registry
(:func:`registered_outcome`), the computation (:mod:`.monitor`), the report (:mod:`riskstrat.report`) and MLflow.

Nothing in a month's folder is believed unverified (:mod:`riskstrat.scoring.published`): every manifest is
checked for shape and against its folder's name, every population file against the SHA-256 its
manifest records, and each assessed month's models against this registry (:func:`check_provenance`)
before any data are read.
"""

from __future__ import annotations

import json

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from riskstrat import report
from riskstrat.data.data_end import data_end_of
from riskstrat.data.io import check_replaceable, data_fingerprint
from riskstrat.data.load import load_data
from riskstrat.data.privacy import check_key_matches, match_opt_outs
from riskstrat.errors import RiskstratError
from riskstrat.evaluation.monitor import MonthResult, ScoredMonth, label_population, monitor_month, split_by_maturity
from riskstrat.evaluation.worklist_outcomes import outcomes_by_status
from riskstrat.modeling.tiers import LOWEST_TIER
from riskstrat.modeling.models import model_outcome
from riskstrat.outcomes import Outcome, parse_outcome
from riskstrat.registry import tracking
from riskstrat.scoring import publish
from riskstrat.scoring.inputs import read_opt_outs
from riskstrat.scoring.published import MANIFEST, POPULATION, PublishedMonthError, read_manifest, read_population, verify_file
from riskstrat.pipelines.worklist import read_status_events

# What `riskstrat monitor` loads, catches and prints with, re-exported: the command imports only its pipeline.
from riskstrat.data.validate import ValidationError as ValidationError
from riskstrat.modeling.config import ScoringConfig as ScoringConfig
from riskstrat.modeling.config import load_config as load_config
from riskstrat.modeling.config import path_override as path_override
from riskstrat.report import fmt as fmt

Stage = Callable[[str], None]
# Below this share of a month's scored people found in the data, the data are not that population.
MIN_FOUND = 0.5


class NothingToMonitorError(RiskstratError):
    """No scored month before the date, or none whose outcome horizon the data cover yet."""


class MonitorDataMismatchError(RiskstratError):
    """The data do not hold the people a month scored (another key, another population)."""


class MonthProvenanceError(PublishedMonthError):
    """A month's manifest names models, runs or an outcome that this registry does not hold as it says."""


def scored_months(output_dir, *, before) -> list[ScoredMonth]:
    """The months published in ``output_dir`` (every month link, or month folder of an earlier
    riskstrat, named ``YYYY-MM``) scored before ``before``, oldest first.

    Each month's files are read from the folder :func:`riskstrat.scoring.publish.month_run` resolves
    (:attr:`ScoredMonth.folder`), never through the month link again. Every month's manifest is
    read with :func:`riskstrat.scoring.published.read_manifest`: one that is missing (a month link or
    folder without one is refused, not skipped), not a regular file, truncated or inconsistent with
    the month's name is refused (:class:`riskstrat.scoring.published.ManifestError`), whatever its date,
    since its date cannot be believed.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return []
    months = []
    # Through publish.month_run: a month link riskstrat did not make is refused, never read.
    for name, folder in publish.published_months(root):
        month = ScoredMonth.from_manifest(read_manifest(folder / MANIFEST, month=name), folder=folder)
        if month.as_of < pd.Timestamp(before):
            months.append(month)
    return months


def check_provenance(month: ScoredMonth, *, uri: str | None) -> None:
    """Refuse (:class:`MonthProvenanceError`, or :class:`riskstrat.registry.tracking.RegistryError` for a
    version the registry lacks) a month whose manifest's models are not this registry's: each
    model's version must exist here, with the training run id the manifest records, and the risk
    model's training run must be tagged with the outcome the manifest names."""
    where = f"{month.month}/{MANIFEST}"
    for name, recorded in month.manifest["models"].items():
        try:
            registered = tracking.registered_version(name, recorded["version"], uri=uri)
        except tracking.RegistryError as exc:
            raise tracking.RegistryError(
                f"{where} says the month was scored with {name} version {recorded['version']}, but {exc}. Point "
                f"tracking.uri at the registry the month was scored with, or rescore the month") from None
        if registered.run_id != recorded["run_id"]:
            raise MonthProvenanceError(
                f"{where} says {name} version {recorded['version']} was trained in run {recorded['run_id']}, but this "
                f"registry's version {registered.version} was trained in run {registered.run_id}: the month was "
                f"scored with another registry's model of the same name, or its manifest was edited. Point "
                f"tracking.uri at the registry the month was scored with, or rescore the month")
        outcome = month.manifest["outcome"]["name"]
        if name == month.model_name and registered.target is not None and registered.target != outcome:
            raise MonthProvenanceError(
                f"{where} says the month's risks are of {outcome!r}, but {name} version {registered.version} in this "
                f"registry was trained for {registered.target!r}: labelling with either would compare unlike "
                f"things. Point tracking.uri at the registry the month was scored with, or rescore the month")


def _comparable(manifest: dict) -> str:
    return json.dumps(manifest, sort_keys=True, default=str)


def check_recorded(month: ScoredMonth, *, experiment: str, uri: str | None) -> None:
    """Refuse (:class:`MonthProvenanceError`) a month whose ``manifest.json`` is not one the registry
    recorded when the month was published (:func:`riskstrat.registry.tracking.recorded_manifests`): the
    manifest carries the hash of every file, so a population edited together with its manifest's hash
    would pass the file check; the copy in MLflow is out of the output folder's writers' reach."""
    as_of = str(month.as_of.date())
    recorded = tracking.recorded_manifests(as_of, experiment=experiment, uri=uri)
    where = f"{month.month}/{MANIFEST}"
    if not recorded:
        raise MonthProvenanceError(
            f"{where}: no scoring run as of {as_of} in the experiment {experiment!r} of this registry recorded the "
            f"month, so its manifest cannot be checked. If publishing said MLflow failed (audit.jsonl: "
            f"tracking_failed), run the same score command again to record it; otherwise point tracking.uri (and "
            f"tracking.experiment) at the registry the month was scored with")
    if _comparable(month.manifest) not in {_comparable(m) for m in recorded}:
        raise MonthProvenanceError(
            f"{where} is not the manifest recorded in MLflow when the month was published ({len(recorded)} scoring "
            f"run{'s' if len(recorded) != 1 else ''} as of {as_of}): it was edited after publishing, perhaps "
            f"together with a file and its hash. Restore the month from a backup, or rescore it")


def registered_outcome(name: str, version: str, *, uri: str | None) -> Outcome:
    """The outcome ``name`` version ``version`` was trained for, from its training run's configuration
    (``config.json``'s ``target``, the settings the model's metadata describe): no model is unpickled. A run
    that logged no configuration, or one this riskstrat cannot read, gives it from the model itself."""
    run_id = tracking.registered_version(name, version, uri=uri).run_id
    target = (tracking.training_config(run_id, uri=uri) or {}).get("target")
    if isinstance(target, dict):
        try:
            return parse_outcome(target)
        except ValueError:  # pydantic's ValidationError: settings this riskstrat no longer has
            pass
    return model_outcome(tracking.load_model(name, version=version, uri=uri).risk_model)


def _check_outcome(month: ScoredMonth, outcome) -> None:
    """The loaded model's outcome (name and horizon) must be the one the month's manifest names."""
    recorded = month.manifest["outcome"]
    if outcome.name != recorded["name"] or int(outcome.horizon_days) != int(recorded["horizon_days"]):
        raise MonthProvenanceError(
            f"{month.month}/{MANIFEST} says the month's risks are of {recorded['name']!r} within "
            f"{recorded['horizon_days']} days, but {month.model_name} version {month.model_version} predicts "
            f"{outcome.name!r} within {outcome.horizon_days} days. Point tracking.uri at the registry the month was "
            f"scored with, or rescore the month")


def _pending_words(pending: list[ScoredMonth]) -> str:
    return "; ".join(f"{m.month} (scored {m.as_of.date()}, matures when the data reach "
                     f"{(m.matures_on - pd.Timedelta(days=1)).date()})" for m in pending)


@dataclass
class MonitoringRun:
    as_of: str
    data_end: pd.Timestamp
    results: list[MonthResult]
    assessed: list[ScoredMonth]
    pending: list[ScoredMonth]
    out_dir: Path
    run_id: str | None
    worklist: dict = field(default_factory=dict)  # month -> outcomes by worklist status (observational)


def run_monitoring(cfg, as_of, *, out_dir: str | Path | None = None, n_boot: int = 200, seed: int = 0,
                   min_group_events: int = 20, log: bool = True, records=None, worklist_db: str | None = None,
                   stage: Stage = lambda m: None) -> MonitoringRun:
    """Monitor every month in ``cfg.output_dir`` scored before ``as_of`` whose horizon has matured.

    ``cfg`` is the scoring configuration (:class:`riskstrat.modeling.config.ScoringConfig`): the later data
    (``data``), the scored months (``output_dir``), the registry (``tracking.uri``) and opt-outs
    (``opt_out_file``: people who have opted out since are left out). Only events before ``as_of``
    and up to the data end are used. Refuses (:class:`NothingToMonitorError`) when no month has
    matured, naming when each will. Refuses a month whose files cannot be believed: a manifest
    that does not parse or agree with its folder (:class:`riskstrat.scoring.published.ManifestError`), a
    population whose SHA-256 is not the manifest's (:class:`riskstrat.scoring.published.TamperedFileError`),
    models, runs or an outcome this registry does not hold as the manifest says
    (:class:`MonthProvenanceError`, :class:`riskstrat.registry.tracking.RegistryError`); all before any data
    are read. Writes the report and its tables to ``out_dir`` (default
    ``riskstrat-output/monitoring/<as_of>``) and logs a monitoring run (aggregates only).

    With ``worklist_db`` (the URL ``riskstrat serve --db`` uses), each month's listed people shown are
    also compared by the status the worklist recorded in the horizon (contacted or enrolled against
    listed but not contacted: :func:`riskstrat.evaluation.worklist_outcomes.outcomes_by_status`),
    labelled observational, beside the randomised hold-out comparison.
    """
    as_of = pd.Timestamp(as_of).normalize()
    if out_dir:  # before any work: a folder riskstrat did not write is never replaced
        check_replaceable(out_dir, "monitoring report")
    months = scored_months(cfg.output_dir, before=as_of)
    if not months:
        raise NothingToMonitorError(f"no month scored before {as_of.date()} in {cfg.output_dir}: monitoring compares "
                                    f"the months `riskstrat score` published there with what happened next")
    found_end = data_end_of(cfg.data.path, configured=cfg.data.extract_end)
    if found_end.end is None:  # read from where the event volume stops, a stray late date left out
        records = records if records is not None else load_data(cfg.data, stage=stage)
        found_end = data_end_of(cfg.data.path, records)
        if found_end.warning:
            stage(f"warning: {found_end.warning}")
    data_end, data_end_source = found_end.end, found_end.source
    if data_end is None:
        raise NothingToMonitorError(f"cannot tell where the data in {cfg.data.path} end: set data.extract_end")
    # Nothing after the monitoring date is used, even if the data run past it.
    until = min(pd.Timestamp(data_end).normalize(), as_of - pd.Timedelta(days=1))
    assessed, pending = split_by_maturity(months, until)
    stage(f"{len(months)} scored month{'s' if len(months) != 1 else ''} before {as_of.date()}; data to {until.date()}: "
          f"{len(assessed)} matured" + (f", {len(pending)} not yet" if pending else ""))
    if not assessed:
        raise NothingToMonitorError(
            f"no scored month has matured: the data run to {until.date()}, and outcomes are known only once the "
            f"data cover a month's whole horizon. Not yet: {_pending_words(pending)}. Run monitor again with a "
            f"later extract")
    for m in assessed:  # before any data are read: the files and models are what the manifests say
        verify_file(m.folder, POPULATION, m.manifest)
        check_provenance(m, uri=cfg.tracking.uri)
        check_recorded(m, experiment=cfg.tracking.experiment, uri=cfg.tracking.uri)
    key_fingerprint = check_key_matches(cfg.data.path, matches_ids=bool(cfg.opt_out_file))
    for m in assessed:
        scored_key = m.manifest.get("pseudonym_key_fingerprint")
        if key_fingerprint and scored_key and scored_key != key_fingerprint:
            raise MonitorDataMismatchError(
                f"{m.month} was scored on data pseudonymised under another key (fingerprint {scored_key}) than "
                f"{cfg.data.path} ({key_fingerprint}): nobody would match. Use the data set imported with that key")
    # Read before the data: a wrong URL is refused before minutes of loading.
    status_events = read_status_events(worklist_db) if worklist_db else None
    records = records if records is not None else load_data(cfg.data, stage=stage)
    opted_out = read_opt_outs(cfg.opt_out_file, allow_empty=cfg.allow_empty_opt_out)
    in_data = match_opt_outs(records.persons["person_id"], opted_out).matched

    models, results, by_status = {}, [], {}
    for m in assessed:
        key = (m.model_name, m.model_version)
        if key not in models:
            try:
                models[key] = registered_outcome(m.model_name, m.model_version, uri=cfg.tracking.uri)
            except tracking.RegistryError as exc:
                raise tracking.RegistryError(
                    f"{m.month} was scored with {m.model_name} version {m.model_version}, whose outcome definition "
                    f"labels it, but the registry cannot give it: {exc}. Point tracking.uri at the registry "
                    f"the month was scored with") from exc
        outcome = models[key]
        _check_outcome(m, outcome)
        # Read as verified (hashed again: the data took a while to load).
        _, population = read_population(m.folder, month=m.month, manifest=m.manifest)
        population["person_id"] = population["person_id"].astype(str)
        opted = population["person_id"].isin({str(i) for i in in_data})
        population = population.loc[~opted].reset_index(drop=True)
        y = label_population(population, records, outcome, index_date=m.as_of, extract_end=until)
        found = population["person_id"].isin(records.persons["person_id"].astype(str))
        if len(population) and found.mean() < MIN_FOUND:
            raise MonitorDataMismatchError(
                f"only {int(found.sum()):,} of the {len(population):,} people scored in {m.month} are in "
                f"{cfg.data.path}: these are not the data the month was scored from (another population, or ids "
                f"pseudonymised with another key)")
        counts = {"scored": len(population) + int(opted.sum()), "opted_out_since": int(opted.sum()),
                  "not_in_data": int((~found).sum()), "labelled": int(y.notna().sum()),
                  "no_label": int((found & y.isna()).sum())}
        rule = m.manifest.get("holdout") or {}
        exempt = rule.get("exempt_tiers", []) if rule.get("fraction") else None
        # Highest tier first: the smallest cumulative fraction (the manifest's keys are sorted by name).
        cutoffs = (m.manifest.get("config", {}).get("lists", {}) or {}).get("tiers") or {}
        tiers = sorted(cutoffs, key=cutoffs.get) + [LOWEST_TIER]
        result = monitor_month(population, y, month=m.month, tier_order=tiers, exempt_tiers=exempt,
                               outcome_words=outcome.words, n_boot=n_boot, seed=seed,
                               min_group_events=min_group_events, counts=counts)
        results.append(result)
        if status_events is not None:
            by_status[m.month] = outcomes_by_status(population, y, status_events, as_of=m.as_of,
                                                    horizon_days=outcome.horizon_days, outcome_words=outcome.words)
        h = result.headline
        stage(f"{m.month} ({m.model_name} v{m.model_version}, {outcome.words} within {outcome.horizon_days} days): "
              f"{h['n']:,} labelled, {h['events']:,} events, O/E {h.get('o_e_ratio', float('nan')):.2f}, "
              f"AUROC {h['auroc']:.3f}")

    fingerprint = data_fingerprint(cfg.data.path)
    context = {"as_of": str(as_of.date()), "data_end": str(until.date()), "data_end_source": data_end_source,
               "data_dir": str(Path(cfg.data.path).resolve()), "data_sha256": fingerprint["sha256"],
               "lists_dir": str(Path(cfg.output_dir).resolve()), "created": dt.date.today().isoformat(),
               "n_boot": n_boot, "min_group_events": min_group_events, "opt_out_file": bool(cfg.opt_out_file),
               "outcomes": {m.month: models[(m.model_name, m.model_version)].words for m in assessed},
               "horizons": {m.month: models[(m.model_name, m.model_version)].horizon_days for m in assessed}}
    out_dir = Path(out_dir) if out_dir else Path("riskstrat-output/monitoring") / str(as_of.date())
    report.write_monitoring(out_dir, results, assessed=assessed, pending=pending, context=context,
                            worklist=by_status or None)
    stage(f"wrote the monitoring report and tables to {out_dir}")
    run_id = None
    if log:
        flat = {}
        for r in results:
            flat.update({f"{r.month}.{k}": v for k, v in r.headline.items()})
            if r.holdout:
                flat.update({f"{r.month}.holdout.{k}": v for k, v in r.holdout.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for month, w in by_status.items():  # counts and rates per status group only
            flat.update({f"{month}.worklist.{row['status']}.{k}": row[k] for row in w["rows"]
                         for k in ("n", "events", "per_1000")})
        tags = {"riskstrat.as_of": context["as_of"], "riskstrat.data_sha256": context["data_sha256"],
                "riskstrat.data_end": context["data_end"],
                "riskstrat.months_assessed": ",".join(m.month for m in assessed),
                "riskstrat.months_pending": ",".join(m.month for m in pending),
                "riskstrat.models": ",".join(sorted({f"{m.model_name}/{m.model_version}" for m in assessed}))}
        run_id = tracking.log_monitoring_run(tags=tags, metrics=flat, folder=out_dir, uri=cfg.tracking.uri)
        stage(f"logged monitoring run {run_id}")
    return MonitoringRun(str(as_of.date()), until, results, assessed, pending, out_dir, run_id, by_status)
