"""MLflow round trip: train -> log -> register -> promote -> load by alias -> same predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.registry import tracking
from riskstrat.modeling.config import load_config
from riskstrat.pipelines.train import run_training
from riskstrat.modeling.search import TUNED

SMALL = ["index_dates.train=[2023-08-01, 2023-11-01]", "index_dates.test=2024-11-01",
         "evaluation.n_bootstrap=20", "model.lightgbm.n_estimators=60",
         # 3,000 people have fewer test events than the guards' defaults ask; tests/test_guards.py tests those.
         "guards.min_events_train=20", "guards.min_events_calibration=20", "guards.min_events_test=20"]
# For runs whose tests look at neither the refit, the logistic baseline nor the plots (``trained``'s tests do).
LEAN = ["model.refit=none", "model.baselines=[prior_use]", "evaluation.figures=false"]


@pytest.fixture(scope="module")
def small_data(synthetic_3000) -> Path:
    """3,000 synthetic people (conftest's session-wide folder, shared with test_scoring_pipeline.py; read only)."""
    return synthetic_3000


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory, new_mlflow_store):
    store = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(store)
    cfg = load_config(None, [f"data.path={small_data}", f"tracking.uri={uri}",
                             "tracking.registered_model=test-emergency", *SMALL])
    return cfg, run_training(cfg), store


def test_round_trip_by_alias_gives_same_predictions(trained):
    cfg, run, _ = trained
    moved = tracking.promote("test-emergency", run.logged.model_version, alias="champion", uri=cfg.tracking.uri)
    assert moved["version"] == run.logged.model_version
    loaded = tracking.load_model("test-emergency", alias="champion", uri=cfg.tracking.uri)
    assert loaded.version == run.logged.model_version
    assert loaded.run_id == run.logged.run_id
    X = run.result.data.X_test
    np.testing.assert_allclose(loaded.risk_model.predict_risk(X), run.result.scores["lightgbm"], rtol=0, atol=1e-12)

    import mlflow

    pyfunc = mlflow.pyfunc.load_model("models:/test-emergency@champion")
    served = pyfunc.predict(X.reset_index(drop=True))
    np.testing.assert_allclose(served["risk"], run.result.scores["lightgbm"], atol=1e-12)
    # The tiers on demand cut the test people (the reference) as ranking them does; people tied with
    # a tier's lowest risk all take that tier.
    from riskstrat.modeling.tiers import DEFAULT_TIER_CUTOFFS, assign_tiers

    risk = pd.Series(run.result.scores["lightgbm"])
    ranked = assign_tiers(risk, cutoffs=DEFAULT_TIER_CUTOFFS)
    on_demand = pd.Categorical(served["tier"], categories=ranked.cat.categories, ordered=True)
    for tier in DEFAULT_TIER_CUTOFFS:
        lowest = risk[ranked <= tier].min()
        assert ((on_demand <= tier) == (risk >= lowest)).all()
        assert ((on_demand <= tier) >= (ranked <= tier)).all()


def test_run_logs_metrics_config_and_lineage(trained):
    import mlflow

    cfg, run, _ = trained
    got = mlflow.get_run(run.logged.run_id)
    assert got.data.metrics["lightgbm.auroc"] == pytest.approx(run.result.metrics["lightgbm"]["auroc"])
    assert "oracle.auroc" in got.data.metrics  # the synthetic set has ground truth at the test date
    assert got.data.params["target.name"] == "emergency_admission"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.logged.run_id, "plots")}
    assert artifacts == {"plots/roc.png", "plots/pr.png", "plots/calibration.png", "plots/top_k_ppv.png"}
    assert got.inputs.dataset_inputs[0].dataset.name == "linked-records"
    # The subgroup table is the evaluation report's (attribute, group, n, n_events, small, metrics).
    local = mlflow.artifacts.download_artifacts(run_id=run.logged.run_id, artifact_path="evaluation/subgroups.csv",
                                                tracking_uri=cfg.tracking.uri)
    logged = pd.read_csv(local, keep_default_na=False)
    assert list(logged.columns[:5]) == ["attribute", "group", "n", "n_events", "small"]
    assert {"auroc", "observed_rate", "expected_rate", "o_e_ratio"} <= set(logged.columns)
    assert list(dict.fromkeys(logged["attribute"])) == ["age band", "sex", "deprivation quintile", "ethnicity group",
                                                        "GP practice"]
    assert logged["n"].tolist() == run.result.subgroups.by_group["n"].tolist()
    assert (logged["attribute"] == "deprivation quintile").sum() > 1  # the decile is a feature, not "unknown"


