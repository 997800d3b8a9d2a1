"""The DuckDB engine: the feature aggregates as SQL over the Parquet folder.

Only the persons table (one row a person) is read into pandas, and validated there by
:func:`riskstrat.validate.validate_tables` itself. Event tables stay in their Parquet files:
DuckDB scans them, applies the cleaning validation applies to the rows that feed features, and
returns one row of aggregates per person. Validation's rules are run as SQL counts and raise the
same :class:`~riskstrat.validate.ValidationError` (rule names, files, counts; no row examples):

- checked on construction, per table in one pass over its file: ``missing_column``,
  ``missing_value`` (non-nullable columns), ``unknown_code`` (each distinct code, with its count,
  normalised by validation's own code), ``negative_cost``, ``wrong_type`` (infinite numbers),
  ``end_before_start``. Text is read as it is unless some value needs validation's cleaning
  (outer white space, blanks): the Parquet statistics show whether any value starts with white
  space, a cheap test per row whether any ends with it, and ids ending in it are found by the
  join with persons (they match no person), after which that table's ids are cleaned;
- checked with the aggregates (one pass), per index date: ``unknown_person``,
  ``duplicate_rows`` (exact repeats over every column of the file, extra columns included: removed
  by ``SELECT DISTINCT``) and ``event_before_birth`` / ``event_after_death`` (dropped; end dates
  after death set to the date of death).

The engine needs typed Parquet, as ``riskstrat import`` and ``riskstrat synth`` write it (dates as
dates or timestamps, numbers as numbers, flags as booleans); a CSV folder or a text-typed column is
refused with :class:`EngineDataError` (use the pandas engine for those).

>>> engine = DuckDBEngine("riskstrat-data/synthetic")          # doctest: +SKIP
>>> features = engine.features("2025-11-01")                    # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskstrat.engines.spec import DATE_COLUMNS, Aggregate, Where, aggregates_for, derive
from riskstrat.errors import RiskstratError
from riskstrat.io import read_table_file, table_files
from riskstrat.schema import EVENT_TABLES, TABLES, Column, Table
from riskstrat.validate import ValidationError, _agree, _coerce_category, _IssueLog, _rows, _text, validate_tables

__all__ = ["DuckDBEngine", "EngineDataError"]

_DATE_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP_US")
_NUMBER_TYPES = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT",
                 "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")


class EngineDataError(RiskstratError, ValueError):
    """The data folder is not in a form this engine reads; the message says what to use instead."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _strip(sql: str) -> str:
    """SQL: text without leading and trailing white space (as pandas ``str.strip``)."""
    return f"regexp_replace({sql}, '^\\s+|\\s+$', '', 'g')"


def _date(t: pd.Timestamp) -> str:
    return f"DATE '{t.date().isoformat()}'"


def _leading_text(meta: pq.FileMetaData, column: str) -> str | None:
    """What the Parquet statistics (the file's footer) say of a text column's first characters:
    ``"blank"`` (every value missing), ``"clean"`` (no value is empty or starts with white space or
    a control character: the smallest value does not), ``"dirty"``, or None (no statistics)."""
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


class _TablePlan:
    """How one event table's file is read: typed, normalised expressions for its schema columns."""

    def __init__(self, table: Table, path: Path, file_columns: dict[str, str]):
        self.table, self.path = table, path
        self.file_columns = file_columns  # file column -> DuckDB type
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

    @property
    def scan(self) -> str:
        return f"read_parquet({_literal(str(self.path))})"

    def raw(self, name: str) -> str:
        return _quote(self.source[name])

    def expression(self, col: Column) -> str:
        """The column as validation leaves it (NULL when the file lacks an optional column)."""
        if col.name not in self.source:
            return {"date": "CAST(NULL AS DATE)", "float": "CAST(NULL AS DOUBLE)", "bool": "CAST(NULL AS BOOLEAN)"}.get(
                col.kind, "CAST(NULL AS VARCHAR)")
        raw, kind = self.raw(col.name), self.file_columns[self.source[col.name]].upper()
        if col.kind in ("id", "str"):
            if col.name in self.clean:
                return raw if kind == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
            return f"NULLIF({_strip(f'CAST({raw} AS VARCHAR)')}, '')"
        if col.kind == "category":
            mapping = self.code_map.get(col.name) or {}
            if all(k == v for k, v in mapping.items()):  # already canonical: no per-row mapping
                return raw if kind == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
            cases = " ".join(f"WHEN {_literal(k)} THEN {_literal(v) if v is not None else 'NULL'}"
                             for k, v in mapping.items())
            return f"(CASE CAST({raw} AS VARCHAR) {cases} END)"
        if col.kind == "date":
            return raw if kind == "DATE" else f"CAST({raw} AS DATE)"  # a timestamp's date, as validation
        if col.kind == "float":
            if col.name in self.clean:
                return raw if kind == "DOUBLE" else f"CAST({raw} AS DOUBLE)"
            return f"(CASE WHEN isnan(CAST({raw} AS DOUBLE)) THEN NULL ELSE CAST({raw} AS DOUBLE) END)"
        return raw  # bool

    def unknown_codes(self, col: Column) -> list[str]:
        return self.unknown.get(col.name, [])

    def typed(self, *, drop_unknown_codes: bool, row_number: bool = False) -> str:
        """SELECT of every schema column (validated form) plus the file's extra columns, as read
        (``row_number``: and the row's place in the file, ``_row``, from 0)."""
        parts = [f"{self.expression(c)} AS {_quote(c.name)}" for c in self.table.columns]
        parts += [f"{_quote(e)} AS {_quote('_extra_' + e)}" for e in self.extras]
        scan = self.scan
        if row_number:
            parts.append("file_row_number AS _row")
            scan = f"read_parquet({_literal(str(self.path))}, file_row_number = true)"
        where = []
        if drop_unknown_codes:
            for col in self.table.columns:
                bad = self.unknown_codes(col)
                if bad:
                    where.append(f"coalesce(CAST({self.raw(col.name)} AS VARCHAR) NOT IN "
                                 f"({', '.join(map(_literal, bad))}), true)")  # a blank code is not unknown
        return f"SELECT {', '.join(parts)} FROM {scan}" + (f" WHERE {' AND '.join(where)}" if where else "")


