"""Monitoring after go-live: did the risks a month's lists were made from come true, and did being
shown on a list change anything? Pure computation on a month's ``population.parquet`` and the
labels of what happened next; the run (files, registry, MLflow) is :mod:`riskstrat.pipelines.monitor`.

- :func:`split_by_maturity`: which scored months' outcome horizons the data now cover;
- :func:`label_population`: each scored person's outcome after the month's index date, with the
  outcome of the model that scored them (censoring and death as that outcome defines);
- :func:`monitor_month`: observed/expected overall (exact Poisson interval), by tier and by
  practice (:func:`~riskstrat.evaluation.metric_frame`, small groups flagged), AUROC with its
  bootstrap interval (stratified by outcome; none below
  :data:`~riskstrat.evaluation.metrics.MIN_EVENTS_FOR_INTERVAL` events), calibration slope (with its
  interval, or NaN and the reason) and intercept;
- :func:`holdout_effect`: outcome events per 1,000 among eligible listed people shown against
  those randomly held out, the difference with Newcombe's interval, and what it allows one to say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.data.schema import NO_PRACTICE_NAME
from riskstrat.evaluation import metrics
from riskstrat.evaluation._frame import MetricFrame, metric_frame

__all__ = ["HOLDOUT_MIN_EVENTS", "HOLDOUT_MIN_HELD", "MonthResult", "ScoredMonth", "holdout_effect",
           "holdout_statement", "label_population", "monitor_month", "split_by_maturity"]

# Below these the hold-out comparison is reported with a warning that it cannot say much: with
# fewer than 100 held-out people or 20 events in all, a 95% interval spans well over 50 per 1,000.
HOLDOUT_MIN_HELD = 100
HOLDOUT_MIN_EVENTS = 20


@dataclass(frozen=True)
class ScoredMonth:
    """A month published by ``riskstrat score``: its index date, the risk model and its outcome horizon."""

    month: str
    as_of: pd.Timestamp
    model_name: str
    model_version: str
    horizon_days: int
    outcome_words: str
    manifest: dict = field(repr=False, compare=False)
    folder: Path | None = field(default=None, repr=False, compare=False)  # where its files are (its run folder)

    @classmethod
    def from_manifest(cls, manifest: dict, *, folder: Path | None = None) -> "ScoredMonth":
        """From a month's ``manifest.json`` (the risk model is ``config.models.risk``), read from ``folder``."""
        name = manifest["config"]["models"]["risk"]
        outcome = manifest.get("outcome") or {}
        return cls(month=manifest["month"], as_of=pd.Timestamp(manifest["as_of"]), model_name=name,
                   model_version=str(manifest["models"][name]["version"]),
                   horizon_days=int(outcome.get("horizon_days", 365)),
                   outcome_words=str(outcome.get("words", "the outcome")), manifest=manifest, folder=folder)

    @property
    def matures_on(self) -> pd.Timestamp:
        """The first day after the horizon: the data must run to the day before it."""
        return self.as_of + pd.Timedelta(days=self.horizon_days)


def split_by_maturity(months: Sequence[ScoredMonth], data_end) -> tuple[list[ScoredMonth], list[ScoredMonth]]:
    """(matured, not yet matured): a month has matured when the data run to the last day of its
    horizon (``as_of + horizon_days - 1``), as :func:`riskstrat.outcomes.labels.check_horizon` asks.

    >>> m = ScoredMonth("2025-11", pd.Timestamp("2025-11-01"), "m", "1", 365, "x", {})
    >>> [len(part) for part in split_by_maturity([m], "2026-10-31")], [len(p) for p in split_by_maturity([m], "2026-10-30")]
    ([1, 0], [0, 1])
    """
    end = pd.Timestamp(data_end).normalize()
    matured = [m for m in months if m.matures_on <= end + pd.Timedelta(days=1)]
    return matured, [m for m in months if m not in matured]


