"""Guard rails: refuse what the data cannot support, and say why and what to do.

Three checks, each a plain function that raises a :class:`~riskstrat.errors.RiskstratError`:

- :func:`check_minimum_events`: enough outcome events (and non-events) in the training,
  calibration and test rows to fit, calibrate and judge a model (Riley et al., BMJ 2020; external
  validation needs on the order of 100-200 events for stable calibration estimates). The message
  names the likely cause, read from the data (:func:`likely_cause`).
- :func:`degenerate_reasons`: why a fitted model is no model at all (a single tree, a constant
  score, a test AUROC interval that includes 0.5); the pipeline refuses to register it.
- :func:`check_data_currency`: a scoring date no later than the extract's end plus a lag.

>>> degenerate_reasons(best_iteration=1, test_scores=[0.1, 0.1, 0.1], auroc_ci=(0.45, 0.55))
['single-tree', 'constant-score', 'auroc-interval-includes-0.5']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from riskstrat.errors import RiskstratError

__all__ = ["DegenerateModelError", "InsufficientEventsError", "StaleDataError", "check_data_currency",
           "check_minimum_events", "degenerate_reasons", "describe_degenerate", "event_counts", "likely_cause",
           "people_needed"]

DEGENERATE_TAG = "riskstrat.degenerate"  # on runs and model versions: reason codes joined by ','
_DEGENERATE_WORDS = {
    "single-tree": "early stopping kept at most one tree (the model learned nothing beyond the average)",
    "constant-score": "the test scores take fewer than {min_distinct} distinct values (a near-constant score)",
    "auroc-interval-includes-0.5": "the test AUROC's 95% interval reaches 0.5 or lies below it (no better than chance)",
}


class InsufficientEventsError(RiskstratError):
    """Too few outcome events (or non-events) to train, calibrate or test a model."""


class DegenerateModelError(RiskstratError):
    """A model that ranks nobody (one tree, a constant score, chance-level AUROC), refused.

    ``run`` holds the :class:`riskstrat.pipelines.train.TrainingRun` when training raised it, so that a
    caller can still show the metrics that explain the refusal.
    """

    def __init__(self, message: str, *, reasons: Sequence[str] = (), run=None):
        super().__init__(message)
        self.reasons = list(reasons)
        self.run = run


class StaleDataError(RiskstratError):
    """A scoring date too long after the data end: recent events would be missing, not absent."""


# ----------------------------------------------------------------------------- events


def event_counts(labels: Mapping[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Rows, events and non-events per part, e.g. ``{"training": {"rows": 5, "events": 2, "non_events": 3}}``."""
    out = {}
    for part, y in labels.items():
        y = np.asarray(y)
        events = int(np.sum(y == 1))
        out[part] = {"rows": int(len(y)), "events": events, "non_events": int(len(y) - events)}
    return out


def people_needed(minimum: int, rate: float, share: float) -> int | None:
    """Eligible people a data set needs so that a part holding ``share`` rows per person (the split
    fraction times its index dates) expects ``minimum`` events at event ``rate``:
    ``ceil(minimum / (rate x share))``. None when the rate is 0 (no number of people is enough).

    >>> people_needed(100, 0.05, 0.3)
    6667
    """
    if rate <= 0 or share <= 0:
        return None
    # rounded before ceil: a quotient that is whole on paper can come out a hair above it in floating point
    return int(math.ceil(round(minimum / (rate * share), 6)))


