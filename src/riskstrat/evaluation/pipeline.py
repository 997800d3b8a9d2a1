"""``riskstrat evaluate``: a registered model on any data set at any matured index date.

Wiring only: the registry (:mod:`riskstrat.tracking`), the data (:mod:`riskstrat.pipelines`), the
evidence (:func:`evaluate_scores`), the report and card (:mod:`riskstrat.report`), MLflow.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from riskstrat.evaluation._evaluate import CANDIDATE, Evaluation, evaluate_scores
from riskstrat.evaluation._groups import subgroup_attributes

Stage = Callable[[str], None]


class TooFewEventsError(ValueError):
    """The evaluation population has too few outcome events for a result worth reading."""


def model_outcome(risk_model):
    """The outcome a fitted model predicts, rebuilt from its metadata (older models: its target name)."""
    from riskstrat.outcomes import parse_outcome

    described = dict(risk_model.metadata.get("outcome") or {})
    if not described:
        return parse_outcome({"name": risk_model.target})
    if described.get("kind") != "event":
        described.pop("words", None)  # a property of the built-ins, not a setting
    return parse_outcome(described)


def global_drivers(risk_model, X: pd.DataFrame, *, n: int = 3000, seed: int = 0, top: int = 10,
                   n_dependence: int = 3) -> tuple[pd.DataFrame | None, dict]:
    """Mean |SHAP| (log-odds) per feature on a seeded sample of ``n`` rows, largest first, and
    dependence figures (feature value against its SHAP value) for the top ``n_dependence``
    (LightGBM only; otherwise ``(None, {})``)."""
    from riskstrat import plots

    if risk_model.kind != "lightgbm" or not len(X):
        return None, {}
    sample = X.sample(min(n, len(X)), random_state=seed)
    shap, _ = risk_model.contributions(sample)
    mean_abs = shap.abs().mean().sort_values(ascending=False).head(top)
    figures = {f"dependence_{name}": plots.dependence_figure(sample[name], shap[name], feature=name)
               for name in mean_abs.index[:n_dependence]}
    return mean_abs.rename("mean_abs_shap").rename_axis("feature").reset_index(), figures


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
    dependence: dict = field(default_factory=dict)   # dependence figures of the top drivers, by file stem


def run_evaluation(model: str, data_dir: str | Path, as_of, *, against: str | None = None,
                   out_dir: str | Path | None = None, card_dir: str | Path | None = "models",
                   uri: str | None = None, n_boot: int = 200, seed: int = 0, min_events: int = 100,
                   min_group_events: int = 20, log: bool = True, records=None,
                   stage: Stage = lambda m: None) -> EvaluationRun:
    """Evaluate ``model`` (``NAME@ALIAS`` or ``NAME/VERSION``) at ``as_of`` on the data in ``data_dir``.

    Refuses (:class:`~riskstrat.labels.CensoredIndexDateError`) when the outcomes after ``as_of`` have
    not matured, and (:class:`TooFewEventsError`) with fewer than ``min_events`` events. Writes the
    report, tables and figures to ``out_dir``, the model card draft and a default gate to
    ``card_dir/<name>/`` (None: no card), and logs an evaluation run linked to the model version.
    """
    from riskstrat import tracking
    from riskstrat.config import DataConfig
    from riskstrat.evaluation import gate as gates
    from riskstrat.features import build_features
    from riskstrat.io import currency_of, data_fingerprint
    from riskstrat.labels import check_horizon, future_cost
    from riskstrat.outcomes import HighCost, check_costs_known
    from riskstrat.validate import blank_costs
    from riskstrat.synth.truth import oracle_risk, read_truth
    from riskstrat.models import prior_use_score
    from riskstrat.pipelines import check_feature_spec, check_features_match, load_data
    from riskstrat.data_end import data_end_of

    as_of = pd.Timestamp(as_of).normalize()
    candidate = tracking.load_model_ref(model, uri=uri)
    outcome = model_outcome(candidate.risk_model)
    stage(f"loaded {candidate.name} version {candidate.version}: {outcome.words} within {outcome.horizon_days} days")
    champion = None
    if against:
        champion = tracking.load_model_ref(against, uri=uri)
        other = model_outcome(champion.risk_model)
        if other.describe() != outcome.describe():
            raise ValueError(f"{against} predicts {other.words} ({other.describe()}), {model} predicts "
                             f"{outcome.words} ({outcome.describe()}): compare models of the same outcome")
    for m in [candidate] + ([champion] if champion else []):  # features built now must be the ones it saw
        check_feature_spec(m, stage=stage)
    data_dir = Path(data_dir)
    records = records if records is not None else load_data(DataConfig(path=data_dir), stage=stage)
    check_costs_known(outcome, row_counts=records.row_counts(), blank_costs=blank_costs(records))
    found_end = data_end_of(data_dir, records)
    extract_end = found_end.require(data_dir)
    if found_end.warning:
        stage(f"warning: {found_end.warning}")
    check_horizon(as_of, horizon_days=outcome.horizon_days, extract_end=extract_end)

    features = build_features(records, as_of)
    for m in [candidate] + ([champion] if champion else []):
        check_features_match(m.risk_model, features, records)
    labels = outcome.labels(records, as_of, features.index, extract_end=extract_end)
    keep = labels.notna().to_numpy()
    features, y = features[keep], labels[keep].to_numpy(int)
    n_events = int(y.sum())
    stage(f"{len(y):,} people labelled at {as_of.date()} ({int((~keep).sum()):,} without a label), {n_events:,} events")
    if n_events < min_events:
        raise TooFewEventsError(f"only {n_events} people had {outcome.words} within {outcome.horizon_days} days of "
                                f"{as_of.date()} (need {min_events}): a result this small would be noise; use more "
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
        cost["cost_true"] = future_cost(records, as_of, features.index, horizon_days=outcome.horizon_days).to_numpy()
        cost["currency"] = currency_of(data_dir)
        if candidate.risk_model.cost_estimator is not None:
            cost["cost_pred"] = candidate.risk_model.predict_cost(features)
    stage(f"scored with {', '.join(scores)}; computing the evidence ({n_boot} bootstrap resamples)")
    evaluation = evaluate_scores(y, scores, subgroup_attributes(features), n_boot=n_boot, seed=seed,
                                 min_group_events=min_group_events, **cost)
    drivers, dependence = global_drivers(candidate.risk_model, features, seed=seed)

    gate_file = Path(card_dir) / candidate.name / gates.GATE_FILE if card_dir else None
    gate = gates.load_gate(gate_file) if gate_file else gates.Gate()
    criteria = gates.check_gate(evaluation.metrics, gate, champion_version=champion.version if champion else None,
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
    }
    from riskstrat import report

    out_dir = Path(out_dir) if out_dir else Path("riskstrat-output/evaluations") / (
        f"{candidate.name}-v{candidate.version}-{as_of.date()}")
    report.write_evaluation(out_dir, evaluation, context, drivers=drivers, criteria=criteria,
                            extra_figures=dependence)
    stage(f"wrote the report, tables and figures to {out_dir}")
    card_path = gate_path = None
    if card_dir:
        gate_path = gates.write_default_gate(card_dir, candidate.name)
        card_path = report.write_card(Path(card_dir) / candidate.name, evaluation, context, drivers=drivers)
        stage(f"drafted the model card {card_path}" + (f" and the default gate {gate_path}" if gate_path else ""))
    run_id = None
    if log:
        tags = {"riskstrat.as_of": context["as_of"], "riskstrat.data_sha256": context["data_sha256"],
                "riskstrat.outcome": outcome.words}
        if champion:
            tags.update({"riskstrat.against_name": champion.name, "riskstrat.against_version": champion.version})
        run_id = tracking.log_evaluation_run(model_name=candidate.name, model_version=candidate.version,
                                             model_run_id=candidate.run_id, tags=tags, metrics=evaluation.metrics,
                                             folder=out_dir, uri=uri)
        stage(f"logged evaluation run {run_id}, linked from {candidate.name} version {candidate.version}")
    return EvaluationRun(evaluation, out_dir, candidate, champion, outcome, context["as_of"], run_id, card_path,
                         gate_path, criteria, drivers, dependence)