def label_population(population: pd.DataFrame, records, outcome, *, index_date, extract_end) -> pd.Series:
    """Each scored person's outcome after ``index_date`` (1.0 / 0.0 / NaN), in the rows' order.

    ``outcome`` is the scoring model's (:mod:`riskstrat.outcomes`), applied to the later
    ``records``: censoring at the end of registration and death as it defines. No label (NaN) for
    people the later data no longer hold, and for deaths before ``index_date`` recorded only since.
    """
    t = pd.Timestamp(index_date).normalize()
    ids = pd.Index(population["person_id"].astype(str), name="person_id")
    persons = records.persons.assign(person_id=records.persons["person_id"].astype(str)).set_index("person_id")
    known = ids.isin(persons.index)
    death = persons["death_date"].reindex(ids)
    died_before = (death.notna() & (death < t)).to_numpy()
    eligible = ids[known & ~died_before]
    y = pd.Series(np.nan, index=ids, name="label")
    if len(eligible):
        y.loc[eligible] = outcome.labels(records, t, eligible, extract_end=extract_end).to_numpy()
    return y.reset_index(drop=True)


def _or_nan(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return float("nan")


def _oe_low(y, p) -> float:
    return metrics.observed_expected_interval(y, p)[0]


def _oe_high(y, p) -> float:
    return metrics.observed_expected_interval(y, p)[1]


GROUP_METRICS = {"observed": lambda y, p: float(np.sum(y)), "expected": lambda y, p: float(np.sum(p)),
                 "o_e_ratio": metrics.observed_expected_ratio, "o_e_ci_low": _oe_low, "o_e_ci_high": _oe_high,
                 "auroc": metrics.auroc}


@dataclass
class MonthResult:
    """One matured month's comparison of predicted with observed."""

    month: str
    n_scored: int
    n_labelled: int
    counts: dict                 # why people have no label: not_in_data, unlabelled (censored, not at risk), opted_out
    headline: dict               # n, events, observed, expected, o_e (CI), auroc (CI, resamples used, reason when
                                 # none), calibration slope (CI, reason when not estimable), intercept
    groups: MetricFrame          # by tier and by GP practice
    holdout: dict | None         # holdout_effect, or None when no hold-out was kept
    y: np.ndarray = field(repr=False, default=None)
    risk: np.ndarray = field(repr=False, default=None)

    def by(self, attribute: str) -> pd.DataFrame:
        """The groups of one attribute (``tier`` or ``GP practice``) as a flat table."""
        frame = self.groups.by_group
        if attribute not in frame.index.get_level_values("attribute"):
            return frame.iloc[:0].reset_index()
        return frame.loc[attribute].reset_index().rename(columns={"group": attribute})


def monitor_month(population: pd.DataFrame, y, *, month: str, tier_order: Sequence[str] = (),
                  exempt_tiers: Sequence[str] | None = None, outcome_words: str = "the outcome",
                  n_boot: int = 200, seed: int = 0, min_group_events: int = 20,
                  counts: dict | None = None) -> MonthResult:
    """Predicted (``population["risk"]``) against observed (``y``, by row; NaN = no label).

    ``tier_order`` orders the tier rows (highest first); ``exempt_tiers`` is the month's hold-out
    rule (None: no hold-out comparison). Groups with fewer than ``min_group_events`` events are
    kept and flagged ``small``: shown, not over-read.
    """
    y = pd.Series(y, dtype="float64").reset_index(drop=True)
    population = population.reset_index(drop=True)
    if len(y) != len(population):
        raise ValueError(f"{len(y)} labels for {len(population)} scored people")
    keep = y.notna().to_numpy()
    labelled = population.loc[keep].reset_index(drop=True)
    yl, risk = y[keep].to_numpy(dtype=int), labelled["risk"].to_numpy(dtype=float)
    headline = {"n": int(len(yl)), "events": int(yl.sum()), "observed": float(yl.sum()),
                "expected": float(risk.sum()) if len(yl) else float("nan")}
    if len(yl):
        headline["o_e_ratio"] = metrics.observed_expected_ratio(yl, risk)
        headline["o_e_ci_low"], headline["o_e_ci_high"] = metrics.observed_expected_interval(yl, risk)
        headline["observed_per_1000"] = 1000 * float(yl.mean())
        headline["expected_per_1000"] = 1000 * float(risk.mean())
    headline["auroc"] = _or_nan(metrics.auroc, yl, risk)
    # Stratified by outcome, and none with fewer than MIN_EVENTS_FOR_INTERVAL events (the reason says so).
    interval = (metrics.auroc_ci(yl, risk, n_boot=n_boot, seed=seed) if len(yl)
                else metrics.Interval.none("no labelled people", n_boot=n_boot))
    headline["auroc_ci_low"], headline["auroc_ci_high"] = interval
    headline["bootstrap_resamples_used"] = interval.n_used
    headline["auroc_ci_reason"] = interval.reason
    fit = None
    if len(yl) and 0 < yl.sum() < len(yl):
        fit = metrics.calibration_fit(yl, risk)
    headline["calibration_slope"] = fit.slope if fit else float("nan")
    headline["calibration_slope_ci_low"] = fit.slope_ci_low if fit else float("nan")
    headline["calibration_slope_ci_high"] = fit.slope_ci_high if fit else float("nan")
    headline["calibration_slope_reason"] = (fit.reason if fit else "one outcome class only")
    headline["calibration_intercept"] = _or_nan(metrics.calibration_intercept, yl, risk)
    practice = labelled["practice_id"].astype(object).where(labelled["practice_id"].notna(), NO_PRACTICE_NAME)
    groups = metric_frame(GROUP_METRICS, yl, risk, min_events=min_group_events,
                          sensitive_features={"tier": labelled["tier"].astype(str).to_numpy(),
                                              "GP practice": practice.astype(str).to_numpy()})
    if tier_order:
        groups = _ordered(groups, {t: i for i, t in enumerate(tier_order)})
    effect = None
    if exempt_tiers is not None and "holdout" in population and population["holdout"].fillna(False).astype(bool).any():
        effect = holdout_effect(population, y, exempt_tiers=exempt_tiers, outcome_words=outcome_words)
    return MonthResult(month=month, n_scored=len(population), n_labelled=int(keep.sum()), counts=dict(counts or {}),
                       headline=headline, groups=groups, holdout=effect, y=yl, risk=risk)


def _ordered(groups: MetricFrame, order: dict) -> MetricFrame:
    """The tier rows in ``order`` (highest tier first); practices stay in their sorted order."""
    frame = groups.by_group
    position = [order.get(g, len(order)) if a == "tier" else 0 for a, g in frame.index]
    attribute = [0 if a == "tier" else 1 for a, _ in frame.index]
    ranked = frame.assign(_a=attribute, _p=position, _i=np.arange(len(frame)))
    ranked = ranked.sort_values(["_a", "_p", "_i"]).drop(columns=["_a", "_p", "_i"])
    return MetricFrame(groups.overall, ranked, groups.min_events)


def holdout_effect(population: pd.DataFrame, y, *, exempt_tiers: Sequence[str] = (), alpha: float = 0.05,
                   outcome_words: str = "the outcome") -> dict:
    """Outcome events per 1,000 among the eligible people shown on the lists against those held out.

    Eligible is the rule the hold-out was drawn by (:func:`riskstrat.scoring.lists.holdout_flags`): listed,
    outside ``exempt_tiers``; only people with a label count. The hold-out was randomised within
    the eligible, so the difference (shown minus held out) estimates the effect of being shown on a
    list, whatever practices then did (intention to treat). Interval: Newcombe's hybrid score
    (:func:`riskstrat.evaluation.metrics.newcombe_difference`). Mean predicted risk per 1,000 in each arm is a
    check of the randomisation (the two should be close).
    """
    y = pd.Series(y, dtype="float64").reset_index(drop=True)
    population = population.reset_index(drop=True)
    eligible = population["listed"].fillna(False).astype(bool)
    if exempt_tiers:
        eligible &= ~population["tier"].astype(str).isin([str(t) for t in exempt_tiers])
    eligible &= y.notna()
    held = population["holdout"].fillna(False).astype(bool)
    arms = {"shown": eligible & ~held, "held_out": eligible & held}
    out: dict = {"exempt_tiers": list(exempt_tiers), "alpha": alpha}
    for arm, mask in arms.items():
        n, events = int(mask.sum()), int(y[mask].sum())
        out[f"n_{arm}"], out[f"events_{arm}"] = n, events
        out[f"per_1000_{arm}"] = 1000 * events / n if n else float("nan")
        out[f"expected_per_1000_{arm}"] = 1000 * float(population.loc[mask, "risk"].mean()) if n else float("nan")
    if out["n_shown"] and out["n_held_out"]:
        d, low, high = metrics.newcombe_difference(out["events_shown"], out["n_shown"], out["events_held_out"],
                                                   out["n_held_out"], alpha=alpha)
        out.update(difference_per_1000=1000 * d, ci_low_per_1000=1000 * low, ci_high_per_1000=1000 * high)
    else:
        out.update(difference_per_1000=float("nan"), ci_low_per_1000=float("nan"), ci_high_per_1000=float("nan"))
    out["too_few"] = bool(out["n_held_out"] < HOLDOUT_MIN_HELD
                          or out["events_shown"] + out["events_held_out"] < HOLDOUT_MIN_EVENTS)
    out["statement"] = holdout_statement(out, outcome_words=outcome_words)
    return out


def _n(value: float) -> str:
    """A rate per 1,000 for a sentence: one decimal below 10, whole numbers above."""
    return f"{abs(value):.1f}" if abs(value) < 10 else f"{abs(value):,.0f}"


def holdout_statement(effect: dict, *, outcome_words: str = "the outcome") -> str:
    """What the interval of :func:`holdout_effect` allows one to conclude, in plain English.

    >>> holdout_statement({"n_shown": 900, "events_shown": 180, "n_held_out": 100, "events_held_out": 21,
    ...                    "difference_per_1000": -10.0, "ci_low_per_1000": -95.0, "ci_high_per_1000": 60.0,
    ...                    "too_few": False, "alpha": 0.05}, outcome_words="an emergency admission")
    ... # doctest: +NORMALIZE_WHITESPACE
    'Of 900 people shown on the lists, 180 (200.0 per 1,000) had an emergency admission; of 100 held out,
    21 (210.0 per 1,000). Consistent with no effect: being shown changed the rate by -10.0 per 1,000
    (95% interval 95 fewer to 60 more). It cannot rule out a reduction of up to 95 per 1,000, nor an
    increase of up to 60 per 1,000.'
    """
    n_s, e_s, n_h, e_h = effect["n_shown"], effect["events_shown"], effect["n_held_out"], effect["events_held_out"]
    if not n_h:
        return "No eligible person with a known outcome was held out this month: there is nothing to compare with."
    if not n_s:
        return "No eligible person with a known outcome was shown this month: there is nothing to compare."
    d, low, high = effect["difference_per_1000"], effect["ci_low_per_1000"], effect["ci_high_per_1000"]
    level = f"{1 - effect.get('alpha', 0.05):.0%}"
    counts = (f"Of {n_s:,} people shown on the lists, {e_s:,} ({1000 * e_s / n_s:.1f} per 1,000) had {outcome_words}; "
              f"of {n_h:,} held out, {e_h:,} ({1000 * e_h / n_h:.1f} per 1,000). ")
    if high < 0:
        verdict = (f"Being shown was followed by fewer: {_n(d)} fewer per 1,000 ({level} interval {_n(high)} to "
                   f"{_n(low)} fewer). The hold-out was random, so this supports a reduction of at least "
                   f"{_n(high)} per 1,000 (whatever the practices did with the lists).")
    elif low > 0:
        verdict = (f"Being shown was followed by more: {_n(d)} more per 1,000 ({level} interval {_n(low)} to "
                   f"{_n(high)} more). The lists did not reduce {outcome_words} here; a review that finds unmet "
                   f"needs can lead to admissions.")
    else:
        verdict = (f"Consistent with no effect: being shown changed the rate by {d:+.1f} per 1,000 ({level} interval "
                   f"{_n(low)} fewer to {_n(high)} more). It cannot rule out a reduction of up to {_n(low)} per 1,000, "
                   f"nor an increase of up to {_n(high)} per 1,000.")
    warning = ""
    if effect.get("too_few"):
        warning = (f" Too few people to say anything useful: fewer than {HOLDOUT_MIN_HELD} held out or "
                   f"{HOLDOUT_MIN_EVENTS} events in all; pool more months or keep a larger hold-out.")
    return counts + verdict + warning