def likely_cause(records, target: str, *, tables: tuple[str, ...] = ()) -> str:
    """A sentence naming why ``target`` may have few events in ``records``, from what the tables hold.

    ``tables`` are the tables the outcome reads (``Outcome.tables``): one that is absent or empty is
    named for any outcome, including one declared in YAML. Returns "" when nothing in the data
    explains it (then the population or dates are too small).
    """
    if records is None:
        return ""
    hospital = ("emergency_admission", "unplanned_hospital_use")
    if target in hospital:
        if not records.has("inpatient_spells"):
            spells = "the data have no inpatient spells"
        else:
            method = records.get("inpatient_spells")["admission_method"].astype("str")
            n, emergency, unknown = len(method), int((method == "emergency").sum()), int((method == "unknown").sum())
            spells = ""
            if n == 0:
                spells = "the inpatient spells table is empty"
            elif emergency < 0.05 * n:
                spells = (f"only {emergency:,} of {n:,} inpatient spells are recorded as emergency admissions "
                          f"({unknown:,} have an unknown admission method): the admission method is probably "
                          f"not recorded in this extract")
        if spells and target == "emergency_admission":
            ae = records.has("ae_attendances") and len(records.get("ae_attendances")) > 0
            suggestion = ("; the data hold A&E attendances, so try --set target.name=unplanned_hospital_use "
                          "(an admission not recorded as planned, or an A&E attendance)" if ae else "")
            return spells + suggestion
        if target == "unplanned_hospital_use" and spells and not (
                records.has("ae_attendances") and len(records.get("ae_attendances")) > 0):
            return spells + " and there are no A&E attendances"
    if target == "death" or (target in hospital and records.has("persons")):
        deaths = int(records.persons["death_date"].notna().sum()) if "death_date" in records.persons else 0
        if target == "death" and deaths == 0:
            return "no deaths are recorded in the persons table (death_date is blank for everyone)"
    if target == "high_cost":
        total = 0.0
        for name in ("inpatient_spells", "ae_attendances", "outpatient_appointments", "gp_contacts", "prescriptions"):
            if records.has(name) and "cost" in records.get(name):
                total += float(records.get(name)["cost"].fillna(0).sum())
        if records.has("social_care") and "weekly_cost" in records.get("social_care"):
            total += float(records.get("social_care")["weekly_cost"].fillna(0).sum())
        if total == 0:
            return "no costs are recorded (every cost column is blank or zero), so nobody can be high cost"
    if target == "social_care_entry":
        if not records.has("social_care"):
            return ("the data have no social care table (or it is switched off in data.exclude_sources): "
                    "this outcome needs linked adult social care records")
        if len(records.get("social_care")) == 0:
            return "the social care table is empty"
    if target not in ("emergency_admission", "unplanned_hospital_use", "death", "high_cost", "social_care_entry"):
        for name in tables:  # an outcome declared in YAML: the table it reads
            if not records.has(name):
                return (f"the data have no {name} table (or it is switched off in data.exclude_sources), "
                        f"which this outcome reads")
            if len(records.get(name)) == 0:
                return f"the {name} table is empty"
    return ""


def check_minimum_events(labels: Mapping[str, np.ndarray], *, minimums: Mapping[str, int], target: str,
                         records=None, tables: tuple[str, ...] = (), temporal_only: bool = False,
                         shares: Mapping[str, float] | None = None) -> dict[str, dict[str, int]]:
    """Refuse (:class:`InsufficientEventsError`) when a part has fewer events or non-events than its minimum.

    ``labels`` maps a part ("training", "calibration", "test") to its 0/1 labels and ``minimums``
    the same parts to the least number of events (and of non-events) each needs. Returns
    :func:`event_counts` when every part has enough. The refusal gives each short part's rate and,
    with ``shares`` (rows each eligible person gives the part: its split fraction times its index
    dates), about how many eligible people would be needed (:func:`people_needed`), as the import
    report's "can support" does.

    >>> check_minimum_events({"test": np.array([0, 1, 1, 0])}, minimums={"test": 2}, target="death")
    {'test': {'rows': 4, 'events': 2, 'non_events': 2}}
    """
    counts = event_counts(labels)
    short = []
    for part, c in counts.items():
        need = int(minimums.get(part, 0))
        fewer = min(c["events"], c["non_events"])
        if fewer < need:
            kind = "events" if c["events"] <= c["non_events"] else "non-events"
            # A part with none of them by chance takes the rate over every part.
            pooled = sum(x["events" if kind == "events" else "non_events"] for x in counts.values())
            rows = sum(x["rows"] for x in counts.values())
            short.append(f"{part}: {fewer:,} {kind} in {c['rows']:,} rows (at least {need:,} needed)"
                         + _needed_people(fewer, c["rows"], need, (shares or {}).get(part), kind,
                                          pooled=(pooled, rows)))
    if not short:
        return counts
    cause = likely_cause(records, target, tables=tables)
    message = (f"too few outcomes ({target.replace('_', ' ')}) to train, calibrate and test a model: the data are "
               f"too small for the guard minimums at these index dates:\n  " + "\n  ".join(short))
    if cause:
        message += f"\nlikely cause: {cause}"
    split = "" if temporal_only else ("use split.mode=temporal_only (tests everyone at the test date; see the "
                                       "README), ")
    message += ("\nwhat to do: add people or training index dates, choose a later test date with a longer extract, "
                f"{split}or choose an outcome these data record; the minimums are guards.min_events_* (lower them only knowing that "
                "estimates from fewer events are unstable)")
    raise InsufficientEventsError(message)


