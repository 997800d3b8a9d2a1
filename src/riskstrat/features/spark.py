"""The Spark engine: the feature aggregates as PySpark DataFrames over the Parquet folder.

The DuckDB engine's plan, on Spark (the shared part, checks, messages and the feature frame, is
:mod:`riskstrat.features._folder`'s): the persons table is read and validated in pandas on the driver and handed to Spark; each event
table stays in its Parquet file, is cleaned as validation cleans it and reduced to one row of
aggregates per person in one Spark job (generated from :data:`~riskstrat.features.spec.AGGREGATES`),
which comes back to the driver as Arrow.
Validation's rules run as Spark counts with the same rule names and messages, in one pass a table
as in DuckDB, but for one thing: Spark has no count per distinct value in an aggregation, so the
codes of a category column are collected in that pass and the rows of blank or unknown codes, where
there are any, counted in a second. For training,
``check_links()`` checks every row's person and dates in one Spark pass a table, and ``tables(names)``
reads the few tables an outcome's labels need on the driver, validated by validation itself.

PySpark is an optional extra (``pip install 'riskstrat[spark]'``), imported only here, when the
engine is opened. The engine uses the active Spark session (on Databricks, the cluster's) or
starts a local one (:func:`spark_session`). Results do not depend on the session's time zone:
dates are read as dates, and time-zoned timestamps are refused, as by the DuckDB engine.

>>> engine = SparkEngine("riskstrat-data/synthetic")          # doctest: +SKIP
>>> features = engine.features("2025-11-01")                   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import warnings
from functools import reduce
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from riskstrat.features._folder import (
    FolderEngine,
    TablePlan,
    clamped_ends,
    code_map,
    months_frame,
    out_of_life_tests,
    read_window,
)
from riskstrat.features.spec import DATE_COLUMNS, Aggregate, Where, aggregates_for
from riskstrat.errors import RiskstratError
from riskstrat.data.schema import TABLES

__all__ = ["SparkEngine", "SparkUnavailableError", "spark_session"]

# Spark's type names (DataType.simpleString) read as each schema kind. A TIMESTAMP (Spark's
# "timestamp", local time zone) is refused: its date depends on the session's zone.
_READS_AS = {"date": ("date", "timestamp_ntz", "void"),
             "float": ("double", "float", "bigint", "int", "smallint", "tinyint", "decimal", "void"),
             "bool": ("boolean", "void")}
# Spark 4.3 warns on every pandas conversion that pandas 3 is not fully supported (SPARK-55965);
# the engine converts through Arrow itself, and its path is tested on pandas 3.
_PANDAS_WARNING = r"PySpark does not yet fully support pandas"


class SparkUnavailableError(RiskstratError):
    """PySpark (the ``spark`` extra) is not installed, or Spark would not start."""


def _pyspark():
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PANDAS_WARNING)
            import pyspark.sql.functions as F
            from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailableError(
            f"the spark engine needs PySpark, which is not installed ({exc}); install riskstrat's spark extra: "
            f"pip install 'riskstrat[spark]' (Java 17 or later must be on the machine), or use --engine duckdb"
        ) from exc
    return F, SparkSession


def spark_session(*, master: str = "local[2]"):
    """The active Spark session (on Databricks, the cluster's), else a local one started now.

    A local session runs on ``master`` (``local[2]``: two cores), with the session time zone and the
    JVM's set to UTC, no web UI and no console progress bars; the JVM's own output (log lines,
    warnings) goes to ``riskstrat-spark.log`` in the temporary folder, not the console. Its Python
    workers (used only for scoring inside Spark) run this Python.
    """
    F, SparkSession = _pyspark()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = (SparkConf().setMaster(master).setAppName("riskstrat")
            .set("spark.sql.session.timeZone", "UTC")
            .set("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
            .set("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
            .set("spark.ui.enabled", "false")
            .set("spark.ui.showConsoleProgress", "false")
            # A shuffle partition per core: the shuffles are small (one row of aggregates per person).
            .set("spark.sql.shuffle.partitions", str(_cores(master)))
            .set("spark.sql.execution.arrow.pyspark.enabled", "true"))
    log = Path(tempfile.gettempdir()) / "riskstrat-spark.log"
    try:
        with open(log, "ab") as out, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PANDAS_WARNING)
            # The JVM once per process (a session stopped earlier leaves it running: reuse it).
            gateway = SparkContext._gateway or launch_gateway(conf, popen_kwargs={"stdout": out, "stderr": out})
            context = SparkContext(conf=conf, gateway=gateway)
            session = SparkSession(context)
    except Exception as exc:  # Java missing, a port refused, ...: say where the JVM's words are
        raise SparkUnavailableError(f"a local Spark session ({master}) would not start: {exc}; the JVM's output is "
                                    f"in {log}") from exc
    context.setLogLevel("ERROR")
    return session


def _cores(master: str) -> int:
    """The cores a local master asks for (``local[2]`` -> 2, ``local[*]`` -> all), else 8."""
    if master == "local":
        return 1
    inside = master[master.find("[") + 1:master.find("]")] if master.startswith("local[") else ""
    return os.cpu_count() or 2 if inside == "*" else int(inside) if inside.isdigit() else 8


def _to_pandas(frame) -> pd.DataFrame:
    """A (small) Spark DataFrame on the driver, through Arrow."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_WARNING)
        return frame.toArrow().to_pandas(date_as_object=False)


class SparkEngine(FolderEngine):
    """Features computed by Spark over a canonical Parquet folder (see the module docstring).

    ``spark``: the session to use (default :func:`spark_session`: the active one, else ``local[2]``).
    ``data_dir`` must be a folder the driver can list and read (persons are read there) and Spark can
    read under the same path (e.g. a Unity Catalog volume, ``/Volumes/...``). The other options are the
    DuckDB engine's (validation's options). Raises :class:`~riskstrat.data.validate.ValidationError` when
    validation would refuse the data, :class:`SparkUnavailableError` without PySpark.
    """

    name = "spark"

    def __init__(self, data_dir: str | Path, *, exclude_sources: Iterable[str] = (), out_of_life_events: str = "drop",
                 duplicate_rows: str = "drop", unknown_codes: str = "error", spark=None,
                 stage: Callable[[str], None] | None = None):
        self._F, _ = _pyspark()  # before anything is read: a missing extra is said first
        self._spark = spark
        super().__init__(data_dir, exclude_sources=exclude_sources, out_of_life_events=out_of_life_events,
                         duplicate_rows=duplicate_rows, unknown_codes=unknown_codes, stage=stage)

    def _connect(self) -> None:
        self.spark = self._spark if self._spark is not None else spark_session()
        p = self.persons
        table = pa.table({
            "person_id": pa.array(p["person_id"].astype(object), type=pa.string()),
            "birth_date": pa.array(p["birth_date"].dt.date, type=pa.date32(), from_pandas=True),
            "death_date": pa.array(p["death_date"].dt.date, type=pa.date32(), from_pandas=True),
            "_known": pa.array([True] * len(p), type=pa.bool_()),
            "_row": pa.array(np.arange(len(p), dtype=np.int64)),  # the person key: the persons table's row
        })
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PANDAS_WARNING)
            self.persons_frame = self.spark.createDataFrame(table)
        self._files: dict[Path, object] = {}
        self._counted: dict[str, dict] = {}

    def _read(self, path: Path):
        if path not in self._files:
            self._files[path] = self.spark.read.parquet(str(path.resolve()))
        return self._files[path]

    # ------------------------------------------------------------------ checks

    def _file_columns(self, path: Path) -> dict[str, str]:
        import pyarrow.parquet as pq

        # An all-blank column (Parquet's null type) reads in Spark as int: say "void" as Spark would.
        empty = {f.name for f in pq.read_schema(path) if pa.types.is_null(f.type)}
        return {f.name: "void" if f.name in empty else f.dataType.simpleString() for f in self._read(path).schema.fields}

    def _reads_as(self, kind: str, stored: str) -> bool:
        return stored.split("(")[0] in _READS_AS[kind]

    def _scan_counts(self, plan: TablePlan, requests) -> list:
        F, cols = self._F, _Columns(plan, self._F)
        parts = []
        for what, name, other in requests:
            if what == "rows":
                parts.append(F.count(F.lit(1)))
                continue
            if what == "histogram":
                parts.append(F.collect_set(cols.raw_text(name)))
                continue
            col, text, number = plan.table.column(name), cols.raw_text(name), cols.raw(name).cast("double")
            condition = {
                "null": lambda: cols.raw(name).isNull(),
                "leading": lambda: F.substring(text, 1, 1) <= F.lit(" "),
                "trailing": lambda: F.substring(text, -1, 1) <= F.lit(" "),
                "nan": lambda: F.isnan(number),
                "infinite": lambda: F.abs(number) == float("inf"),
                "below": lambda: number < F.lit(float(col.min_value)),
                "end_before_start": lambda: cols.expression(col) < cols.expression(plan.table.column(other)),
                "blank": lambda: cols.expression(col).isNull(),
            }[what]()
            parts.append(F.count(F.when(condition, 1)))
        found = list(self._read(plan.path).agg(*parts).collect()[0])
        # Spark has no count per distinct value in one aggregation: the codes come from this pass, and
        # the rows of the blank or unknown ones (known codes' counts are not needed) from a second, only
        # where there are such codes.
        per_value = {}
        for at, (what, name, _) in enumerate(requests):
            if what == "histogram":
                values = sorted(found[at])
                found[at] = dict.fromkeys(values)
                mapping, _ = code_map(values, plan.table.column(name))
                per_value.update({(at, v): F.count(F.when(cols.raw_text(name) == v, 1))
                                  for v in values if mapping[v] is None})
        if per_value:
            for (at, v), n in zip(per_value, self._read(plan.path).agg(*per_value.values()).collect()[0]):
                found[at][v] = n
        return found

    def _date_span(self, plan: TablePlan, until: pd.Timestamp | None) -> tuple:
        F = self._F
        date = F.col(plan.table.event_date)
        rows = self._joined(plan, None, dedupe=False)
        known = rows["_known"].isNotNull()
        if self.options["out_of_life_events"] == "drop":
            known = known & ~rows["_out_of_life"]
        if until is not None:
            known = known & (date <= _date(F, until))
        low, high, n_unknown = rows.agg(F.min(F.when(known, date)), F.max(F.when(known, date)),
                                        F.count(F.when(rows["_known"].isNull(), 1))).collect()[0]
        return low, high, n_unknown

    def _event_months(self, plan: TablePlan, until: pd.Timestamp | None) -> tuple[pd.DataFrame, int]:
        F = self._F
        date = F.col(plan.table.event_date)
        # Repeats grouped into one row (as validation keeps one), unless duplicate_rows='keep'.
        rows = self._joined(plan, None, dedupe=self.options["duplicate_rows"] != "keep")
        known = rows["_known"].isNotNull() & date.isNotNull()
        if self.options["out_of_life_events"] == "drop":
            known = known & ~rows["_out_of_life"]
        if until is not None:
            known = known & (date <= _date(F, until))
        found = rows.groupBy(F.trunc(date, "month").alias("_month")).agg(
            F.count(F.when(known, 1)), F.min(F.when(known, date)), F.max(F.when(known, date)),
            F.count(F.when(rows["_known"].isNull(), 1))).collect()
        return months_frame([tuple(row) for row in found])

    def _unknown_ids(self, plan: TablePlan) -> list:
        ids = self._typed(plan).select("person_id").distinct()
        persons = self.persons_frame.select(self._F.col("person_id").alias("_person"))
        return [row[0] for row in ids.join(persons, ids["person_id"] == persons["_person"], "left_anti").collect()]

    def _link_counts(self, plan: TablePlan, rules: list[str], latest: pd.Timestamp) -> list[int]:
        F, table = self._F, plan.table
        rows = self._typed(plan).select("person_id", *table.date_columns)
        persons = self.persons_frame.withColumnRenamed("person_id", "_person")
        rows = rows.join(persons, rows["person_id"] == persons["_person"], "left")
        tests = {"unknown_person": F.col("_known").isNull() & F.col("person_id").isNotNull(),
                 "event_before_birth": reduce(lambda a, b: a | b, [F.col(c) < F.col("birth_date")
                                                                   for c in table.date_columns]),
                 "event_after_death": reduce(lambda a, b: a | b, [F.col(c) > F.col("death_date")
                                                                  for c in table.date_columns])}
        if table.event_date:
            tests["future_event"] = F.col(table.event_date) > _date(F, latest)
        return list(rows.agg(*[F.count(F.when(tests[rule], 1)) for rule in rules]).collect()[0])

    # ------------------------------------------------------------------ aggregates

    def _typed(self, plan: TablePlan):
        """The table's rows as validation leaves them (schema columns, then the file's extras as read)."""
        F, cols = self._F, _Columns(plan, self._F)
        rows = self._read(plan.path)
        if self.options["unknown_codes"] == "drop":
            for col in plan.table.columns:
                bad = plan.unknown_codes(col)
                if bad:  # a blank code is not unknown
                    rows = rows.where(F.coalesce(~cols.raw_text(col.name).isin(bad), F.lit(True)))
        return rows.select([cols.expression(c).alias(c.name) for c in plan.table.columns]
                           + [F.col(_quote(e)).alias("_extra_" + e) for e in plan.extras])

    def _joined(self, plan: TablePlan, t: pd.Timestamp | None, *, dedupe: bool = True, aggregates=None):
        """Rows (read within the features' window when ``t`` is given, repeats removed unless ``dedupe`` is
        False) joined to their person: ends after death clamped, ``_out_of_life``, ``_known`` (null for an
        unknown person) and ``_copies`` (the rows read that each kept row stands for)."""
        F, table = self._F, plan.table
        policy = self.options["out_of_life_events"]
        rows = self._typed(plan)
        span = read_window(table, self.options, aggregates) if t is not None else False
        if span is not False:
            date = F.col(DATE_COLUMNS[table.name])
            rows = rows.where((date < _date(F, t)) if span is None else
                              (date < _date(F, t)) & (date >= _date(F, t - pd.Timedelta(days=span))))
        if dedupe and self.options["duplicate_rows"] == "drop":
            rows = rows.groupBy(*[F.col(_quote(c)) for c in rows.columns]).agg(F.count(F.lit(1)).alias("_copies"))
        else:
            rows = rows.withColumn("_copies", F.lit(1))
        persons = self.persons_frame.withColumnRenamed("person_id", "_person")
        rows = rows.join(persons, rows["person_id"] == persons["_person"], "left")
        for end in clamped_ends(table, policy):
            # An end after death is administrative lag: the stay or service ends on the date of death.
            rows = rows.withColumn(end, F.when(F.col(end) > F.col("death_date"), F.col("death_date"))
                                   .otherwise(F.col(end)))
        outside = [F.coalesce(F.col(c) < F.col("birth_date") if side == "birth" else F.col(c) > F.col("death_date"),
                              F.lit(False)) for c, side in out_of_life_tests(table, policy)]
        return rows.withColumn("_out_of_life", reduce(lambda a, b: a | b, outside))

    def _aggregate_frame(self, plan: TablePlan, t: pd.Timestamp, aggregates) -> tuple[pd.DataFrame, int]:
        frame = _to_pandas(self._aggregate_rows(plan, t, aggregates))
        return frame, int(frame["_read"].sum())

    def value_counts(self, table: str, column: str, *, until=None) -> dict:
        """``{value: (rows, people)}`` of ``column`` (as validation leaves it; missing left out), rows dated
        before ``until`` (None: every date), in Spark."""
        F = self._F
        rows = self._typed(self.plans[table]).where(F.col(column).isNotNull())
        if until is not None:
            rows = rows.where(F.col(DATE_COLUMNS[table]) < _date(F, pd.Timestamp(until)))
        found = rows.groupBy(column).agg(F.count(F.lit(1)).alias("n"),
                                         F.countDistinct("person_id").alias("people")).collect()
        return {row[0]: (int(row[1]), int(row[2])) for row in found}

    def _aggregate_rows(self, plan: TablePlan, t: pd.Timestamp, aggregates=None):
        """:meth:`_aggregate_frame`'s rows as a Spark DataFrame (one row per person id, not collected)."""
        F, name = self._F, plan.table.name
        aggregates = aggregates_for(name) if aggregates is None else list(aggregates)
        rows = self._joined(plan, t, aggregates=aggregates).withColumn(
            "_days", F.datediff(_date(F, t), F.col(DATE_COLUMNS[name])))
        keep = ~F.col("_out_of_life") if self.options["out_of_life_events"] == "drop" else F.lit(True)
        row_values = self._row_values(name, t)
        return rows.groupBy("person_id").agg(
            F.count(F.lit(1)).alias("_rows"), F.sum("_copies").alias("_read"),
            F.count(F.when(F.col("_out_of_life"), 1)).alias("_n_out_of_life"),
            F.max(F.col("_known").isNull()).alias("_is_unknown"), F.min("_row").alias("_person"),
            *[self._aggregate_column(a, t, row_values, keep) for a in aggregates])

    def _row_values(self, table_name: str, t: pd.Timestamp) -> dict:
        F, T = self._F, _date(self._F, t)
        values = {"cost": F.coalesce(F.col("cost"), F.lit(0.0)),
                  "cost_recorded": F.when(F.col("cost").isNull(), F.lit(0.0)).otherwise(F.lit(1.0))}
        if table_name == "inpatient_spells":
            values["bed_days_before_T"] = F.greatest(
                F.datediff(F.least(F.coalesce(F.col("discharge_date"), T), T), F.col("admission_date")), F.lit(0))
        if table_name == "social_care":
            weekly = F.coalesce(F.col("weekly_cost"), F.lit(0.0))
            values["weekly_cost"] = weekly
            days = F.greatest(F.datediff(F.least(F.coalesce(F.col("end_date"), T), T),
                                         F.greatest(F.col("start_date"), F.date_sub(T, 365))), F.lit(0))
            values["cost_in_12m"] = weekly * days / 7
        return values

    def _where(self, w: Where):
        F, col = self._F, self._F.col(w.column)
        if w.prefix_regex:
            cond = F.coalesce(col.rlike("^(?:" + w.values[0] + ")"), F.lit(False))
        else:
            cond = col.isin(list(w.values))
        return ~F.coalesce(cond, F.lit(True)) if w.negate else cond

    def _aggregate_column(self, a: Aggregate, t: pd.Timestamp, row_values: dict, keep):
        F = self._F
        lo, hi = a.window
        cond = keep & (F.col("_days") >= lo)
        if hi is not None:
            cond = cond & (F.col("_days") <= hi)
        for w in a.where:
            cond = cond & self._where(w)
        if a.ongoing:
            cond = cond & (F.col("end_date").isNull() | (F.col("end_date") >= _date(F, t)))
        value = row_values.get(a.value, F.col(a.value) if a.value else None)
        if a.kind in ("count", "any"):
            out = F.count(F.when(cond, 1))
        elif a.kind == "min_days":
            out = F.min(F.when(cond, F.col("_days")))
        elif a.kind == "max_days":
            out = F.max(F.when(cond, F.col("_days")))
        elif a.kind == "sum":
            out = F.sum(F.when(cond, value))
        else:
            codes = TABLES[a.table].column(a.value).categories
            if codes and len(codes) <= 53:
                # A coded column: OR one bit per code seen, then count the bits (exact; no set per person).
                position = F.array_position(F.array(*[F.lit(c) for c in codes]), value)
                bit = F.pow(F.lit(2.0), position - 1).cast("long")
                out = F.bit_count(F.bit_or(F.when(cond & (position > 0), bit)))
            else:
                out = F.size(F.collect_set(F.when(cond, value)))
        return out.alias(a.name)


