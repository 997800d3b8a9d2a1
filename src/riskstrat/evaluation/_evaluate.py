"""One model's evidence on one labelled population: pure computation, no I/O (see :mod:`.pipeline`)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import pandas as pd

from riskstrat.evaluation import metrics
from riskstrat.evaluation._frame import MetricFrame, metric_frame
from riskstrat.modeling.tiers import DEFAULT_TIER_CUTOFFS, assign_tiers

CANDIDATE = "candidate"
# Scores that rank but are not probabilities (no calibration for them).
RANK_ONLY = ("prior_use",)
# The rule each group's discrimination is compared with (the gate's subgroup criterion).
GROUP_REFERENCE = "prior_use"
# Per-group and per-tier numbers in the flat metrics, for the gate: GROUP_KEY.<attribute>.<group>.<metric>
# and TIER_KEY.<tier>.<metric>, the names made safe for MLflow by key_label.
GROUP_KEY, TIER_KEY = "group", "tier"


def key_label(name: str) -> str:
    """A group's or tier's name as it can stand in an MLflow metric key, still readable:
    "85+" -> "85 and over", "1 (most deprived)" -> "1 most deprived", anything else unsafe -> "_".

    >>> key_label("85+"), key_label("1 (most deprived)"), key_label("P.001")
    ('85 and over', '1 most deprived', 'P_001')
    """
    text = str(name).replace("+", " and over").replace("(", "").replace(")", "")
    return re.sub(r" {2,}", " ", re.sub(r"[^0-9A-Za-z_\- :]", "_", text)).strip()


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
    subgroups: MetricFrame            # by_group also holds group_intervals' columns (intervals, vs prior use)
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


def _share_of_events_listed(y, score, *, cut: float, tie_share: float = 1.0) -> float:
    """Share of the group's events on the population's list: everyone above the cut-off, and each
    person tied at it counted as ``tie_share`` of a person (the population list's places left at the
    cut-off over the people tied there: the expected value under random tie-breaking, as
    :func:`riskstrat.evaluation.metrics.top_k_weights`)."""
    y = np.asarray(y)
    if y.sum() == 0:
        raise ValueError("no events")
    s = np.asarray(score)[y == 1]
    return float(np.mean((s > cut) + tie_share * (s == cut)))


def subgroup_metric_set(y: np.ndarray, prob: np.ndarray, *, list_fraction: float = 0.05) -> dict:
    """The metrics reported per group. The listed share uses the whole population's top-k cut-off,
    so it says how many of a group's events the real list would catch (ties at the cut-off counted
    fractionally, as the population's list)."""
    weight = metrics.top_k_weights(prob, list_fraction)
    cut = float(np.min(prob[weight > 0]))
    tie_share = float(weight[prob == cut][0])
    pct = metrics._pct_label(list_fraction)
    return {"auroc": metrics.auroc, "observed_rate": lambda yt, ys: float(np.mean(yt)),
            "expected_rate": lambda yt, ys: float(np.mean(ys)), "o_e_ratio": metrics.observed_expected_ratio,
            f"events_listed_top_{pct}pct": partial(_share_of_events_listed, cut=cut, tie_share=tie_share)}


GROUP_INTERVAL_COLUMNS = ["auroc_ci_low", "auroc_ci_high", "o_e_ci_low", "o_e_ci_high", "calibration_slope",
                          "calibration_slope_ci_low", "calibration_slope_ci_high", "calibration_slope_not_estimable",
                          "reference_auroc", "minus_reference", "minus_reference_ci_low", "minus_reference_ci_high"]