def test_no_person_identifier_reaches_mlflow(trained, small_data):
    _, run, store = trained
    ids = set(pd.read_parquet(small_data / "persons.parquet")["person_id"])
    leaked = []
    for path in store.rglob("*"):
        if path.is_file() and path.suffix not in (".joblib", ".pkl", ".db", ".png"):
            text = path.read_bytes().decode("utf-8", errors="ignore")
            leaked += [p for p in ids if p in text][:3]
    assert not leaked, f"person ids found in MLflow artifacts: {leaked}"
    # The model's input example is a synthetic median person, not a real row.
    example = tracking.example_input(run.result.data.X_train)
    assert len(example) == 1 and not (run.result.data.X_train == example.iloc[0]).all(axis=1).any()


def test_promote_unknown_version_is_a_clear_error(trained):
    cfg, _, _ = trained
    with pytest.raises(tracking.RegistryError, match=r"model test-emergency has no version 99 \(versions: 1, 2\)"):
        tracking.promote("test-emergency", 99, uri=cfg.tracking.uri)
    with pytest.raises(tracking.RegistryError, match="no model 'nope' with alias 'champion'"):
        tracking.load_model("nope", uri=cfg.tracking.uri)


def test_cli_train_and_promote(small_data, tmp_path, monkeypatch):
    from riskstrat.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["train", "--set", f"data.path={small_data}", "--set", "tracking.registered_model=cli-model"]
    # No refit: what is checked here (the command's output, its store, promote) is the same for the refit's
    # version, and the refit is tests/test_refit.py's (this file's ``trained`` makes one too); nor the logistic
    # baseline and the plots, which ``trained`` logs and its tests check.
    for s in [*SMALL, *LEAN]:
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "lightgbm" in result.output and "cli-model version 1" in result.output
    # MLflow's own event lines repeat ours: hidden (log_model re-enables MLflow's switch part-way).
    assert "Created version" not in result.output and "Successfully registered" not in result.output
    assert (tmp_path / "mlflow.db").exists()  # the default store lives in the working folder
    # Not evaluated, so the gate refuses it (tests/test_evaluate_pipeline.py); forced here with a reason.
    result = CliRunner().invoke(app, ["promote", "cli-model", "1", "--force", "--reason", "test"])
    assert result.exit_code == 0 and "cli-model@champion -> version 1" in result.output
    bad = CliRunner().invoke(app, ["train", "--set", f"data.path={small_data}", "--set", "model.lightgbm.leaves=3"])
    assert bad.exit_code == 2 and "model.lightgbm.leaves" in bad.output


def test_search_run_logs_the_tuned_parameters_and_trials(small_data, tmp_path, new_mlflow_store):
    import mlflow

    uri = new_mlflow_store(tmp_path)
    cfg = load_config(None, [f"data.path={small_data}", f"tracking.uri={uri}", "tracking.registered_model=test-search",
                             "model.search.enabled=true", "model.search.n_trials=3", *SMALL,
                             *LEAN])  # the trials and the tuned settings are the evaluated run's
    run = run_training(cfg)
    trials = run.result.search
    assert len(trials) == 3
    tuned = run.result.model.metadata["lightgbm_params"]
    best = trials.loc[trials["log_loss"].idxmin()]
    assert tuned["num_leaves"] == best["num_leaves"] and tuned["learning_rate"] == pytest.approx(best["learning_rate"])
    got = mlflow.get_run(run.logged.run_id)
    assert got.data.params["tuned.num_leaves"] == str(tuned["num_leaves"])
    assert got.data.metrics["search.trials"] == 3
    local = mlflow.artifacts.download_artifacts(run_id=run.logged.run_id, artifact_path="search/trials.csv",
                                                dst_path=str(tmp_path / "dl"))
    logged = pd.read_csv(local)
    # One row per trial, settings and scores only: nothing about people.
    assert len(logged) == 3
    assert set(logged.columns) == {"number", "log_loss", "auroc", "best_iteration", "state", *TUNED}
