"""One model's evidence on one labelled population: pure computation, no I/O (see :mod:`.pipeline`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from riskstrat.evaluation import metrics
from riskstrat.evaluation._frame import MetricFrame, metric_frame
from riskstrat.modeling.tiers import DEFAULT_TIER_CUTOFFS

CANDIDATE = "candidate"
# Scores that rank but are not probabilities (no calibration for them).
RANK_ONLY = ("prior_use",)


@dataclass
class Evaluation:
    """Everything the report, the model card and the gate read. ``metrics`` is flat, for MLflow."""

    n: int
    n_events: int
    headline: pd.DataFrame            # one row per model
    comparison: pd.DataFrame          # candidate minus each other model: AUROC difference, paired CI
    oe_decile: pd.DataFrame
    oe_tier: pd.DataFrame
    case_finding: pd.DataFrame        # top fractions and tiers
    decision_curve: pd.DataFrame
    recalibration: pd.DataFrame
    subgroups: MetricFrame
    calibration_curve: pd.DataFrame   # smoothed (loess) observed against predicted
    metrics: dict[str, float] = field(default_factory=dict)
    cost: CostEvidence | None = None  # high-cost models: what the lists catch of next-year cost
    scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    y: np.ndarray | None = field(default=None, repr=False)


@dataclass
class CostEvidence:
    """Next-year cost against each ranking's lists and, with a cost model, predicted against actual."""

    currency: str
    total: float                       # everyone's actual cost over the horizon
    capture: pd.DataFrame              # metrics.cost_capture: per model and list size, the ceiling last
    summary: dict[str, float] = field(default_factory=dict)   # metrics.cost_summary of predicted cost
    by_decile: pd.DataFrame | None = None                     # metrics.cost_by_decile of predicted cost


def cost_evidence(cost_true, scores: Mapping[str, np.ndarray], *, cost_pred=None, currency: str = "GBP",
                  fractions: Sequence[float] = (0.01, 0.05)) -> CostEvidence:
    """The cost evidence for a high-cost model: the share of next-year cost and the mean cost of the
    people each score's top ``fractions`` flag (by actual cost: the ceiling); with ``cost_pred`` (the
    candidate's expected cost) predicted against actual, overall and by decile, and its own lists as
    ``candidate (predicted cost)``."""
    cost = np.asarray(cost_true, dtype=float)
    rankings = dict(scores)
    summary, by_decile = {}, None
    if cost_pred is not None:
        rankings[f"{CANDIDATE} (predicted cost)"] = np.asarray(cost_pred, dtype=float)
        summary = metrics.cost_summary(cost, cost_pred, top_fraction=max(fractions))
        summary["predicted_total"] = float(np.sum(cost_pred))
        by_decile = metrics.cost_by_decile(cost, cost_pred)
    return CostEvidence(currency=currency, total=float(cost.sum()),
                        capture=metrics.cost_capture(cost, rankings, fractions=fractions), summary=summary,
                        by_decile=by_decile)


def _share_of_events_listed(y, score, *, cut: float) -> float:
    """Share of the group's events with a score at or above the population's list cut-off."""
    y = np.asarray(y)
    if y.sum() == 0:
        raise ValueError("no events")
    return float(np.mean(np.asarray(score)[y == 1] >= cut))


def subgroup_metric_set(y: np.ndarray, prob: np.ndarray, *, list_fraction: float = 0.05) -> dict:
    """The metrics reported per group. The listed share uses the whole population's top-k cut-off,
    so it says how many of a group's events the real list would catch."""
    cut = float(np.min(prob[metrics.top_k_mask(prob, list_fraction)]))
    pct = metrics._pct_label(list_fraction)
    return {"auroc": metrics.auroc, "observed_rate": lambda yt, ys: float(np.mean(yt)),
            "expected_rate": lambda yt, ys: float(np.mean(ys)), "o_e_ratio": metrics.observed_expected_ratio,
            f"events_listed_top_{pct}pct": partial(_share_of_events_listed, cut=cut)}


def headline_table(y_true, scores: Mapping[str, np.ndarray], *,
                   top_fractions: Sequence[float] = (0.005, 0.01, 0.02, 0.05), n_boot: int = 200,
                   seed: int = 0) -> pd.DataFrame:
    """One row per score: discrimination with bootstrap intervals, case finding and (probabilities
    only) calibration; the headline of :func:`evaluate_scores`, also used on a subset of its people."""
    rows = _summaries(y_true, scores, top_fractions=top_fractions, n_boot=n_boot, seed=seed)
    return pd.DataFrame(rows).T.rename_axis("model")


def _summaries(y_true, scores, *, top_fractions, n_boot: int, seed: int) -> dict[str, dict[str, float]]:
    y = np.asarray(y_true)
    rows = {}
    for name, s in scores.items():
        is_prob = name not in RANK_ONLY
        summary = metrics.summarise(y, s, is_probability=is_prob, top_fractions=tuple(top_fractions), n_boot=n_boot,
                                    seed=seed)
        summary["auprc_ci_low"], summary["auprc_ci_high"] = metrics.bootstrap_ci(
            metrics.auprc, y, s, n_boot=n_boot, seed=seed)
        if is_prob:
            summary["ici"] = metrics.integrated_calibration_index(y, s)
            summary["o_e_ratio"] = metrics.observed_expected_ratio(y, s)
        rows[name] = summary
    return rows


