"""Compute engines for the features: one definition (:mod:`riskstrat.features.spec`), several engines.

An engine answers what scoring and training ask of the data: which sources it has (``has``,
``sources``, ``row_counts``), the dates it covers (``date_range``) and its events per month
(``event_months``: :mod:`riskstrat.data.data_end` reads the data end from them), the feature frame for one index
date (``features``), equal to :func:`riskstrat.features.reference.build_features` (the reference), the
validated persons (``records``) and, for the labels, the validated event tables an outcome reads
(``tables``): a :class:`~riskstrat.data.records.LinkedRecords` holding persons and just those tables,
equal to the same tables of the reference's validated records (rows, order, values and dtypes), so
that :meth:`riskstrat.outcomes.Outcome.labels` runs on it unchanged.

- ``"pandas"`` (:class:`PandasEngine`): validated :class:`~riskstrat.data.records.LinkedRecords` in
  memory and ``build_features``; the reference.
- ``"duckdb"`` (:class:`riskstrat.features.duckdb.DuckDBEngine`): SQL over the Parquet folder,
  with validation's rules that touch features run as SQL counts; nothing materialised but the
  persons table and one row of aggregates per person.
- ``"spark"`` (:class:`riskstrat.features.spark.SparkEngine`, the ``riskstrat[spark]`` extra): the
  DuckDB engine's plan on PySpark DataFrames, in the active Spark session or a local one.

Scoring may run the models where the features are: the Spark engine's month stays in Spark
(:mod:`riskstrat.scoring.spark`); every other engine's feature frame comes to the driver (the wiring
chooses: :func:`riskstrat.pipelines.score.month_features`).

>>> ENGINES
('pandas', 'duckdb', 'spark')
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal, Protocol

import pandas as pd

from riskstrat.data.load import load_data
from riskstrat.data.records import LinkedRecords
from riskstrat.data.validate import blank_costs
from riskstrat.errors import InvalidInputError
from riskstrat.features.reference import build_features
from riskstrat.features.duckdb import DuckDBEngine
from riskstrat.features.spark import SparkEngine
from riskstrat.features.spec import DATE_COLUMNS, count_values

__all__ = ["ENGINES", "EngineName", "FeatureEngine", "PandasEngine", "open_engine"]

EngineName = Literal["pandas", "duckdb", "spark"]
ENGINES: tuple[str, ...] = ("pandas", "duckdb", "spark")


class FeatureEngine(Protocol):
    name: str  # "pandas", "duckdb", "spark": what runs record

    @property
    def sources(self) -> list[str]: ...

    def has(self, name: str) -> bool: ...

    @property
    def row_counts(self) -> dict[str, int]: ...  # rows per table (persons and the event tables present)

    # (table, column) of the cost columns absent or blank in every row of a table with rows (costs unknown).
    blank_costs: list[tuple[str, str]]

    def date_range(self, *, until=None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]: ...

    # Events per calendar month of every event table together (``events``, ``first``, ``last``), as
    # riskstrat.data.data_end.month_counts gives them: where the volume stops is the data end (data_end.volume_end).
    def event_months(self, *, until=None) -> pd.DataFrame: ...

    # ``spec``: a riskstrat.features.spec.FeatureSpec (default the clinical one): which aggregates and features.
    def features(self, index_date, *, min_age: float = 18, max_age: float = 120, spec=None) -> pd.DataFrame: ...

    # The feature frame at each of several index dates in turn (a generator), each equal to ``features`` at
    # that date; an engine may read the events once for all of them (DuckDB).
    def features_at(self, index_dates: Iterable, *, min_age: float = 18, max_age: float = 120,
                    spec=None) -> Iterator[pd.DataFrame]: ...

    # Rows per value of one column of an event table, over every date (the generic covariates' groups).
    # {value: (rows, distinct people)} of an event table's column, rows dated before ``until`` (None: all).
    def value_counts(self, table: str, column: str, *, until=None) -> dict: ...

    @property
    def records(self) -> LinkedRecords: ...  # validated persons at least (the duckdb engine: persons only)

    def tables(self, names: Iterable[str], *, people=None) -> LinkedRecords:
        """Validated persons and the event tables ``names`` that the data have (others are left out,
        as absent), as validation leaves them: what an outcome's labels read (``Outcome.tables``).
        ``people`` (ids as the data write them): the rows of other people may be left out (the
        listed people's facts); an engine that leaves them out sets ``filled`` on the records (each
        table's columns with a value in any row of the whole table)."""
        ...


class PandasEngine:
    """The reference engine: validated records in memory, :func:`riskstrat.features.reference.build_features`."""

    name = "pandas"

    def __init__(self, records: LinkedRecords):
        self.records = records

    @property
    def sources(self) -> list[str]:
        return self.records.sources

    def has(self, name: str) -> bool:
        return self.records.has(name)

    @property
    def row_counts(self) -> dict[str, int]:
        return self.records.row_counts()

    @property
    def blank_costs(self) -> list[tuple[str, str]]:
        return blank_costs(self.records)

    def tables(self, names: Iterable[str], *, people=None) -> LinkedRecords:
        keep = {"persons", *names}  # in memory already: whole tables, whoever ``people`` names
        return LinkedRecords({k: v for k, v in self.records.tables.items() if k in keep})

    def date_range(self, *, until=None):
        return self.records.date_range(until=until)

    def event_months(self, *, until=None) -> pd.DataFrame:
        return self.records.event_months(until=until)

    def features(self, index_date, *, min_age: float = 18, max_age: float = 120, spec=None) -> pd.DataFrame:
        return build_features(self.records, index_date, min_age=min_age, max_age=max_age, spec=spec)

    def features_at(self, index_dates: Iterable, *, min_age: float = 18, max_age: float = 120,
                    spec=None) -> Iterator[pd.DataFrame]:
        for index_date in index_dates:
            yield self.features(index_date, min_age=min_age, max_age=max_age, spec=spec)

    def value_counts(self, table: str, column: str, *, until=None) -> dict:
        return count_values(self.records.get(table), column, DATE_COLUMNS[table], until)


def open_engine(name: str, cfg_data, *, stage=None, check_every_row: bool = False) -> FeatureEngine:
    """The engine ``name`` over the data set ``cfg_data`` (a :class:`riskstrat.modeling.config.DataConfig`).

    The pandas engine reads and validates every table now (raises ValidationError); the DuckDB and
    Spark engines validate persons now and the event tables with their counts (raise the same error).
    ``check_every_row`` (DuckDB, Spark): also refuse now what validation refuses in rows no feature
    reads (person ids not in persons, events after the data end under ``out_of_life_events='error'``),
    at the cost of one more scan of every table (training and scoring do; the pandas engine always does).
    """
    stage = stage or (lambda message: None)
    if name == "pandas":
        return PandasEngine(load_data(cfg_data, stage=stage))
    if name in ("duckdb", "spark"):
        Engine = DuckDBEngine if name == "duckdb" else SparkEngine
        settings = {"memory_limit": cfg_data.duckdb_memory_limit} if name == "duckdb" else {}
        engine = Engine(cfg_data.path, exclude_sources=cfg_data.exclude_sources,
                        out_of_life_events=cfg_data.out_of_life_events, stage=stage, **settings)
        if check_every_row:
            engine.check_links()
        counts = engine.row_counts
        stage(f"checked {counts['persons']:,} people and {sum(counts.values()) - counts['persons']:,} events in "
              f"{cfg_data.path} with {'DuckDB' if name == 'duckdb' else 'Spark'} "
              f"({', '.join(engine.sources) or 'no event tables'}); repeats and events outside a life are counted "
              f"when the features are built")
        return engine
    raise InvalidInputError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
