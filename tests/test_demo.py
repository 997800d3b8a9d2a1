"""`riskstrat demo`, the README's run command, end to end on a small population, twice."""

from __future__ import annotations

import functools

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.cli import app
from riskstrat.pipelines import demo

# The default run trains the demo's models small (60 trees at most, 10 bootstrap samples), as the other
# pipeline tests do: what is checked here (the versions and their refits, the champions, the evaluation's
# files, the lists, a rerun's identical lists) does not depend on the model's size. The demo as shipped
# (auto-sized LightGBM, 200 bootstrap samples), about a minute on 2 cores, is the slow case.
SMALL_MODELS = ["model.lightgbm.n_estimators=60", "evaluation.n_bootstrap=10", "evaluation.figures=false"]
# The rerun (small models only) fits no logistic baseline: what it checks (the data reused, new versions and
# their refits registered beside the kept champions, no error from the existing store, the same lists) does
# not depend on the baselines; the first run checks the comparison with every one. (Fewer training dates
# would save more, but 3,000 people then have too few high-cost events for the guards.)
RERUN_SMALLER = ["model.baselines=[prior_use]"]


@pytest.mark.parametrize("overrides", [pytest.param(SMALL_MODELS, id="small-models"),
                                       pytest.param([], id="as-shipped", marks=pytest.mark.slow)])
def test_demo_runs_twice_and_writes_only_under_the_working_folder(tmp_path, monkeypatch, overrides):
    monkeypatch.setattr(demo, "run_demo_training", functools.partial(demo.run_demo_training, overrides=overrides))
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

    data = tmp_path / "riskstrat-data" / "synthetic"
    written = {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    if overrides:
        monkeypatch.setattr(demo, "run_demo_training", functools.partial(demo.run_demo_training.func,
                                                                         overrides=[*overrides, *RERUN_SMALLER]))
    second = CliRunner().invoke(app, ["demo", "--people", "3000", "--quiet"])
    assert second.exit_code == 0, second.output
    assert "version 2 (kept; new version 4 registered, the refit of version 3" in second.output
    # --quiet silences MLflow's own registry messages too.
    assert "Created version" not in first.output + second.output
    assert "already exists" not in second.output
    assert {p.name: p.stat().st_mtime_ns for p in data.iterdir()} == written  # the data reused, not written again
    # The rerun scores the same month with the same champions: the people's lists are identical.
    assert pd.read_csv(practices[0] / "list.csv").equals(listed)
