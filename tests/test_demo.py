"""`riskstrat demo`, the README's run command, end to end on a small population, twice."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from riskstrat.cli import app


def test_demo_runs_twice_and_writes_only_under_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(app, ["demo", "--people", "3000", "--quiet"])
    assert first.exit_code == 0, first.output
    for model in ("lightgbm", "logistic", "prior_use", "oracle"):
        assert model in first.output
    # The champion is the refit for deployment (version 2) of the evaluated version 1 (model.refit: latest).
    assert "riskstrat-emergency-admission@champion = version 2 (promoted now" in first.output
    assert "the refit for deployment of version 1" in first.output
    month = tmp_path / "riskstrat-output" / "lists" / "2026-11"
    practices = sorted((month / "practices").iterdir())
    assert practices and all((p / "list.html").exists() and (p / "list.xlsx").exists() for p in practices)
    listed = pd.read_csv(practices[0] / "list.csv")
    assert listed["Top reasons"].notna().all() and len(listed) > 0
    assert {p.name for p in tmp_path.iterdir()} >= {"riskstrat-data", "riskstrat-output", "mlflow.db", "mlartifacts"}
    # Each version is evaluated before the first is promoted: its card and report are there.
    assert (tmp_path / "models" / "riskstrat-emergency-admission" / "card.md").exists()
    assert "evaluation: riskstrat-output/evaluations/riskstrat-emergency-admission-v1" in first.output

    second = CliRunner().invoke(app, ["demo", "--people", "3000", "--quiet"])
    assert second.exit_code == 0, second.output
    assert "version 2 (kept; new version 4 registered, the refit of version 3" in second.output
    # --quiet silences MLflow's own registry messages too.
    assert "Created version" not in first.output + second.output
    assert "already exists" not in second.output
    # The rerun scores the same month with the same champions: the people's lists are identical.
    assert pd.read_csv(practices[0] / "list.csv").equals(listed)