def _needed_people(fewer: int, rows: int, need: int, share: float | None, kind: str, *,
                   pooled: tuple[int, int]) -> str:
    """'; rate r: about M eligible people would be needed (need / (r x share))' for a short
    part; its rate is the part's own, or over every part (``pooled``: count, rows) when it has none."""
    rate, over = (fewer / rows, "") if fewer and rows else (pooled[0] / pooled[1] if pooled[1] else 0.0,
                                                             " over every part")
    if rate == 0:
        return f"; no {kind} at all, so no number of people is enough"
    if not share:
        return f"; rate{over} {rate:.1%}: about {people_needed(need, rate, 1.0):,} rows would be needed"
    return (f"; rate{over} {rate:.1%}: about {people_needed(need, rate, share):,} eligible people would be "
            f"needed ({need:,} / ({rate:.1%} x {share:g}))")


# ----------------------------------------------------------------------------- degenerate models


def degenerate_reasons(*, best_iteration: int | None, test_scores, auroc_ci: tuple[float, float] | None,
                       min_distinct_scores: int = 3) -> list[str]:
    """Short codes saying why a fitted model is degenerate ([] when it is not).

    ``single-tree`` (early stopping kept at most one tree), ``constant-score`` (fewer than
    ``min_distinct_scores`` distinct test scores), ``auroc-interval-includes-0.5`` (the test AUROC's
    bootstrap interval reaches chance, or lies below it: worse than chance is no better).
    """
    reasons = []
    if best_iteration is not None and best_iteration <= 1:
        reasons.append("single-tree")
    scores = np.asarray(test_scores, dtype="float64")
    if len(np.unique(np.round(scores[np.isfinite(scores)], 12))) < min_distinct_scores:
        reasons.append("constant-score")
    if auroc_ci is not None:
        low, high = auroc_ci
        if low is None or high is None or not np.isfinite(low) or not np.isfinite(high) or low <= 0.5:
            reasons.append("auroc-interval-includes-0.5")
    return reasons


def describe_degenerate(reasons: Sequence[str], *, min_distinct_scores: int = 3) -> str:
    """The reasons in words, joined by '; '."""
    return "; ".join(_DEGENERATE_WORDS.get(r, r).format(min_distinct=min_distinct_scores) for r in reasons)


# ----------------------------------------------------------------------------- data currency


def check_data_currency(as_of, data_end, *, max_lag_days: int) -> pd.Timestamp:
    """Refuse (:class:`StaleDataError`) a scoring date after ``data_end + max_lag_days``.

    Features count events before the scoring date; events after the data end are not in the
    extract, so a late date makes everyone look healthier than they are. Returns the latest
    allowed date.

    >>> str(check_data_currency("2025-12-01", "2025-10-31", max_lag_days=62).date())
    '2026-01-01'
    """
    data_end = pd.Timestamp(data_end).normalize()
    latest = data_end + pd.Timedelta(days=max_lag_days)
    as_of = pd.Timestamp(as_of).normalize()
    if as_of > latest:
        raise StaleDataError(
            f"the data run to {data_end.date()} but the scoring date is {as_of.date()}, "
            f"{(as_of - data_end).days} days later: events since {data_end.date()} are missing, so recent "
            f"admissions would count as none and risks would be too low. The latest allowed date is "
            f"{latest.date()} (scoring max_data_lag_days={max_lag_days}); score with a newer extract, an "
            f"earlier --as-of, or --allow-stale-data to accept the degraded list")
    return latest
