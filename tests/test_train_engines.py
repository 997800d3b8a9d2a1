"""Training through an engine: ``train --engine duckdb`` gives the pandas reference's model, and the
feature-definition hash travels with every model and is checked where features are built for it.

The reference for the outcome tables is :func:`riskstrat.data.validate.load_records`; for the model, the
same run through :class:`riskstrat.features.engine.PandasEngine`.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from test_engines import _linked, write
from typer.testing import CliRunner

from riskstrat.registry import tracking
from riskstrat.modeling.config import ScoringConfig, load_config
from riskstrat.features.engine import PandasEngine
from riskstrat.features.duckdb import DuckDBEngine
from riskstrat.features.spec import FeatureSpec, spec_hash
from riskstrat.errors import RiskstratError
from riskstrat.data.io import write_records_tables
from riskstrat.modeling.models import RiskModel
from riskstrat.pipelines.score import run_scoring
from riskstrat.pipelines.train import TRAINING_STAGES, run_training
from riskstrat.scoring.checks import FeatureSpecMismatchError, check_feature_spec
from riskstrat.data.schema import EVENT_TABLES
from riskstrat.data.synth import write_population
from riskstrat.data.validate import ValidationError, load_records

SMALL = ["model.refit=none",  # one version per run: these tests count versions (tests/test_refit.py: the refit)
         "index_dates.train=[2023-08-01, 2023-11-01]", "index_dates.test=2024-11-01",
         "evaluation.n_bootstrap=10", "evaluation.figures=false", "model.lightgbm.n_estimators=40",
         "model.baselines=[prior_use]", "guards.min_events_train=10",
         "guards.min_events_calibration=10", "guards.min_events_test=10"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_population(out, 2000, start="2021-11-01", years=4, seed=7, truth_dates=[], n_futures=1)
    return out


def config(data_dir, *overrides: str):
    return load_config(None, [f"data.path={data_dir}", *SMALL, *overrides])


# ----------------------------------------------------------------------------- the outcome's tables


def assert_tables_equal(folder: Path, **options) -> None:
    reference = load_records(folder, **options)
    got = DuckDBEngine(folder, **options).tables(EVENT_TABLES)
    assert list(got.tables) == list(reference.tables)
    for name, table in reference.tables.items():
        pd.testing.assert_frame_equal(got.tables[name], table, check_exact=True, obj=name)


def test_duckdb_tables_equal_the_validated_tables(data_dir):
    assert_tables_equal(data_dir)
    engine = DuckDBEngine(data_dir)
    only = engine.tables(["inpatient_spells", "social_care", "no_such_table"])
    assert list(only.tables) == ["persons", "inpatient_spells", "social_care"]
    assert list(PandasEngine(load_records(data_dir)).tables(["social_care"]).tables) == ["persons", "social_care"]


def test_a_few_peoples_tables_are_their_rows_of_the_validated_tables(data_dir):
    # The listed people's facts read only their rows (a temporary table of them, read once): the whole
    # tables' rows of those people, in file order, with person_id keyed over every person, whatever order
    # or repeats the ids come in; asked twice of one engine, the same.
    reference = load_records(data_dir)
    ids = reference.persons["person_id"].astype(str).to_numpy()[::11]
    engine = DuckDBEngine(data_dir)
    for asked in (list(ids[::-1]) + list(ids[:5]), list(ids)):
        got = engine.tables(EVENT_TABLES, people=asked)
        assert list(got.tables) == list(reference.tables)
        for name, table in reference.tables.items():
            if name == "persons":
                continue
            theirs = table.loc[table["person_id"].astype(str).isin(set(ids))].reset_index(drop=True)
            assert 0 < len(theirs) < len(table), name
            pd.testing.assert_frame_equal(got.tables[name], theirs, check_exact=True, obj=name)
            assert got.tables[name]["person_id"].cat.categories.equals(pd.Index(reference.persons["person_id"]))


def at(day: str) -> pd.Timestamp:
    return pd.Timestamp(day)


def test_repeats_lives_and_dates_after_the_extract_are_cleaned_as_validation_cleans_them(tmp_path, make_table):
    spells = [
        {"person_id": "a", "admission_date": at("2024-03-01"), "discharge_date": at("2024-03-09"),
         "admission_method": "emergency", "cost": 10.0},
        {"person_id": "a", "admission_date": at("2024-03-01"), "discharge_date": at("2024-03-09"),
         "admission_method": "emergency", "cost": 10.0},                                   # an exact repeat
        {"person_id": "a", "admission_date": at("2024-03-01"), "discharge_date": at("2024-03-09"),
         "admission_method": "emergency", "cost": 10.0, "record_id": "x"},                 # another visit
        {"person_id": "died", "admission_date": at("2024-05-01"), "discharge_date": at("2024-07-01"),
         "admission_method": "emergency"},                                                 # ends after death
        {"person_id": "died", "admission_date": at("2024-08-01"), "admission_method": "elective"},  # after death
        {"person_id": "young", "admission_date": at("1999-01-01"), "admission_method": "elective"},  # before birth
        {"person_id": "a", "admission_date": at("2099-01-01"), "admission_method": "emergency"},  # after the extract
    ]
    persons = [{"person_id": "a", "birth_date": "1950-01-01"},
               {"person_id": "died", "birth_date": "1940-01-01", "death_date": "2024-06-01"},
               {"person_id": "young", "birth_date": "2004-01-01"}]
    folder = write_records_tables({"persons": make_table("persons", persons),
                                   "inpatient_spells": make_table("inpatient_spells", spells)}, tmp_path / "d")
    assert_tables_equal(folder)
    got = DuckDBEngine(folder).tables(["inpatient_spells"]).get("inpatient_spells")
    assert len(got) == 3 and got["discharge_date"].iloc[2] == at("2024-06-01")
    assert_tables_equal(folder, out_of_life_events="keep")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=_linked())
def test_random_linked_records_give_the_same_tables(make_table, tables):
    with tempfile.TemporaryDirectory() as tmp:
        assert_tables_equal(write(Path(tmp) / "d", make_table, **tables))


# ----------------------------------------------------------------------------- the same model


def assert_same_training_rows(got, ref) -> None:
    """Two training results hold the same matrices (to 1e-9) and labels, with labels worth comparing."""
    for part in ("X_train", "X_cal", "X_test"):
        pd.testing.assert_frame_equal(getattr(got.data, part), getattr(ref.data, part), check_exact=False,
                                      rtol=0, atol=1e-9)
    for part in ("y_train", "y_cal", "y_test"):
        np.testing.assert_array_equal(getattr(got.data, part), getattr(ref.data, part))
    assert ref.data.y_train.sum() > 20


@pytest.mark.parametrize("target", ["emergency_admission", "high_cost"])
def test_training_through_duckdb_gives_the_reference_model(data_dir, target):
    runs = {engine: run_training(config(data_dir, f"engine={engine}", f"target.name={target}"), log=False)
            for engine in ("pandas", "duckdb")}
    ref, got = runs["pandas"].result, runs["duckdb"].result
    assert_same_training_rows(got, ref)
    if target == "high_cost":
        np.testing.assert_allclose(got.data.cost_train, ref.data.cost_train, rtol=0, atol=1e-9)
    assert got.model.estimator.booster_.model_to_string() == ref.model.estimator.booster_.model_to_string()
    np.testing.assert_array_equal(got.scores["lightgbm"], ref.scores["lightgbm"])
    # Both engines read the same generic groups: one stored spec, its hash recorded.
    stored = got.model.metadata["feature_spec"]
    assert stored == ref.model.metadata["feature_spec"] and any("__" in n for n in got.data.feature_names)
    assert got.model.metadata["feature_spec_hash"] == FeatureSpec.from_dict(stored).hash() == stored["hash"]
    timings = runs["duckdb"].timings
    # no refit stage: these runs set model.refit=none (and are not logged)
    assert set(TRAINING_STAGES) - {"log", "refit"} <= set(timings) and "features_labels.2024-11-01" in timings


def _persons_and(folder: Path, table: str, columns: dict) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"person_id": ["a", "b"], "birth_date": [pd.Timestamp("1950-01-01").date()] * 2,
                             "death_date": pa.array([None, pd.Timestamp("2024-01-01").date()], type=pa.date32()),
                             "sex": ["female", "male"], "practice_id": ["P", "P"]}), folder / "persons.parquet")
    pq.write_table(pa.table(columns), folder / f"{table}.parquet")
    return folder


@pytest.mark.parametrize(("table", "columns", "options", "rule"), [
    # Rows no feature reads (after every index date): validation still refuses them.
    ("gp_contacts", {"person_id": ["a", "nobody"], "contact_date": [pd.Timestamp(d).date() for d in
                                                                     ("2023-01-01", "2025-06-01")]},
     [], "unknown_person"),
    ("inpatient_spells", {"person_id": ["b"], "admission_date": [pd.Timestamp("2024-09-01").date()],
                          "discharge_date": pa.array([None], type=pa.date32()), "admission_method": ["emergency"]}, ["data.out_of_life_events=error"], "event_after_death"),
    ("gp_contacts", {"person_id": ["a"], "contact_date": [pd.Timestamp("2099-01-01").date()]},
     ["data.out_of_life_events=error"], "future_event"),
])
def test_training_refuses_what_the_reference_refuses(tmp_path, table, columns, options, rule):
    folder = _persons_and(tmp_path / "d", table, columns)
    rules = {}
    for engine in ("pandas", "duckdb"):
        with pytest.raises(ValidationError) as refused:
            run_training(config(folder, f"engine={engine}", "data.extract_end=2025-12-31", *options), log=False)
        rules[engine] = {i.rule for i in refused.value.report.errors}
    assert rule in rules["pandas"] and rules["duckdb"] == rules["pandas"]


def test_cli_train_with_the_duckdb_engine_prints_the_stage_times(data_dir, tmp_path, monkeypatch):
    from riskstrat.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["train", "--engine", "duckdb", "--no-tracking", "--set", f"data.path={data_dir}"]
    for s in SMALL:
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "seconds (duckdb engine): load" in result.output and "features labels" in result.output
    bad = CliRunner().invoke(app, ["train", "--engine", "spreadsheet", "--set", f"data.path={data_dir}"])
    assert bad.exit_code == 2 and "engine" in bad.output


# ----------------------------------------------------------------------------- the feature-definition hash


@pytest.fixture(scope="module")
def registry(data_dir, tmp_path_factory, new_mlflow_store) -> dict:
    """A model trained and logged with the hash, and one logged as models were before it (no hash)."""
    store = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(store)
    cfg = config(data_dir, f"tracking.uri={uri}", "tracking.registered_model=with-hash", "engine=duckdb")
    run = run_training(cfg)
    tracking.promote("with-hash", run.logged.model_version, alias="champion", uri=uri)

    from riskstrat.modeling.config import config_to_dict
    from riskstrat.features.words import feature_table
    from riskstrat.data.io import data_fingerprint

    # As models were logged before the hash and the stored spec: clinical features, neither recorded.
    old_cfg = config(data_dir, f"tracking.uri={uri}", "tracking.registered_model=before-hash",
                     "features.generic.enabled=false")
    old = copy.deepcopy(run_training(old_cfg, log=False).result)
    del old.model.metadata["feature_spec_hash"], old.model.metadata["feature_spec"]
    logged = tracking.log_training_run(old, old_cfg, fingerprint=data_fingerprint(data_dir),
                                       features=feature_table(), config_dict=config_to_dict(old_cfg),
                                       data_summary={})
    tracking.promote("before-hash", logged.model_version, alias="champion", uri=uri)
    return {"uri": uri, "run": run}


def test_the_hash_and_the_stage_times_are_logged_with_the_model(registry):
    import mlflow

    run, uri = registry["run"], registry["uri"]
    logged = mlflow.get_run(run.logged.run_id)
    spec = run.result.model.metadata["feature_spec_hash"]
    assert logged.data.params["feature_spec_hash"] == spec == logged.data.tags[tracking.SPEC_TAG]
    version = mlflow.MlflowClient().get_model_version("with-hash", run.logged.model_version)
    assert version.tags[tracking.SPEC_TAG] == spec
    loaded = tracking.load_model("with-hash", uri=uri)
    assert loaded.risk_model.metadata["feature_spec_hash"] == spec
    # The full spec travels with the model and is logged with the run.
    assert FeatureSpec.from_dict(loaded.risk_model.metadata["feature_spec"]).hash() == spec
    assert mlflow.artifacts.load_dict(f"runs:/{run.logged.run_id}/feature_spec.json")["hash"] == spec
    stages = {f"seconds.{s}" for s in TRAINING_STAGES if s != "refit"}  # model.refit=none here
    assert stages <= set(logged.data.metrics) and all(logged.data.metrics[s] >= 0 for s in stages)
    timings = mlflow.artifacts.load_dict(f"runs:/{run.logged.run_id}/timings.json")
    assert set(timings) == set(run.timings) and run.timings["log"] > 0
    assert logged.data.params["engine"] == "duckdb"


def _loaded(metadata: dict) -> tracking.LoadedModel:
    model = RiskModel("lightgbm", "emergency_admission", ["age"], estimator=None, metadata=metadata)
    return tracking.LoadedModel(model, "m", "3", "run", "champion")


def test_a_model_with_another_hash_is_refused_and_one_without_is_warned_about():
    said = []
    check_feature_spec(_loaded({"feature_spec_hash": spec_hash()}), stage=said.append)
    assert said == []
    with pytest.raises(FeatureSpecMismatchError, match=r"m version 3 was trained on features defined differently.*"
                                                       r"0123456789abcdef when trained.*Retrain it.*riskstrat 0\.0\.9"):
        check_feature_spec(_loaded({"feature_spec_hash": "0123456789abcdef", "riskstrat_version": "0.0.9"}))
    assert issubclass(FeatureSpecMismatchError, RiskstratError)
    check_feature_spec(_loaded({}), stage=said.append)
    assert len(said) == 1 and said[0].startswith("warning: m version 3 records no feature-definition hash")


def test_scoring_refuses_a_model_trained_on_other_feature_definitions(registry, data_dir, tmp_path, monkeypatch):
    from riskstrat.cli import app

    monkeypatch.setattr("riskstrat.features.spec.DERIVE_VERSION", 99)  # this code would compute them otherwise
    out = tmp_path / "lists"
    result = CliRunner().invoke(app, ["score", "--as-of", "2025-10-01", "--data", str(data_dir), "--out", str(out),
                                      "--set", f"tracking.uri={registry['uri']}", "--set", "models.risk=with-hash",
                                      "--set", "models.high_cost=null"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "with-hash version 1 was trained on features defined differently" in text and "Retrain it" in text
    assert not out.exists()  # refused before anything was read or written


def test_scoring_warns_about_a_model_without_a_hash_and_scores(registry, data_dir, tmp_path):
    cfg = load_config(None, [f"data.path={data_dir}", f"tracking.uri={registry['uri']}", "models.risk=before-hash",
                             "models.high_cost=null", f"output_dir={tmp_path / 'lists'}"], model=ScoringConfig)
    said = []
    manifest = run_scoring(cfg, "2025-10-01", stage=said.append)
    assert manifest["counts"]["scored"] > 0
    assert any(m.startswith("warning: before-hash version 1 records no feature-definition hash") for m in said)


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_scoring_refuses_a_linkage_error_in_rows_no_feature_reads(registry, data_dir, tmp_path, engine):
    # A GP contact of a person missing from persons, dated after the scoring date: no feature reads it, but
    # validation refuses it, so every engine must.
    folder = tmp_path / "d"
    shutil.copytree(data_dir, folder)
    gp = pq.read_table(folder / "gp_contacts.parquet")
    stranger = gp.slice(0, 1)
    column = stranger.schema.get_field_index("person_id")
    stranger = stranger.set_column(column, "person_id", pa.array(["nobody"]).cast(stranger.schema.field(column).type))
    pq.write_table(pa.concat_tables([gp, stranger]), folder / "gp_contacts.parquet")
    cfg = load_config(None, [f"data.path={folder}", f"tracking.uri={registry['uri']}", "models.risk=with-hash",
                             "models.high_cost=null", f"output_dir={tmp_path / 'lists'}", f"engine={engine}"],
                      model=ScoringConfig)
    with pytest.raises(ValidationError) as refused:
        run_scoring(cfg, "2025-10-01")
    assert {i.rule for i in refused.value.report.errors} == {"unknown_person"}
    assert not (tmp_path / "lists").exists()
