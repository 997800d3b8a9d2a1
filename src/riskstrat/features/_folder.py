"""The folder engines' shared part: the table walk, checks as counts, messages, the feature frame.

An engine that reads the Parquet folder itself (DuckDB, Spark) reads only the persons table into
pandas, validated by :func:`riskstrat.data.validate.validate_tables` itself; the event tables stay in their
files. :class:`FolderEngine` walks the tables, decides what to count, turns the counts into
validation's issues (same rules, same messages, same order) and the aggregates into the feature frame
(:func:`riskstrat.features.spec.derive`), once for every engine. The engine supplies, in its own
language (the ``_`` hooks: SQL strings for DuckDB, Column expressions for Spark), each file's column
types, the counts of one pass over a file, one row of aggregates per person, and a few counts over
every row (the date span, the links to persons).

- On construction, per table in one pass over its file (:func:`scan_requests`): ``missing_column``,
  ``missing_value`` (non-nullable columns), ``unknown_code`` (rows per distinct raw code, normalised by
  validation's own code), ``negative_cost``, ``wrong_type`` (infinite numbers), ``end_before_start``.
  Text is read as it is unless some value needs validation's cleaning (outer white space, blanks): the
  Parquet statistics show whether any value starts with white space (:func:`leading_text`; without
  them, a test of every first character), a test of every last character whether any ends with it;
  ids ending in it are found by the join with persons instead (they match no person,
  :meth:`FolderEngine._verify_ids`), after which that table's ids are cleaned.
- With the aggregates (one pass per table and index date): ``unknown_person``, ``duplicate_rows``
  (exact repeats over every column of the file, extra columns included, counted in the pass that
  removes them) and events outside a life (dropped; end dates after death set to the date of death).
  People are found by a person key the engine returns (DuckDB: the persons table's row id), an
  integer take rather than a look-up of every id string.
- ``check_links()`` (training and scoring): every row's person and, under
  ``out_of_life_events='error'``, dates, in one pass per table; or, when the engine can prove every
  id of a table is a person's without the rows (DuckDB: the Parquet id dictionaries), no pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from riskstrat.errors import RiskstratError
from riskstrat.data.data_end import combine_months, month_counts
from riskstrat.data.io import dataset_metadata, read_table_file, table_files
from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import COST_COLUMNS, EVENT_TABLES, TABLES, Column, Table
from riskstrat.data.stamp import verify_stamp
from riskstrat.data.validate import (ValidationError, _agree, _coerce_category, _IssueLog, _rows, _text,
                                     blank_cost_message, validate_tables)
from riskstrat.features.clinical import eligible_persons
from riskstrat.features.spec import CLINICAL, DATE_COLUMNS, PersonAggregates, aggregates_for, count_values
from riskstrat.features.spec import compact as compact_values

__all__ = ["EngineDataError", "FolderEngine", "TablePlan", "checks", "clamped_ends", "leading_text",
           "months_frame", "out_of_life_tests", "read_window", "scan_requests"]


class EngineDataError(RiskstratError, ValueError):
    """The data folder is not in a form this engine reads; the message says what to use instead."""


def months_frame(found: list[tuple]) -> tuple[pd.DataFrame, int]:
    """An engine's rows of (month, events, first, last, rows of unknown people) as the monthly counts
    (:func:`riskstrat.data.data_end.month_counts`'s form) and the rows of unknown people."""
    n_unknown = sum(int(row[4]) for row in found)
    kept = [row for row in found if row[1]]
    frame = pd.DataFrame({"events": [int(r[1]) for r in kept], "first": pd.to_datetime([r[2] for r in kept]),
                          "last": pd.to_datetime([r[3] for r in kept])},
                         index=pd.to_datetime([r[0] for r in kept]))
    return (frame if len(frame) else month_counts(pd.Series([], dtype="datetime64[s]"))), n_unknown


class TablePlan:
    """How one event table's file maps onto its schema: which file column feeds each schema column
    (names matched as validation matches headers), the extra columns, the absent required ones; and,
    once checked, each category column's codes and the columns found already clean."""

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
        # False while person_id is read as it is without every value checked for trailing white space.
        self.ids_verified = True

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


def scan_requests(plan: TablePlan, leading: dict[str, str | None]) -> list[tuple[str, str | None, str | None]]:
    """What the one pass over an event table's file counts, as ``(what, column, other)``; the engine
    answers each (:meth:`FolderEngine._scan_counts`):

    - ``rows``: the rows of the file;
    - ``histogram``: a category column's rows per distinct raw value (as text, missing left out), a dict;
    - ``null``: rows where a non-nullable column is missing (as stored);
    - ``leading`` / ``trailing``: text values whose first / last character is white space or a control
      character (``<= " "``), or empty; ``leading`` only where the statistics (``leading[column]``,
      :func:`leading_text`) cannot tell, ``trailing`` for every text column but ``person_id`` (whose
      values ending in white space the join with persons finds);
    - ``nan``, ``infinite``, ``below`` (under the column's minimum): number columns, as stored;
    - ``end_before_start``: rows whose ``column`` (the end) is before ``other`` (the start);
    - (asked in a second pass, for text columns found dirty) ``blank``: rows where the column as
      validation leaves it (stripped, blank as missing) is missing.
    """
    table, out = plan.table, [("rows", None, None)]
    for col in table.columns:
        if col.name not in plan.source:
            continue
        if col.kind == "category":
            out.append(("histogram", col.name, None))
        elif col.kind in ("id", "str"):
            if leading.get(col.name) is None:
                out.append(("leading", col.name, None))
            if col.name != "person_id" and leading.get(col.name) != "blank":
                out.append(("trailing", col.name, None))
        elif col.kind == "float":
            out += [("nan", col.name, None), ("infinite", col.name, None)]
            if col.min_value is not None:
                out.append(("below", col.name, None))
        if not col.nullable or col.name in COST_COLUMNS:  # a cost column blank in every row is unknown costs
            out.append(("null", col.name, None))
    for start, end in table.ordered_dates:
        if start in plan.source and end in plan.source:
            out.append(("end_before_start", end, start))
    return out


def leading_text(meta, column: str) -> str | None:
    """What the Parquet statistics (``meta``, the file's footer: ``pyarrow.parquet.FileMetaData``) say of
    a text column's first characters: ``"blank"`` (every value missing), ``"clean"`` (no value is empty
    or starts with white space or a control character: the smallest value does not), ``"dirty"``, or
    None (no statistics)."""
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if column not in names:
        return None
    at = names.index(column)
    smallest, blank = None, True
    for g in range(meta.num_row_groups):
        chunk = meta.row_group(g).column(at)
        st = chunk.statistics
        if st is None or not st.has_null_count:
            return None
        if st.null_count == chunk.num_values:
            continue
        blank = False
        if not st.has_min_max:
            return None
        low = st.min if isinstance(st.min, str) else bytes(st.min).decode("utf-8", "replace")
        smallest = low if smallest is None else min(smallest, low)
    if blank:
        return "blank"
    return "clean" if smallest and smallest[0] > " " else "dirty"


def out_of_life_tests(table: Table, policy: str) -> list[tuple[str, str]]:
    """The tests that put a row outside its person's life, as ``(date column, "birth" | "death")``: any
    date before birth, any date after death, except (when such rows are dropped) an end date after
    death, which is administrative lag (the engine sets it to the date of death, :func:`clamped_ends`)."""
    ends = clamped_ends(table, policy)
    return [(c, "birth") for c in table.date_columns] + [(c, "death") for c in table.date_columns if c not in ends]


def clamped_ends(table: Table, policy: str) -> set[str]:
    """End dates set to the date of death when later (only when events outside a life are dropped)."""
    return {end for _, end in table.ordered_dates} if policy == "drop" else set()


def read_window(table: Table, options: dict, aggregates=None) -> int | None | bool:
    """Which rows the features read: the event date before T and at most this many days before it
    (None: no limit). Repeats share their date, so removing repeats among these alone is exact for the
    features. False when repeats or events outside a life are errors: then every row is read and counted."""
    if "error" in (options["duplicate_rows"], options["out_of_life_events"]):
        return False
    spans = [a.window[1] for a in (aggregates_for(table.name) if aggregates is None else aggregates)]
    return None if None in spans else max(spans, default=0)


def parquet_files(data_dir: Path, exclude: Iterable[str], engine: str) -> dict[str, Path]:
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

_LINK_TEXTS = {
    "unknown_person": "{n} {refer} to person ids that are not in persons; add the people to persons or remove "
                      "the rows.",
    "future_event": "{n} dated after the end of the data ({latest}); correct the dates or remove the rows.",
    "event_before_birth": "{n} dated before the person's birth; correct the dates or remove the rows (or drop "
                          "them with out_of_life_events='drop').",
    "event_after_death": "{n} dated after the person's death; correct the dates or remove the rows (or drop "
                         "them with out_of_life_events='drop').",
}


class FolderEngine(ABC):
    """Features computed by an engine over a canonical Parquet folder; validation's checks as counts.

    A subclass implements the hooks (``_connect``, ``_file_columns``, ``_reads_as``, ``_scan_counts``,
    ``_aggregate_frame``, ``_date_span``, ``_event_months``, ``_link_counts``, ``_unknown_ids``); this class walks the
    tables, runs the checks, reports what they find as validation would, and builds the feature frame.
    ``exclude_sources`` are never read; ``out_of_life_events``, ``duplicate_rows`` and ``unknown_codes``
    are validation's options (:func:`riskstrat.data.validate.validate_tables`). Raises
    :class:`~riskstrat.data.validate.ValidationError` when validation would refuse the data,
    :class:`EngineDataError` when the engine cannot read it.
    """

    name = "folder"  # what runs record: the subclass's engine name
    _plan_class = TablePlan  # an engine may add its own column expressions to the plan
    # The engine's person key (``_person`` in an aggregate frame) -> the persons table's row; None: the row.
    _person_key_rows: np.ndarray | None = None

    def __init__(self, data_dir: str | Path, *, exclude_sources: Iterable[str] = (), out_of_life_events: str = "drop",
                 duplicate_rows: str = "drop", unknown_codes: str = "error",
                 stage: Callable[[str], None] | None = None):
        self.data_dir = Path(data_dir)
        self.options = {"out_of_life_events": out_of_life_events, "duplicate_rows": duplicate_rows,
                        "unknown_codes": unknown_codes}
        self._stage = stage or (lambda message: None)
        self.files = files = parquet_files(self.data_dir, exclude_sources, self.name)
        # Validate once, trust by proof: the tables whose files the folder's validation stamp proves
        # unchanged are not checked row by row again (their plans are still read: codes, clean text).
        self.trust = verify_stamp(self.data_dir, files, options=self.options, latest_date=self._latest_date())
        self._stage(self.trust.message())
        # Persons: one row a person, validated by validation itself (the cohort comes from it).
        raw = {"persons": read_table_file(files["persons"])} if "persons" in files else {}
        records, self.report = validate_tables(raw, files={k: v for k, v in files.items() if k == "persons"},
                                               trusted=self.trust.tables, **self.options)
        if records is None:
            raise ValidationError(self.report)
        self.persons = records.persons
        self._persons_only = records
        self._connect()

        self._log = _IssueLog(files)
        self._log.issues = self.report.issues  # one report: persons' issues, then the engine's checks
        self.plans: dict[str, TablePlan] = {}
        self.row_counts: dict[str, int] = {"persons": len(self.persons)}
        # (table, column) of cost columns absent or blank in every row of a table with rows: unknown costs.
        self.blank_costs: list[tuple[str, str]] = []
        for name in EVENT_TABLES:
            if name in files:
                self._check_table(TABLES[name], files[name])
        if not self.report.ok:
            raise ValidationError(self.report)
        self._reported: dict[str, bool] = {}
        # A stamped table's links to persons were checked when it was stamped (persons unchanged too).
        self._links_checked: set[str] = {name for name in self.plans if self.trust.trusts(name)}

    # ------------------------------------------------------------------ what the scoring run asks

    @property
    def records(self):
        """The validated persons as :class:`~riskstrat.data.records.LinkedRecords` (no event tables: they stay in
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
        lows, highs = [], []
        for plan in self.plans.values():
            low, high, n_unknown = self._date_span(plan, until)
            if n_unknown and self._verify_ids(plan, self._unknown_ids(plan)):
                low, high, _ = self._date_span(plan, until)  # ids ending in white space: again, cleaning them
            if low is not None:
                lows.append(pd.Timestamp(low))
                highs.append(pd.Timestamp(high))
        return (min(lows) if lows else None, max(highs) if highs else None)

    def event_months(self, *, until=None) -> pd.DataFrame:
        """Events per calendar month over the event tables together (rows as validation keeps them:
        known people, repeats removed, events outside a life left out; dates after ``until`` ignored),
        as :meth:`LinkedRecords.event_months`: one small grouped query per table."""
        until = pd.Timestamp(until).normalize() if until is not None else None
        parts = []
        for plan in self.plans.values():
            months, n_unknown = self._event_months(plan, until)
            if n_unknown and self._verify_ids(plan, self._unknown_ids(plan)):
                months, _ = self._event_months(plan, until)  # ids ending in white space: again, cleaning them
            parts.append(months)
        return combine_months(parts)

    def features(self, index_date, *, min_age: float = 18, max_age: float = 120, spec=None) -> pd.DataFrame:
        """The feature frame for ``index_date``: equal to ``build_features`` on the validated records
        (``spec``: which features, default the clinical ones)."""
        return self.person_aggregates(index_date, min_age=min_age, max_age=max_age, spec=spec).frame()

    def person_aggregates(self, index_date, *, min_age: float = 18, max_age: float = 120, spec=None,
                          compact: bool = False) -> PersonAggregates:
        """The cohort at ``index_date`` and its aggregates (:class:`~riskstrat.features.spec.PersonAggregates`),
        whose :meth:`~riskstrat.features.spec.PersonAggregates.frame` is :meth:`features` (of any of the
        people); ``compact``: each aggregate kept in the smallest type that holds it exactly
        (:func:`~riskstrat.features.spec.compact`), as soon as it is made (the month's scoring)."""
        spec = spec or CLINICAL
        t = pd.Timestamp(index_date).normalize()
        people, cohort_of_key = self._cohort(t, min_age=min_age, max_age=max_age)
        values: dict[str, np.ndarray] = {}
        for plan in self.plans.values():
            values.update(self._aggregate(plan, t, cohort_of_key, len(people), spec.aggregates_for(plan.table.name),
                                          compact=compact))
        return PersonAggregates(people, values, set(self.plans), spec=spec, costless=self.costless)

    def features_at(self, index_dates: Iterable, *, min_age: float = 18, max_age: float = 120,
                    spec=None) -> Iterator[pd.DataFrame]:
        """The feature frame at each of ``index_dates`` in turn (a generator), each equal to
        :meth:`features` at that date. This default builds them one date at a time; an engine may read
        the events once for every date (DuckDB: :meth:`riskstrat.features.duckdb.DuckDBEngine.features_at`)."""
        for index_date in index_dates:
            yield self.features(index_date, min_age=min_age, max_age=max_age, spec=spec)

    def _cohort(self, t: pd.Timestamp, *, min_age: float, max_age: float) -> tuple[pd.DataFrame, np.ndarray]:
        """The people eligible at ``t`` (persons' columns, indexed by ``person_id``) and, for each person key
        of the engine, that person's position among them (-1: not eligible)."""
        eligible = eligible_persons(self._persons_only, t, min_age=min_age, max_age=max_age)
        # Persons row -> position in the cohort; the extra last slot (-1) is where a key of -1 lands.
        position = np.full(len(self.persons) + 1, -1, dtype=np.int64)
        position[self.persons.index.get_indexer(eligible.index)] = np.arange(len(eligible))
        cohort_of_key = position if self._person_key_rows is None else position[self._person_key_rows]
        return eligible.set_index("person_id"), cohort_of_key

    @property
    def costless(self) -> set[str]:
        """Tables whose ``cost`` is absent or blank in every row (their generic costs are missing)."""
        return {table for table, column in self.blank_costs if column == "cost"}

    def value_counts(self, table: str, column: str, *, until=None) -> dict:
        """``{value: (rows, people)}`` of ``column`` of ``table`` as validation leaves them, rows dated before
        ``until`` (None: every date), missing left out; this default reads the table through
        :meth:`tables`: engines count in place."""
        return count_values(self.tables([table]).get(table), column, DATE_COLUMNS[table], until)

    def tables(self, names: Iterable[str], *, people=None):
        """Validated persons and the event tables ``names`` that this data set has, as
        :class:`~riskstrat.data.records.LinkedRecords`: what an outcome's labels read. This default
        reads the whole tables whoever ``people`` names (an engine may read only their rows).

        These tables are read on the driver and validated by :func:`riskstrat.data.validate.validate_tables`
        itself (with the data set's end from dataset.json, as ``load_records``), so they are the
        reference's tables by construction; the other event tables stay in their files. Raises
        :class:`~riskstrat.data.validate.ValidationError` where validation refuses them."""
        wanted = [name for name in EVENT_TABLES if name in set(names) and name in self.plans]
        raw = {name: read_table_file(self.files[name]) for name in ("persons", *wanted)}
        records, report = validate_tables(raw, files={name: self.files[name] for name in raw},
                                          latest_date=self._latest_date(), trusted=self.trust.tables,
                                          **self.options)
        if records is None:
            raise ValidationError(report)
        return LinkedRecords({"persons": self.persons, **{name: records.tables[name] for name in wanted}})

    def check_links(self) -> None:
        """Refuse, as validation does, rows of any event table whose person is not in persons and,
        under ``out_of_life_events='error'``, events after the end of the data or outside a life:
        the aggregates read only the rows before each index date, so they cannot see these in later
        rows. One pass over the ids and dates per table (:meth:`_link_counts`); raises
        :class:`~riskstrat.data.validate.ValidationError` with validation's rule names and messages."""
        latest, found = self._latest_date(), []
        strict = self.options["out_of_life_events"] == "error"
        for name, plan in self.plans.items():
            if name in self._links_checked:
                continue
            rules = ["unknown_person"]
            if strict:
                rules += (["future_event"] if plan.table.event_date else []) + ["event_before_birth",
                                                                               "event_after_death"]
            if rules == ["unknown_person"] and self._ids_all_known(plan):
                counts = [0]  # proven without joining every row (e.g. the file's id dictionaries)
            else:
                counts = self._link_counts(plan, rules, latest)
            if counts[0] and self._verify_ids(plan, self._unknown_ids(plan)):
                counts = self._link_counts(plan, rules, latest)  # ids ending in white space: again, cleaning them
            found += [self._link_issue(name, rule, int(n), latest) for rule, n in zip(rules, counts) if n]
            self._links_checked.add(name)
        if found:
            for issue in found:
                self._log.add(*issue)
            raise ValidationError(self.report)

    def _link_issue(self, name: str, rule: str, n: int, latest: pd.Timestamp) -> tuple:
        """The issue for ``n`` rows of table ``name`` breaking a link rule, worded as validation words it."""
        column = "person_id" if rule == "unknown_person" else None
        text = _LINK_TEXTS[rule].format(n=_rows(n), refer=_agree(n, "refers", "refer"), latest=latest.date())
        return (name, column, rule, "error", n, f"{self._log.where(name, column)}: {text}")

    def _latest_date(self) -> pd.Timestamp:
        """The last day the data can hold, as validation takes it: dataset.json's extract end, never
        later than today."""
        today = pd.Timestamp.today().normalize()
        end = dataset_metadata(self.data_dir).get("extract_end")
        return min(pd.Timestamp(end), today) if end else today

    @staticmethod
    def _verify_ids(plan: TablePlan, unknown: Iterable) -> bool:
        """Whether ids read as they are, found in no person, hold white space that validation would
        strip (then the plan cleans them from now on: the caller runs its query again). False at once
        when the table's ids are cleaned already."""
        if plan.ids_verified:
            return False
        values = pd.Series(list(unknown), dtype=object)
        values = values[values.notna()]
        if not len(values):
            return False
        cleaned = _text(values).astype(object)
        if not (cleaned.isna() | (cleaned != values)).any():
            return False
        plan.clean.discard("person_id")
        plan.ids_verified = True
        return True

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
    def _scan_counts(self, plan: TablePlan, requests: list[tuple[str, str | None, str | None]]) -> list:
        """The answer to each of ``requests`` (:func:`scan_requests`), in one pass over the table's file:
        a row count, or for ``histogram`` a dict of rows per raw value (an engine may leave None the
        count of a value that is a known code: only blanks' and unknown codes' counts are read)."""

    @abstractmethod
    def _aggregate_frame(self, plan: TablePlan, t: pd.Timestamp, aggregates) -> tuple[pd.DataFrame, int]:
        """One row per person id of the table's rows (cleaned as validation cleans them) with ``person_id``
        (read only for ids not in persons: an engine may leave it missing for the others), ``_rows``
        (rows kept after repeats are removed), ``_n_out_of_life``, ``_is_unknown`` (the id is not in
        persons), ``_person`` (the person key, :attr:`_person_key_rows`; missing for an unknown id) and
        every aggregate of ``aggregates`` (the table's) as of ``t``; and the rows read before repeats were removed (see
        :func:`read_window`)."""

    def _aggregate_parts(self, plan: TablePlan, t: pd.Timestamp, aggregates) -> Iterator[tuple[pd.DataFrame, int]]:
        """:meth:`_aggregate_frame` in parts of its rows (each part's frame, and the rows read for it before
        repeats were removed): this default gives it in one part; an engine that can hand its result over
        in pieces (DuckDB) holds one part at a time."""
        yield self._aggregate_frame(plan, t, aggregates)

    @abstractmethod
    def _date_span(self, plan: TablePlan, until: pd.Timestamp | None) -> tuple:
        """The earliest and latest event date of the table's rows of known people that validation keeps
        (at most ``until``), or Nones; and the rows whose person is not in persons."""

    @abstractmethod
    def _event_months(self, plan: TablePlan, until: pd.Timestamp | None) -> tuple[pd.DataFrame, int]:
        """The table's events per calendar month (rows of known people that validation keeps, exact
        repeats counted once, event dates at most ``until``): a frame indexed by the month's first
        day with ``events``, ``first``, ``last`` (:func:`riskstrat.data.data_end.month_counts`); and the
        rows whose person is not in persons."""

    @abstractmethod
    def _link_counts(self, plan: TablePlan, rules: list[str], latest: pd.Timestamp) -> list[int]:
        """Rows of the whole table (every date) breaking each of ``rules`` (``unknown_person`` first): an
        id not in persons, ``future_event`` (the event date after ``latest``), ``event_before_birth``,
        ``event_after_death`` (any date column outside the person's life)."""

    def _ids_all_known(self, plan: TablePlan) -> bool:
        """True only when every person id of the table, as stored, is certainly a person's id (then no
        row breaks ``unknown_person``), found more cheaply than by :meth:`_link_counts`; False when the
        engine cannot tell, and the rows are counted."""
        return False

    @abstractmethod
    def _unknown_ids(self, plan: TablePlan) -> list:
        """The distinct person ids of the table (as read) that are not in persons."""

    # ------------------------------------------------------------------ checks

    def _check_table(self, table: Table, path: Path) -> None:
        log, name = self._log, table.name
        plan = self._plan_class(table, path, self._file_columns(path))
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
        n_rows, counts = self._count_checks(plan)
        self.row_counts[name] = n_rows
        if n_rows == 0:
            log.add(name, None, "empty_table", "warning", 0,
                    f"{log.where(name)} has no rows, so the {name} table contributes nothing.")
        for rule, col, _ in checks(plan):  # validation's order: column by column, then the date pairs
            n = counts.get((rule, col), 0)
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
        for column in (c for c in table.column_names if c in COST_COLUMNS):
            absent = column not in plan.source
            if n_rows and (absent or counts.get(("missing_value", column), 0) == n_rows):
                where = log.where(name) if absent else log.where(name, column)
                log.add(name, column, "blank_cost", "warning", n_rows,
                        blank_cost_message(where, name, column, n_rows, absent=absent), action="kept as unknown")
                self.blank_costs.append((name, column))
        self.plans[name] = plan

    def _count_checks(self, plan: TablePlan) -> tuple[int, dict[tuple[str, str], int]]:
        """The table's rows and each check's rows (:func:`checks`), from one pass over its file (a second
        for required text columns with values to strip); fills in the plan's codes and clean columns."""
        import pyarrow.parquet as pq

        table = plan.table
        # The footer's statistics answer whether text starts clean without a scan.
        meta = pq.ParquetFile(plan.path).metadata
        leading = {c.name: leading_text(meta, plan.source[c.name]) for c in table.columns
                   if c.name in plan.source and c.kind in ("id", "str")}
        requests = scan_requests(plan, leading)
        trusted = self.trust.trusts(table.name)
        if trusted:  # proven by the stamp: only what the plan needs (codes, clean text and numbers, blank costs)
            requests = [r for r in requests if r[0] in ("rows", "histogram", "leading", "trailing", "nan")
                        or (r[0] == "null" and r[1] in COST_COLUMNS)]
        found = {(what, col): n for (what, col, _), n in zip(requests, self._scan_counts(plan, requests))}

        def got(what: str, col: str) -> int:
            return int(found.get((what, col)) or 0)

        counts: dict[tuple[str, str], int] = {}
        to_strip = []
        for col in table.columns:
            if col.name not in plan.source:
                continue
            if col.kind == "category":
                histogram = found[("histogram", col.name)] or {}
                plan.code_map[col.name], plan.unknown[col.name] = code_map([v for v in histogram if v is not None], col)
                counts[("unknown_code", col.name)] = sum(int(histogram[v]) for v in plan.unknown_codes(col))
                blank = sum(int(histogram[v]) for v in plan.blank_codes(col))
                counts[("missing_value", col.name)] = got("null", col.name) + blank
            elif col.kind in ("id", "str"):
                if not (leading[col.name] == "dirty" or got("leading", col.name) or got("trailing", col.name)):
                    plan.clean.add(col.name)
                    counts[("missing_value", col.name)] = got("null", col.name)
                elif not col.nullable:  # white space to strip: blanks counted as validation counts them
                    to_strip.append(col.name)
            elif col.kind == "float":
                if not got("nan", col.name):
                    plan.clean.add(col.name)
                counts[("wrong_type", col.name)] = got("infinite", col.name)
                counts[("negative_cost", col.name)] = got("below", col.name)
                counts[("missing_value", col.name)] = got("null", col.name) + got("nan", col.name)
            else:
                counts[("missing_value", col.name)] = got("null", col.name)
        for start, end in table.ordered_dates:
            counts[("end_before_start", end)] = got("end_before_start", end)
        if to_strip and not trusted:
            blanks = self._scan_counts(plan, [("blank", c, None) for c in to_strip])
            counts.update({("missing_value", c): int(n) for c, n in zip(to_strip, blanks)})
        # Ids read as they are may still end in white space: the joins with persons find them (_verify_ids).
        plan.ids_verified = "person_id" not in plan.clean
        return got("rows", None), counts

    # ------------------------------------------------------------------ aggregates

    def _aggregate(self, plan: TablePlan, t: pd.Timestamp, cohort_of_key: np.ndarray,
                   n_people: int, aggregates=None, *, compact: bool = False) -> dict[str, np.ndarray]:
        """The ``aggregates`` of one table (default the clinical ones) for the ``n_people`` people of the
        cohort; ``cohort_of_key[key]`` is the cohort position of the person whose key is ``key`` (-1: not
        in the cohort). ``compact``: each in the smallest type that gives it back exactly as float64
        (:func:`~riskstrat.features.spec.compact`; one float64 column at a time is held, not the table's)."""
        name = plan.table.name
        aggregates = aggregates_for(name) if aggregates is None else list(aggregates)
        # Part by part (an engine may hand its result over in pieces): each part's aggregates taken into
        # compact arrays before the next part is read, so a table's frame is never held whole.
        parts, unknown_ids = [], []
        n_unknown = n_outside = n_kept = n_read = 0
        for frame, read in self._aggregate_parts(plan, t, aggregates):
            # Validation's findings from the same pass.
            unknown = frame["_is_unknown"].fillna(False).astype(bool) & frame["person_id"].notna()
            if unknown.any():
                n_unknown += int(frame.loc[unknown, "_rows"].sum())
                unknown_ids.append(frame.loc[unknown, "person_id"])
            n_outside += int(frame["_n_out_of_life"].sum())
            n_kept += int(frame["_rows"].sum())
            n_read += read
            parts.append(_person_values(frame, cohort_of_key, aggregates, compact=compact))
            del frame
        if n_unknown and self._verify_ids(plan, pd.concat(unknown_ids)):
            return self._aggregate(plan, t, cohort_of_key, n_people, aggregates,  # ids ending in white space: again
                                   compact=compact)
        self._report_findings(name, t, n_unknown=n_unknown, n_outside=n_outside, n_kept=n_kept, n_read=n_read)
        return _assembled(parts, n_people, aggregates, compact=compact)

    def _report_findings(self, name: str, t: pd.Timestamp, *, n_unknown: int, n_outside: int, n_kept: int,
                         n_read: int) -> None:
        """Validation's findings from one table's aggregate pass (rows whose id is not in persons, events
        outside a life, repeats), logged and said once per table (they do not depend on the index date);
        raises :class:`~riskstrat.data.validate.ValidationError` on an error."""
        log, issues = self._log, []
        if n_unknown:
            issues.append(self._link_issue(name, "unknown_person", n_unknown, t))
        if n_outside:
            policy = self.options["out_of_life_events"]
            severity = "error" if policy == "error" else "warning"
            todo = {"drop": "the rows were dropped", "keep": "the rows were kept",
                    "error": "correct the dates or remove the rows (or drop them with out_of_life_events='drop')"}
            issues.append((name, DATE_COLUMNS[name], "event_outside_life", severity, n_outside,
                           f"{log.where(name)}: {_rows(n_outside)} dated before the person's birth or after their "
                           f"death; {todo[policy]}."))
        if self.options["duplicate_rows"] == "drop" and n_read > n_kept:
            n = n_read - n_kept
            issues.append((name, None, "duplicate_rows", "warning", n,
                           f"{log.where(name)}: {_rows(n)} {_agree(n, 'repeats', 'repeat')} an earlier row exactly "
                           f"among the rows dated before {t.date()} that features read; the repeats were dropped."))
        if not self._reported.get(name):
            self._reported[name] = True
            for issue in issues:
                log.add(*issue)
                if issue[3] == "warning":
                    self._stage(f"warning: {issue[5]}")
        if any(i[3] == "error" for i in issues):
            raise ValidationError(self.report)


def code_map(raw: list[str], col: Column) -> tuple[dict[str, str | None], list[str]]:
    """Each distinct raw value of a category column normalised by validation's own code (case, spaces,
    BNF "1" -> "01"): ``{raw: canonical code or None}`` and the raw values that are unknown codes."""
    canonical, unknown, missing = _coerce_category(pd.Series(raw, dtype=object), col)
    mapping = {v: None if (bad or miss) else str(c) for v, c, bad, miss
               in zip(raw, canonical.astype(object), unknown, missing)}
    return mapping, [v for v, bad in zip(raw, unknown) if bad]


def per_person(frame: pd.DataFrame, cohort_of_key: np.ndarray, n_people: int, table_name: str,
               aggregates=None) -> dict[str, np.ndarray]:
    """The table's aggregates (columns of ``frame``, one row per person id, ``_person`` the person key) in
    cohort order; a person without rows, or whose aggregate is missing, gets the aggregate's ``fill``."""
    aggregates = aggregates_for(table_name) if aggregates is None else list(aggregates)
    return _assembled([_person_values(frame, cohort_of_key, aggregates)], n_people, aggregates)


def _person_values(frame: pd.DataFrame, cohort_of_key: np.ndarray, aggregates,
                   *, compact: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The cohort positions of the people of ``frame`` (part of a table's aggregate rows) who are in the
    cohort, and their values of each aggregate (``fill`` for a missing one), compact if asked."""
    person = frame["_person"].to_numpy(dtype="float64", na_value=np.nan)
    known = ~np.isnan(person)
    at = np.full(len(frame), -1, dtype=np.int64)
    at[known] = cohort_of_key[person[known].astype(np.int64)]
    hit = at >= 0
    target = at[hit]  # once for every aggregate of the table (a copy per aggregate at 1M people adds up)
    values = {}
    for a in aggregates:
        column = frame[a.name].to_numpy(dtype="float64", na_value=np.nan)[hit]
        if a.kind == "any":
            column = (column > 0).astype("float64")
        else:
            np.copyto(column, a.fill, where=np.isnan(column))
        values[a.name] = compact_values(column) if compact else column
    return target, values


def _assembled(parts: list[tuple[np.ndarray, dict[str, np.ndarray]]], n_people: int, aggregates,
               *, compact: bool = False) -> dict[str, np.ndarray]:
    """Each aggregate for the ``n_people`` of the cohort from the parts' (:func:`_person_values`), ``fill``
    for the people in none; one float64 column at a time."""
    values = {}
    for a in aggregates:
        out = np.full(n_people, a.fill, dtype="float64")
        for target, part in parts:
            out[target] = part.pop(a.name)  # the part's column goes as it is placed
        values[a.name] = compact_values(out) if compact else out
    return values
