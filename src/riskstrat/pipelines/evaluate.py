"""``riskstrat evaluate``: a registered model on any data set at any matured index date.

Wiring only: the registry (:mod:`riskstrat.registry.tracking`), the data (:mod:`riskstrat.data.load`), the
evidence (:func:`evaluate_scores`), the report and card (:mod:`riskstrat.report`), MLflow.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from riskstrat import report
from riskstrat.data.data_end import data_end_of
from riskstrat.data.io import check_replaceable, currency_of, data_fingerprint, dataset_metadata
from riskstrat.data.load import load_data
from riskstrat.data.privacy import FINGERPRINT_FIELD
from riskstrat.data.synth.truth import oracle_risk, read_truth
from riskstrat.data.validate import blank_costs
from riskstrat.errors import RiskstratError
from riskstrat.evaluation import gate as gates
from riskstrat.evaluation._evaluate import CANDIDATE, Evaluation, evaluate_scores, headline_table
from riskstrat.evaluation._groups import subgroup_attributes
from riskstrat.evaluation._overlap import TrainingOverlap, labels_end, training_overlap
from riskstrat.evaluation._shap import SAMPLE_SIZE, ShapSample, shap_figures, shap_sample
from riskstrat.features.reference import build_features
from riskstrat.features.costs import check_model_costs
from riskstrat.modeling.config import CALIBRATION_BAND_RESAMPLES, DataConfig
from riskstrat.modeling.design import characteristics, minimum_sample_size, participant_flow
from riskstrat.modeling.models import model_outcome, prior_use_score
from riskstrat.outcomes import HighCost, check_costs_known
from riskstrat.outcomes.labels import check_horizon, future_cost
from riskstrat.registry import tracking
from riskstrat.scoring.checks import check_features_match, models_spec

# What `riskstrat evaluate` catches and prints with, re-exported: the command imports only its pipeline.
from riskstrat.data.validate import ValidationError as ValidationError
from riskstrat.outcomes.labels import CensoredIndexDateError as CensoredIndexDateError
from riskstrat.report import fmt as fmt

Stage = Callable[[str], None]


class TooFewEventsError(RiskstratError):
    """The evaluation population has too few outcome events for a result worth reading."""


class OutcomeMismatchError(RiskstratError):
    """The model compared with (``--against``) predicts another outcome than the model evaluated."""


def training_design_of(loaded, *, uri: str | None = None) -> dict:
    """What the loaded model (:class:`riskstrat.registry.tracking.LoadedModel`) was trained on
    (:func:`riskstrat.modeling.train.training_design`). A model trained before riskstrat recorded it gets its
    dates and horizon from its training run's logged configuration, and no split rule (whether a
    person was in training is then unknown); ``{}`` when neither exists."""
    design = loaded.risk_model.metadata.get("training_design")
    if design:
        return design
    config = tracking.training_config(loaded.run_id, uri=uri) or {}
    dates, target = (config.get("index_dates") or {}), (config.get("target") or {})
    if not isinstance(dates, dict) or not dates.get("train") or target.get("horizon_days") is None:
        return {}
    return {"index_dates": [str(d) for d in dates["train"]], "test_date": dates.get("test"),
            "horizon_days": int(target["horizon_days"])}


def global_drivers(risk_model, X: pd.DataFrame, *, n: int = SAMPLE_SIZE, seed: int = 0, top: int = 10,
                   n_dependence: int = 3, figures: bool = True, stage: Stage = lambda m: None
                   ) -> tuple[pd.DataFrame | None, dict, ShapSample | None]:
    """Mean |SHAP| (log-odds) per feature on a seeded sample of ``n`` rows, largest first, the
    SHAP figures (summary and the dependence of the top ``n_dependence``: :func:`shap_figures`; none
    without ``figures``) and the sample (:func:`shap_sample`); LightGBM only, otherwise ``(None, {}, None)``."""
    sample = shap_sample(risk_model, X, n=n, seed=seed, stage=stage)
    if sample is None:
        return None, {}, None
    mean_abs = sample.mean_abs().head(top)
    drivers = mean_abs.rename("mean_abs_shap").rename_axis("feature").reset_index()
    return drivers, shap_figures(sample, n_dependence=n_dependence) if figures else {}, sample


# The algorithm and its calibration in a reader's words (RiskModel.kind, the calibrator's method).
ALGORITHMS = {"lightgbm": "LightGBM (gradient-boosted decision trees)", "logistic": "logistic regression"}
CALIBRATIONS = {"sigmoid": "Platt scaling (a logistic regression of the outcome on the model's score)",
                "isotonic": "isotonic regression (a stepwise increasing map of the model's score)"}


def model_design(loaded, *, uri: str | None = None) -> dict:
    """What the model's own metadata (and, for a model trained before it recorded them, its training run's
    logged metrics) say of its design: algorithm, calibration, dates, split, row counts, events per
    candidate predictor, Riley et al.'s minimum sample size, parameters and tuning. Aggregates only."""
    model = loaded.risk_model
    meta = model.metadata
    summary = meta.get("training_summary") or {}
    counts = dict(summary.get("counts") or {})
    if not counts:  # a model from before training_summary: the run's logged data.* metrics
        logged = tracking.training_run_record(loaded.run_id, uri=uri)["metrics"]
        counts = {k.removeprefix("data."): int(v) for k, v in logged.items() if k.startswith("data.")}
    method = getattr(model.calibrator, "method", None) or summary.get("calibration")
    predictors = int(summary.get("candidate_predictors") or len(model.feature_names))
    out = {"algorithm": ALGORITHMS.get(model.kind, model.kind), "kind": model.kind,
           "calibration": CALIBRATIONS.get(method, method) if method else None, "calibration_method": method,
           "trees": meta.get("best_iteration"), "parameters": meta.get("lightgbm_params") or {},
           "auto": meta.get("lightgbm_auto") or [], "search": summary.get("search"),
           "training": training_design_of(loaded, uri=uri), "counts": counts, "candidate_predictors": predictors,
           "flow": summary.get("flow") or [], "characteristics": summary.get("characteristics") or {},
           "refit": {k: v for k, v in (meta.get("refit") or {}).items() if k != "inherited"} or None,
           "riskstrat_version": meta.get("riskstrat_version")}
    rows, events = counts.get("train_rows"), counts.get("train_positive")
    if rows and events and 0 < events < rows:
        out["events_per_predictor"] = events / predictors
        out["sample_size"] = minimum_sample_size(events / rows, predictors)
    return out


