"""The Spark engine's engine-neutral part: checks as counts, messages, the feature frame.

An engine that reads the Parquet folder itself reads only the persons table into pandas, validated by
:func:`riskstrat.validate.validate_tables` itself; the event tables stay in their files. The engine
supplies, in its own language (:class:`FolderEngine`'s ``_`` hooks): each file's column types, a
profile of its values, counts for the checks :func:`checks` lists, and one row of aggregates per
person. This module turns the counts into validation's issues (same rules, same messages) and the
aggregates into the feature frame (:func:`riskstrat.engines.spec.derive`), once for every engine.

The DuckDB engine (:mod:`riskstrat.engines.duckdb`) follows the same plan in its own module and does
not use this one (it gained one-pass checks, Parquet statistics and person row ids first); its
error class, :class:`~riskstrat.engines.duckdb.EngineDataError`, is shared, and both engines' refusals
are tested to be the same.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from riskstrat.engines.spec import DATE_COLUMNS, aggregates_for, derive
from riskstrat.engines.duckdb import EngineDataError
from riskstrat.schema import EVENT_TABLES, TABLES, Column, Table

__all__ = ["EngineDataError", "FolderEngine", "TablePlan", "checks", "out_of_life_tests", "read_window"]


class TablePlan:
    """How one event table's file maps onto its schema: which file column feeds each schema column
    (names matched as validation matches headers), the extra columns, the absent required ones; and,
    once profiled, each category column's codes and the columns found already clean."""

    def __init__(self, table: Table, path: Path, file_columns: dict[str, str]):
        self.table, self.path = table, path
        self.file_columns = file_columns  # file column -> the engine's type name
        by_key = {c.strip().lstrip("\ufeff").strip().lower(): c for c in file_columns}
        self.source: dict[str, str] = {}  # schema column -> file column
        for col in table.columns:
            if col.name in file_columns:
                self.source[col.name] = col.name
            elif col.name in by_key and by_key[col.name] not in table.column_names:
                self.source[col.name] = by_key[col.name]
        self.extras = [c for c in file_columns if c not in self.source.values()]
        self.absent = [c.name for c in table.columns if c.required and c.name not in self.source]
        # Category column -> {raw value: canonical code, None when blank or unknown}; and the unknown ones.
        self.code_map: dict[str, dict[str, str | None]] = {}
        self.unknown: dict[str, list[str]] = {}
        # Text and number columns found already clean (no outer spaces, no blanks, no NaN): read as they are.
        self.clean: set[str] = set()

    def stored(self, name: str) -> str:
        """The engine's type name of the file column feeding schema column ``name``."""
        return self.file_columns[self.source[name]]

    def unknown_codes(self, col: Column) -> list[str]:
        return self.unknown.get(col.name, [])

    def blank_codes(self, col: Column) -> list[str]:
        """Raw values of a category column that validation reads as missing (blank, not unknown)."""
        return [k for k, v in self.code_map.get(col.name, {}).items() if v is None and k not in self.unknown_codes(col)]

    def is_canonical(self, col: Column) -> bool:
        """Every raw value of the category column is already its canonical code (no per-row mapping)."""
        return all(k == v for k, v in (self.code_map.get(col.name) or {}).items())


def checks(plan: TablePlan) -> list[tuple[str, str, str | None]]:
    """Validation's row checks for one event table, as ``(rule, column, other column)``, in report order:
    ``missing_value`` (non-nullable columns), ``unknown_code``, ``wrong_type`` (infinite numbers),
    ``negative_cost`` (below the column's minimum), ``end_before_start`` (``column`` the end, ``other``
    the start)."""
    table, out = plan.table, []
    for col in table.columns:
        if col.name not in plan.source:
            continue
        if not col.nullable:
            out.append(("missing_value", col.name, None))
        if plan.unknown_codes(col):
            out.append(("unknown_code", col.name, None))
        if col.kind == "float":
            out.append(("wrong_type", col.name, None))
            if col.min_value is not None:
                out.append(("negative_cost", col.name, None))
    for start, end in table.ordered_dates:
        if start in plan.source and end in plan.source:
            out.append(("end_before_start", end, start))
    return out


def out_of_life_tests(table: Table, policy: str) -> list[tuple[str, str]]:
    """The tests that put a row outside its person's life, as ``(date column, "birth" | "death")``: any
    date before birth, any date after death, except (when such rows are dropped) an end date after
    death, which is administrative lag (the engine sets it to the date of death, :func:`clamped_ends`)."""
    ends = clamped_ends(table, policy)
    return [(c, "birth") for c in table.date_columns] + [(c, "death") for c in table.date_columns if c not in ends]


