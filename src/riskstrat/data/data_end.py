"""Where the data end: the last day an extract covers, for training, evaluation, monitoring and scoring.

An explicit end wins: the config's ``data.extract_end``, else the data set's ``dataset.json``
``extract_end``. Without one the end is read from the data, from where the monthly event volume
stops rather than from the latest date, so that one mistyped date (an event dated months after the
extract was taken) does not move the end (:func:`volume_end`):

- count the events of every event table together per calendar month (months without events left
  out); a month that directly follows one with events has its count scaled to the days it covers
  (from the 1st to its last event, at least a week), so that a month cut short by the extract counts
  as a full one;
- the data end is the last month whose count reaches half the median of the 12 months with events
  before it (of all earlier ones when there are fewer; the first month always does);
- and it is that month's last event date, not the month's end: an extract taken on the 20th then
  ends on the 20th, and no label or staleness check counts days the data do not show as event-free.

Events after that end are counted (:attr:`DataEnd.events_after`) and reported
(:attr:`DataEnd.warning`). Engines supply the monthly counts (``event_months``: one row per month
with ``events``, ``first``, ``last``); this module only picks the end from them.

>>> dates = [f"2024-{m:02d}-{d:02d}" for m in (1, 2, 3) for d in (1, 10, 20, 28)] + ["2025-02-14"]
>>> found = volume_end(month_counts(pd.Series(pd.to_datetime(dates))))
>>> str(found.end.date()), found.events_after, str(found.latest.date())
('2024-03-28', 1, '2025-02-14')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.errors import RiskstratError
from riskstrat.data.io import dataset_metadata

__all__ = ["DataEnd", "MONTH_COLUMNS", "UnknownDataEndError", "combine_months", "data_end_of", "month_counts",
           "volume_end"]

MONTH_COLUMNS = ("events", "first", "last")
# A month ends the data when its volume is below this share of the median of the months before it.
MIN_SHARE = 0.5
REFERENCE_MONTHS = 12
# A month's count is scaled to the days it covers, but never as if it covered less than a week:
# a stray event dated on the 1st (a month-precision date) must not count as a full month of volume.
MIN_COVERED_DAYS = 7


class UnknownDataEndError(RiskstratError, ValueError):
    """No explicit extract end and no event to read one from."""


@dataclass(frozen=True)
class DataEnd:
    """The last day the data cover (``end``, None if unknown), where that came from (``source``:
    ``data.extract_end``, ``dataset.json``, ``event volume``, or ``""``), and, for an end read from
    the event volume, the events dated after it (``events_after``) and the latest of them (``latest``)."""

    end: pd.Timestamp | None
    source: str = ""
    events_after: int = 0
    latest: pd.Timestamp | None = None

    @property
    def warning(self) -> str | None:
        """The line to show when events after the end were left out of it, else None."""
        if not self.events_after:
            return None
        return (f"{self.events_after:,} event{'s' if self.events_after != 1 else ''} after the data end "
                f"({self.end.date()}; latest {self.latest.date()}) were left out of the data end: the event "
                f"volume stops at {self.end.date()}; check for mistyped dates, or set data.extract_end if the "
                f"extract really runs later")

    def require(self, data_dir) -> pd.Timestamp:
        """``end``, or :class:`UnknownDataEndError` naming ``data_dir`` when it is unknown."""
        if self.end is None:
            raise UnknownDataEndError(f"cannot tell where the data in {data_dir} end: no extract end in the config "
                                      f"or dataset.json, and no events up to today; set data.extract_end")
        return self.end

    def as_dict(self) -> dict:
        """JSON-able, for run records and reports (dates and counts only)."""
        return {"data_end": str(self.end.date()) if self.end is not None else None, "data_end_source": self.source,
                "events_after_data_end": int(self.events_after),
                "latest_event": str(self.latest.date()) if self.latest is not None else None}


def month_counts(dates: pd.Series) -> pd.DataFrame:
    """Events per calendar month of ``dates`` (missing dates left out): indexed by the month's first
    day, with ``events``, ``first`` and ``last`` (the month's earliest and latest date)."""
    dates = pd.to_datetime(pd.Series(dates)).dropna().dt.normalize()
    if dates.empty:
        return _empty_months()
    month = dates.dt.to_period("M").dt.to_timestamp()
    grouped = dates.groupby(month.to_numpy())
    frame = pd.DataFrame({"events": grouped.size().astype("int64"), "first": grouped.min(), "last": grouped.max()})
    frame.index.name = "month"
    return _tidy(frame)


def combine_months(parts) -> pd.DataFrame:
    """Monthly counts of several tables (frames as :func:`month_counts` returns) as one."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return _empty_months()
    joined = pd.concat(parts)
    grouped = joined.groupby(level=0)
    frame = pd.DataFrame({"events": grouped["events"].sum(), "first": grouped["first"].min(),
                          "last": grouped["last"].max()})
    frame.index.name = "month"
    return _tidy(frame)


def volume_end(months: pd.DataFrame, *, min_share: float = MIN_SHARE,
               reference_months: int = REFERENCE_MONTHS) -> DataEnd:
    """The data end read from monthly event counts (see the module): the last day with events of the
    last month whose volume reaches ``min_share`` of the median of the ``reference_months`` months
    with events before it. ``DataEnd(None)`` when there are no events."""
    months = _tidy(months)
    months = months[months["events"] > 0]
    if months.empty:
        return DataEnd(None)
    events = months["events"].to_numpy(dtype=float)
    last = pd.DatetimeIndex(months["last"])
    month_days = months.index.days_in_month.to_numpy()
    covered = np.maximum((last - months.index).days.to_numpy() + 1, MIN_COVERED_DAYS)
    # A month cut short by the extract is scaled to a full one; only a month that follows a month with
    # events: after a gap there is no extract to cut, and a stray is judged on its own count.
    follows = np.r_[False, (months.index[1:] - pd.DateOffset(months=1)) == months.index[:-1]]
    volume = np.where(follows, events * month_days / np.minimum(covered, month_days), events)
    chosen = 0
    for i in range(len(months) - 1, 0, -1):
        if volume[i] >= min_share * np.median(events[max(0, i - reference_months):i]):
            chosen = i
            break
    after = int(events[chosen + 1:].sum())
    return DataEnd(pd.Timestamp(last[chosen]), "event volume", after, pd.Timestamp(last.max()) if after else None)


def data_end_of(data_dir, records=None, *, configured=None, today=None) -> DataEnd:
    """The data end of the data set in ``data_dir``: ``configured`` (``data.extract_end``), else its
    dataset.json ``extract_end``, else (given ``records``: LinkedRecords or a feature engine, anything
    with ``event_months(until=)``) read from the event volume up to ``today`` (:func:`volume_end`;
    later dates are in the future, and validation drops them). ``DataEnd(None)`` if unknown."""
    if configured is not None:
        return DataEnd(pd.Timestamp(configured).normalize(), "data.extract_end")
    meta = dataset_metadata(Path(data_dir))  # refuses a newer schema version
    if meta.get("extract_end"):
        return DataEnd(pd.Timestamp(meta["extract_end"]).normalize(), "dataset.json")
    if records is None:
        return DataEnd(None)
    today = pd.Timestamp(today if today is not None else pd.Timestamp.today()).normalize()
    return volume_end(records.event_months(until=today))


def _empty_months() -> pd.DataFrame:
    frame = pd.DataFrame({"events": pd.Series(dtype="int64"), "first": pd.Series(dtype="datetime64[s]"),
                          "last": pd.Series(dtype="datetime64[s]")}, index=pd.DatetimeIndex([], name="month"))
    return frame


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """One canonical form (month index as datetime64[s], sorted; int64 counts; datetime64[s] dates), so
    that every engine's counts compare equal."""
    frame = frame.copy()
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index)).astype("datetime64[s]")
    frame.index.name = "month"
    frame["events"] = frame["events"].astype("int64")
    for column in ("first", "last"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[s]")
    return frame.sort_index()[list(MONTH_COLUMNS)]
