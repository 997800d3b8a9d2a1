"""The pandas reference engine: the spec's aggregates (:mod:`riskstrat.features.spec`) computed in
numpy from validated records in memory, and the features derived from them as every engine derives
them. The other engines (DuckDB, Spark) are held equal to :func:`build_features`.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd

from riskstrat.data.records import LinkedRecords
from riskstrat.data.validate import blank_costs
from riskstrat.features.clinical import PersonPositions, eligible_persons, person_positions
from riskstrat.features.spec import CLINICAL, DATE_COLUMNS, aggregates_for, feature_frame

__all__ = ["build_feature_frames", "build_features", "table_aggregates"]


def build_features(records: LinkedRecords, index_date, *, min_age: float = 18, max_age: float = 120,
                   spec=None) -> pd.DataFrame:
    """One row per eligible person on ``index_date``: the features (FEATURE_NAMES order) plus context.

    The index is ``person_id``; columns ``practice_id``, ``ethnicity_group`` and ``sex`` ride along
    as metadata (``META_COLUMNS``) for lists and subgroup metrics; they are not model inputs.
    Features of sources absent from ``records`` are all-missing (NaN).

    This is the reference engine: it computes the aggregates of :mod:`riskstrat.features.spec` in
    numpy (:func:`table_aggregates`) and derives the features from them with the spec's ``derive``,
    as every engine does. ``spec`` (:class:`riskstrat.features.spec.FeatureSpec`, default the clinical
    one) says which aggregates and features.
    """
    spec = spec or CLINICAL

    t = pd.Timestamp(index_date).normalize()
    people = eligible_persons(records, t, min_age=min_age, max_age=max_age).set_index("person_id")
    ids = people.index
    values: dict[str, np.ndarray] = {}
    positions = PersonPositions(ids)
    for name in records.sources:
        values.update(table_aggregates(records.get(name), name, t, ids, positions=positions,
                                       aggregates=spec.aggregates_for(name)))
    costless = {table for table, column in blank_costs(records) if column == "cost"}
    return feature_frame(people, values, set(records.sources), spec=spec, costless=costless)


def _days_before(dates: pd.Series | np.ndarray, t: pd.Timestamp) -> np.ndarray:
    """Whole days from each date to ``t`` (1 = the day before T), float64 with NaN where missing."""
    days = np.datetime64(t.date(), "D") - np.asarray(dates).astype("datetime64[D]")
    out = days.astype("int64").astype("float64")
    out[np.isnat(days)] = np.nan
    return out


def _matches(values: pd.Series, where) -> np.ndarray:
    """A spec ``Where`` over one column: True where it holds; a missing value never matches (also
    when negated), as SQL's ``IN`` and ``NOT IN`` treat NULL."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, distinct = values.cat.codes.to_numpy(), pd.Series(values.cat.categories)
    elif pd.api.types.is_bool_dtype(values.dtype):
        codes, distinct = values.to_numpy(dtype="int8", na_value=-1), pd.Series([False, True])
    else:
        codes, uniques = pd.factorize(values)
        distinct = pd.Series(uniques)
    if where.prefix_regex:
        hit = distinct.astype(str).str.match(f"(?:{where.values[0]})").to_numpy(dtype=bool)
    else:
        hit = distinct.isin(where.values).to_numpy(dtype=bool)
    if where.negate:
        hit = ~hit
    return np.append(hit, False)[codes]  # code -1 (missing) takes the appended False


def _row_value(name: str, rows, t: pd.Timestamp) -> np.ndarray:
    """The per-row values of :data:`riskstrat.features.spec.ROW_VALUES` (and plain columns), float64."""
    if name in ("cost", "weekly_cost"):
        return np.nan_to_num(rows.column(name).to_numpy(dtype="float64", na_value=np.nan), nan=0.0)
    if name == "cost_recorded":
        return (~np.isnan(rows.column("cost").to_numpy(dtype="float64", na_value=np.nan))).astype("float64")
    if name == "bed_days_before_T":
        end = np.fmax(_days_before(rows.column("discharge_date"), t), 0.0)  # blank or on/after T: T
        return np.maximum(rows.days - end, 0.0)
    if name == "cost_in_12m":
        weekly = np.nan_to_num(rows.column("weekly_cost").to_numpy(dtype="float64", na_value=np.nan), nan=0.0)
        end = np.fmax(_days_before(rows.column("end_date"), t), 0.0)
        start = np.minimum(rows.days, 365.0)
        return weekly * np.maximum(start - end, 0.0) / 7
    return rows.column(name).to_numpy(dtype="float64", na_value=np.nan)