class DuckDBEngine:
    """Features by SQL over a canonical Parquet folder (see the module docstring).

    ``exclude_sources`` are never read; ``out_of_life_events``, ``duplicate_rows`` and
    ``unknown_codes`` are validation's options (:func:`riskstrat.validate.validate_tables`).
    ``threads`` and ``memory_limit`` (e.g. ``"4GB"``) go to DuckDB; DuckDB spills to disk beyond it.
    Raises :class:`~riskstrat.validate.ValidationError` when validation would refuse the data.
    """

    name = "duckdb"

    def __init__(self, data_dir: str | Path, *, exclude_sources: Iterable[str] = (), out_of_life_events: str = "drop",
                 duplicate_rows: str = "drop", unknown_codes: str = "error", threads: int | None = None,
                 memory_limit: str | None = None, stage: Callable[[str], None] | None = None):
        self.data_dir = Path(data_dir)
        self.options = {"out_of_life_events": out_of_life_events, "duplicate_rows": duplicate_rows,
                        "unknown_codes": unknown_codes}
        self._stage = stage or (lambda message: None)
        exclude = set(exclude_sources)
        files = {name: path for name, path in table_files(self.data_dir).items() if name not in exclude}
        text = [p.name for p in files.values() if not p.name.endswith(".parquet")]
        if text:
            raise EngineDataError(f"{self.data_dir}: the duckdb engine reads Parquet only, and {', '.join(text)} "
                                  f"{'is' if len(text) == 1 else 'are'} not; convert with riskstrat import, or "
                                  f"use --engine pandas")
        self.files = files
        # Persons: one row a person, validated by validation itself (the cohort comes from it).
        raw = {"persons": read_table_file(files["persons"])} if "persons" in files else {}
        records, self.report = validate_tables(raw, files={k: v for k, v in files.items() if k == "persons"},
                                               **self.options)
        if records is None:
            raise ValidationError(self.report)
        self.persons = records.persons
        self._persons_only = records

        self.con = duckdb.connect()
        # No progress bar on stdout (the CLI prints one result line); row order never matters here.
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET preserve_insertion_order = false")
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit is not None:
            self.con.execute(f"SET memory_limit = {_literal(memory_limit)}")
        self.con.register("_persons_frame", pa.table({
            "person_id": pa.array(self.persons["person_id"].astype(object), type=pa.string()),
            "birth_date": pa.array(self.persons["birth_date"].to_numpy(), type=pa.timestamp("s")),
            "death_date": pa.array(self.persons["death_date"].to_numpy(), type=pa.timestamp("s")),
            "_row": pa.array(np.arange(len(self.persons), dtype=np.int64)),
        }))
        self.con.execute("CREATE TEMP TABLE persons AS SELECT person_id, CAST(birth_date AS DATE) AS birth_date, "
                         "CAST(death_date AS DATE) AS death_date, _row FROM _persons_frame")
        self.con.unregister("_persons_frame")
        # The aggregates name each person by the persons table's rowid: people are then found by an
        # integer take, not by hashing every id string again for every table.
        rows = self.con.execute("SELECT rowid, _row FROM persons").fetchnumpy()
        self._row_of_rowid = np.full(int(rows["rowid"].max()) + 1 if len(rows["rowid"]) else 0, -1, dtype=np.int64)
        self._row_of_rowid[np.asarray(rows["rowid"], dtype=np.int64)] = np.asarray(rows["_row"], dtype=np.int64)

        self._log = _IssueLog(files)
        self._log.issues = self.report.issues  # one report: persons' issues, then the SQL checks
        self.plans: dict[str, _TablePlan] = {}
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
        DuckDB), for what scoring needs of people (cohort counts, opt-outs, re-identification)."""
        return self._persons_only

    @property
    def sources(self) -> list[str]:
        return [t for t in EVENT_TABLES if t in self.plans]

    def has(self, name: str) -> bool:
        return name == "persons" or name in self.plans

    def date_range(self, *, until=None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """Earliest and latest event date over the event tables (events outside a life left out, as
        validation drops them; dates after ``until`` ignored, as :meth:`LinkedRecords.date_range`)."""
        lows, highs = [], []
        for name, plan in self.plans.items():
            date = _quote(TABLES[name].event_date)
            before = f" AND e.{date} <= {_date(pd.Timestamp(until))}" if until is not None else ""
            known = f"p.person_id IS NOT NULL AND {self._kept(plan.table, 'e')}{before}"
            sql = (f"SELECT min(e.{date}) FILTER (WHERE {known}), max(e.{date}) FILTER (WHERE {known}), "
                   f"count(*) FILTER (WHERE p.person_id IS NULL) FROM ({plan.typed(drop_unknown_codes=True)}) e "
                   f"LEFT JOIN persons p ON e.person_id = p.person_id")
            low, high, unknown = self.con.execute(sql).fetchone()
            if unknown and not plan.ids_verified:
                ids = self.con.execute(f"SELECT DISTINCT e.person_id FROM ({plan.typed(drop_unknown_codes=True)}) e "
                                       f"ANTI JOIN persons p ON e.person_id = p.person_id").fetchall()
                if self._verify_ids(plan, [i for (i,) in ids]):
                    return self.date_range(until=until)
            if low is not None:
                lows.append(pd.Timestamp(low))
                highs.append(pd.Timestamp(high))
        return (min(lows) if lows else None, max(highs) if highs else None)

    def features(self, index_date, *, min_age: float = 18, max_age: float = 120) -> pd.DataFrame:
        """The feature frame for ``index_date``: equal to ``build_features`` on the validated records."""
        from riskstrat.features import eligible_persons

        t = pd.Timestamp(index_date).normalize()
        eligible = eligible_persons(self._persons_only, t, min_age=min_age, max_age=max_age)
        # Persons row -> position in the cohort; the extra last slot (-1) is where a row of -1 lands.
        position = np.full(len(self.persons) + 1, -1, dtype=np.int64)
        position[self.persons.index.get_indexer(eligible.index)] = np.arange(len(eligible))
        people = eligible.set_index("person_id")
        values: dict[str, np.ndarray] = {}
        for name, plan in self.plans.items():
            values.update(self._aggregate(plan, t, position[self._row_of_rowid], len(people)))
        result = derive(people, values, set(self.plans))
        result["practice_id"] = people["practice_id"].astype("string")
        result["sex"] = people["sex"]
        result["ethnicity_group"] = people["ethnicity_group"]
        result.index.name = "person_id"
        return result

    def tables(self, names: Iterable[str]):
        """Validated persons and the event tables ``names`` that this data set has, as
        :class:`~riskstrat.records.LinkedRecords`: what an outcome's labels read.

        Each table is read whole through the aggregates' cleaning SQL and equals the table
        validation gives (rows in file order, exact repeats removed keeping the first, events
        outside a life dropped and end dates after death cut back, events after the end of the
        data dropped, canonical dtypes). Unknown person ids, and repeats or events outside a life or
        after the data end under the ``error`` options, raise the same
        :class:`~riskstrat.validate.ValidationError` as validation."""
        from riskstrat.records import LinkedRecords

        wanted = set(names)
        tables = {"persons": self.persons}
        for name in EVENT_TABLES:
            if name in wanted and name in self.plans:
                tables[name] = self._validated_table(self.plans[name])
        return LinkedRecords(tables)

    def check_links(self) -> None:
        """Refuse, as validation does, rows of any event table whose person is not in persons and,
        under ``out_of_life_events='error'``, events after the end of the data or outside a life:
        the aggregates read only the rows before each index date, so they cannot see these in later
        rows. One scan of the ids and dates per table; raises :class:`~riskstrat.validate.ValidationError`
        with validation's rule names."""
        from riskstrat.validate import ValidationError, _agree, _rows

        latest, log, found = self._latest_date(), self._log, []
        strict = self.options["out_of_life_events"] == "error"
        for name, plan in self.plans.items():
            if name in self._links_checked:
                continue
            read = plan.typed(drop_unknown_codes=self.options["unknown_codes"] == "drop")
            table, date = plan.table, plan.table.event_date
            checks = {"unknown_person": "p.person_id IS NULL AND r.person_id IS NOT NULL"}
            if strict:
                if date:
                    checks["future_event"] = f"r.{_quote(date)} > {_date(latest)}"
                checks["event_before_birth"] = " OR ".join(f"r.{_quote(c)} < p.birth_date" for c in table.date_columns)
                checks["event_after_death"] = " OR ".join(f"r.{_quote(c)} > p.death_date" for c in table.date_columns)
            counts = self.con.execute(
                f"SELECT {', '.join(f'count(*) FILTER (WHERE {c})' for c in checks.values())} "
                f"FROM (SELECT person_id, {', '.join(map(_quote, table.date_columns))} FROM ({read})) r "
                f"LEFT JOIN persons p ON r.person_id = p.person_id").fetchone()
            texts = {"unknown_person": "{n} {refer} to person ids that are not in persons; add the people to persons "
                                       "or remove the rows.",
                     "future_event": f"{{n}} dated after the end of the data ({latest.date()}); correct the dates "
                                     f"or remove the rows.",
                     "event_before_birth": "{n} dated before the person's birth; correct the dates or remove the "
                                           "rows (or drop them with out_of_life_events='drop').",
                     "event_after_death": "{n} dated after the person's death; correct the dates or remove the "
                                          "rows (or drop them with out_of_life_events='drop')."}
            for rule, n in zip(checks, counts):
                if n:
                    column = "person_id" if rule == "unknown_person" else None
                    found.append((name, column, rule, "error", n, f"{log.where(name, column)}: " + texts[rule].format(
                        n=_rows(n), refer=_agree(n, "refers", "refer"))))
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

    def _validated_table(self, plan: _TablePlan) -> pd.DataFrame:
        from riskstrat.schema import pandas_dtype
        from riskstrat.validate import ValidationError, _agree, _rows

        table, name, options = plan.table, plan.table.name, self.options
        read = plan.typed(drop_unknown_codes=options["unknown_codes"] == "drop", row_number=True)
        # Exact repeats over every column of the file (extra columns included), the first kept.
        deduped = f"SELECT * EXCLUDE (_row), min(_row) AS _row FROM ({read}) GROUP BY ALL" \
            if options["duplicate_rows"] != "keep" else read
        policy = options["out_of_life_events"]
        ends = {end for _, end in table.ordered_dates}
        columns = []
        for col in table.columns:
            c = _quote(col.name)
            if col.name in ends and policy == "drop":  # an end after death: the date of death
                columns.append(f"CASE WHEN r.{c} > p.death_date THEN p.death_date ELSE r.{c} END AS {c}")
            else:
                columns.append(f"r.{c}")
        before = " OR ".join(f"coalesce(r.{_quote(c)} < p.birth_date, false)" for c in table.date_columns)
        after = " OR ".join(f"coalesce(r.{_quote(c)} > p.death_date, false)" for c in table.date_columns
                            if c not in ends or policy != "drop") or "false"
        latest = self._latest_date()
        future = f"coalesce(r.{_quote(table.event_date)} > {_date(latest)}, false)" if table.event_date else "false"
        joined = (f"SELECT {', '.join(columns)}, r._row, p.person_id IS NULL AND r.person_id IS NOT NULL AS _unknown, "
                  f"({before}) AS _before_birth, ({after}) AS _after_death, {future} AS _future "
                  f"FROM ({deduped}) r LEFT JOIN persons p ON r.person_id = p.person_id")
        # Future events go first, as validation drops them before it looks at lives (under drop).
        counted = "NOT _future" if policy == "drop" else "true"
        n_read, n_rows, unknown, before_birth, after_death, n_future = self.con.execute(
            f"SELECT (SELECT count(*) FROM ({read})), count(*), count(*) FILTER (WHERE _unknown), "
            f"count(*) FILTER (WHERE _before_birth AND {counted}), count(*) FILTER (WHERE _after_death AND {counted}), "
            f"count(*) FILTER (WHERE _future) FROM ({joined})").fetchone()
        log, errors = self._log, []
        if options["duplicate_rows"] == "error" and n_read > n_rows:
            n = n_read - n_rows
            errors.append((name, None, "duplicate_rows", "error", n,
                           f"{log.where(name)}: {_rows(n)} {_agree(n, 'repeats', 'repeat')} an earlier row exactly; "
                           f"remove the repeats, or drop them (duplicate_rows='drop')."))
        if unknown:
            errors.append((name, "person_id", "unknown_person", "error", unknown,
                           f"{log.where(name, 'person_id')}: {_rows(unknown)} {_agree(unknown, 'refers', 'refer')} to "
                           f"person ids that are not in persons; add the people to persons or remove the rows."))
        if policy == "error":
            for rule, n, what in (("future_event", n_future, f"dated after the end of the data ({latest.date()})"),
                                  ("event_before_birth", before_birth, "dated before the person's birth"),
                                  ("event_after_death", after_death, "dated after the person's death")):
                if n:
                    errors.append((name, None, rule, "error", n, f"{log.where(name)}: {_rows(n)} {what}; correct the "
                                   f"dates or remove the rows (or drop them with out_of_life_events='drop')."))
        if errors:
            for issue in errors:
                log.add(*issue)
            raise ValidationError(self.report)

        keep = "NOT _unknown" + (" AND NOT (_before_birth OR _after_death OR _future)" if policy == "drop" else "")
        names = [c.name for c in table.columns if c.name != "record_id" or "record_id" in plan.source]
        frame = self.con.execute(f"SELECT {', '.join(map(_quote, names))} FROM ({joined}) WHERE {keep} "
                                 f"ORDER BY _row").df()
        out = {}
        for col in (table.column(n) for n in names):
            values = frame[col.name]
            if col.kind == "date":
                values = values.astype("datetime64[s]")
            elif col.kind == "bool":
                values = values.astype("boolean")
            out[col.name] = values.astype(pandas_dtype(col))
        return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))

    # ------------------------------------------------------------------ checks

    def _check_table(self, table: Table, path: Path) -> None:
        log, name = self._log, table.name
        described = self.con.execute(f"DESCRIBE SELECT * FROM read_parquet({_literal(str(path))})").fetchall()
        plan = _TablePlan(table, path, {row[0]: str(row[1]) for row in described})
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
            if col.name not in plan.source:
                continue
            kind = plan.file_columns[plan.source[col.name]].upper()
            wanted = {"date": _DATE_TYPES, "float": _NUMBER_TYPES, "bool": ("BOOLEAN",)}.get(col.kind)
            typed = kind.startswith(wanted or ()) or kind.startswith("DECIMAL") or kind.strip('"') == "NULL"
            typed = typed and "TIME ZONE" not in kind  # validation keeps the stored zone's date; DuckDB would not
            if wanted is not None and not typed:  # an all-blank column has Parquet's null type
                raise EngineDataError(
                    f"{path.name}, column {col.name}: stored as {kind}, but the duckdb engine reads it as "
                    f"{col.kind} only; write the data with riskstrat import (typed Parquet), or use --engine pandas")
        # One pass over the file answers every check: per-row tests only where the Parquet
        # statistics (read from the footer, no scan) cannot answer. Category columns come back as
        # counts per distinct value, which validation's own code then normalises.
        meta = pq.ParquetFile(path).metadata
        stats = {c.name: _leading_text(meta, plan.source[c.name]) for c in table.columns
                 if c.name in plan.source and c.kind in ("id", "str")}
        passes: dict[tuple[str, str], int] = {}
        checks = ["count(*)"]

        def count(key: tuple[str, str], sql: str) -> None:
            passes[key] = len(checks)
            checks.append(sql)

        for col in table.columns:
            if col.name not in plan.source:
                continue
            raw = plan.raw(col.name)
            if col.kind == "category":
                count(("histogram", col.name), f"histogram(CAST({raw} AS VARCHAR))")
            elif col.kind in ("id", "str"):
                text = f"CAST({raw} AS VARCHAR)"
                if stats.get(col.name) is None:  # no statistics: test the first character of every value
                    count(("leading", col.name), f"count(*) FILTER (WHERE {text}[1] <= ' ')")
                if col.name != "person_id" and stats.get(col.name) != "blank":
                    # A value ending in white space (ids: found by the join with persons, see _verify_ids).
                    count(("trailing", col.name), f"count(*) FILTER (WHERE {text}[-1] <= ' ')")
            elif col.kind == "float":
                number = f"CAST({raw} AS DOUBLE)"
                count(("nan", col.name), f"count(*) FILTER (WHERE isnan({number}))")
                count(("wrong_type", col.name), f"count(*) FILTER (WHERE isinf({number}))")
                if col.min_value is not None:
                    count(("negative_cost", col.name), f"count(*) FILTER (WHERE {number} < {col.min_value!r})")
            if not col.nullable:
                count(("null", col.name), f"count(*) FILTER (WHERE {raw} IS NULL)")
        for start, end in table.ordered_dates:
            if start in plan.source and end in plan.source:
                count(("end_before_start", end), f"count(*) FILTER (WHERE {plan.expression(TABLES[name].column(end))} < "
                                                 f"{plan.expression(TABLES[name].column(start))})")
        found = self.con.execute(f"SELECT {', '.join(checks)} FROM {plan.scan}").fetchone()

        def got(key: tuple[str, str]) -> int:
            return int(found[passes[key]]) if key in passes else 0

        counts: dict[tuple[str, str], int] = {}
        for col in table.columns:
            if col.name not in plan.source:
                continue
            if col.kind == "category":
                histogram = found[passes[("histogram", col.name)]] or {}
                raw = [v for v in histogram if v is not None]
                # Each distinct value normalised by validation's own code (case, spaces, BNF "1" -> "01").
                canonical, unknown, missing = _coerce_category(pd.Series(raw, dtype=object), col)
                plan.code_map[col.name] = {v: None if (bad or miss) else str(c) for v, c, bad, miss
                                           in zip(raw, canonical.astype(object), unknown, missing)}
                plan.unknown[col.name] = [v for v, bad in zip(raw, unknown) if bad]
                counts[("unknown_code", col.name)] = sum(int(histogram[v]) for v in plan.unknown[col.name])
                blank = sum(int(histogram[v]) for v, bad, miss in zip(raw, unknown, missing) if miss and not bad)
                counts[("missing_value", col.name)] = got(("null", col.name)) + blank
            elif col.kind in ("id", "str"):
                dirty = stats[col.name] == "dirty" or got(("leading", col.name)) or got(("trailing", col.name))
                if not dirty:
                    plan.clean.add(col.name)
                    counts[("missing_value", col.name)] = got(("null", col.name))
                elif not col.nullable:  # white space to strip: blanks counted as validation counts them
                    counts[("missing_value", col.name)] = int(self.con.execute(
                        f"SELECT count(*) FILTER (WHERE {plan.expression(col)} IS NULL) FROM {plan.scan}").fetchone()[0])
            elif col.kind == "float":
                if not got(("nan", col.name)):
                    plan.clean.add(col.name)
                counts[("wrong_type", col.name)] = got(("wrong_type", col.name))
                counts[("negative_cost", col.name)] = got(("negative_cost", col.name))
                counts[("missing_value", col.name)] = got(("null", col.name)) + got(("nan", col.name))
            else:
                counts[("missing_value", col.name)] = got(("null", col.name))
            if col.nullable:
                counts.pop(("missing_value", col.name), None)
        for start, end in table.ordered_dates:
            counts[("end_before_start", end)] = got(("end_before_start", end))
        # Ids read as they are may still end in white space: the joins with persons find them (_verify_ids).
        plan.ids_verified = "person_id" not in plan.clean
        self.row_counts[name] = int(found[0])
        if found[0] == 0:
            log.add(name, None, "empty_table", "warning", 0,
                    f"{log.where(name)} has no rows, so the {name} table contributes nothing.")
        texts = {
            "missing_value": "with no value, but the column is required; fill them in or remove the rows",
            "wrong_type": "with values that are not numbers; correct them to plain numbers such as 1234.5",
            "negative_cost": "with a negative cost; costs must be 0 or more (record refunds elsewhere, or blank "
                             "unknown costs)",
            "end_before_start": "with an end before the start; correct the dates or remove the rows",
        }
        order = {rule: i for i, rule in enumerate(("missing_value", "unknown_code", "wrong_type", "negative_cost"))}
        for col in table.columns:  # validation's order: column by column, then the date pairs
            for rule in sorted((r for r, c in counts if c == col.name and r != "end_before_start"), key=order.get):
                self._report(table, col.name, rule, counts[(rule, col.name)], texts)
        for start, end in table.ordered_dates:
            self._report(table, end, "end_before_start", counts.get(("end_before_start", end), 0), texts)
        self.plans[name] = plan

    @staticmethod
    def _verify_ids(plan: _TablePlan, unknown: Iterable) -> bool:
        """Whether ids read as they are, found in no person, hold white space that validation would
        strip (then the plan cleans them from now on: the caller runs its query again)."""
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

    def _report(self, table: Table, col: str, rule: str, n: int, texts: dict[str, str]) -> None:
        """One check's finding, worded as validation words it."""
        if not n:
            return
        log, name = self._log, table.name
        where = log.where(name, col)
        if rule == "unknown_code":
            listed = ", ".join(table.column(col).categories or ())
            head = f"{where}: {_rows(n)} with codes outside the reference list"
            if self.options["unknown_codes"] == "drop":
                log.add(name, col, rule, "warning", n, f"{head}; these rows were dropped (known codes: {listed}).",
                        action=f"dropped {_rows(n)}")
            else:
                log.add(name, col, rule, "error", n,
                        f"{head}; map them to one of {listed}, or drop them (unknown_codes='drop').")
            return
        log.add(name, col, rule, "error", n, f"{where}: {_rows(n)} {texts[rule]}.")

    def _kept(self, table: Table, alias: str) -> str:
        """SQL: the row is inside the person's life (as validation's drop policy keeps it)."""
        if self.options["out_of_life_events"] != "drop":
            return "true"
        ends = {end for _, end in table.ordered_dates}
        conds = [f"coalesce({alias}.{_quote(c)} < p.birth_date, false)" for c in table.date_columns]
        conds += [f"coalesce({alias}.{_quote(c)} > p.death_date, false)" for c in table.date_columns if c not in ends]
        return f"NOT ({' OR '.join(conds)})"

    # ------------------------------------------------------------------ aggregates

    def _row_values(self, table: Table, t: pd.Timestamp) -> dict[str, str]:
        T = _date(t)
        values = {"cost": "coalesce(cost, 0.0)"}
        if table.name == "inpatient_spells":
            values["bed_days_before_T"] = f"greatest(least(coalesce(discharge_date, {T}), {T}) - admission_date, 0)"
        if table.name == "social_care":
            values["weekly_cost"] = "coalesce(weekly_cost, 0.0)"
            values["cost_in_12m"] = (f"coalesce(weekly_cost, 0.0) * greatest(least(coalesce(end_date, {T}), {T}) "
                                     f"- greatest(start_date, {T} - 365), 0) / 7")
        return values

    @staticmethod
    def _where(w: Where) -> str:
        col = _quote(w.column)
        if w.prefix_regex:
            cond = f"coalesce(regexp_matches({col}, {_literal('^(?:' + w.values[0] + ')')}), false)"
        else:
            cond = f"{col} IN ({', '.join(map(_literal, w.values))})"
        return f"NOT coalesce({cond}, true)" if w.negate else cond

    def _aggregate_sql(self, a: Aggregate, t: pd.Timestamp, row_values: dict[str, str], keep: str) -> str:
        lo, hi = a.window
        conds = [keep, f"_days >= {lo}"] + ([f"_days <= {hi}"] if hi is not None else [])
        conds += [self._where(w) for w in a.where]
        if a.ongoing:
            conds.append(f"(end_date IS NULL OR end_date >= {_date(t)})")
        cond = " AND ".join(conds)
        value = row_values.get(a.value, _quote(a.value) if a.value else None)
        distinct = f"count(DISTINCT {value})"
        codes = TABLES[a.table].column(a.value).categories if a.kind == "distinct" else None
        if codes and len(codes) <= 63:
            # A coded column: OR one bit per code seen, then count the bits. Exact, and far cheaper than a
            # distinct set per person (2.5 of 7.9 s for prescriptions at 100k people).
            listed = ", ".join(map(_literal, codes))
            bits = f"bit_or(CAST(1 AS BIGINT) << (list_position([{listed}], {value}) - 1)) FILTER (WHERE {cond})"
            return f"bit_count({bits}) AS {_quote(a.name)}"
        sql = {"count": "count(*)", "any": "count(*)", "min_days": "min(_days)", "max_days": "max(_days)",
               "sum": f"sum({value})", "distinct": distinct}[a.kind]
        return f"{sql} FILTER (WHERE {cond}) AS {_quote(a.name)}"

    def aggregate_sql(self, table_name: str, index_date) -> str:
        """The one query that cleans ``table_name`` and computes its aggregates per person as of
        ``index_date`` (with the counts validation reports: rows, rows outside a life, unknown ids)."""
        t = pd.Timestamp(index_date).normalize()
        plan = self.plans[table_name]
        table, name = plan.table, plan.table.name
        read = self._read_sql(plan, t)
        # Repeats removed in one pass that also counts them (copies of each distinct row).
        dedup = (f"SELECT *, count(*) AS _copies FROM ({read}) GROUP BY ALL"
                 if self.options["duplicate_rows"] == "drop" else f"SELECT *, 1 AS _copies FROM ({read})")
        date = _quote(DATE_COLUMNS[name])
        ends = {end for _, end in table.ordered_dates}
        columns = []
        for col in table.columns:
            c = _quote(col.name)
            if col.name in ends and self.options["out_of_life_events"] == "drop":
                # An end after death is administrative lag: the stay or service ends on the date of death.
                c = f"CASE WHEN r.{c} > p.death_date THEN p.death_date ELSE r.{c} END AS {c}"
            else:
                c = f"r.{c}"
            columns.append(c)
        out_of_life = [f"coalesce(r.{_quote(c)} < p.birth_date, false)" for c in table.date_columns]
        out_of_life += [f"coalesce(r.{_quote(c)} > p.death_date, false)" for c in table.date_columns
                        if c not in ends or self.options["out_of_life_events"] != "drop"]
        keep = "NOT _out_of_life" if self.options["out_of_life_events"] == "drop" else "true"
        row_values = self._row_values(table, t)
        aggs = [self._aggregate_sql(a, t, row_values, keep) for a in aggregates_for(name)]
        return f"""
            WITH deduped AS ({dedup}),
            joined AS (
                SELECT {', '.join(columns)}, r._copies, p.person_id IS NULL AS _unknown, p.rowid AS _person,
                       ({' OR '.join(out_of_life)}) AS _out_of_life, {_date(t)} - r.{date} AS _days
                FROM deduped r LEFT JOIN persons p ON r.person_id = p.person_id)
            SELECT person_id, count(*) AS _rows, sum(_copies) AS _read, count(*) FILTER (WHERE _out_of_life) AS _n_out_of_life,
                   bool_or(_unknown) AS _is_unknown, min(_person) AS _person, {', '.join(aggs)}
            FROM joined GROUP BY person_id"""

    def _read_sql(self, plan: _TablePlan, t: pd.Timestamp) -> str:
        """The rows of a table the features can read: before T and within the longest window of its
        aggregates. Repeats share their date, so removing repeats among these alone is exact for the
        features. When repeats or events outside a life are errors, every row is read (and counted)."""
        name = plan.table.name
        read = plan.typed(drop_unknown_codes=self.options["unknown_codes"] == "drop")
        if "error" in (self.options["duplicate_rows"], self.options["out_of_life_events"]):
            return read
        date, spans = _quote(DATE_COLUMNS[name]), [a.window[1] for a in aggregates_for(name)]
        where = f"{date} < {_date(t)}" + (f" AND {date} >= {_date(t)} - {max(spans)}" if None not in spans else "")
        return f"SELECT * FROM ({read}) WHERE {where}"

    def _aggregate(self, plan: _TablePlan, t: pd.Timestamp, position: np.ndarray,
                   n_people: int) -> dict[str, np.ndarray]:
        """The aggregates of one table for the ``n_people`` people of the cohort; ``position[rowid]`` is the
        cohort position of the persons table's row ``rowid`` (-1: not in the cohort)."""
        name = plan.table.name
        distinct = self.options["duplicate_rows"] == "drop"
        frame = self.con.execute(self.aggregate_sql(name, t)).df()

        # Validation's findings from the same pass.
        log, issues = self._log, []
        unknown = frame["_is_unknown"].fillna(False).astype(bool) & frame["person_id"].notna()
        n_unknown = int(frame.loc[unknown, "_rows"].sum())
        if n_unknown and not plan.ids_verified and self._verify_ids(plan, frame.loc[unknown, "person_id"]):
            return self._aggregate(plan, t, position, n_people)  # ids ending in white space: again, cleaning them
        if n_unknown:
            issues.append((name, "person_id", "unknown_person", "error", n_unknown,
                           f"{log.where(name, 'person_id')}: {_rows(n_unknown)} {_agree(n_unknown, 'refers', 'refer')} to person ids that are not in "
                           f"persons; add the people to persons or remove the rows."))
        n_outside = int(frame["_n_out_of_life"].sum())
        if n_outside:
            policy = self.options["out_of_life_events"]
            severity = "error" if policy == "error" else "warning"
            todo = {"drop": "the rows were dropped", "keep": "the rows were kept",
                    "error": "correct the dates or remove the rows (or drop them with out_of_life_events='drop')"}
            issues.append((name, DATE_COLUMNS[name], "event_outside_life", severity, n_outside,
                           f"{log.where(name)}: {_rows(n_outside)} dated before the person's birth or after their "
                           f"death; {todo[policy]}."))
        n_distinct = int(frame["_rows"].sum())
        n_read = int(frame["_read"].sum())
        if distinct and n_read > n_distinct:
            n = n_read - n_distinct
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

        person = frame["_person"].to_numpy(dtype="float64", na_value=np.nan)
        known = ~np.isnan(person)
        at = np.full(len(frame), -1, dtype=np.int64)
        at[known] = position[person[known].astype(np.int64)]
        hit = at >= 0
        values = {}
        for a in aggregates_for(name):
            column = frame[a.name].to_numpy(dtype="float64", na_value=np.nan)
            if a.kind == "any":
                column = (column > 0).astype("float64")
            out = np.full(n_people, a.fill, dtype="float64")
            out[at[hit]] = np.where(np.isnan(column[hit]), a.fill, column[hit])
            values[a.name] = out
        return values

