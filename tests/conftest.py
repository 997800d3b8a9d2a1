"""Shared helpers: hand-made linked records in canonical dtypes."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import TABLES, empty_table, pandas_dtype

# Defaults for hand-made persons rows, so a test only writes what it is about.
PERSON_DEFAULTS = {"sex": "female", "deprivation_decile": 5, "ethnicity_group": "white", "practice_id": "P00001"}


# ----------------------------------------------------------------------------- one BLAS thread a worker
# Under `pytest -n 2` two workers share 2 cores, and OpenBLAS starts a thread per core in each: the threads
# wait on each other, spinning. `riskstrat demo --people 3000` (test_demo's size) took 61.5 s CPU with 2 BLAS
# threads and 30.4 s with 1 (the logistic fits' matrix products; same lists, byte for byte); test_demo,
# test_evaluate_pipeline and test_scoring_pipeline under `-n 2`: 210 s CPU and 130 s wall with 2 threads, 177 s
# and 113 s with 1 (load 1-2; serially, one process alone, 1 thread still saves 4%). So each worker,
# and each process it starts (CLI, notebook kernel), uses one BLAS thread, unless the environment says otherwise.
# LightGBM already uses one thread (model.lightgbm.n_jobs).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")


# ----------------------------------------------------------------------------- order of the files
# Under `pytest -n 2 --dist loadfile` each file runs whole on one worker, and the run lasts as long as the
# busier worker. pytest-xdist hands out files largest first by their number of tests, so the one-test files
# that take a minute (the demo, the notebook) started last and ran alone at the end (367 s against 485 s
# serially). Here the files known to be long go first, longest first, and the rest follow in their usual
# order, so the short files fill in behind them. Seconds measured serially on 2 cores (December 2026);
# a file not named here counts as short.
LONG_FILES = {
    "test_scoring_pipeline.py": 58, "test_demo.py": 57, "test_spark_score.py": 37, "test_tracking.py": 30,
    "test_engine_spark.py": 29, "test_evaluate_pipeline.py": 26, "test_notebook.py": 25,
    "test_scoring_lists.py": 20, "test_costs_currency.py": 15, "test_train_engines.py": 14, "test_validate.py": 14,
    "test_gate.py": 12,  # its LightGBM on the 3,000-person population: 12 s in the whole run (s23); test_serve.py 3.5 s
    "test_synth.py": 13, "test_readers.py": 11, "test_synth_jobs.py": 10, "test_monitor_pipeline.py": 10,
}


def pytest_configure(config):
    # Keep the order below when handing out files (pytest-xdist's default sorts them by their number of tests).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """The long files first, longest first (a stable sort: tests keep their order within a file)."""
    items.sort(key=lambda item: -LONG_FILES.get(item.path.name, 0))


def canonical_table(name: str, rows: list[dict]) -> pd.DataFrame:
    """A canonical table ``name`` from a list of row dicts (missing columns are blank).

    Dates may be given as "YYYY-MM-DD" text or Timestamps. Codes outside the reference lists
    raise instead of silently becoming missing.
    """
    if name == "persons":
        rows = [{**PERSON_DEFAULTS, **r} for r in rows]
    unknown = {k for r in rows for k in r} - set(TABLES[name].column_names)
    if unknown:
        raise KeyError(f"{name} has no columns {sorted(unknown)}")
    columns = {}
    for col in TABLES[name].columns:
        values = [r.get(col.name) for r in rows]
        dtype = pandas_dtype(col)
        if col.kind == "date":
            series = pd.Series(pd.to_datetime(pd.Series(values, dtype=object)), dtype="datetime64[s]")
        elif col.kind == "category":
            bad = [v for v in values if v is not None and v not in col.categories]
            if bad:
                raise ValueError(f"{name}.{col.name}: codes {bad} are not in the reference list")
            series = pd.Series(values, dtype=dtype)
        elif col.kind in ("int", "bool"):
            series = pd.Series(pd.array(values, dtype=dtype))
        else:
            series = pd.Series(values, dtype=dtype)
        columns[col.name] = series.reset_index(drop=True)
    df = pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))
    assert df.dtypes.equals(empty_table(name).dtypes), (df.dtypes, empty_table(name).dtypes)
    return df


def linked_records(**tables: list[dict]) -> LinkedRecords:
    """LinkedRecords from row dicts per table: ``linked_records(persons=[...], gp_contacts=[...])``."""
    return LinkedRecords({name: canonical_table(name, rows) for name, rows in tables.items()})


@pytest.fixture(scope="session")
def make_records():
    """The :func:`linked_records` builder, as a fixture (session-scoped so Hypothesis tests can use it)."""
    return linked_records


@pytest.fixture(scope="session")
def make_table():
    """The :func:`canonical_table` builder, as a fixture."""
    return canonical_table


def copy_without_health_costs(data_dir, out_dir):
    """A copy of the canonical folder ``data_dir`` whose health-care cost columns are blank in every row
    (social care's weekly costs kept): a feed whose costs never arrived."""
    import shutil

    import numpy as np

    from riskstrat.data.schema import HEALTH_CARE_COST_TABLES

    shutil.copytree(data_dir, out_dir)
    for name in HEALTH_CARE_COST_TABLES:
        path = out_dir / f"{name}.parquet"
        if path.exists():
            table = pd.read_parquet(path)
            table["cost"] = np.nan
            table.to_parquet(path, index=False)
    return out_dir


def copy_with_a_stray_event(data_dir, out_dir, date: str):
    """A copy of the canonical folder ``data_dir`` without dataset.json (no known extract end) and with one
    more GP contact, dated ``date`` (a mistyped date after the data end)."""
    import shutil

    shutil.copytree(data_dir, out_dir)
    (out_dir / "dataset.json").unlink()
    path = out_dir / "gp_contacts.parquet"
    table = pd.read_parquet(path)
    stray = table.iloc[[0]].copy()
    stray["contact_date"] = pd.Timestamp(date)
    pd.concat([table, stray], ignore_index=True).to_parquet(path, index=False)
    return out_dir


@pytest.fixture(scope="session")
def without_health_costs():
    return copy_without_health_costs


@pytest.fixture(scope="session")
def with_a_stray_event():
    return copy_with_a_stray_event


def call_without_hanging(fn, *, fifos=(), timeout: float = 5.0):
    """``fn()``'s result, or the exception it raised, in a thread given ``timeout`` seconds. If it is
    still blocked then (reading a FIFO planted in place of a file), each of ``fifos`` is opened for
    writing and closed, so the reader sees the end of the file and the test fails instead of hanging."""
    import os
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    hung = thread.is_alive()
    if hung:
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader blocked on this one
                pass
        thread.join(timeout)
    assert not hung, f"blocked for {timeout} s on {', '.join(map(str, fifos)) or 'something'}"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture(scope="session")
def without_hanging():
    """:func:`call_without_hanging`, as a fixture."""
    return call_without_hanging


# ----------------------------------------------------------------------------- shared, read-only data
# Synthetic populations several test modules read (never write): generated once per session, each with the
# exact settings its modules used to generate on their own, so every module sees the same records as before.
# A test that changes a folder copies it first (shutil.copytree, or the helpers above).


@pytest.fixture(scope="session")
def synthetic_2000(tmp_path_factory):
    """2,000 people over 4 years from 2021-11-01 (seed 11, no ground truth): the engines' population
    (test_engines.py, and the Spark modules that import its ``synthetic`` fixture)."""
    from riskstrat.data.synth import write_population

    out = tmp_path_factory.mktemp("engines") / "synthetic"
    write_population(out, 2000, start="2021-11-01", years=4, seed=11, truth_dates=[], n_futures=1)
    return out


@pytest.fixture(scope="session")
def synthetic_3000(tmp_path_factory):
    """3,000 people over 4 years from 2021-11-01 (seed 5, extract end 2025-10-31, ground truth at
    2024-11-01): the population scoring and tracking train and score on."""
    from riskstrat.data.synth import write_population

    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_population(out, 3000, start="2021-11-01", years=4, seed=5, truth_dates=["2024-11-01"], n_futures=4)
    return out


@pytest.fixture(scope="session")
def new_mlflow_store(tmp_path_factory):
    """``new_mlflow_store(folder)`` -> the tracking URI of a new, empty MLflow SQLite store ``folder/mlflow.db``.

    MLflow makes a new store's tables through its alembic migrations, 2-3 s each time (7 s under load); so one
    empty store is made per worker and each new store is a copy of it. The copy holds no paths of its own but
    the Default experiment's (riskstrat's experiments, made on first use, keep their artifacts beside the copy).
    """
    import shutil

    import mlflow

    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    # The first call makes the tables; through a client of its own, so MLflow's current store is left alone.
    mlflow.MlflowClient(f"sqlite:///{template}").search_experiments()

    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return make


@pytest.fixture(scope="session")
def spark_local():
    """One local Spark session (``local[2]``) for every Spark test module, started when first asked for and
    stopped at the end of the run (starting one costs several seconds on 2 cores).

    Its JVM compiles with the quick compiler only and collects garbage on one thread (unless
    ``JAVA_TOOL_OPTIONS`` says otherwise): the optimising compiler's work never pays back in a JVM that
    lives a few minutes on a few thousand rows. test_spark_score.py's JVM took 40 s of CPU instead of
    73 s (run side by side, load 6-8; the test's own Python 14 s either way); the results are Spark's
    either way."""
    from riskstrat.features.spark import spark_session

    before = os.environ.get("JAVA_TOOL_OPTIONS")
    os.environ["JAVA_TOOL_OPTIONS"] = before or "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    try:
        session = spark_session()  # the JVM starts here, reading JAVA_TOOL_OPTIONS
    finally:
        if before is None:
            del os.environ["JAVA_TOOL_OPTIONS"]
    yield session
    session.stop()