def group_intervals(y: np.ndarray, prob: np.ndarray, index: pd.MultiIndex, attributes: pd.DataFrame, *,
                    reference: np.ndarray | None = None, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per group of ``index`` ((attribute, group) as :func:`metric_frame` makes it): the AUROC's
    bootstrap interval, O/E's exact Poisson interval, the calibration slope with its Wald interval
    (NaN and a code where not estimable), and, with ``reference`` (another score on the same rows),
    that score's AUROC and the paired difference (candidate minus reference) with its interval.
    Intervals need :data:`~riskstrat.evaluation.metrics.MIN_EVENTS_FOR_INTERVAL` events in the group."""
    features = attributes.reset_index(drop=True)
    rows = []
    for attribute, group in index:
        keys = features[attribute].astype(object).where(features[attribute].notna(), "missing").astype(str)
        members = np.flatnonzero((keys == group).to_numpy())
        y_g, p_g = y[members], prob[members]
        row = dict.fromkeys(GROUP_INTERVAL_COLUMNS, float("nan"))
        row["calibration_slope_not_estimable"] = 0.0
        if 0 < y_g.sum() < len(y_g):
            row["auroc_ci_low"], row["auroc_ci_high"] = metrics.auroc_ci(y_g, p_g, n_boot=n_boot, seed=seed)
            with warnings.catch_warnings():  # a small group's slope is often not estimable: its code says so
                warnings.simplefilter("ignore", metrics.NotEstimableWarning)
                fit = metrics.calibration_fit(y_g, p_g)
            row.update(calibration_slope=fit.slope, calibration_slope_ci_low=fit.slope_ci_low,
                       calibration_slope_ci_high=fit.slope_ci_high,
                       calibration_slope_not_estimable=float(metrics.NOT_ESTIMABLE.get(fit.reason, 0)))
            if reference is not None:
                r_g = reference[members]
                row["reference_auroc"] = metrics.auroc(y_g, r_g)
                row["minus_reference"], row["minus_reference_ci_low"], row["minus_reference_ci_high"] = (
                    metrics.paired_auroc_difference(y_g, p_g, r_g, n_boot=n_boot, seed=seed))
        if len(y_g):
            row["o_e_ci_low"], row["o_e_ci_high"] = metrics.observed_expected_interval(y_g, p_g)
        rows.append(row)
    return pd.DataFrame(rows, index=index, columns=GROUP_INTERVAL_COLUMNS)


def _group_flat(frame: MetricFrame, *, reference: str) -> dict[str, float]:
    """The flat metrics the gate reads per group with enough events (``frame.reliable()``)."""
    flat = {}
    wanted = {"n_events": "n_events", "auroc": "auroc", "auroc_ci_low": "auroc_ci_low",
              "auroc_ci_high": "auroc_ci_high", "o_e_ratio": "o_e_ratio", "o_e_ci_low": "o_e_ci_low",
              "o_e_ci_high": "o_e_ci_high", "minus_reference": f"minus_{reference}",
              "minus_reference_ci_low": f"minus_{reference}_ci_low",
              "minus_reference_ci_high": f"minus_{reference}_ci_high"}
    for (attribute, group), row in frame.reliable().iterrows():
        for column, name in wanted.items():
            if column in row and pd.notna(row[column]):
                flat[f"{GROUP_KEY}.{attribute}.{key_label(group)}.{name}"] = float(row[column])
    return flat


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
            summary["o_e_ci_low"], summary["o_e_ci_high"] = metrics.observed_expected_interval(y, s)
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
    # The tiers' rows count the tiers' members (whole people: a tie at a cut-off takes the higher tier).
    tier = assign_tiers(pd.Series(prob), cutoffs=cutoffs).cat.codes.to_numpy()
    tiers = metrics.case_finding_table(y, prob, fractions=list(cutoffs.values()),
                                       masks=[tier <= code for code in range(len(cutoffs))])
    tiers["list"] = [f"tier {name} and above (top {metrics._pct_label(f)}%)" for name, f in cutoffs.items()]
    case_finding = pd.concat([case_finding, tiers], ignore_index=True)
    for row in case_finding.head(len(top_fractions)).itertuples():
        pct = metrics._pct_label(row.fraction)
        flat[f"candidate.nnf_top_{pct}pct"] = row.number_needed_to_flag
        flat[f"candidate.events_per_1000_top_{pct}pct"] = row.events_per_1000_flagged

    frame = metric_frame(subgroup_metric_set(y, prob), y, prob, sensitive_features=attributes,
                         min_events=min_group_events)
    reference = scores.get(GROUP_REFERENCE)
    intervals = group_intervals(y, prob, frame.by_group.index, attributes, n_boot=n_boot, seed=seed,
                                reference=None if reference is None else np.asarray(reference, dtype=float))
    frame = replace(frame, by_group=frame.by_group.join(intervals))
    flat.update(_group_flat(frame, reference=GROUP_REFERENCE))
    oe_tier = metrics.observed_expected_by_tier(y, prob, cutoffs=cutoffs)
    for row in oe_tier.itertuples():
        for name in ("n", "observed", "expected", "o_e_ratio", "o_e_ci_low", "o_e_ci_high"):
            value = getattr(row, name)
            if pd.notna(value):
                flat[f"{TIER_KEY}.{key_label(row.tier)}.{name}"] = float(value)
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
        oe_tier=oe_tier,
        case_finding=case_finding, decision_curve=metrics.decision_curve(y, prob),
        recalibration=metrics.recalibration_table(y, prob), subgroups=frame,
        calibration_curve=metrics.smoothed_calibration(y, prob), metrics=flat,
        scores={k: np.asarray(v, dtype=float) for k, v in scores.items()}, y=y, cost=cost)
