"""LinkedRecords: the in-memory linked data set (one DataFrame per canonical table)."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field

import pandas as pd

from riskstrat.data.data_end import combine_months, month_counts
from riskstrat.data.schema import EVENT_TABLES, TABLES, empty_table, pandas_dtype


@dataclass
class LinkedRecords:
    """A validated linked data set: ``tables`` maps table name to a DataFrame in canonical dtypes.

    Absent optional tables are simply missing from ``tables``; :meth:`get` returns an empty table
    with the right columns so that feature code need not special-case them.
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    # What validation did on the way in (rows dropped per table, empty tables), for run counts.
    validation: dict = field(default_factory=dict, compare=False, repr=False)
    # The persons' ids as :func:`person_categories` makes them, when the caller holds them already (an
    # engine asked for tables again and again: 0.3-0.5 s a table at 1M people to make them anew).
    person_ids: InitVar[pd.Index | None] = None

    def __post_init__(self, person_ids: pd.Index | None = None) -> None:
        unknown = set(self.tables) - set(TABLES)
        if unknown:
            raise ValueError(f"unknown tables {sorted(unknown)}; known: {sorted(TABLES)}")
        if "persons" not in self.tables:
            raise ValueError("a linked data set needs a 'persons' table")
        self._categories = person_ids
        self.tables = {name: self._keyed(name, _with_defaults(name, df)) for name, df in self.tables.items()}

    def _keyed(self, name: str, df: pd.DataFrame) -> pd.DataFrame:
        """Event tables hold ``person_id`` as a categorical over the persons' ids: 4 bytes a row
        instead of a string, and feature code maps rows to people by integer codes.
        Ids that are not in persons (validation refuses them) become missing."""
        if name == "persons" or "person_id" not in df.columns:
            return df
        categories = self._person_categories()
        ids = df["person_id"]
        if isinstance(ids.dtype, pd.CategoricalDtype) and ids.cat.categories.equals(categories):
            return df
        return df.assign(person_id=pd.Categorical(ids, categories=categories))

    def _person_categories(self) -> pd.Index:
        if getattr(self, "_categories", None) is None:
            self._categories = person_categories(self.tables["persons"])
        return self._categories

    @property
    def persons(self) -> pd.DataFrame:
        return self.tables["persons"]

    def get(self, name: str) -> pd.DataFrame:
        """Table ``name``, or an empty canonical table if this data set does not have it."""
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}")
        return self.tables[name] if name in self.tables else empty_table(name)

    def has(self, name: str) -> bool:
        return name in self.tables

    @property
    def sources(self) -> list[str]:
        """The event tables present, in canonical order."""
        return [t for t in EVENT_TABLES if t in self.tables]

    def without(self, *names: str) -> "LinkedRecords":
        """A copy without the named optional tables (e.g. to switch off social care by config)."""
        if "persons" in names:
            raise ValueError("persons cannot be dropped")
        return LinkedRecords({k: v for k, v in self.tables.items() if k not in names})

    def row_counts(self) -> dict[str, int]:
        return {name: len(df) for name, df in self.tables.items()}

    def date_range(self, *, until=None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """Earliest and latest event date over all event tables (ignoring dates after ``until``)."""
        lows, highs = [], []
        for name in self.sources:
            col = TABLES[name].event_date
            dates = self.tables[name][col]
            if until is not None:
                dates = dates[dates <= pd.Timestamp(until)]
            if len(dates) and dates.notna().any():
                lows.append(dates.min())
                highs.append(dates.max())
        return (min(lows) if lows else None, max(highs) if highs else None)

    def event_months(self, *, until=None) -> pd.DataFrame:
        """Events per calendar month over all event tables together (dates after ``until`` ignored):
        :func:`riskstrat.data.data_end.month_counts`, what :func:`riskstrat.data.data_end.volume_end` reads."""
        parts = []
        for name in self.sources:
            dates = self.tables[name][TABLES[name].event_date]
            if until is not None:
                dates = dates[dates <= pd.Timestamp(until)]
            parts.append(month_counts(dates))
        return combine_months(parts)


def person_categories(persons: pd.DataFrame) -> pd.Index:
    """The categories of the event tables' ``person_id``: the persons' ids, in their order."""
    ids = persons["person_id"]
    return pd.Index(ids.dropna().unique(), dtype=ids.dtype)


def _with_defaults(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each column that has a default for blanks (``Column.missing_as``) present and filled:
    what validation does, for tables made in memory (a data set from before the column existed)."""
    fill = {}
    for col in TABLES[name].columns:
        if col.missing_as is None:
            continue
        if col.name not in df.columns:
            fill[col.name] = pd.Series(col.missing_as, index=df.index, dtype=pandas_dtype(col))
        elif df[col.name].isna().any():
            fill[col.name] = df[col.name].astype(pandas_dtype(col)).fillna(col.missing_as)
    return df.assign(**fill) if fill else df
