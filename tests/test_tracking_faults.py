"""A tracking store that cannot be used is a message a person can act on, never a traceback."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from riskstrat import tracking
from riskstrat.errors import RiskstratError


def test_a_corrupt_mlflow_db_is_named_and_the_user_told_what_to_do(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not an SQLite file" * 10)
    with pytest.raises(tracking.TrackingStoreError, match=r"mlflow.db is not a readable MLflow database.*backup"):
        tracking.load_model("m", uri=f"sqlite:///{db}")


@pytest.mark.parametrize(("error", "words"), [
    (sqlite3.OperationalError("database is locked"), "locked by another process"),
    (sqlite3.DatabaseError("database disk image is malformed"), "may be corrupt"),
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
