"""The Spark engine equals the reference, in one local Spark session (``local[2]``) kept short.

The default run checks the features on a synthetic population at one date and on the hand-made
edge cases of ``test_engines.py`` written into one folder, a refusal worded as the DuckDB engine
words it, the outcome's tables and the link checks training asks for, and the message without
PySpark. Every other case of ``test_engines.py`` runs with Spark in ``test_engine_spark_slow.py``
(``pytest -m slow``). Skipped when PySpark (the ``spark`` extra) or Java is not installed.
"""

from __future__ import annotations


import pandas as pd
import pytest

from _spark import require_spark, spark, write_with_hand_made_cases  # noqa: E402,F401 - spark: the fixture

require_spark()

from test_engines import (  # noqa: E402
    T,
    _raw_parquet,
    assert_engines_agree,
    at,
    out_of_life_case,
    steady_then_stray,
    synthetic,  # noqa: F401 - the module's fixture
    write,
)

from riskstrat.features.duckdb import DuckDBEngine  # noqa: E402
from riskstrat.features.spark import SparkEngine  # noqa: E402
from riskstrat.data.validate import ValidationError, load_records  # noqa: E402


def _issues(error: ValidationError) -> list[tuple]:
    return [(i.table, i.column, i.rule, i.severity, i.n_rows, i.message) for i in error.report.issues]


def test_features_equal_the_reference_on_a_population_with_the_hand_made_cases(spark, synthetic, tmp_path,
                                                                              make_table):
    # One folder, one engine, one index date (each table costs Spark a few jobs).
    folder = write_with_hand_made_cases(synthetic, make_table, tmp_path / "d")
    engine = SparkEngine(folder, spark=spark)
    assert engine.name == "spark" and engine.row_counts == DuckDBEngine(folder).row_counts  # rows in the files
    f = assert_engines_agree(folder, engine=lambda _: engine)
    assert len(f) > 300 and (f["emergency_admissions_0_3m"] > 0).sum() > 10
    assert f.loc["a", "emergency_admissions_0_3m"] == 8 and f.loc["a", "days_since_emergency_admission"] == 1
    assert f.loc["nobody", "rx_chapters_12m"] == 0 and f.loc["nobody", "days_since_social_care_start"] == 731
    assert f.loc["dies_later", "emergency_admissions_0_3m"] == 4  # the repeat removed, the two visits kept
    assert f.loc["dies_later", "gp_contacts_0_3m"] == 1
    assert f.loc["young", "ltc_asthma"] == 0 and f.loc["young", "ltc_epilepsy"] == 1
    assert "died" not in f.index


def test_refusals_say_what_the_duckdb_engine_says(spark, tmp_path):
    # Same rules, rows and messages (validation's wording).
    _raw_parquet(tmp_path, "persons", {"person_id": ["a"], "birth_date": [pd.Timestamp("1950-01-01").date()],
                                       "sex": ["female"], "practice_id": ["P"]})
    _raw_parquet(tmp_path, "gp_contacts", {"person_id": ["a", "a", "nobody", " "], "contact_date": [at(-3).date()] * 4,
                                           "cost": [-1.0, float("inf"), 2.0, 3.0]})
    _raw_parquet(tmp_path, "inpatient_spells", {"person_id": ["a"], "admission_date": [at(-3).date()],
                                                "discharge_date": [at(-5).date()],
                                                "admission_method": ["by ambulance"]})
    reports = []
    for engine in (DuckDBEngine, lambda folder: SparkEngine(folder, spark=spark)):
        with pytest.raises(ValidationError) as refused:
            engine(tmp_path).features(T)
        reports.append(_issues(refused.value))
    assert reports[0] == reports[1]
    assert {i[2] for i in reports[1]} >= {"negative_cost", "wrong_type", "missing_value", "end_before_start",
                                          "unknown_code"}


def test_practice_ids_one_apart_by_case_are_refused_as_duckdb_refuses_them(spark, tmp_path):
    _raw_parquet(tmp_path, "persons", {"person_id": ["a", "b", "c"], "birth_date": [pd.Timestamp("1950-01-01").date()] * 3,
                                       "sex": ["female"] * 3, "practice_id": ["P001", "p001", "P001\n"]})
    reports = []
    for engine in (DuckDBEngine, lambda folder: SparkEngine(folder, spark=spark)):
        with pytest.raises(ValidationError) as refused:
            engine(tmp_path)
        reports.append(_issues(refused.value))
    assert reports[0] == reports[1]
    assert [i[2] for i in reports[1]] == ["practice_id_case_collision", "practice_id_trimmed"]


def test_the_outcome_tables_and_the_link_checks_are_duckdbs(spark, tmp_path, make_table):
    # What training asks beyond the features: the validated tables an outcome reads, and a refusal of
    # ids not in persons and (under out_of_life_events='error') events after the data end, in any row.
    folder = write(tmp_path / "d", make_table, **out_of_life_case())
    got = SparkEngine(folder, spark=spark).tables(["inpatient_spells", "ae_attendances"])
    reference = load_records(folder)
    assert list(got.tables) == ["persons", "inpatient_spells"]
    for name in got.tables:
        pd.testing.assert_frame_equal(got.tables[name], reference.tables[name])

    strict = tmp_path / "strict"
    _raw_parquet(strict, "persons", {"person_id": ["a"], "birth_date": [pd.Timestamp("1950-01-01").date()],
                                     "sex": ["female"], "practice_id": ["P"]})
    _raw_parquet(strict, "gp_contacts", {"person_id": ["a", "nobody", "a"],
                                         "contact_date": [at(-3).date(), at(5).date(), pd.Timestamp("2099-01-01").date()]})
    reports = []
    for engine in (DuckDBEngine(strict, out_of_life_events="error"),
                   SparkEngine(strict, spark=spark, out_of_life_events="error")):
        with pytest.raises(ValidationError) as refused:
            engine.check_links()
        reports.append(_issues(refused.value))
    assert reports[0] == reports[1]
    # gp_contacts written without its cost column: its costs are unknown, said as a warning (blank_cost).
    assert {i[2] for i in reports[1]} == {"unknown_person", "future_event", "blank_cost"}


def test_without_pyspark_the_engine_names_the_extra(monkeypatch, tmp_path):
    import builtins

    from riskstrat.modeling.config import DataConfig
    from riskstrat.features.engine import open_engine
    from riskstrat.features.spark import SparkUnavailableError

    real_import = builtins.__import__

    def no_pyspark(name, *args, **kwargs):
        if name.startswith("pyspark"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyspark)
    with pytest.raises(SparkUnavailableError, match=r"pip install 'riskstrat\[spark\]'.*--engine duckdb"):
        open_engine("spark", DataConfig(path=tmp_path))


def test_the_monthly_event_counts_and_the_data_end_equal_the_reference(spark, tmp_path, make_table):
    from riskstrat.data.data_end import data_end_of

    folder = steady_then_stray(tmp_path / "own", make_table)
    engine = SparkEngine(folder, spark=spark)
    pd.testing.assert_frame_equal(engine.event_months(), load_records(folder).event_months())
    found = data_end_of(folder, engine)
    assert (found.end, found.events_after) == (pd.Timestamp("2024-06-30"), 1)
    assert engine.blank_costs == [("gp_contacts", "cost")]  # no contact has a cost: unknown, not zero
