"""The outcome interface: what every outcome definition provides.

An outcome is a validated config object (pydantic, ``extra="forbid"``) that knows how to label the
people eligible at an index date T over ``[T, T + horizon_days)``. The base class does what is the
same for every outcome, in one place:

- the extract must cover the whole horizon (:func:`check_horizon`);
- follow-up ends at registration end; a person who leaves before the horizon ends is censored (NaN)
  unless the outcome (or death, where death ends follow-up) was seen first;
- death in the horizon is handled as the outcome says (``composite | exclude | negative``).

A subclass implements :meth:`Outcome.events` (who has the event in the window, and who is not at
risk at T) and states its ``words`` (what the lists call it) and, where the synthetic generator has
one, its ``truth_column``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from riskstrat.errors import RiskstratError
from riskstrat.features.clinical import person_positions
from riskstrat.data.records import LinkedRecords

DeathHandling = Literal["composite", "exclude", "negative"]


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


class Window:
    """The label window of one index date: ``[t, end)`` over the people ``ids``."""

    def __init__(self, index_date, horizon_days: int, ids: pd.Index):
        self.t = pd.Timestamp(index_date).normalize()
        self.end = self.t + pd.Timedelta(days=horizon_days)
        self.horizon_days = horizon_days
        self.ids = ids
        # Per person: followed to the end of the window (or died in it). Set by Outcome.labels.
        self.followed: np.ndarray = np.ones(len(ids), bool)

    def positions(self, df: pd.DataFrame, date_col: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Positions in ``ids`` of the people with a row of ``df`` dated in the window (among ``rows``)."""
        return _positions_in(df, date_col, self.t, self.end, self.ids, rows=rows)[1]

    def anyone(self, positions: np.ndarray) -> np.ndarray:
        """Boolean per person: at least one of ``positions`` is theirs."""
        return np.bincount(positions, minlength=len(self.ids)) > 0


class Outcome(BaseModel, ABC):
    """Base of every outcome definition (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    horizon_days: int = Field(365, ge=30, le=1095, description="Label window after the index date, in days.")

    # Tables the outcome reads (besides persons); the guard rails name them when events are missing.
    tables: ClassVar[tuple[str, ...]] = ()
    # Whether dying in the window is handled by the ``death`` setting (outcomes of events a death prevents).
    death_applies: ClassVar[bool] = False

    # Every outcome also has ``words``: what a person reads ("an emergency admission or death"),
    # a property of the built-ins and a field of an outcome declared in YAML.

    @property
    def truth_column(self) -> str | None:
        """The synthetic ground truth's column for this outcome, if the generator has one."""
        return None

    @property
    def death_handling(self) -> DeathHandling | None:
        return getattr(self, "death", None) if self.death_applies else None

    @abstractmethod
    def events(self, records: LinkedRecords, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        """(has the event in the window, not at risk at T or None) per person of ``window.ids``."""

    def labels(self, records: LinkedRecords, index_date, ids: pd.Index, *, extract_end) -> pd.Series:
        """1.0 / 0.0 / NaN (no label) for the people ``ids`` eligible at ``index_date``."""
        check_horizon(index_date, horizon_days=self.horizon_days, extract_end=extract_end)
        window = Window(index_date, self.horizon_days, ids)
        persons = records.persons.set_index("person_id").reindex(ids)
        died = persons["death_date"].between(window.t, window.end - pd.Timedelta(days=1)).to_numpy()
        # Follow-up ends at registration end (moved away); an outcome seen before then still counts.
        reg_end = persons["registration_end"]
        followed = (reg_end.isna() | (reg_end >= window.end - pd.Timedelta(days=1))).to_numpy() | died

        window.followed = followed
        event, not_at_risk = self.events(records, window)
        y = event.astype(float)
        death = self.death_handling
        if death == "composite":
            y = (event | died).astype(float)
        elif death == "exclude":
            y = np.where(~event & died, np.nan, y)
        if not_at_risk is not None:
            y = np.where(not_at_risk, np.nan, y)
        y = np.where(followed | event, y, np.nan)
        return pd.Series(y, index=ids, name=self.name)

    def describe(self) -> dict:
        """Name, words and settings, for tracking and the model's metadata."""
        return {"name": self.name, "words": self.words, **self.model_dump(mode="json", exclude={"name"})}
