"""A tracking store that cannot be used is a message a person can act on, never a traceback."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from riskstrat.registry import tracking
from riskstrat.errors import RiskstratError


def test_a_corrupt_mlflow_db_is_named_and_the_user_told_what_to_do(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not an SQLite file" * 10)
    with pytest.raises(tracking.TrackingStoreError, match=r"mlflow.db is not a readable MLflow database.*backup"):
        tracking.load_model("m", uri=f"sqlite:///{db}")


@pytest.mark.parametrize(("error", "words"), [
    (sqlite3.OperationalError("database is locked"), "locked by another process"),
    (sqlite3.DatabaseError("database disk image is malformed"), "may be corrupt"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "is read-only for user"),
])
def test_store_faults_are_told_apart(error, words):
    problem = tracking.store_problem(error, "sqlite:///x/mlflow.db")
    assert isinstance(problem, RiskstratError) and words in str(problem)
    assert tracking.store_problem(KeyError("a bug"), "sqlite:///x") is None


def test_cli_score_with_a_corrupt_store_exits_2_without_a_traceback(tmp_path, monkeypatch):
    from riskstrat.cli import app

    monkeypatch.chdir(tmp_path)
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"garbage" * 100)
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(app, ["score", "--as-of", "2025-11-01", "--data", str(tmp_path / "data"),
                                      "--out", str(tmp_path / "lists"), "--set", f"tracking.uri=sqlite:///{db}",
                                      "--set", "models.risk=m"])
    assert result.exit_code == 2, result.output
    assert "not a readable MLflow database" in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "lists").exists()


def test_a_read_only_store_is_named_not_an_autoflush_message(tmp_path):
    import mlflow

    db = tmp_path / "mlflow.db"
    tracking.configure(f"sqlite:///{db}")
    mlflow.MlflowClient().create_registered_model("m")  # the store exists, with its tables
    # SQLite's read-only mode stands for a file this user may not write (chmod does not bind root).
    uri = f"sqlite:///file:{db}?mode=ro&uri=true"
    tracking.configure(uri)
    with pytest.raises(Exception) as raised:
        mlflow.MlflowClient().create_registered_model("m2")
    problem = tracking.store_problem(raised.value, uri)
    assert isinstance(problem, tracking.TrackingStoreError)
    assert "is read-only for user" in str(problem) and "write access" in str(problem)


@pytest.mark.parametrize(("name", "key"), [("very high (top 0.5%)", "tier.very high _top 0.5__"),
                                           ("high", "tier.high"), ("été", "tier._t_")])
def test_metric_keys_from_names_are_ones_mlflow_accepts(tmp_path, name, key, new_mlflow_store):
    import mlflow

    assert tracking.metric_key(f"tier.{name}") == key
    tracking.configure(new_mlflow_store(tmp_path))
    with mlflow.start_run() as run:
        mlflow.log_metrics({tracking.metric_key(f"tier.{name}"): 1.0})
    assert mlflow.get_run(run.info.run_id).data.metrics == {key: 1.0}


def test_writing_to_a_read_only_store_is_named_by_every_writer(tmp_path):
    import mlflow

    db = tmp_path / "mlflow.db"
    tracking.configure(f"sqlite:///{db}")
    client = mlflow.MlflowClient()
    client.create_registered_model("m")
    with mlflow.start_run() as run:
        pass
    client.create_model_version("m", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    (tmp_path / "report").mkdir()
    writers = {
        "promote": lambda: tracking.promote("m", "1", uri=read_only, force=True),
        "tag": lambda: tracking.tag_model_version("m", "1", {"k": "v"}, uri=read_only),
        "monitoring run": lambda: tracking.log_monitoring_run(tags={}, metrics={"n": 1.0}, folder=tmp_path / "report",
                                                              uri=read_only),
    }
    for what, write in writers.items():
        with pytest.raises(tracking.TrackingStoreError, match="is read-only for user"):
            write()


def test_sqlalchemy_faults_are_known_without_riskstrat_importing_sqlalchemy():
    # riskstrat tells SQLAlchemy's errors by their class's module (SQLAlchemy comes with MLflow).
    exc = pytest.importorskip("sqlalchemy.exc")
    problem = tracking.store_problem(exc.TimeoutError("QueuePool limit of size 5 reached"), "sqlite:///x/mlflow.db")
    assert isinstance(problem, tracking.TrackingStoreError) and "cannot be used" in str(problem)
    assert tracking.store_problem(TimeoutError("QueuePool limit of size 5 reached"), "sqlite:///x") is None