class _Rows:
    """The rows of one table that an engine's aggregates can read (see :func:`table_aggregates`):
    their people's positions and days before T, and any column, taken when first asked for."""

    def __init__(self, df: pd.DataFrame, keep: np.ndarray, pos: np.ndarray, days: np.ndarray):
        self.df, self.at = df, np.flatnonzero(keep)
        self.pos, self.days = pos[self.at], days[self.at]
        self._columns: dict[str, pd.Series] = {}

    def column(self, name: str) -> pd.Series:
        if name not in self._columns:
            self._columns[name] = self.df[name].take(self.at).reset_index(drop=True)
        return self._columns[name]


def table_aggregates(df: pd.DataFrame, table: str, index_date, ids: pd.Index, *,
                     positions: Callable[[pd.Series], np.ndarray] | None = None,
                     aggregates=None) -> dict[str, np.ndarray]:
    """The spec's aggregates of ``table`` (:func:`riskstrat.features.spec.aggregates_for`), computed
    from its validated rows ``df`` as of ``index_date``: one float64 array per aggregate, a value per
    person of ``ids`` (the aggregate's ``fill`` for people with no matching row).

    >>> from riskstrat.data.schema import empty_table
    >>> table_aggregates(empty_table("ae_attendances"), "ae_attendances", "2024-01-01",
    ...                  pd.Index(["a"]))["days_since_ae"]
    array([731.])
    """
    t = pd.Timestamp(index_date).normalize()
    aggregates = aggregates_for(table) if aggregates is None else list(aggregates)
    n = len(ids)
    days = _days_before(df[DATE_COLUMNS[table]], t)
    pos = positions(df["person_id"]) if positions is not None else person_positions(df["person_id"], ids)
    # Only rows before T, of eligible people, inside the longest window are read at all.
    spans = [a.window[1] for a in aggregates]
    keep = (days >= 1) & (pos >= 0)
    if None not in spans:
        keep &= days <= max(spans)
    rows = _Rows(df, keep, pos, days)
    # Windows, filters and row values repeat across aggregates: each is computed once.
    masks: dict[object, np.ndarray] = {}
    row_values: dict[str, np.ndarray] = {}

    def mask(key, make) -> np.ndarray:
        if key not in masks:
            masks[key] = make()
        return masks[key]

    out = {}
    for a in aggregates:
        lo, hi = a.window
        m = mask(("window", lo, hi), lambda: (rows.days >= lo) & (rows.days <= hi) if hi is not None
                 else rows.days >= lo)
        for w in a.where:
            m = m & mask(w, lambda: _matches(rows.column(w.column), w))
        if a.ongoing:  # in place on T: no end, or an end on or after T
            m = m & mask("ongoing", lambda: ~(_days_before(rows.column("end_date"), t) >= 1))
        p = rows.pos[m]
        if a.kind in ("count", "any"):
            value = np.bincount(p, minlength=n).astype("float64")
            if a.kind == "any":
                value = (value > 0).astype("float64")
        elif a.kind == "sum":
            if a.value not in row_values:
                row_values[a.value] = _row_value(a.value, rows, t)
            value = np.bincount(p, weights=row_values[a.value][m], minlength=n)
        elif a.kind in ("min_days", "max_days"):
            value = np.full(n, np.inf if a.kind == "min_days" else -np.inf)
            (np.minimum if a.kind == "min_days" else np.maximum).at(value, p, rows.days[m])
            value[np.isinf(value)] = a.fill
        else:  # distinct values (missing ones not counted), per person
            column = rows.column(a.value)
            if isinstance(column.dtype, pd.CategoricalDtype):
                codes, k = column.cat.codes.to_numpy()[m], len(column.cat.categories)
            else:
                codes, uniques = pd.factorize(column[m])
                k = len(uniques)
            ok = codes >= 0
            # One flag per person and distinct value (a few per person: coded columns), then counted.
            seen = np.zeros(n * max(k, 1), dtype=bool)
            seen[p[ok] * k + codes[ok]] = True
            value = seen.reshape(n, max(k, 1)).sum(axis=1).astype("float64")
        if a.kind in ("count", "sum", "any", "distinct") and a.fill != 0:
            value[np.bincount(p, minlength=n) == 0] = a.fill
        out[a.name] = value
    return out


def build_feature_frames(records: LinkedRecords, index_dates: Iterable, *, min_age: float = 18,
                         max_age: float = 120, spec=None) -> pd.DataFrame:
    """Stacked person x index-date rows (MultiIndex ``person_id``, ``index_date``)."""
    frames = []
    for d in index_dates:
        f = build_features(records, d, min_age=min_age, max_age=max_age, spec=spec)
        f["index_date"] = pd.Timestamp(d)
        frames.append(f.set_index("index_date", append=True))
    return pd.concat(frames)
