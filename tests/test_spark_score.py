"""Scoring inside Spark (``riskstrat.scoring.spark``) gives the driver's numbers.

The default run fits a small risk model and high-cost pair on the DuckDB engine's features of the
2,000-person synthetic population with the hand-made lives, repeats and window edges of
``test_engines.py`` added (no MLflow), then scores, ranks, counts drift and explains the same
people in Spark and on the driver: the same features, warnings, risks, ranks, tiers, groups,
drift report and reasons; and an unknown person is refused as the Spark engine refuses it. The Spark engine
and the month's aggregates are made once for the module (``month``): opening the engine and computing
each table's aggregates are most of Spark's work here, and the cost variants reuse the aggregates from
Spark's cache. The ``slow`` case
runs ``run_scoring`` end to end with registered champions, DuckDB against Spark: every file of the
month the same, byte for byte, and the manifest the same but for the engine's name and the folder.
Skipped when PySpark (the ``spark`` extra) or Java is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _spark import require_spark, spark, write_with_hand_made_cases  # noqa: E402,F401 - spark: the fixture

require_spark()

from test_engines import (  # noqa: E402,F401 - synthetic: the module's fixture
    T,
    _raw_parquet,
    at,
    synthetic,
    write,
)
# The slow case's fixtures: the scoring pipeline's data and registered champions (made only when it runs).
from test_scoring_pipeline import data_dir, registry  # noqa: E402,F401

from riskstrat.scoring import lists  # noqa: E402
from riskstrat.modeling.config import LightGBMConfig  # noqa: E402
from riskstrat.features.duckdb import DuckDBEngine  # noqa: E402
from riskstrat.features.spark import SparkEngine  # noqa: E402
from riskstrat.modeling.profile import reference_profile  # noqa: E402
from riskstrat.modeling.models import fit_cost_regressor, fit_lightgbm  # noqa: E402
from riskstrat.scoring.month import InMemoryFeatures  # noqa: E402
from riskstrat.scoring.spark import SparkMonthFeatures  # noqa: E402
from riskstrat.data.validate import ValidationError  # noqa: E402

AS_OF = "2025-06-01"


@pytest.fixture(scope="module")
def folder(synthetic, tmp_path_factory, make_table) -> Path:
    """The synthetic population with the hand-made cases of test_engines added (dated around its T)."""
    return write_with_hand_made_cases(synthetic, make_table, tmp_path_factory.mktemp("spark-score") / "d")


@pytest.fixture(scope="module")
def models(folder):
    """A risk model (next year's emergency admissions, as seen a year later) and a high-cost pair,
    small and fitted on alternate people; each with a drift profile as training stores one."""
    engine = DuckDBEngine(folder)
    X, later = engine.features("2024-06-01"), engine.features(AS_OF)
    X = X.loc[X.index.isin(later.index)]
    later = later.loc[X.index]
    admitted = ((later["emergency_admissions_0_3m"] + later["emergency_admissions_3_12m"]) > 0).to_numpy(int)
    costly = (later["cost_total_12m"] >= later["cost_total_12m"].quantile(0.8)).to_numpy(int)
    names = [c for c in X.columns if c not in ("practice_id", "sex", "ethnicity_group") and not c.endswith("_years")]
    train, cal = np.arange(len(X)) % 2 == 0, np.arange(len(X)) % 2 == 1
    params = LightGBMConfig(n_estimators=40, min_child_samples=20, early_stopping_rounds=10)
    risk = fit_lightgbm(X.loc[train, names], admitted[train], X.loc[cal, names], admitted[cal], params=params,
                        target="emergency_admission")
    cost = fit_lightgbm(X.loc[train, names], costly[train], X.loc[cal, names], costly[cal], params=params,
                        target="high_cost")
    spend = later["cost_total_12m"].to_numpy()
    cost.cost_estimator = fit_cost_regressor(X.loc[train, names], spend[train], X.loc[cal, names], spend[cal],
                                             params=params)
    risk.metadata["reference_profile"] = reference_profile(X[names], risk.predict_risk(X), described="test")
    return risk, cost


@pytest.fixture(scope="module")
def month(spark, folder):
    """The month's features in Spark (costs as the data give them) and what the Spark engine said while
    they were made. Made once: its aggregates stay cached in Spark until the scoring case releases them
    (as a run does, through the month without its opt-outs), and the same engine's same aggregates with
    other cost handling are read from that cache rather than computed again (2 Spark jobs a table
    instead of 6)."""
    heard = []
    return SparkMonthFeatures(SparkEngine(folder, spark=spark, stage=heard.append), T, min_age=0), list(heard)


# The cost variants first, while the month's aggregates are cached (the next case releases them, as a run does).
def test_spark_converts_and_blanks_the_cost_features_as_the_driver(month, folder):
    from riskstrat.features.costs import CostHandling
    from riskstrat.features.spark import _to_pandas
    from riskstrat.pipelines.score import month_features

    engine, duckdb = month[0].engine, DuckDBEngine(folder)
    reference = duckdb.features(T, min_age=0)
    for costs in (CostHandling("USD", "GBP", rate=0.5), CostHandling("GBP", "GBP", without_costs=True)):
        driver = month_features(duckdb, T, min_age=0, max_age=120, costs=costs).frame
        in_spark = month_features(engine, T, min_age=0, max_age=120, costs=costs)
        assert isinstance(in_spark, SparkMonthFeatures) and in_spark.costs == costs
        features = _to_pandas(in_spark.features()).set_index("person_id").loc[driver.index]
        for name in ("cost_total_12m", "social_care_weekly_cost", "age"):
            pd.testing.assert_series_equal(features[name], driver[name], check_exact=False, rtol=1e-12)
        expected = reference["cost_total_12m"] * 0.5 if costs.rate else np.nan
        np.testing.assert_allclose(driver["cost_total_12m"], expected)
        assert (driver["age"] == reference["age"]).all()
        # Its own feature frame only: releasing it all would also drop the cached aggregates it shares with `month`.
        in_spark.features().unpersist()


def test_spark_scores_ranks_counts_drift_and_explains_as_the_driver(month, folder, models):
    from riskstrat.features.spark import _to_pandas

    risk, cost = models
    in_spark, heard = month
    warned = []
    driver = InMemoryFeatures(DuckDBEngine(folder, stage=warned.append).features(T, min_age=0))
    assert heard == warned and len(heard) >= 2  # repeats dropped, lives
    assert in_spark.columns == driver.columns and len(in_spark) == len(driver) > 1000

    opted_out = driver.frame.index[::97]
    driver, removed = driver.without(opted_out)
    in_spark, removed_in_spark = in_spark.without(opted_out)
    assert removed_in_spark == removed > 10 and len(in_spark) == len(driver)
    features = _to_pandas(in_spark.features()).set_index("person_id").loc[driver.frame.index]
    numeric = driver.frame.drop(columns=["practice_id", "sex", "ethnicity_group"])
    pd.testing.assert_frame_equal(features[numeric.columns], numeric, check_exact=False, rtol=0, atol=1e-9)
    assert features.loc["a", "emergency_admissions_0_3m"] == 8 and features.loc["young", "ltc_epilepsy"] == 1
    assert features.loc["nobody", "days_since_social_care_start"] == 731 and "died" not in features.index

    a = driver.score(risk, cost, chunk_size=400)
    b = in_spark.score(risk, cost, chunk_size=400)
    assert b.people.index.equals(a.people.index)  # the reference's order
    for name in ("risk", "raw", "high_cost_risk", "predicted_cost"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=0, atol=1e-9, err_msg=name)
    assert np.unique(a.risk).size > 50 and a.predicted_cost.max() > 0

    def ranked(scores):
        return lists.rank_population(scores.people, scores.risk, high_cost_risk=scores.high_cost_risk,
                                     predicted_cost=scores.predicted_cost, rank_score=scores.raw)

    population = ranked(a)
    pd.testing.assert_frame_equal(ranked(b), population, check_exact=False, rtol=0, atol=1e-9)
    assert population["groups"].str.len().gt(0).sum() > 100 and population["tier"].nunique() >= 3

    profile = risk.metadata["reference_profile"]
    assert in_spark.drift_report(profile, b.risk) == driver.drift_report(profile, a.risk)

    # The words of degree against the same thresholds: Spark counts per batch, the driver at once.
    thresholds = in_spark.reason_thresholds()
    assert thresholds == driver.reason_thresholds() and "gp_contacts_12m" in thresholds.values
    options = {"n": 3, "currency": "GBP", "demographic_reasons": False, "money_reasons": False, "chunk_size": 64,
               "thresholds": thresholds}
    listed = pd.Index(population.loc[lists.listed_mask(population, list_size=40), "person_id"].to_numpy())
    for who in (listed, None):  # the listed people, then everyone
        want, want_error, want_n = driver.explain(risk, a, who, **options)
        heard = []
        got, error, n = in_spark.explain(risk, b, who, **options, stage=heard.append)
        assert heard and heard[0].startswith(f"explaining {len(listed) if who is not None else len(driver):,} people "
                                             f"in Spark, one job")
        assert n == want_n == (len(listed) if who is not None else len(driver))
        assert got["reasons"].tolist() == want.loc[got.index, "reasons"].tolist()
        assert got.index.equals(want.index) and (got["reasons"] != "").sum() > n / 2
        assert error == pytest.approx(want_error, abs=1e-12) and error < 1e-6
    in_spark.release()


def test_the_aggregates_are_refused_as_the_spark_engine_refuses_them(spark, tmp_path):
    # An event of a person not in persons: scoring checks every row first (check_links), but the
    # features for scoring refuse it on their own, with the Spark engine's report.
    _raw_parquet(tmp_path, "persons", {"person_id": ["a"], "birth_date": [pd.Timestamp("1950-01-01").date()],
                                       "sex": ["female"], "practice_id": ["P"]})
    _raw_parquet(tmp_path, "gp_contacts", {"person_id": ["a", "nobody", "nobody"],
                                           "contact_date": [at(-3).date(), at(-5).date(), at(-9).date()]})
    reports = []
    for build in (lambda e: e.features(T), lambda e: SparkMonthFeatures(e, T)):
        with pytest.raises(ValidationError) as refused:
            build(SparkEngine(tmp_path, spark=spark))
        reports.append([(i.table, i.column, i.rule, i.n_rows, i.message) for i in refused.value.report.issues])
    # gp_contacts written without its cost column: its costs are unknown, said as a warning (blank_cost).
    assert reports[0] == reports[1] and [i[2:4] for i in reports[1]] == [("blank_cost", 3), ("unknown_person", 2)]


@pytest.mark.slow
def test_run_scoring_in_spark_writes_the_duckdb_engines_month(registry, data_dir, tmp_path):
    from test_scoring_pipeline import AS_OF as MONTH_DATE, scoring_config

    from riskstrat.pipelines.score import run_scoring

    months = {engine: Path(run_scoring(scoring_config(registry, data_dir, tmp_path / engine, f"engine={engine}",
                                                      "opt_out_file=" + str(_opt_outs(data_dir, tmp_path))),
                                       MONTH_DATE)["output_dir"])
              for engine in ("duckdb", "spark")}
    a, b = months["duckdb"], months["spark"]
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert len(names) > 10 and "population.parquet" in names
    for name in names:
        if name != "manifest.json":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    manifests = [json.loads((m / "manifest.json").read_text()) for m in (a, b)]
    for manifest in manifests:
        assert manifest["counts"]["opted_out_removed"] > 0
        manifest["config"].pop("engine"), manifest["config"].pop("output_dir"), manifest.pop("output_dir")
        manifest.pop("files", None)  # hashes of the files compared above, and of the manifest's own config
    assert manifests[0] == manifests[1]


def _opt_outs(data_dir: Path, folder: Path) -> Path:
    ids = pd.read_parquet(data_dir / "persons.parquet", columns=["person_id"])["person_id"].iloc[::50]
    path = folder / "opt_outs.csv"
    pd.DataFrame({"person_id": ids}).to_csv(path, index=False)
    return path
