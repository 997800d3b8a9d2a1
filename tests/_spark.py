"""What the Spark test modules need before they import PySpark."""

from __future__ import annotations

import os
import shutil

import pytest


def require_spark() -> None:
    """Skip the calling test module when PySpark (the ``spark`` extra) or a Java runtime is missing."""
    pytest.importorskip("pyspark", reason="the spark extra is not installed: pip install 'riskstrat[spark]'")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("no Java runtime (17 or later) for a local Spark session", allow_module_level=True)


@pytest.fixture(scope="module")
def spark(spark_local):
    """The local Spark session (``local[2]``) shared by every Spark test module (conftest's ``spark_local``)."""
    return spark_local


def write_with_hand_made_cases(synthetic, make_table, folder):
    """The synthetic population with the windows' edges and the lives, repeats and record ids of
    ``test_engines`` added (one folder: each table costs Spark a few jobs); returns the folder written."""
    import pandas as pd

    from riskstrat.data.io import write_records_tables
    from riskstrat.data.schema import EVENT_TABLES
    from riskstrat.data.validate import load_records
    from test_engines import out_of_life_case, windows_case

    cases = [windows_case(), out_of_life_case()]
    population = load_records(synthetic).tables
    tables = {name: pd.concat([population[name].reset_index(drop=True),
                               make_table(name, [row for case in cases for row in case.get(name, [])])],
                              ignore_index=True)
              for name in ("persons", *EVENT_TABLES)}
    return write_records_tables(tables, folder)
