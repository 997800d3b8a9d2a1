"""The Spark engine on every case of ``test_engines.py``, training through Spark, and the property
test: marked ``slow`` (minutes of Spark jobs), run with ``pytest -m slow``.

The cases are imported from ``test_engines`` and run here with ``folder_engine`` overridden to the
Spark engine, in one local Spark session for the module. Skipped when PySpark (the ``spark`` extra)
or Java is not installed. ``test_engine_spark.py`` is the default run's short check.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from _spark import require_spark, spark, write_with_hand_made_cases  # noqa: E402,F401 - spark: the fixture

require_spark()

from hypothesis import HealthCheck, given, settings  # noqa: E402

import test_engines  # noqa: E402
from test_engines import (  # noqa: E402,F401 - the shared cases, run here with the Spark engine
    _linked,
    synthetic,
    test_a_csv_folder_is_refused_with_what_to_do,
    test_absent_optional_tables,
    test_blank_and_unknown_codes_counted_from_one_pass,
    test_both_engines_find_the_data_end_without_dataset_json_and_ignore_future_dates,
    test_check_counts_equal_validation,
    test_codes_written_loosely_are_read_as_validation_reads_them,
    test_data_that_validation_refuses_the_engine_refuses,
    test_empty_event_tables,
    test_equal_to_the_reference_on_a_synthetic_population,
    test_ids_and_text_with_white_space_are_cleaned_with_or_without_parquet_statistics,
    test_ids_ending_in_white_space_pass_the_link_checks_and_the_outcome_tables,
    test_only_persons,
    test_out_of_life_events_repeats_and_record_ids,
    test_text_dates_are_refused_with_what_to_do,
    test_the_engine_knows_its_sources_and_dates,
    test_unknown_codes_dropped_as_validation_drops_them,
    test_windows_events_on_T_and_people_without_events,
)
from test_train_engines import _persons_and, assert_same_training_rows, config  # noqa: E402
from test_train_engines import data_dir as data_dir  # noqa: E402,F401 - the module's fixture

from riskstrat.features.spark import SparkEngine, spark_session  # noqa: E402
from riskstrat.pipelines.train import run_training  # noqa: E402
from riskstrat.data.validate import ValidationError  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder_engine(spark, synthetic):
    # The synthetic population's engine is opened once and asked for several dates, as scoring and
    # training use an engine; every other folder gets a new engine.
    opened = {}

    def open_folder(folder, **options):
        if Path(folder) != synthetic:
            return SparkEngine(folder, spark=spark, **options)
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
        if key not in opened:
            opened[key] = SparkEngine(folder, spark=spark, **options)
        return opened[key]

    return open_folder


# The property test with fewer examples (each opens an engine: a few Spark jobs).
test_random_linked_records_give_the_same_features = settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])(
    given(tables=_linked())(test_engines.test_random_linked_records_give_the_same_features.hypothesis.inner_test))


def test_the_session_is_local_quiet_and_in_utc(spark):
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.ui.showConsoleProgress") == "false"


def test_an_active_session_is_used(spark, synthetic):
    assert spark_session() is spark or spark_session().sparkContext is spark.sparkContext
    assert SparkEngine(synthetic).spark.sparkContext is spark.sparkContext


def test_training_through_spark_gives_the_reference_model(spark, data_dir):
    runs = {engine: run_training(config(data_dir, f"engine={engine}"), log=False) for engine in ("pandas", "spark")}
    ref, got = runs["pandas"].result, runs["spark"].result
    assert_same_training_rows(got, ref)
    assert got.model.estimator.booster_.model_to_string() == ref.model.estimator.booster_.model_to_string()


def test_training_through_spark_refuses_ids_not_in_persons_after_every_index_date(spark, tmp_path):
    folder = _persons_and(tmp_path / "d", "gp_contacts", {
        "person_id": ["a", "nobody"], "contact_date": [pd.Timestamp(d).date() for d in ("2023-01-01", "2025-06-01")]})
    rules = {}
    for engine in ("pandas", "spark"):
        with pytest.raises(ValidationError) as refused:
            run_training(config(folder, f"engine={engine}", "data.extract_end=2025-12-31"), log=False)
        rules[engine] = {i.rule for i in refused.value.report.errors}
    assert "unknown_person" in rules["pandas"] and rules["spark"] == rules["pandas"]