def clamped_ends(table: Table, policy: str) -> set[str]:
    """End dates set to the date of death when later (only when events outside a life are dropped)."""
    return {end for _, end in table.ordered_dates} if policy == "drop" else set()


def read_window(table: Table, options: dict) -> int | None | bool:
    """Which rows the features read: the event date before T and at most this many days before it
    (None: no limit). Repeats share their date, so removing repeats among these alone is exact for the
    features. False when repeats or events outside a life are errors: then every row is read and counted."""
    if "error" in (options["duplicate_rows"], options["out_of_life_events"]):
        return False
    spans = [a.window[1] for a in aggregates_for(table.name)]
    return None if None in spans else max(spans)


def parquet_files(data_dir: Path, exclude: Iterable[str], engine: str) -> dict[str, Path]:
    from riskstrat.io import table_files

    exclude = set(exclude)
    files = {name: path for name, path in table_files(data_dir).items() if name not in exclude}
    text = [p.name for p in files.values() if not p.name.endswith(".parquet")]
    if text:
        raise EngineDataError(f"{data_dir}: the {engine} engine reads Parquet only, and {', '.join(text)} "
                              f"{'is' if len(text) == 1 else 'are'} not; convert with riskstrat import, or "
                              f"use --engine pandas")
    return files


_CHECK_TEXTS = {
    "missing_value": "with no value, but the column is required; fill them in or remove the rows",
    "wrong_type": "with values that are not numbers; correct them to plain numbers such as 1234.5",
    "negative_cost": "with a negative cost; costs must be 0 or more (record refunds elsewhere, or blank "
                     "unknown costs)",
    "end_before_start": "with an end before the start; correct the dates or remove the rows",
}