def evaluate_scores(y_true, scores: Mapping[str, np.ndarray], attributes: pd.DataFrame, *,
                    top_fractions: Sequence[float] = (0.005, 0.01, 0.02, 0.05),
                    tier_cutoffs: Mapping[str, float] | None = None, n_boot: int = 200, seed: int = 0,
                    min_group_events: int = 20, cost_true=None, cost_pred=None, currency: str = "GBP",
                    cost_fractions: Sequence[float] = (0.01, 0.05)) -> Evaluation:
    """The evidence for ``scores[CANDIDATE]`` (a probability) against the other scores on the same rows.

    ``attributes`` (:func:`riskstrat.evaluation.subgroup_attributes`) holds the groups, by position.
    ``cost_true`` (each person's actual cost over the horizon, in ``currency``) adds the cost
    evidence (:func:`cost_evidence`), with ``cost_pred`` the candidate's predicted cost.
    """
    if CANDIDATE not in scores:
        raise ValueError(f"scores must include {CANDIDATE!r}; got {list(scores)}")
    y, prob = metrics._check_inputs(y_true, scores[CANDIDATE], probability=True)
    cutoffs = dict(tier_cutoffs or DEFAULT_TIER_CUTOFFS)
    rows = _summaries(y, scores, top_fractions=top_fractions, n_boot=n_boot, seed=seed)
    flat: dict[str, float] = {f"{name}.{k}": v for name, summary in rows.items() for k, v in summary.items()}
    headline = pd.DataFrame(rows).T.rename_axis("model")
    comparison_rows = []
    for name, s in scores.items():
        if name == CANDIDATE:
            continue
        d, lo, hi = metrics.paired_auroc_difference(y, prob, s, n_boot=n_boot, seed=seed)
        comparison_rows.append({"versus": name, "auroc_difference": d, "ci_low": lo, "ci_high": hi})
        flat.update({f"minus_{name}.auroc": d, f"minus_{name}.auroc_ci_low": lo, f"minus_{name}.auroc_ci_high": hi})
    comparison = pd.DataFrame(comparison_rows, columns=["versus", "auroc_difference", "ci_low", "ci_high"])

    case_finding = metrics.case_finding_table(y, prob, fractions=top_fractions)
    tiers = metrics.case_finding_table(y, prob, fractions=list(cutoffs.values()))
    tiers["list"] = [f"tier {name} and above (top {metrics._pct_label(f)}%)" for name, f in cutoffs.items()]
    case_finding = pd.concat([case_finding, tiers], ignore_index=True)
    for row in case_finding.head(len(top_fractions)).itertuples():
        pct = metrics._pct_label(row.fraction)
        flat[f"candidate.nnf_top_{pct}pct"] = row.number_needed_to_flag
        flat[f"candidate.events_per_1000_top_{pct}pct"] = row.events_per_1000_flagged

    frame = metric_frame(subgroup_metric_set(y, prob), y, prob, sensitive_features=attributes,
                         min_events=min_group_events)
    reliable = frame.reliable()["auroc"].dropna()
    if len(reliable):
        flat["subgroup.min_auroc"] = float(reliable.min())
        flat["subgroup.n_reliable_groups"] = float(len(reliable))
    flat["subgroup.n_small_groups"] = float(frame.by_group["small"].sum())
    flat["n"], flat["n_events"] = float(len(y)), float(y.sum())
    cost = None
    if cost_true is not None:
        if len(cost_true) != len(y) or (cost_pred is not None and len(cost_pred) != len(y)):
            raise ValueError(f"cost_true and cost_pred need one value per person ({len(y)})")
        cost = cost_evidence(cost_true, scores, cost_pred=cost_pred, currency=currency, fractions=cost_fractions)
        for row in cost.capture.itertuples():
            if row.model in scores:
                pct = metrics._pct_label(row.fraction)
                flat[f"{row.model}.cost_share_top_{pct}pct"] = row.cost_share
                flat[f"{row.model}.mean_cost_top_{pct}pct"] = row.mean_cost_flagged
        flat.update({f"candidate.{k}": v for k, v in cost.summary.items()})
    return Evaluation(
        n=len(y), n_events=int(y.sum()), headline=headline, comparison=comparison,
        oe_decile=metrics.observed_expected_by_decile(y, prob),
        oe_tier=metrics.observed_expected_by_tier(y, prob, cutoffs=cutoffs),
        case_finding=case_finding, decision_curve=metrics.decision_curve(y, prob),
        recalibration=metrics.recalibration_table(y, prob), subgroups=frame,
        calibration_curve=metrics.smoothed_calibration(y, prob), metrics=flat,
        scores={k: np.asarray(v, dtype=float) for k, v in scores.items()}, y=y, cost=cost)