def _date(F, t: pd.Timestamp):
    """A date literal (a date has no time zone: the session's does not move it)."""
    return F.lit(dt.date(t.year, t.month, t.day))


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class _Columns:
    """One event table's file columns as Spark expressions, typed and normalised as validation leaves them."""

    def __init__(self, plan: TablePlan, F):
        self.plan, self.F = plan, F

    def raw(self, name: str):
        return self.F.col(_quote(self.plan.source[name]))

    def raw_text(self, name: str):
        raw, stored = self.raw(name), self.plan.stored(name)
        if stored == "void":
            return self.F.lit(None).cast("string")
        return raw if stored == "string" else raw.cast("string")

    def expression(self, col):
        """The column as validation leaves it (NULL when the file lacks an optional column; the
        column's ``missing_as`` code where it has one and the value is blank or absent)."""
        if col.missing_as is not None:
            return self.F.coalesce(self._expression(col), self.F.lit(col.missing_as))
        return self._expression(col)

    def _expression(self, col):
        F, plan = self.F, self.plan
        if col.name not in plan.source:
            return F.lit(None).cast({"date": "date", "float": "double", "bool": "boolean"}.get(col.kind, "string"))
        raw, stored = self.raw(col.name), plan.stored(col.name)
        if stored == "void":  # an all-blank column
            return F.lit(None).cast({"date": "date", "float": "double", "bool": "boolean"}.get(col.kind, "string"))
        if col.kind in ("id", "str"):
            text = self.raw_text(col.name)
            if col.name in plan.clean:
                return text
            stripped = F.regexp_replace(text, r"^\s+|\s+$", "")
            return F.when(stripped != "", stripped)
        if col.kind == "category":
            if plan.is_canonical(col):  # already canonical: no per-row mapping
                return self.raw_text(col.name)
            mapping = plan.code_map[col.name]
            text, out = self.raw_text(col.name), None
            for k, v in mapping.items():
                if v is not None:
                    out = (F.when(text == k, F.lit(v)) if out is None else out.when(text == k, F.lit(v)))
            return out if out is not None else F.lit(None).cast("string")
        if col.kind == "date":
            return raw if stored == "date" else raw.cast("date")  # a timestamp's date, as validation
        if col.kind == "float":
            number = raw if stored == "double" else raw.cast("double")
            return number if col.name in plan.clean else F.when(~F.isnan(number), number)
        return raw  # bool