class FolderEngine(ABC):
    """Features computed by an engine over a canonical Parquet folder; validation's checks as counts.

    A subclass implements the hooks (``_connect``, ``_file_columns``, ``_reads_as``, ``_profile``,
    ``_check_counts``, ``_aggregate_frame``, ``_date_span``); this class runs the checks, reports what
    they find as validation would, and builds the feature frame. ``exclude_sources`` are never read;
    ``out_of_life_events``, ``duplicate_rows`` and ``unknown_codes`` are validation's options
    (:func:`riskstrat.validate.validate_tables`). Raises :class:`~riskstrat.validate.ValidationError`
    when validation would refuse the data, :class:`EngineDataError` when the engine cannot read it.
    """

    name = "folder"  # what runs record: the subclass's engine name

    def __init__(self, data_dir: str | Path, *, exclude_sources: Iterable[str] = (), out_of_life_events: str = "drop",
                 duplicate_rows: str = "drop", unknown_codes: str = "error",
                 stage: Callable[[str], None] | None = None):
        from riskstrat.io import read_table_file
        from riskstrat.validate import ValidationError, _IssueLog, validate_tables

        self.data_dir = Path(data_dir)
        self.options = {"out_of_life_events": out_of_life_events, "duplicate_rows": duplicate_rows,
                        "unknown_codes": unknown_codes}
        self._stage = stage or (lambda message: None)
        self.files = files = parquet_files(self.data_dir, exclude_sources, self.name)
        # Persons: one row a person, validated by validation itself (the cohort comes from it).
        raw = {"persons": read_table_file(files["persons"])} if "persons" in files else {}
        records, self.report = validate_tables(raw, files={k: v for k, v in files.items() if k == "persons"},
                                               **self.options)
        if records is None:
            raise ValidationError(self.report)
        self.persons = records.persons
        self._persons_only = records
        self._connect()

        self._log = _IssueLog(files)
        self._log.issues = self.report.issues  # one report: persons' issues, then the engine's checks
        self.plans: dict[str, TablePlan] = {}
        self.row_counts: dict[str, int] = {"persons": len(self.persons)}
        for name in EVENT_TABLES:
            if name in files:
                self._check_table(TABLES[name], files[name])
        if not self.report.ok:
            raise ValidationError(self.report)
        self._reported: dict[str, bool] = {}
        self._links_checked: set[str] = set()

    # ------------------------------------------------------------------ what the scoring run asks

    @property
    def records(self):
        """The validated persons as :class:`~riskstrat.records.LinkedRecords` (no event tables: they stay in
        their files), for what scoring needs of people (cohort counts, opt-outs, re-identification)."""
        return self._persons_only

    @property
    def sources(self) -> list[str]:
        return [t for t in EVENT_TABLES if t in self.plans]

    def has(self, name: str) -> bool:
        return name == "persons" or name in self.plans

    def date_range(self, *, until=None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """Earliest and latest event date over the event tables (events outside a life left out, as
        validation drops them; dates after ``until`` ignored, as :meth:`LinkedRecords.date_range`)."""
        until = pd.Timestamp(until).normalize() if until is not None else None
        spans = [self._date_span(plan, until) for plan in self.plans.values()]
        lows = [pd.Timestamp(low) for low, _ in spans if low is not None]
        highs = [pd.Timestamp(high) for _, high in spans if high is not None]
        return (min(lows) if lows else None, max(highs) if highs else None)

    def features(self, index_date, *, min_age: float = 18, max_age: float = 120) -> pd.DataFrame:
        """The feature frame for ``index_date``: equal to ``build_features`` on the validated records."""
        from riskstrat.features import eligible_persons

        t = pd.Timestamp(index_date).normalize()
        people = eligible_persons(self._persons_only, t, min_age=min_age, max_age=max_age).set_index("person_id")
        values: dict[str, np.ndarray] = {}
        for plan in self.plans.values():
            values.update(self._aggregate(plan, t, people.index))
        result = derive(people, values, set(self.plans))
        result["practice_id"] = people["practice_id"].astype("string")
        result["sex"] = people["sex"]
        result["ethnicity_group"] = people["ethnicity_group"]
        result.index.name = "person_id"
        return result

    def tables(self, names: Iterable[str]):
        """Validated persons and the event tables ``names`` that this data set has, as
        :class:`~riskstrat.records.LinkedRecords`: what an outcome's labels read.

        These tables are read on the driver and validated by :func:`riskstrat.validate.validate_tables`
        itself (with the data set's end from dataset.json, as ``load_records``), so they are the
        reference's tables by construction; the other event tables stay in their files. Raises
        :class:`~riskstrat.validate.ValidationError` where validation refuses them."""
        from riskstrat.io import read_table_file
        from riskstrat.records import LinkedRecords
        from riskstrat.validate import ValidationError, validate_tables

        wanted = [name for name in EVENT_TABLES if name in set(names) and name in self.plans]
        raw = {name: read_table_file(self.files[name]) for name in ("persons", *wanted)}
        records, report = validate_tables(raw, files={name: self.files[name] for name in raw},
                                          latest_date=self._latest_date(), **self.options)
        if records is None:
            raise ValidationError(report)
        return LinkedRecords({"persons": self.persons, **{name: records.tables[name] for name in wanted}})

    def check_links(self) -> None:
        """Refuse, as validation does, rows of any event table whose person is not in persons and,
        under ``out_of_life_events='error'``, events after the end of the data or outside a life:
        the aggregates read only the rows before each index date, so they cannot see these in later
        rows. One pass over the ids and dates per table (:meth:`_link_counts`); raises
        :class:`~riskstrat.validate.ValidationError` with validation's rule names and messages."""
        from riskstrat.validate import ValidationError, _agree, _rows

        latest, log, found = self._latest_date(), self._log, []
        strict = self.options["out_of_life_events"] == "error"
        texts = {"unknown_person": "{n} {refer} to person ids that are not in persons; add the people to persons "
                                   "or remove the rows.",
                 "future_event": f"{{n}} dated after the end of the data ({latest.date()}); correct the dates "
                                 f"or remove the rows.",
                 "event_before_birth": "{n} dated before the person's birth; correct the dates or remove the "
                                       "rows (or drop them with out_of_life_events='drop').",
                 "event_after_death": "{n} dated after the person's death; correct the dates or remove the "
                                      "rows (or drop them with out_of_life_events='drop')."}
        for name, plan in self.plans.items():
            if name in self._links_checked:
                continue
            rules = ["unknown_person"]
            if strict:
                rules += (["future_event"] if plan.table.event_date else []) + ["event_before_birth",
                                                                               "event_after_death"]
            for rule, n in zip(rules, self._link_counts(plan, rules, latest)):
                if n:
                    column = "person_id" if rule == "unknown_person" else None
                    found.append((name, column, rule, "error", int(n), f"{log.where(name, column)}: " + texts[rule].format(
                        n=_rows(int(n)), refer=_agree(int(n), "refers", "refer"))))
            self._links_checked.add(name)
        if found:
            for issue in found:
                log.add(*issue)
            raise ValidationError(self.report)

    def _latest_date(self) -> pd.Timestamp:
        """The last day the data can hold, as validation takes it: dataset.json's extract end, never
        later than today."""
        from riskstrat.io import dataset_metadata

        today = pd.Timestamp.today().normalize()
        end = dataset_metadata(self.data_dir).get("extract_end")
        return min(pd.Timestamp(end), today) if end else today

    # ------------------------------------------------------------------ hooks (the engine's language)

    @abstractmethod
    def _connect(self) -> None:
        """Open the engine's connection or session (persons are validated by now)."""

    @abstractmethod
    def _file_columns(self, path: Path) -> dict[str, str]:
        """Each file column's type, as the engine names it."""

    @abstractmethod
    def _reads_as(self, kind: str, stored: str) -> bool:
        """Whether a column stored as ``stored`` is read as a schema column of ``kind`` (date, float, bool)."""

    @abstractmethod
    def _profile(self, plan: TablePlan, categories: list[Column]) -> tuple[dict[str, list[str]], set[str]]:
        """The distinct raw values (as text, blanks left out) of each of ``categories``, and the text and
        number columns found clean (no value with outer spaces, blank or NaN)."""

    @abstractmethod
    def _check_counts(self, plan: TablePlan, listed: list[tuple[str, str, str | None]]) -> tuple[int, list[int]]:
        """The table's row count and, for each check in ``listed`` (:func:`checks`), its rows."""

    @abstractmethod
    def _aggregate_frame(self, plan: TablePlan, t: pd.Timestamp) -> tuple[pd.DataFrame, int]:
        """One row per person id of the table's rows (cleaned as validation cleans them) with ``_rows``
        (rows kept after repeats are removed), ``_n_out_of_life``, ``_is_unknown`` (the id is not in
        persons) and every aggregate of the table as of ``t``; and the rows read before repeats were
        removed (see :func:`read_window`)."""

    @abstractmethod
    def _date_span(self, plan: TablePlan, until: pd.Timestamp | None):
        """The earliest and latest event date of the table's kept rows (at most ``until``), or Nones."""

    @abstractmethod
    def _link_counts(self, plan: TablePlan, rules: list[str], latest: pd.Timestamp) -> list[int]:
        """Rows of the whole table (every date) breaking each of ``rules``: ``unknown_person`` (an id not
        in persons), ``future_event`` (the event date after ``latest``), ``event_before_birth``,
        ``event_after_death`` (any date column outside the person's life)."""

    # ------------------------------------------------------------------ checks

    def _check_table(self, table: Table, path: Path) -> None:
        from riskstrat.validate import _rows

        log, name = self._log, table.name
        plan = TablePlan(table, path, self._file_columns(path))
        for col in plan.absent:
            found = ", ".join(plan.file_columns) or "none"
            log.add(name, col, "missing_column", "error", 0,
                    f"{log.where(name)} has no column {col}, which is required (columns found: {found}); add it "
                    f"or rename the matching column.")
        for extra in plan.extras:
            log.add(name, extra, "unknown_column", "warning", 0,
                    f"{log.where(name)} has a column {extra} that is not in the {name} schema; it was ignored.",
                    action="dropped column")
        if plan.absent:
            return
        for col in table.columns:
            if col.name in plan.source and col.kind in ("date", "float", "bool") \
                    and not self._reads_as(col.kind, plan.stored(col.name)):
                raise EngineDataError(
                    f"{path.name}, column {col.name}: stored as {plan.stored(col.name)}, but the {self.name} "
                    f"engine reads it as {col.kind} only; write the data with riskstrat import (typed Parquet), "
                    f"or use --engine pandas")
        categories = [c for c in table.columns if c.name in plan.source and c.kind == "category"]
        raw_values, plan.clean = self._profile(plan, categories)
        for col in categories:
            plan.code_map[col.name], plan.unknown[col.name] = code_map(raw_values[col.name], col)

        listed = checks(plan)
        n_rows, found = self._check_counts(plan, listed)
        self.row_counts[name] = int(n_rows)
        if n_rows == 0:
            log.add(name, None, "empty_table", "warning", 0,
                    f"{log.where(name)} has no rows, so the {name} table contributes nothing.")
        for (rule, col, _), n in zip(listed, found):
            n = int(n)
            if not n:
                continue
            where = log.where(name, col)
            if rule == "unknown_code":
                known = ", ".join(table.column(col).categories or ())
                head = f"{where}: {_rows(n)} with codes outside the reference list"
                if self.options["unknown_codes"] == "drop":
                    log.add(name, col, rule, "warning", n, f"{head}; these rows were dropped (known codes: {known}).",
                            action=f"dropped {_rows(n)}")
                else:
                    log.add(name, col, rule, "error", n,
                            f"{head}; map them to one of {known}, or drop them (unknown_codes='drop').")
                continue
            log.add(name, col, rule, "error", n, f"{where}: {_rows(n)} {_CHECK_TEXTS[rule]}.")
        self.plans[name] = plan

    # ------------------------------------------------------------------ aggregates

    def _aggregate(self, plan: TablePlan, t: pd.Timestamp, ids: pd.Index) -> dict[str, np.ndarray]:
        from riskstrat.validate import ValidationError, _agree, _rows

        name = plan.table.name
        frame, n_read = self._aggregate_frame(plan, t)

        # Validation's findings from the same pass.
        log, issues = self._log, []
        unknown = frame["_is_unknown"].fillna(False).astype(bool) & frame["person_id"].notna()
        n_unknown = int(frame.loc[unknown, "_rows"].sum())
        if n_unknown:
            issues.append((name, "person_id", "unknown_person", "error", n_unknown,
                           f"{log.where(name, 'person_id')}: {_rows(n_unknown)} {_agree(n_unknown, 'refers', 'refer')} "
                           f"to person ids that are not in persons; add the people to persons or remove the rows."))
        n_outside = int(frame["_n_out_of_life"].sum())
        if n_outside:
            policy = self.options["out_of_life_events"]
            severity = "error" if policy == "error" else "warning"
            todo = {"drop": "the rows were dropped", "keep": "the rows were kept",
                    "error": "correct the dates or remove the rows (or drop them with out_of_life_events='drop')"}
            issues.append((name, DATE_COLUMNS[name], "event_outside_life", severity, n_outside,
                           f"{log.where(name)}: {_rows(n_outside)} dated before the person's birth or after their "
                           f"death; {todo[policy]}."))
        n_kept = int(frame["_rows"].sum())
        if self.options["duplicate_rows"] == "drop" and n_read > n_kept:
            n = n_read - n_kept
            issues.append((name, None, "duplicate_rows", "warning", n,
                           f"{log.where(name)}: {_rows(n)} {_agree(n, 'repeats', 'repeat')} an earlier row exactly "
                           f"among the rows dated before {t.date()} that features read; the repeats were dropped."))
        if not self._reported.get(name):  # the counts do not depend on the index date: report them once
            self._reported[name] = True
            for issue in issues:
                log.add(*issue)
                if issue[3] == "warning":
                    self._stage(f"warning: {issue[5]}")
        if any(i[3] == "error" for i in issues):
            raise ValidationError(self.report)
        return per_person(frame, ids, name)


def code_map(raw: list[str], col: Column) -> tuple[dict[str, str | None], list[str]]:
    """Each distinct raw value of a category column normalised by validation's own code (case, spaces,
    BNF "1" -> "01"): ``{raw: canonical code or None}`` and the raw values that are unknown codes."""
    from riskstrat.validate import _coerce_category

    canonical, unknown, missing = _coerce_category(pd.Series(raw, dtype=object), col)
    mapping = {v: None if (bad or miss) else str(c) for v, c, bad, miss
               in zip(raw, canonical.astype(object), unknown, missing)}
    return mapping, [v for v, bad in zip(raw, unknown) if bad]


def per_person(frame: pd.DataFrame, ids: pd.Index, table_name: str) -> dict[str, np.ndarray]:
    """The table's aggregates (columns of ``frame``, one row per person id) in the order of ``ids``;
    a person without rows, or whose aggregate is missing, gets the aggregate's ``fill``."""
    at = ids.get_indexer(pd.Index(frame["person_id"].astype(object)))
    hit = at >= 0
    values = {}
    for a in aggregates_for(table_name):
        column = frame[a.name].to_numpy(dtype="float64", na_value=np.nan)
        if a.kind == "any":
            column = (column > 0).astype("float64")
        out = np.full(len(ids), a.fill, dtype="float64")
        out[at[hit]] = np.where(np.isnan(column[hit]), a.fill, column[hit])
        values[a.name] = out
    return values