def registry_status(loaded, *, uri: str | None = None) -> dict | None:
    """:func:`riskstrat.registry.tracking.version_status` of the loaded version, or None when the registry
    cannot say (the report then says its status is unknown)."""
    try:
        return tracking.version_status(loaded.name, loaded.version, uri=uri)
    except RiskstratError:
        return None


@dataclass
class EvaluationRun:
    evaluation: Evaluation
    out_dir: Path
    candidate: object               # tracking.LoadedModel
    against: object | None
    outcome: object
    as_of: str
    run_id: str | None
    card_path: Path | None
    gate_path: Path | None
    gate: object                    # list of gate.Criterion: how the default/checked-in gate reads this evaluation
    drivers: pd.DataFrame | None
    dependence: dict = field(default_factory=dict)   # SHAP figures (summary, dependence of the top drivers), by file stem
    overlap: TrainingOverlap | None = None   # the date and people against the model's training (in-sample?)
    unseen: dict | None = None      # with include_seen: the unseen people's n, n_events and headline (or why none)


def run_evaluation(model: str, data_dir: str | Path, as_of, *, against: str | None = None,
                   out_dir: str | Path | None = None, card_dir: str | Path | None = "models",
                   uri: str | None = None, n_boot: int = 200, seed: int = 0, min_events: int = 100,
                   min_group_events: int = 20, log: bool = True, records=None, include_seen: bool = False,
                   currency_rate: float | None = None, without_costs: bool = False, figures: bool = True,
                   band_resamples: int = CALIBRATION_BAND_RESAMPLES, stage: Stage = lambda m: None) -> EvaluationRun:
    """Evaluate ``model`` (``NAME@ALIAS`` or ``NAME/VERSION``) at ``as_of`` on the data in ``data_dir``.

    The figures are on the people the model was neither trained nor calibrated on (recomputed from the
    split rule it records; a model that records none is evaluated on everyone, saying so); with
    ``include_seen`` on everyone, with the unseen people's headline beside them. The report says how
    many people were excluded and at which training dates they had rows, and whether ``as_of`` is
    in-sample in time (a training date, or before the end of the last training label window).

    Refuses (:class:`~riskstrat.outcomes.labels.CensoredIndexDateError`) when the outcomes after ``as_of`` have
    not matured, (:class:`TooFewEventsError`) with fewer than ``min_events`` events, and
    (:class:`OutcomeMismatchError`) a model to compare with of another outcome, and
    (:class:`riskstrat.features.costs.CostCurrencyError`) data whose money the model would misread (another
    currency, or no costs where it had them) unless ``currency_rate`` converts the data's amounts
    (multiplied by it into the model's currency) or ``without_costs`` leaves the cost features missing. Writes the
    report, tables and figures to ``out_dir``, the model card draft and a default gate to
    ``card_dir/<name>/`` (None: no card), and logs an evaluation run linked to the model version.
    ``figures`` (``evaluation.figures``): draw the figures; ``band_resamples``
    (``evaluation.calibration_band_resamples``): the smoothed calibration band's bootstrap resamples.
    """
    as_of = pd.Timestamp(as_of).normalize()
    if out_dir:  # before any work: a folder riskstrat did not write is never replaced
        check_replaceable(out_dir, "evaluation report")
    candidate = tracking.load_model_ref(model, uri=uri)
    outcome = model_outcome(candidate.risk_model)
    stage(f"loaded {candidate.name} version {candidate.version}: {outcome.words} within {outcome.horizon_days} days")
    champion = None
    if against:
        champion = tracking.load_model_ref(against, uri=uri)
        other = model_outcome(champion.risk_model)
        if other.describe() != outcome.describe():
            raise OutcomeMismatchError(f"{against} predicts {other.words} ({other.describe()}), {model} predicts "
                                       f"{outcome.words} ({outcome.describe()}): compare models of the same outcome")
    # Features built now must be the ones each model saw: its stored spec (the union of both models').
    spec = models_spec([candidate] + ([champion] if champion else []), stage=stage)
    if champion:
        end = labels_end(training_design_of(champion, uri=uri))
        if end is not None and as_of < end:  # e.g. a refit for deployment, fitted on labels to the data end
            stage(f"warning: {champion.name} version {champion.version} was trained on outcomes up to the day before "
                  f"{end.date()}, after {as_of.date()}: the comparison favours it (in-sample for it); compare at "
                  f"{end.date()} or later")
    data_dir = Path(data_dir)
    records = records if records is not None else load_data(DataConfig(path=data_dir), stage=stage)
    check_costs_known(outcome, row_counts=records.row_counts(), blank_costs=blank_costs(records))
    money = check_model_costs([candidate] + ([champion] if champion else []), data_currency=currency_of(data_dir),
                              sources=records.sources, row_counts=records.row_counts(), blank_costs=blank_costs(records),
                              currency_rate=currency_rate, without_costs=without_costs, stage=stage)
    found_end = data_end_of(data_dir, records)
    extract_end = found_end.require(data_dir)
    if found_end.warning:
        stage(f"warning: {found_end.warning}")
    check_horizon(as_of, horizon_days=outcome.horizon_days, extract_end=extract_end)

    features = money.apply(build_features(records, as_of, spec=spec))
    for m in [candidate] + ([champion] if champion else []):
        check_features_match(m.risk_model, features, records)
    labels = outcome.labels(records, as_of, features.index, extract_end=extract_end)
    cohort = training_design_of(candidate, uri=uri).get("cohort") or {}
    flow = participant_flow(records.persons, as_of, features.index, labels, horizon_days=outcome.horizon_days,
                            min_age=cohort.get("min_age", 18), max_age=cohort.get("max_age", 120))
    keep = labels.notna().to_numpy()
    features, y = features[keep], labels[keep].to_numpy(int)
    overlap, seen = training_overlap(features.index, records, as_of, training_design_of(candidate, uri=uri),
                                     include_seen=include_seen,
                                     key_fingerprint=dataset_metadata(data_dir).get(FINGERPRINT_FIELD))
    for line in overlap.sentences():
        stage(line)
    if overlap.people == "unseen":
        features, y = features[~seen], y[~seen]
    flow["excluded_seen"] = overlap.n_seen if overlap.people == "unseen" else 0
    flow["evaluated"], flow["evaluated_events"] = int(len(y)), int(y.sum())
    n_events = int(y.sum())
    stage(f"{len(y):,} people labelled at {as_of.date()} ({int((~keep).sum()):,} without a label"
          + (f", {overlap.n_seen:,} used in training excluded" if overlap.people == "unseen" else "")
          + f"), {n_events:,} events")
    if n_events < min_events:
        who = (f"of the {len(y):,} people not used in training ({overlap.n_seen:,} who were are excluded; "
               f"--include-seen evaluates them too, as temporal validation only) " if overlap.people == "unseen" else "")
        raise TooFewEventsError(f"only {n_events} people {who}had {outcome.words} within {outcome.horizon_days} days "
                                f"of {as_of.date()} (need {min_events}): a result this small would be noise; use more "
                                f"people or an earlier date, or lower --min-events knowingly")
    scores = {CANDIDATE: candidate.risk_model.predict_risk(features)}
    if champion:
        scores["champion"] = champion.risk_model.predict_risk(features)
    baselines = {}
    for name in ("logistic",):
        fitted = tracking.load_baseline(candidate.run_id, name, uri=uri)
        if fitted is not None:
            baselines[name] = f"fitted in the candidate's training run {candidate.run_id} on its training rows"
            scores[name] = fitted.predict_risk(features)
    scores["prior_use"] = prior_use_score(features)
    oracle = oracle_risk(read_truth(data_dir), outcome.truth_column, as_of, features.index)
    if oracle is not None:
        scores["oracle"] = oracle
    cost = {}
    if isinstance(outcome, HighCost):
        # In the run's currency: the model's when the data's amounts are converted.
        cost["cost_true"] = money.convert(
            future_cost(records, as_of, features.index, horizon_days=outcome.horizon_days).to_numpy())
        cost["currency"] = money.currency
        if candidate.risk_model.cost_estimator is not None:
            cost["cost_pred"] = candidate.risk_model.predict_cost(features)
    stage(f"scored with {', '.join(scores)}; computing the evidence ({n_boot} bootstrap resamples)")
    evaluation = evaluate_scores(y, scores, subgroup_attributes(features), n_boot=n_boot, seed=seed,
                                 min_group_events=min_group_events, **cost)
    unseen = None
    if overlap.people == "all" and seen is not None:  # the unseen people's figures beside everyone's
        unseen = _unseen_headline(evaluation, ~seen, n_boot=n_boot, seed=seed)
        evaluation.metrics.update({f"unseen.{name}.{k}": v for name, row in unseen.pop("frame").iterrows()
                                   for k, v in row.items()})
    evaluation.metrics.update({"people.labelled": float(overlap.n_labelled), "people.seen": float(overlap.n_seen)})
    drivers, dependence, explained = global_drivers(candidate.risk_model, features, seed=seed, figures=figures,
                                                    stage=stage)
    if explained is not None:
        stage(f"SHAP figures (shap {explained.shap_version} TreeExplainer) on a sample of {explained.n:,} of the "
              f"{explained.n_people:,} people" + (f"; equal to LightGBM's pred_contrib on {explained.checked:,} of "
              f"them (largest difference {explained.max_difference:.1g})" if explained.agrees else ""))

    gate_file = Path(card_dir) / candidate.name / gates.GATE_FILE if card_dir else None
    gate = gates.load_gate(gate_file) if gate_file else gates.Gate()
    criteria = [gates.check_timing(str(as_of.date()), overlap.labels_end)]
    criteria += gates.check_gate(evaluation.metrics, gate, champion_version=champion.version if champion else None,
                                 compared_version=champion.version if champion else None)
    context = {
        "model_name": candidate.name, "model_version": candidate.version, "model_run_id": candidate.run_id,
        "against": f"{champion.name} version {champion.version}" if champion else None,
        "as_of": str(as_of.date()), "extract_end": str(pd.Timestamp(extract_end).date()),
        "data_end_source": found_end.source, "events_after_data_end": found_end.events_after,
        "outcome": outcome.describe(), "outcome_words": outcome.words, "horizon_days": outcome.horizon_days,
        "data_dir": str(data_dir.resolve()), "data_sha256": data_fingerprint(data_dir)["sha256"],
        "n_unlabelled": int((~keep).sum()), "sources": list(records.sources),
        "features": list(candidate.risk_model.feature_names), "created": dt.date.today().isoformat(),
        "feature_spec_hash": candidate.risk_model.metadata.get("feature_spec_hash"),
        "min_group_events": min_group_events, "n_boot": n_boot, "baselines": baselines,
        "training_overlap": overlap.to_dict(), "unseen": unseen, "costs": money.as_dict(),
        "shap": explained.describe() if explained is not None else None,
        "design": model_design(candidate, uri=uri), "flow": flow,
        "characteristics": characteristics(features, y), "registry": registry_status(candidate, uri=uri),
        "riskstrat_version": candidate.risk_model.metadata.get("riskstrat_version"),
        "gate": gate.model_dump(),  # the settings the criteria were read with (the report says what they ask)
        "figures": figures, "calibration_band_resamples": band_resamples,
    }
    out_dir = Path(out_dir) if out_dir else Path("riskstrat-output/evaluations") / (
        f"{candidate.name}-v{candidate.version}-{as_of.date()}")
    report.write_evaluation(out_dir, evaluation, context, drivers=drivers, criteria=criteria,
                            extra_figures=dependence, figures=figures, band_resamples=band_resamples)
    stage(f"wrote the report, tables and figures to {out_dir}")
    card_path = gate_path = None
    if card_dir:
        gate_path = gates.write_default_gate(card_dir, candidate.name)
        card_path = report.write_card(Path(card_dir) / candidate.name, evaluation, context, drivers=drivers,
                                      criteria=criteria)
        stage(f"drafted the model card {card_path}" + (f" and the default gate {gate_path}" if gate_path else ""))
    run_id = None
    if log:
        tags = {gates.AS_OF_TAG: context["as_of"], "riskstrat.data_sha256": context["data_sha256"],
                "riskstrat.outcome": outcome.words, gates.PEOPLE_TAG: overlap.people,
                "riskstrat.in_sample": overlap.time}
        if overlap.labels_end:
            tags[gates.LABELS_END_TAG] = overlap.labels_end
        tags.update({f"riskstrat.costs.{k}": v for k, v in money.as_dict().items()})
        if champion:
            tags.update({"riskstrat.against_name": champion.name, "riskstrat.against_version": champion.version})
        run_id = tracking.log_evaluation_run(model_name=candidate.name, model_version=candidate.version,
                                             model_run_id=candidate.run_id, tags=tags, metrics=evaluation.metrics,
                                             folder=out_dir, uri=uri)
        stage(f"logged evaluation run {run_id}, linked from {candidate.name} version {candidate.version}")
    return EvaluationRun(evaluation, out_dir, candidate, champion, outcome, context["as_of"], run_id, card_path,
                         gate_path, criteria, drivers, dependence, overlap, unseen)


def _unseen_headline(evaluation: Evaluation, unseen: np.ndarray, *, n_boot: int, seed: int) -> dict:
    """The headline of ``evaluation``'s scores on its unseen people (a mask over its rows): ``n``,
    ``n_events``, ``headline`` (records, for the report and JSON) and ``frame``; or why there is none."""
    y = evaluation.y[unseen]
    out = {"n": int(len(y)), "n_events": int(y.sum()), "headline": [], "frame": pd.DataFrame(), "why_none": None}
    if len(np.unique(y)) < 2:
        out["why_none"] = f"the {len(y):,} unseen people have {'no' if not y.sum() else 'only'} events: no figures"
        return out
    frame = headline_table(y, {k: v[unseen] for k, v in evaluation.scores.items()}, n_boot=n_boot, seed=seed)
    out["frame"] = frame
    out["headline"] = frame.reset_index().to_dict("records")
    return out
