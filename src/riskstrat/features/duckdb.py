"""The DuckDB engine: the feature aggregates as SQL over the Parquet folder.

Only the persons table (one row a person) is read into pandas, and validated there by
:func:`riskstrat.data.validate.validate_tables` itself. Event tables stay in their Parquet files:
DuckDB scans them, applies the cleaning validation applies to the rows that feed features, and
returns one row of aggregates per person. Validation's rules run as SQL counts and raise the same
:class:`~riskstrat.data.validate.ValidationError` (rule names, files, counts; no row examples). What is
checked when, the messages and the feature frame are the folder engines' shared part
(:mod:`riskstrat.features._folder`); this module writes its SQL: one query a table for the checks on
construction, one a table and index date for the aggregates (:meth:`DuckDBEngine.aggregate_sql`),
in which repeats are removed and counted by one ``GROUP BY ALL`` and people are found by the persons
table's row id. Training's several index dates (:meth:`DuckDBEngine.features_at`) read each table once:
the rows any date reads are cleaned once by the same SQL and held, and each date's aggregates are
the reference engine's over its slice of them.

The engine needs typed Parquet, as ``riskstrat import`` and ``riskstrat synth`` write it (dates as
dates or timestamps, numbers as numbers, flags as booleans); a CSV folder or a text-typed column is
refused with :class:`EngineDataError` (use the pandas engine for those).

>>> engine = DuckDBEngine("riskstrat-data/synthetic")          # doctest: +SKIP
>>> features = engine.features("2025-11-01")                    # doctest: +SKIP
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from riskstrat.features._folder import (
    EngineDataError,
    FolderEngine,
    TablePlan,
    clamped_ends,
    months_frame,
    out_of_life_tests,
    read_window,
)
from riskstrat.errors import RiskstratError
from riskstrat.features.reference import table_aggregates
from riskstrat.features.spec import CLINICAL, DATE_COLUMNS, Aggregate, Where, aggregates_for, feature_frame
from riskstrat.data.records import LinkedRecords, person_categories
from riskstrat.data.schema import EVENT_TABLES, TABLES, Column, Table, pandas_dtype
from riskstrat.data.validate import ValidationError, _agree, _rows

__all__ = ["DuckDBEngine", "EngineDataError", "EngineMemoryError", "default_memory_limit"]


class EngineMemoryError(RiskstratError):
    """DuckDB ran out of the memory it was given; the message says which setting to change."""


class _Connection:
    """A DuckDB connection whose out-of-memory error names the setting to change (every query of the
    engine runs through :meth:`execute`); everything else is DuckDB's own."""

    def __init__(self, con: duckdb.DuckDBPyConnection, memory_limit: str | None, *, chosen: bool = False):
        # ``chosen``: the limit is riskstrat's default (data.duckdb_memory_limit unset), not the user's.
        self._con, self._memory_limit, self._chosen = con, memory_limit, chosen

    def execute(self, *args, **kwargs):
        with self._errors():
            return self._con.execute(*args, **kwargs)

    def batches(self, sql: str, rows: int) -> Iterator[pa.RecordBatch]:
        """The result of ``sql`` as Arrow record batches of about ``rows`` rows, read as they are asked for."""
        with self._errors():
            reader = self._con.sql(sql).to_arrow_reader(rows)
            yield from reader

    @contextmanager
    def _errors(self):
        try:
            yield
        except (duckdb.IOException, duckdb.InvalidInputException) as exc:
            # A file that cannot be read (truncated, not Parquet, unreadable): DuckDB's first line names it.
            raise EngineDataError(f"the DuckDB engine cannot read the data: {str(exc).splitlines()[0]}; restore the "
                                  f"file from the extract (riskstrat validate DIR checks a folder)") from None
        except duckdb.OutOfMemoryException as exc:
            given = (f"data.duckdb_memory_limit is unset: half the memory available when the engine opened, "
                     f"{self._memory_limit}" if self._chosen else
                     f"data.duckdb_memory_limit is {self._memory_limit}" if self._memory_limit else
                     "data.duckdb_memory_limit is unset (DuckDB's default, 80% of the machine's memory)")
            raise EngineMemoryError(
                f"the DuckDB engine ran out of memory ({given}): raise it, e.g. --set data.duckdb_memory_limit=8GB, or "
                f"run on a machine with more memory; DuckDB said: {str(exc).splitlines()[0]}") from None

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def _cgroup_room() -> int | None:
    """Bytes this process's control group may still take (cgroup v2 ``memory.max`` less
    ``memory.current``, or v1's ``limit_in_bytes`` less ``usage_in_bytes``); None when it has no limit or
    none can be read. A container's limit is not in ``/proc/meminfo``, which shows the host's memory."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit, usage = Path(limit_file).read_text().strip(), Path(usage_file).read_text().strip()
        except OSError:
            continue
        if limit == "max" or not limit.isdigit() or not usage.isdigit() or int(limit) >= 1 << 60:
            return None  # no limit ("max"; v1 writes a huge number instead)
        return max(int(limit) - int(usage), 0)
    return None


def default_memory_limit(*, available_bytes: int | None = None, cgroup_bytes: int | None = None) -> str | None:
    """DuckDB's memory when ``data.duckdb_memory_limit`` is unset: half the memory available when the engine
    opens, at least 1 GiB, as ``"<n>MiB"``. Available is the smaller of Linux's ``MemAvailable``
    (``available_bytes``) and the room left under the process's control group limit (``cgroup_bytes``: a
    container's limit, which ``MemAvailable`` does not show). None (DuckDB's own default, 80% of the
    machine's physical memory) where the available memory cannot be read, e.g. off Linux.

    Why not DuckDB's default: it counts neither the other processes of a shared machine nor the run's
    own memory beside DuckDB's (at 5M people the month's aggregates and feature blocks are 2-3 GiB in
    Python), and a process past the machine's memory is killed without a message, where DuckDB given
    less spills to disk (slower) or refuses with :class:`EngineMemoryError` naming the setting. The
    1 GiB floor can be more than is free on a nearly full machine: below it DuckDB cannot aggregate a
    large table at all, and the refusal names the setting."""
    if available_bytes is None:
        try:
            with open("/proc/meminfo") as meminfo:
                fields = dict(line.split(":", 1) for line in meminfo)
            available_bytes = int(fields["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return None
        if cgroup_bytes is None:
            cgroup_bytes = _cgroup_room()
    if cgroup_bytes is not None:
        available_bytes = min(available_bytes, cgroup_bytes)
    return f"{max(available_bytes // 2, 1 << 30) >> 20}MiB"


_DATE_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP_US")
_NUMBER_TYPES = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT",
                 "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT", "DECIMAL")


# The columns each of the spec's row values (riskstrat.features.spec.ROW_VALUES) is computed from.
_ROW_VALUE_COLUMNS = {"cost": ("cost",), "cost_recorded": ("cost",), "weekly_cost": ("weekly_cost",),
                      "bed_days_before_T": ("discharge_date",), "cost_in_12m": ("weekly_cost", "end_date")}


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


def _outside(alias: str, column: str, side: str) -> str:
    """SQL: the row's date ``column`` is before the person's birth or after their death (``side``)."""
    return f"coalesce({alias}.{_quote(column)} {'<' if side == 'birth' else '>'} p.{side}_date, false)"


class _TablePlan(TablePlan):
    """The plan with its columns as SQL: typed, normalised expressions for the schema columns."""

    @property
    def scan(self) -> str:
        return f"read_parquet({_literal(str(self.path))})"

    def raw(self, name: str) -> str:
        return _quote(self.source[name])

    def expression(self, col: Column) -> str:
        """The column as validation leaves it (NULL when the file lacks an optional column; the
        column's ``missing_as`` code where it has one and the value is blank or absent)."""
        if col.missing_as is not None:
            return f"coalesce({self._expression(col)}, {_literal(col.missing_as)})"
        return self._expression(col)

    def _expression(self, col: Column) -> str:
        if col.name not in self.source:
            return {"date": "CAST(NULL AS DATE)", "float": "CAST(NULL AS DOUBLE)", "bool": "CAST(NULL AS BOOLEAN)"}.get(
                col.kind, "CAST(NULL AS VARCHAR)")
        raw, kind = self.raw(col.name), self.stored(col.name).upper()
        if col.kind in ("id", "str"):
            if col.name in self.clean:
                return raw if kind == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
            return f"NULLIF({_strip(f'CAST({raw} AS VARCHAR)')}, '')"
        if col.kind == "category":
            if self.is_canonical(col):  # already canonical: no per-row mapping
                return raw if kind == "VARCHAR" else f"CAST({raw} AS VARCHAR)"
            cases = " ".join(f"WHEN {_literal(k)} THEN {_literal(v) if v is not None else 'NULL'}"
                             for k, v in self.code_map[col.name].items())
            return f"(CASE CAST({raw} AS VARCHAR) {cases} END)"
        if col.kind == "date":
            return raw if kind == "DATE" else f"CAST({raw} AS DATE)"  # a timestamp's date, as validation
        if col.kind == "float":
            if col.name in self.clean:
                return raw if kind == "DOUBLE" else f"CAST({raw} AS DOUBLE)"
            return f"(CASE WHEN isnan(CAST({raw} AS DOUBLE)) THEN NULL ELSE CAST({raw} AS DOUBLE) END)"
        return raw  # bool

    def typed(self, *, drop_unknown_codes: bool, row_number: bool = False, only: str | None = None) -> str:
        """SELECT of every schema column (validated form) plus the file's extra columns, as read
        (``row_number``: and the row's place in the file, ``_row``, from 0; ``only``: the rows whose
        person id, cleaned, is in this one-column query, found before any other column is converted)."""
        parts = [f"{self.expression(c)} AS {_quote(c.name)}" for c in self.table.columns]
        parts += [f"{_quote(e)} AS {_quote('_extra_' + e)}" for e in self.extras]
        scan = self.scan
        if row_number:
            parts.append("file_row_number AS _row")
            scan = f"read_parquet({_literal(str(self.path))}, file_row_number = true)"
        where = [f"{self.expression(self.table.column('person_id'))} IN ({only})"] if only else []
        if drop_unknown_codes:
            for col in self.table.columns:
                bad = self.unknown_codes(col)
                if bad:
                    where.append(f"coalesce(CAST({self.raw(col.name)} AS VARCHAR) NOT IN "
                                 f"({', '.join(map(_literal, bad))}), true)")  # a blank code is not unknown
        return f"SELECT {', '.join(parts)} FROM {scan}" + (f" WHERE {' AND '.join(where)}" if where else "")


class DuckDBEngine(FolderEngine):
    """Features by SQL over a canonical Parquet folder (see the module docstring).

    ``exclude_sources`` are never read; ``out_of_life_events``, ``duplicate_rows`` and
    ``unknown_codes`` are validation's options (:func:`riskstrat.data.validate.validate_tables`).
    ``threads`` and ``memory_limit`` (e.g. ``"4GB"``) go to DuckDB; DuckDB spills to disk beyond it. Without
    ``memory_limit`` DuckDB gets half the memory available when the engine opens (:func:`default_memory_limit`).
    Raises :class:`~riskstrat.data.validate.ValidationError` when validation would refuse the data.
    """

    name = "duckdb"
    _plan_class = _TablePlan
    _person_ids: pa.Array  # the persons' ids as Arrow text (the persons table's, kept for the link check)
    # Ids of a file looked up in the persons' ids at a time: at least this many, and at least twice the
    # persons (each look-up hashes every person's id again: 2.1 s at 5M people, against 0.4 s a million ids).
    _id_batch, _id_batch_per_person = 4_000_000, 2

    def __init__(self, data_dir: str | Path, *, exclude_sources: Iterable[str] = (), out_of_life_events: str = "drop",
                 duplicate_rows: str = "drop", unknown_codes: str = "error", threads: int | None = None,
                 memory_limit: str | None = None, stage: Callable[[str], None] | None = None):
        self._settings = {"threads": threads, "memory_limit": memory_limit}
        super().__init__(data_dir, exclude_sources=exclude_sources, out_of_life_events=out_of_life_events,
                         duplicate_rows=duplicate_rows, unknown_codes=unknown_codes, stage=stage)

    def _connect(self) -> None:
        limit, chosen = self._settings["memory_limit"], False
        if limit is None:
            limit, chosen = default_memory_limit(), True
        self.con = _Connection(duckdb.connect(), limit, chosen=chosen and limit is not None)
        # No progress bar on stdout (the CLI prints one result line); row order never matters here.
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET preserve_insertion_order = false")
        # DuckDB spills beyond its memory limit into ".tmp" in the current folder by default: wherever the
        # command was started, perhaps a shared or synced folder. A private temporary folder instead,
        # removed when the engine goes (or at exit).
        spill = tempfile.mkdtemp(prefix="riskstrat-duckdb-")
        weakref.finalize(self, shutil.rmtree, spill, ignore_errors=True)
        self.con.execute(f"SET temp_directory = {_literal(spill)}")
        if self._settings["threads"] is not None:
            self.con.execute(f"SET threads = {int(self._settings['threads'])}")
        if limit is not None:
            self.con.execute(f"SET memory_limit = {_literal(limit)}")
        self._person_ids = pa.array(self.persons["person_id"].astype(object), type=pa.string())
        self.con.register("_persons_frame", pa.table({
            "person_id": self._person_ids,
            "birth_date": pa.array(self.persons["birth_date"].to_numpy(), type=pa.timestamp("s")),
            "death_date": pa.array(self.persons["death_date"].to_numpy(), type=pa.timestamp("s")),
            "_row": pa.array(np.arange(len(self.persons), dtype=np.int64)),
        }))
        self.con.execute("CREATE TEMP TABLE persons AS SELECT person_id, CAST(birth_date AS DATE) AS birth_date, "
                         "CAST(death_date AS DATE) AS death_date, _row FROM _persons_frame")
        self.con.unregister("_persons_frame")
        # The aggregates name each person by the persons table's rowid (the person key): people are then
        # found by an integer take, not by hashing every id string again for every table.
        rows = self.con.execute("SELECT rowid, _row FROM persons").fetchnumpy()
        self._person_key_rows = np.full(int(rows["rowid"].max()) + 1 if len(rows["rowid"]) else 0, -1, dtype=np.int64)
        self._person_key_rows[np.asarray(rows["rowid"], dtype=np.int64)] = np.asarray(rows["_row"], dtype=np.int64)

    # ------------------------------------------------------------------ checks

    def _file_columns(self, path: Path) -> dict[str, str]:
        described = self.con.execute(f"DESCRIBE SELECT * FROM read_parquet({_literal(str(path))})").fetchall()
        return {row[0]: str(row[1]) for row in described}

    def _reads_as(self, kind: str, stored: str) -> bool:
        stored = stored.upper()
        if "TIME ZONE" in stored:  # validation keeps the stored zone's date; DuckDB would not
            return False
        wanted = {"date": _DATE_TYPES, "float": _NUMBER_TYPES, "bool": ("BOOLEAN",)}[kind]
        return stored.startswith(wanted) or stored.strip('"') == "NULL"  # an all-blank column: Parquet's null type

    def _scan_counts(self, plan: _TablePlan, requests) -> list:
        parts = []
        for what, name, other in requests:
            if what == "rows":
                parts.append("count(*)")
                continue
            raw, text, number = plan.raw(name), f"CAST({plan.raw(name)} AS VARCHAR)", f"CAST({plan.raw(name)} AS DOUBLE)"
            if what == "histogram":
                parts.append(f"histogram({text})")
                continue
            column = plan.table.column(name)
            condition = {
                "null": lambda: f"{raw} IS NULL",
                "leading": lambda: f"{text}[1] <= ' '",
                "trailing": lambda: f"{text}[-1] <= ' '",
                "nan": lambda: f"isnan({number})",
                "infinite": lambda: f"isinf({number})",
                "below": lambda: f"{number} < {column.min_value!r}",
                "end_before_start": lambda: f"{plan.expression(column)} < {plan.expression(plan.table.column(other))}",
                "blank": lambda: f"{plan.expression(column)} IS NULL",
            }[what]()
            parts.append(f"count(*) FILTER (WHERE {condition})")
        return list(self.con.execute(f"SELECT {', '.join(parts)} FROM {plan.scan}").fetchone())

    def _date_span(self, plan: _TablePlan, until: pd.Timestamp | None) -> tuple:
        date = _quote(plan.table.event_date)
        before = f" AND e.{date} <= {_date(until)}" if until is not None else ""
        known = f"p.person_id IS NOT NULL AND {self._kept(plan.table, 'e')}{before}"
        return self.con.execute(
            f"SELECT min(e.{date}) FILTER (WHERE {known}), max(e.{date}) FILTER (WHERE {known}), "
            f"count(*) FILTER (WHERE p.person_id IS NULL) FROM ({plan.typed(drop_unknown_codes=True)}) e "
            f"LEFT JOIN persons p ON e.person_id = p.person_id").fetchone()

    def _event_months(self, plan: _TablePlan, until: pd.Timestamp | None) -> tuple[pd.DataFrame, int]:
        date = _quote(plan.table.event_date)
        before = f" AND e.{date} <= {_date(until)}" if until is not None else ""
        known = f"p.person_id IS NOT NULL AND e.{date} IS NOT NULL AND {self._kept(plan.table, 'e')}{before}"
        rows = plan.typed(drop_unknown_codes=True)
        if self.options["duplicate_rows"] != "keep":
            rows = f"SELECT DISTINCT * FROM ({rows})"  # an exact repeat is one event, as validation keeps it
        found = self.con.execute(
            f"SELECT date_trunc('month', e.{date}) AS month, count(*) FILTER (WHERE {known}), "
            f"min(e.{date}) FILTER (WHERE {known}), max(e.{date}) FILTER (WHERE {known}), "
            f"count(*) FILTER (WHERE p.person_id IS NULL) FROM ({rows}) e "
            f"LEFT JOIN persons p ON e.person_id = p.person_id GROUP BY 1").fetchall()
        return months_frame(found)

    def _ids_all_known(self, plan: _TablePlan) -> bool:
        """Whether every distinct id in the file is a person's id exactly, read from the Parquet
        dictionaries: each row group's ids as its dictionary of distinct values (pyarrow), not row by
        row, then looked up in the persons' ids (at least ``_id_batch`` values at a time, and at least twice
        as many as there are persons). An id stored exactly as a
        person's (clean) id is left as it is by validation's cleaning, so then no row is unknown. A
        dictionary entry that no row uses, an id that is not text, or a file pyarrow cannot read
        answers False, and the rows are counted by the join."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        column = plan.source.get("person_id")
        if column is None or not plan.path.is_file():
            return False
        try:
            file = pq.ParquetFile(plan.path, read_dictionary=[column])
            kind = file.schema_arrow.field(column).type
            kind = kind.value_type if pa.types.is_dictionary(kind) else kind
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                return False
            waiting: list[pa.Array] = []
            batch = max(self._id_batch, self._id_batch_per_person * len(self._person_ids))

            def known() -> bool:
                values = pc.drop_null(pa.chunked_array(waiting, type=kind).combine_chunks().cast(pa.string()))
                waiting.clear()
                return pc.all(pc.is_in(values, value_set=self._person_ids)).as_py() is not False

            for group in range(file.metadata.num_row_groups):
                for chunk in file.read_row_group(group, columns=[column]).column(0).chunks:
                    waiting.append(chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk)
                if sum(map(len, waiting)) >= batch and not known():
                    return False
            return known()
        except (pa.ArrowException, OSError, KeyError, ValueError):
            return False

    def _unknown_ids(self, plan: _TablePlan) -> list:
        return [i for (i,) in self.con.execute(
            f"SELECT DISTINCT e.person_id FROM ({plan.typed(drop_unknown_codes=True)}) e "
            f"ANTI JOIN persons p ON e.person_id = p.person_id").fetchall()]

    def _link_counts(self, plan: _TablePlan, rules: list[str], latest: pd.Timestamp) -> list[int]:
        read = plan.typed(drop_unknown_codes=self.options["unknown_codes"] == "drop")
        table = plan.table
        tests = {"unknown_person": "p.person_id IS NULL AND r.person_id IS NOT NULL",
                 "event_before_birth": " OR ".join(f"r.{_quote(c)} < p.birth_date" for c in table.date_columns),
                 "event_after_death": " OR ".join(f"r.{_quote(c)} > p.death_date" for c in table.date_columns)}
        if table.event_date:
            tests["future_event"] = f"r.{_quote(table.event_date)} > {_date(latest)}"
        return list(self.con.execute(
            f"SELECT {', '.join(f'count(*) FILTER (WHERE {tests[rule]})' for rule in rules)} "
            f"FROM (SELECT person_id, {', '.join(map(_quote, table.date_columns))} FROM ({read})) r "
            f"LEFT JOIN persons p ON r.person_id = p.person_id").fetchone())

    def _kept(self, table: Table, alias: str) -> str:
        """SQL: the row is inside the person's life (as validation's drop policy keeps it)."""
        if self.options["out_of_life_events"] != "drop":
            return "true"
        return f"NOT ({' OR '.join(_outside(alias, c, side) for c, side in out_of_life_tests(table, 'drop'))})"

    # ------------------------------------------------------------------ the outcome's tables

    def tables(self, names: Iterable[str], *, people=None):
        """Validated persons and the event tables ``names`` that this data set has, as
        :class:`~riskstrat.data.records.LinkedRecords`: what an outcome's labels read.

        ``people`` (person ids as the data write them; None: everyone): only those people's event rows
        are read (a filtered scan: the listed people's facts read a few thousand people's rows, not the
        whole tables), equal to the whole tables' rows of those people; ``filled`` on the records then
        maps each table to its columns that hold a value in any row of the whole table.

        Each table is read whole through the aggregates' cleaning SQL and equals the table
        validation gives (rows in file order, exact repeats removed keeping the first, events
        outside a life dropped and end dates after death cut back, events after the end of the
        data dropped, canonical dtypes). Unknown person ids, and repeats or events outside a life or
        after the data end under the ``error`` options, raise the same
        :class:`~riskstrat.data.validate.ValidationError` as validation."""
        wanted = set(names)
        tables = {"persons": self.persons}
        filled = {}
        if people is not None:  # a temporary table (a query, not register: a pending result may be open)
            self.con.execute("CREATE OR REPLACE TEMP TABLE _people AS SELECT unnest(?::VARCHAR[]) AS person_id",
                             [pd.Series(list(people), dtype=object).astype(str).unique().tolist()])
        try:
            for name in EVENT_TABLES:
                if name in wanted and name in self.plans:
                    tables[name] = self._validated_table(self.plans[name], people=people is not None)
                    if people is not None:
                        filled[name] = self._filled(self.plans[name])
        finally:
            if people is not None:
                self.con.execute("DROP TABLE IF EXISTS _people")
        known = self._person_dtype
        records = LinkedRecords(tables, person_ids=None if known is None else known.categories)
        if people is not None:
            records.filled = filled
        return records

    @functools.cached_property
    def _person_dtype(self) -> pd.CategoricalDtype | None:
        """The event tables' ``person_id`` dtype (:class:`~riskstrat.data.records.LinkedRecords`), made once:
        its codes are the persons' rows (None if the ids were not one a row, which validation refuses)."""
        categories = person_categories(self.persons)
        return pd.CategoricalDtype(categories) if len(categories) == len(self.persons) else None

    def _filled(self, plan: _TablePlan) -> set[str]:
        """The table's columns holding a value (as validation leaves them) in at least one row of the file."""
        columns = [c for c in plan.table.columns if c.name in plan.source]
        counts = self.con.execute(f"SELECT {', '.join(f'count({plan.expression(c)})' for c in columns)} "
                                  f"FROM {plan.scan}").fetchall()[0]
        return {c.name for c, n in zip(columns, counts) if n}

    def _validated_table(self, plan: _TablePlan, *, people: bool = False) -> pd.DataFrame:
        if not people:
            return self._validated_rows(plan, plan.typed(drop_unknown_codes=self.options["unknown_codes"] == "drop",
                                                         row_number=True), people=False)
        # The registered _people's rows only, by the id as validation cleans it: found while the file is
        # read (before the other columns are converted) and kept, so that the checks and the rows read
        # the file once, not twice.
        read = plan.typed(drop_unknown_codes=self.options["unknown_codes"] == "drop", row_number=True,
                          only="SELECT person_id FROM _people")
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _their_rows AS {read}")
        try:
            return self._validated_rows(plan, "SELECT * FROM _their_rows", people=True)
        finally:
            self.con.execute("DROP TABLE IF EXISTS _their_rows")
            self.con.execute("DROP TABLE IF EXISTS _their_rows_joined")

    def _validated_rows(self, plan: _TablePlan, read: str, *, people: bool) -> pd.DataFrame:
        """The table ``plan`` as validation leaves it, from ``read`` (its typed rows with ``_row``; ``people``:
        a few people's, kept as a temporary table)."""
        table, name, options = plan.table, plan.table.name, self.options
        # Exact repeats over every column of the file (extra columns included), the first kept.
        deduped = f"SELECT * EXCLUDE (_row), min(_row) AS _row FROM ({read}) GROUP BY ALL" \
            if options["duplicate_rows"] != "keep" else read
        policy = options["out_of_life_events"]
        ends = clamped_ends(table, policy)
        columns = [f"CASE WHEN r.{_quote(c.name)} > p.death_date THEN p.death_date ELSE r.{_quote(c.name)} END "
                   f"AS {_quote(c.name)}" if c.name in ends else f"r.{_quote(c.name)}" for c in table.columns]
        tests = out_of_life_tests(table, policy)
        before = " OR ".join(_outside("r", c, side) for c, side in tests if side == "birth")
        after = " OR ".join(_outside("r", c, side) for c, side in tests if side == "death") or "false"
        latest = self._latest_date()
        future = f"coalesce(r.{_quote(table.event_date)} > {_date(latest)}, false)" if table.event_date else "false"
        joined = (f"SELECT {', '.join(columns)}, r._row, p._row AS _person, "
                  f"p.person_id IS NULL AND r.person_id IS NOT NULL AS _unknown, "
                  f"({before}) AS _before_birth, ({after}) AS _after_death, {future} AS _future "
                  f"FROM ({deduped}) r LEFT JOIN persons p ON r.person_id = p.person_id")
        if people:  # a few people's rows: joined to their persons once for the counts and the rows
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE _their_rows_joined AS {joined}")
            joined = "SELECT * FROM _their_rows_joined"
        # Future events go first, as validation drops them before it looks at lives (under drop).
        counted = "NOT _future" if policy == "drop" else "true"
        n_read, n_rows, unknown, before_birth, after_death, n_future = self.con.execute(
            f"SELECT (SELECT count(*) FROM ({read})), count(*), count(*) FILTER (WHERE _unknown), "
            f"count(*) FILTER (WHERE _before_birth AND {counted}), count(*) FILTER (WHERE _after_death AND {counted}), "
            f"count(*) FILTER (WHERE _future) FROM ({joined})").fetchone()
        if unknown and self._verify_ids(plan, self._unknown_ids(plan)):
            return self._validated_table(plan, people=people)  # ids ending in white space: again, cleaning them
        log, errors = self._log, []
        if options["duplicate_rows"] == "error" and n_read > n_rows:
            n = n_read - n_rows
            errors.append((name, None, "duplicate_rows", "error", n,
                           f"{log.where(name)}: {_rows(n)} {_agree(n, 'repeats', 'repeat')} an earlier row exactly; "
                           f"remove the repeats, or drop them (duplicate_rows='drop')."))
        if unknown:
            errors.append(self._link_issue(name, "unknown_person", unknown, latest))
        if policy == "error":
            errors += [self._link_issue(name, rule, n, latest) for rule, n in (
                ("future_event", n_future), ("event_before_birth", before_birth), ("event_after_death", after_death))
                if n]
        if errors:
            for issue in errors:
                log.add(*issue)
            raise ValidationError(self.report)

        keep = "NOT _unknown" + (" AND NOT (_before_birth OR _after_death OR _future)" if policy == "drop" else "")
        names = [c.name for c in table.columns if c.name != "record_id" or "record_id" in plan.source]
        frame = self.con.execute(f"SELECT {', '.join(map(_quote, names))}, _person FROM ({joined}) WHERE {keep} "
                                 f"ORDER BY _row").df()
        out = {}
        for col in (table.column(n) for n in names):
            if col.name == "person_id" and self._person_dtype is not None:
                # The person's place in persons is the category's code (no look-up of each id among a
                # million, as LinkedRecords would make); a row without an id has none (-1: missing).
                at = frame["_person"].to_numpy(dtype="float64", na_value=np.nan)
                out[col.name] = pd.Categorical.from_codes(np.where(np.isnan(at), -1, at).astype(np.int64),
                                                          dtype=self._person_dtype)
                continue
            values = frame[col.name]
            if col.kind == "date":
                values = values.astype("datetime64[s]")
            elif col.kind == "bool":
                values = values.astype("boolean")
            out[col.name] = values.astype(pandas_dtype(col))
        return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))

    # ------------------------------------------------------------------ aggregates

    def _row_values(self, table: Table, t: pd.Timestamp) -> dict[str, str]:
        T = _date(t)
        values = {"cost": "coalesce(cost, 0.0)", "cost_recorded": "CASE WHEN cost IS NULL THEN 0.0 ELSE 1.0 END"}
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

    def aggregate_sql(self, table_name: str, index_date, aggregates=None, *, block: tuple[int, int] | None = None) -> str:
        """The one query that cleans ``table_name`` and computes its aggregates per person as of
        ``index_date`` (with the counts validation reports: rows, rows outside a life, unknown ids);
        ``aggregates`` default to the table's clinical ones.
        Rows are grouped by the person key (an integer), and an unknown id by its text (``person_id``,
        missing for the people found). ``block`` ``(i, k)``: only the rows whose (cleaned) person id hashes
        to ``i`` of ``k`` blocks; a person's rows, and so their repeats, are all in one block."""
        t = pd.Timestamp(index_date).normalize()
        plan = self.plans[table_name]
        table, name = plan.table, plan.table.name
        aggregates = aggregates_for(name) if aggregates is None else list(aggregates)
        read = self._read_sql(plan, t, aggregates)
        if block is not None:
            read = f"SELECT * FROM ({read}) WHERE coalesce(hash(person_id) % {int(block[1])}, 0) = {int(block[0])}"
        # Repeats removed in one pass that also counts them (copies of each distinct row).
        dedup = (f"SELECT *, count(*) AS _copies FROM ({read}) GROUP BY ALL"
                 if self.options["duplicate_rows"] == "drop" else f"SELECT *, 1 AS _copies FROM ({read})")
        date = _quote(DATE_COLUMNS[name])
        policy = self.options["out_of_life_events"]
        ends = clamped_ends(table, policy)
        # An end after death is administrative lag: the stay or service ends on the date of death.
        columns = [f"CASE WHEN r.{_quote(c.name)} > p.death_date THEN p.death_date ELSE r.{_quote(c.name)} END "
                   f"AS {_quote(c.name)}" if c.name in ends else f"r.{_quote(c.name)}" for c in table.columns]
        out_of_life = [_outside("r", c, side) for c, side in out_of_life_tests(table, policy)]
        keep = "NOT _out_of_life" if policy == "drop" else "true"
        row_values = self._row_values(table, t)
        aggs = [self._aggregate_sql(a, t, row_values, keep) for a in aggregates]
        return f"""
            WITH deduped AS ({dedup}),
            joined AS (
                SELECT {', '.join(columns)}, r._copies, p.person_id IS NULL AS _unknown, p.rowid AS _person,
                       CASE WHEN p.person_id IS NULL THEN r.person_id END AS _unknown_id,
                       ({' OR '.join(out_of_life)}) AS _out_of_life, {_date(t)} - r.{date} AS _days
                FROM deduped r LEFT JOIN persons p ON r.person_id = p.person_id)
            SELECT _unknown_id AS person_id, count(*) AS _rows, sum(_copies) AS _read,
                   count(*) FILTER (WHERE _out_of_life) AS _n_out_of_life, bool_or(_unknown) AS _is_unknown, _person,
                   {', '.join(aggs)}
            FROM joined GROUP BY _person, _unknown_id"""

    def _read_sql(self, plan: _TablePlan, t: pd.Timestamp, aggregates) -> str:
        """The rows of a table the features can read (:func:`~riskstrat.features._folder.read_window`)."""
        read = plan.typed(drop_unknown_codes=self.options["unknown_codes"] == "drop")
        span = read_window(plan.table, self.options, aggregates)
        if span is False:
            return read
        date = _quote(DATE_COLUMNS[plan.table.name])
        where = f"{date} < {_date(t)}" + (f" AND {date} >= {_date(t)} - {span}" if span is not None else "")
        return f"SELECT * FROM ({read}) WHERE {where}"

    def _aggregate_frame(self, plan: _TablePlan, t: pd.Timestamp, aggregates) -> tuple[pd.DataFrame, int]:
        frame = self.con.execute(self.aggregate_sql(plan.table.name, t, aggregates)).df()
        return frame, int(frame["_read"].sum())

    # Aggregate rows handed to pandas at a time, in DuckDB vectors of 2,048 rows (about 0.5M people): at
    # 5M people a table's whole result and its pandas copy were each about 2 GB.
    _part_vectors = 256

    def _aggregate_parts(self, plan: _TablePlan, t: pd.Timestamp, aggregates):
        blocks = self._person_blocks(plan, t, aggregates)
        for i in range(blocks):
            result = self.con.execute(self.aggregate_sql(plan.table.name, t, aggregates,
                                                         block=(i, blocks) if blocks > 1 else None))
            while len(frame := result.fetch_df_chunk(self._part_vectors)):
                yield frame, int(frame["_read"].sum())

    # DuckDB's bytes a row while repeats are removed (the GROUP BY ALL over every column of the file): about
    # 110 measured for GP contacts' 5 columns at 5M people, taken with room to spare as 24 a column and 16
    # more (136 for those 5 columns). The 5M month at a 2 GB limit ran in blocks so sized with nothing spilled.
    _dedup_bytes_per_column, _dedup_bytes_per_row = 24, 16

    def _person_blocks(self, plan: _TablePlan, t: pd.Timestamp, aggregates) -> int:
        """Blocks of people a table's aggregate pass is run in: enough that one block's rows to remove repeats
        from fit in DuckDB's memory limit. At 5M people the GP contacts' 58M rows in two years were a 9 GB
        table of distinct rows, which DuckDB spilled to disk and then refused as out of memory at a 2 GB limit
        while aggregating what it read back; each block rescans the file (about 2 s CPU for GP contacts at
        5M) but nothing spills. One block when the file is small for the limit (no count is made)."""
        limit = self._memory_limit_bytes()
        rows = self.row_counts.get(plan.table.name, 0)
        per_row = self._dedup_bytes_per_row + self._dedup_bytes_per_column * len(plan.file_columns)
        if limit is None or rows * per_row <= limit or self.options["duplicate_rows"] != "drop":
            return 1
        read = self._read_sql(plan, t, aggregates)
        rows = self.con.execute(f"SELECT count(*) FROM ({read})").fetchone()[0]
        return max(1, -(-rows * per_row // limit))

    def _memory_limit_bytes(self) -> int | None:
        """DuckDB's memory limit in bytes (None: it could not be read)."""
        setting = self.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        units = {"bytes": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
                 "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
        try:
            number, unit = str(setting).split()
            return int(float(number) * units[unit.lower()])
        except (ValueError, KeyError):
            return None

    # ------------------------------------------------------------------ every index date from one pass

    def features_at(self, index_dates: Iterable, *, min_age: float = 18, max_age: float = 120,
                    spec=None) -> Iterator[pd.DataFrame]:
        """The feature frame at each of ``index_dates`` in turn (a generator), each equal to
        :meth:`features` at that date, from ONE pass over each table for all the dates.

        Each table's rows that any of the dates reads are cleaned once in SQL (repeats removed and counted,
        people found, end dates after death cut back, rows outside a life flagged) and come back sorted by
        date, only the columns the aggregates read; each date's aggregates are then computed from its
        slice of them by the reference's own :func:`riskstrat.features.reference.table_aggregates`.
        Repeats share their date, so removing them once over the dates' joint window is exact for every
        date; sums may add in another order (equal to rounding). A table whose features read every row
        (``error`` options) or that holds rows of unknown people is built a date at a time by SQL, as
        :meth:`features` builds it. Training holds these rows (at a million people about 3 GiB, nearly
        all prescriptions) instead of reading the events once a date: a quarter of the CPU at 100k."""
        spec = spec or CLINICAL
        dates = [pd.Timestamp(d).normalize() for d in index_dates]
        if not dates:
            return
        rows = {name: self._rows_for_dates(plan, dates, spec.aggregates_for(name))
                for name, plan in self.plans.items()}
        for n_done, t in enumerate(dates, start=1):
            people, cohort_of_key = self._cohort(t, min_age=min_age, max_age=max_age)
            values: dict[str, np.ndarray] = {}
            for name, plan in self.plans.items():
                aggregates = spec.aggregates_for(name)
                if rows[name] is None:
                    values.update(self._aggregate(plan, t, cohort_of_key, len(people), aggregates))
                else:
                    values.update(self._aggregate_rows(rows[name], plan, t, cohort_of_key, people.index, aggregates))
            if n_done == len(dates):
                rows.clear()  # the rows go before the last frame is handed on
            # Each aggregate is freed as it is copied into the frame (consume), and none is held through the
            # yield: at a million people and 197 features, a frame's size (1.2 GiB) less at the date's peak.
            frame = feature_frame(people, values, set(self.plans), spec=spec, costless=self.costless, consume=True)
            del values, people, cohort_of_key
            yield frame
            del frame

    # Rows a batch when the one pass's sorted result is read into the held arrays: the result is never
    # whole twice (at a million people, fetching it whole held DuckDB's and numpy's copies at once).
    _fetch_rows = 1 << 20
    # Rows of a table's slice aggregated at a time (a block of people's): at a million people a date reads
    # about 32M prescriptions, whose aggregates held 4-5 GiB of per-row temporaries at once.
    _block_rows = 4_000_000

    def _rows_for_dates(self, plan: _TablePlan, dates: list[pd.Timestamp], aggregates) -> dict | None:
        """The cleaned rows of a table that the aggregates read at any of ``dates``, sorted by date:
        ``frame`` (the columns the aggregates read but the date, coded and text columns as categoricals,
        ``person_id`` = the person key), ``day`` (the date as days since 1970; each date's slice gets its
        date column back from it), ``copies`` (rows read for each kept row) and ``outside`` (dated outside
        the person's life); None when this table is built a date at a time."""
        table, name = plan.table, plan.table.name
        span = read_window(table, self.options, aggregates)
        if span is False:
            return None
        date = DATE_COLUMNS[name]
        needed = set()
        for a in aggregates:
            needed |= {w.column for w in a.where} | ({"end_date"} if a.ongoing else set())
            needed |= set(_ROW_VALUE_COLUMNS.get(a.value, (a.value,) if a.value else ()))
        columns = [c for c in table.columns if c.name in needed and c.name != date]
        where = f"{_quote(date)} < {_date(max(dates))}" + (
            f" AND {_quote(date)} >= {_date(min(dates))} - {span}" if span is not None else "")
        read = f"SELECT * FROM ({plan.typed(drop_unknown_codes=self.options['unknown_codes'] == 'drop')}) WHERE {where}"
        dedup = (f"SELECT *, count(*) AS _copies FROM ({read}) GROUP BY ALL"
                 if self.options["duplicate_rows"] == "drop" else f"SELECT *, 1 AS _copies FROM ({read})")
        ends = clamped_ends(table, self.options["out_of_life_events"])
        categories = {c.name: list(c.categories) for c in columns if c.kind == "category" and c.categories}
        selected, joins = [], []
        for c in columns:
            value = (f"CASE WHEN r.{_quote(c.name)} > p.death_date THEN p.death_date ELSE r.{_quote(c.name)} END"
                     if c.name in ends else f"r.{_quote(c.name)}")
            if c.name in categories:  # codes, not a string per row
                value = f"coalesce(list_position([{', '.join(map(_literal, categories[c.name]))}], {value}), 0) - 1"
            elif c.kind in ("id", "str", "category"):
                # Text: held as codes into its distinct values in the window (a string a row was 19 bytes a
                # GP contact), found by one grouped scan of the column and joined back.
                codes = _quote(f"_codes_{len(joins)}")
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {codes} AS SELECT v, CAST(row_number() OVER "
                                 f"(ORDER BY v) - 1 AS INTEGER) AS code FROM (SELECT DISTINCT {_quote(c.name)} AS v "
                                 f"FROM ({read}) WHERE {_quote(c.name)} IS NOT NULL)")
                categories[c.name] = [v for (v,) in self.con.execute(f"SELECT v FROM {codes} ORDER BY code").fetchall()]
                joins.append(f"LEFT JOIN {codes} k{len(joins)} ON k{len(joins)}.v = {value}")
                value = f"coalesce(k{len(joins) - 1}.code, -1)"
            elif c.kind == "bool":
                value = f"coalesce(CAST({value} AS TINYINT), -1)"
            selected.append(f"{value} AS {_quote(c.name)}")
        outside = " OR ".join(_outside("r", c, side) for c, side in out_of_life_tests(table, self.options[
            "out_of_life_events"])) or "false"
        sql = (f"SELECT {''.join(v + ', ' for v in selected)}CAST(coalesce(p.rowid, -1) AS BIGINT) AS _person, "
               f"CAST(r.{_quote(date)} - DATE '1970-01-01' AS INTEGER) AS _day, "
               f"CAST(r._copies AS INTEGER) AS _copies, ({outside}) AS _outside "
               f"FROM ({dedup}) r LEFT JOIN persons p ON r.person_id = p.person_id {' '.join(joins)} "
               f"ORDER BY r.{_quote(date)}")
        kinds = {c.name: (np.int32 if c.name in categories else np.int8 if c.kind == "bool" else
                          "datetime64[D]" if c.kind == "date" else np.float64) for c in columns}
        kinds.update(_person=np.int32 if len(self.persons) < 2**31 else np.int64, _day=np.int32, _copies=np.int32,
                     _outside=bool)
        held = self._fetch_sorted(sql, kinds, upper=self.row_counts.get(name, 0))
        for k in range(len(joins)):
            self.con.execute(f"DROP TABLE IF EXISTS {_quote(f'_codes_{k}')}")
        if held is None:
            return None  # ids not in persons: counted and named (or cleaned) a date at a time, as features() does
        frame = {}
        for c in columns:
            values = held[c.name]
            if c.name in categories:
                values = pd.Categorical.from_codes(values, categories=categories[c.name])
            elif c.kind == "bool":
                values = pd.arrays.BooleanArray(values == 1, values < 0)
            elif c.kind == "date":
                values = values.astype("datetime64[s]")
            frame[c.name] = values
        frame["person_id"] = held["_person"]
        return {"frame": pd.DataFrame(frame, copy=False), "day": held["_day"], "span": span, "date": date,
                "copies": held["_copies"], "outside": held["_outside"]}

    def _fetch_sorted(self, sql: str, kinds: dict, *, upper: int) -> dict[str, np.ndarray] | None:
        """The result of ``sql`` as one numpy array a column (``kinds``: column -> dtype), read a batch at a
        time into arrays of ``upper`` rows (the file's rows: more than the result has; the pages past its
        end are never touched, so never resident); None as soon as a row has no person (``_person`` -1)."""
        arrays = {name: np.empty(upper, dtype=kind) for name, kind in kinds.items()}
        n = 0
        for batch in self.con.batches(sql, self._fetch_rows):
            person = batch.column("_person").to_numpy()
            if (person < 0).any():
                return None
            if n + len(batch) > len(arrays["_day"]):  # more rows than the file said: grow (never expected)
                arrays = {k: np.concatenate([a[:n], np.empty(n + len(batch), a.dtype)]) for k, a in arrays.items()}
            for name, values in arrays.items():
                column = person if name == "_person" else batch.column(name).to_numpy(zero_copy_only=False)
                values[n:n + len(batch)] = column
            n += len(batch)
        return {name: values[:n] for name, values in arrays.items()}

    def _aggregate_rows(self, rows: dict, plan: _TablePlan, t: pd.Timestamp, cohort_of_key: np.ndarray,
                        ids: pd.Index, aggregates) -> dict[str, np.ndarray]:
        """The aggregates at ``t`` from the table's cleaned rows (:meth:`_rows_for_dates`), with validation's
        findings for the rows dated in ``t``'s read window, as :meth:`_aggregate` reports them."""
        t_day = int(np.datetime64(t.date(), "D").astype(np.int64))
        day, span = rows["day"], rows["span"]
        start = 0 if span is None else int(np.searchsorted(day, t_day - span, side="left"))
        stop = int(np.searchsorted(day, t_day, side="left"))
        outside = rows["outside"][start:stop]
        self._report_findings(plan.table.name, t, n_unknown=0, n_outside=int(outside.sum()), n_kept=stop - start,
                              n_read=int(rows["copies"][start:stop].sum()))
        position = cohort_of_key[rows["frame"]["person_id"].to_numpy()[start:stop]]
        if self.options["out_of_life_events"] == "drop":
            position[outside] = -1  # dropped rows belong to no one
        # The cohort in blocks of people, each block's rows taken out of the slice in their order: a
        # person's aggregates read only their own rows, so each block's values are the whole slice's, bit for
        # bit, while the reference's per-row temporaries (days, positions, masks, values) stay a block's size.
        n_blocks = max(1, -(-(stop - start) // self._block_rows))
        bounds = np.linspace(0, len(ids), n_blocks + 1).astype(np.int64)
        out: dict[str, np.ndarray] = {}
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if n_blocks == 1:
                at, block = slice(start, stop), position
            else:
                at = np.flatnonzero((position >= lo) & (position < hi))
                block, at = position[at] - lo, at + start
            frame = rows["frame"].iloc[at] if n_blocks == 1 else rows["frame"].take(at)
            frame[rows["date"]] = rows["day"][at].astype("datetime64[D]").astype("datetime64[s]")
            got = table_aggregates(frame, plan.table.name, t, ids[lo:hi], positions=lambda _, b=block: b,
                                   aggregates=aggregates)
            del frame, at, block
            for name, values in got.items():
                out.setdefault(name, np.empty(len(ids)))[lo:hi] = values
        return out

    def value_counts(self, table: str, column: str, *, until=None) -> dict:
        """``{value: (rows, people)}`` of ``column`` (as validation leaves it; missing left out), rows dated
        before ``until`` (None: every date), by SQL."""
        plan = self.plans[table]
        read = plan.typed(drop_unknown_codes=self.options["unknown_codes"] == "drop")
        col, date = _quote(column), _quote(DATE_COLUMNS[table])
        before = "" if until is None else f" AND {date} < DATE '{pd.Timestamp(until).date().isoformat()}'"
        found = self.con.execute(f"SELECT {col}, count(*), count(DISTINCT person_id) FROM ({read}) "
                                 f"WHERE {col} IS NOT NULL{before} GROUP BY 1").fetchall()
        return {value: (int(n), int(people)) for value, n, people in found}
