"""Outcome labels for an index date T, with the rules that keep them honest.

Labels use only events on or after T and before T + horizon (``T <= date < T + horizon_days``);
features use events before T, so no day is in both. People who died before T are not eligible and
get no label. A person whose follow-up (the extract end, or the end of their registration) stops
before T + horizon without the outcome having happened is censored (NaN), never negative.

The outcomes themselves are defined in :mod:`riskstrat.outcomes`; this module holds what they share.

>>> TARGETS
('emergency_admission', 'unplanned_hospital_use', 'death', 'high_cost', 'social_care_entry')
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrat.features import person_positions, sum_by_position
from riskstrat.errors import InvalidInputError, RiskstratError
from riskstrat.outcomes import OUTCOMES, DeathHandling, Outcome, parse_outcome
from riskstrat.records import LinkedRecords

TARGETS = tuple(OUTCOMES)


class CensoredIndexDateError(RiskstratError, ValueError):
    """The extract does not cover the whole horizon after this index date."""


def _positions_in(df: pd.DataFrame, date_col: str, t: pd.Timestamp, end: pd.Timestamp, ids: pd.Index,
                  rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row mask, person positions in ``ids``) of the events dated in ``[t, end)`` of people ``ids``
    (only among ``rows`` when given)."""
    d = df[date_col]
    pos = person_positions(df["person_id"], ids)
    keep = ((d >= t) & (d < end)).to_numpy() & (pos >= 0)
    if rows is not None:
        keep &= rows
    return keep, pos[keep]


def future_cost(records: LinkedRecords, index_date, ids: pd.Index, *, horizon_days: int = 365) -> pd.Series:
    """Total health and social care cost of each person in ``[T, T + horizon)`` (pounds)."""
    t = pd.Timestamp(index_date)
    end = t + pd.Timedelta(days=horizon_days)
    total = np.zeros(len(ids))
    for name, col in (("inpatient_spells", "admission_date"), ("ae_attendances", "arrival_date"),
                      ("outpatient_appointments", "appointment_date"), ("gp_contacts", "contact_date"),
                      ("prescriptions", "issue_date")):
        if records.has(name):
            ev = records.get(name)
            keep, pos = _positions_in(ev, col, t, end, ids)
            total += sum_by_position(ev["cost"].to_numpy(dtype="float64", na_value=0.0)[keep], pos, len(ids))
    if records.has("social_care"):
        sc = records.get("social_care")
        pos = person_positions(sc["person_id"], ids)
        sc, pos = sc[pos >= 0], pos[pos >= 0]
        s = sc["start_date"].where(sc["start_date"] > t, t)
        e = sc["end_date"].fillna(end).where(lambda x: x < end, end)
        days = (e - s).dt.days.clip(lower=0)
        total += sum_by_position(sc["weekly_cost"].fillna(0) * days / 7, pos, len(ids))
    return pd.Series(total, index=ids)


def check_horizon(index_date, *, horizon_days: int, extract_end) -> None:
    """Raise CensoredIndexDateError unless the extract covers ``[T, T + horizon)``."""
    t = pd.Timestamp(index_date).normalize()
    extract_end = pd.Timestamp(extract_end)
    if t + pd.Timedelta(days=horizon_days) > extract_end + pd.Timedelta(days=1):
        raise CensoredIndexDateError(
            f"index date {t.date()} + {horizon_days} days runs past the end of the data ({extract_end.date()}): "
            f"its labels would be censored; use an index date on or before "
            f"{(extract_end + pd.Timedelta(days=1) - pd.Timedelta(days=horizon_days)).date()} "
            f"(or let riskstrat choose: index_dates: auto)")


def build_labels(records: LinkedRecords, index_date, ids: pd.Index, *, target: str | Outcome = "emergency_admission",
                 horizon_days: int = 365, extract_end, death: DeathHandling = "composite",
                 top_fraction: float = 0.05) -> pd.Series:
    """The label (1.0 / 0.0 / NaN = no label) of ``target`` for the people ``ids`` eligible at T.

    ``target`` is an outcome (:mod:`riskstrat.outcomes`) or the name of a built-in one, which then
    takes ``horizon_days`` and, where it has them, ``death`` (``composite`` counts death as an
    outcome, SPARRA v4; ``exclude`` drops people who died in the horizon without the event;
    ``negative`` counts them as negatives) and ``top_fraction`` (the high-cost threshold).
    """
    if isinstance(target, Outcome):
        outcome = target
    else:
        if target not in OUTCOMES:
            raise InvalidInputError(f"unknown target {target!r}; choose one of {', '.join(OUTCOMES)}")
        fields = OUTCOMES[target].model_fields
        settings = {"horizon_days": horizon_days, "death": death, "top_fraction": top_fraction}
        outcome = parse_outcome({"name": target, **{k: v for k, v in settings.items() if k in fields}})
    return outcome.labels(records, index_date, ids, extract_end=extract_end)
