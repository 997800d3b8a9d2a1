"""Costs and currency: a model records its data's currency and which tables had costs; score and
evaluate refuse data whose money it would misread, unless given a rate or told to go without costs.

Once per module: 2,000 synthetic people (in GBP, every table costed), a model with the cost features
and one without them, trained small and promoted in a temporary SQLite store; a copy of the data said
to be in US dollars, and a copy whose health-care costs are blank.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.registry import tracking
from riskstrat.cli import app
from riskstrat.modeling.config import ScoringConfig, load_config
from riskstrat.features.costs import CostCurrencyError, CostHandling, check_model_costs, is_cost_feature, uses_costs
from riskstrat.pipelines.evaluate import run_evaluation
from riskstrat.features.clinical import FEATURE_NAMES
from riskstrat.features.reference import build_features
from riskstrat.data.load import load_data
from riskstrat.pipelines.score import run_scoring
from riskstrat.pipelines.train import run_training
from riskstrat.data.synth import write_population

AS_OF = "2025-11-01"
# No refit: these tests score with version 1 (the evaluated model) and name it; the refit is tests/test_refit.py's.
TRAIN_SMALL = ["model.refit=none", "index_dates.train=[2023-08-01, 2023-11-01]", "index_dates.test=2024-11-01",
               "evaluation.n_bootstrap=10", "evaluation.figures=false", "model.lightgbm.n_estimators=40",
               "model.baselines=[prior_use]", "guards.min_events_train=20",
               "guards.min_events_calibration=20", "guards.min_events_test=20"]
WITH_COSTS, WITHOUT_COSTS = "cost-model", "no-cost-model"
COST_FEATURES = [f for f in FEATURE_NAMES if is_cost_feature(f)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "gbp"
    write_population(out, 2000, start="2021-11-01", years=4, seed=7, n_futures=2)
    return out


@pytest.fixture(scope="module")
def usd_dir(data_dir, tmp_path_factory) -> Path:
    """The same data, its dataset.json saying the costs are in US dollars."""
    out = tmp_path_factory.mktemp("data") / "usd"
    shutil.copytree(data_dir, out)
    meta = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**meta, "currency": "USD"}))
    return out


@pytest.fixture(scope="module")
def cost_free_dir(data_dir, tmp_path_factory, without_health_costs) -> Path:
    return without_health_costs(data_dir, tmp_path_factory.mktemp("data") / "cost-free")


@pytest.fixture(scope="module")
def registry(data_dir, tmp_path_factory, new_mlflow_store) -> dict:
    store = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(store)
    runs = {}
    no_costs = [f"features.exclude=[{', '.join(COST_FEATURES)}]", "features.generic.costs=false"]
    for name, extra in ((WITH_COSTS, []), (WITHOUT_COSTS, no_costs)):
        cfg = load_config(None, [f"data.path={data_dir}", f"tracking.uri={uri}", f"tracking.registered_model={name}",
                                 *TRAIN_SMALL, *extra])
        runs[name] = run_training(cfg).logged
        tracking.promote(name, runs[name].model_version, alias="champion", uri=uri)
    return {"uri": uri, "runs": runs}


def _score(registry, data, out, *overrides, model=WITH_COSTS, stage=None):
    cfg = load_config(None, [f"data.path={data}", f"tracking.uri={registry['uri']}", f"models.risk={model}",
                             "models.high_cost=null", "lists.list_size=50", f"output_dir={out}", *overrides],
                      model=ScoringConfig)
    return run_scoring(cfg, AS_OF, **({"stage": stage} if stage else {}))


# ----------------------------------------------------------------------------- what a model records


def test_cost_features_by_name_include_generic_covariates():
    assert {"cost_total_12m", "cost_hospital_12m", "social_care_weekly_cost"} <= set(COST_FEATURES)
    assert is_cost_feature("gp_contacts__cost_365d") and not is_cost_feature("gp_contacts__count_365d")
    assert uses_costs(["age", "inpatient_spells__cost_90d"]) and not uses_costs(["age", "rx_items_12m"])


def test_a_group_named_with_cost_is_a_count_not_money():
    """A sub-type read from the data whose words hold "cost" (a GP contact type "Costochondritis review") gives
    counts, days and trends: never converted at a currency rate nor blanked by --without-costs."""

    names = ["gp_contacts__costochondritis_review__count_90d", "gp_contacts__costochondritis_review__days_since",
             "gp_contacts__costochondritis_review__trend_90d_730d", "gp_contacts__cost_90d"]
    assert [is_cost_feature(n) for n in names] == [False, False, False, True]
    frame = pd.DataFrame({n: [3.0] for n in names})
    converted = CostHandling(data_currency="USD", currency="GBP", rate=0.5).apply(frame)
    assert converted.iloc[0].tolist() == [3.0, 3.0, 3.0, 1.5]
    blanked = CostHandling(data_currency="GBP", currency="GBP", without_costs=True).apply(frame)
    assert blanked.iloc[0, :3].tolist() == [3.0, 3.0, 3.0] and np.isnan(blanked.iloc[0, 3])


def test_model_records_currency_cost_sources_and_use_in_metadata_and_mlflow(registry):
    from mlflow import MlflowClient

    with_costs = tracking.load_model(WITH_COSTS, uri=registry["uri"]).risk_model.metadata["costs"]
    assert with_costs["currency"] == "GBP" and with_costs["uses_costs"] is True
    assert with_costs["sources"] == {"inpatient_spells": True, "ae_attendances": True, "outpatient_appointments": True,
                                     "gp_contacts": True, "prescriptions": True, "social_care": True}
    assert tracking.load_model(WITHOUT_COSTS, uri=registry["uri"]).risk_model.metadata["costs"]["uses_costs"] is False
    client = MlflowClient(registry["uri"])
    version = client.get_model_version(WITH_COSTS, registry["runs"][WITH_COSTS].model_version)
    assert version.tags["riskstrat.currency"] == "GBP" and version.tags["riskstrat.uses_costs"] == "true"
    assert version.tags["riskstrat.cost_sources"].split(",")[0] == "inpatient_spells"
    run = client.get_run(registry["runs"][WITH_COSTS].run_id).data
    assert run.params["costs.currency"] == "GBP" and run.params["costs.source.gp_contacts"] == "recorded"
    assert run.tags["riskstrat.currency"] == "GBP"


def test_a_table_without_costs_is_recorded_as_such(registry, cost_free_dir, tmp_path):
    cfg = load_config(None, [f"data.path={cost_free_dir}", f"tracking.uri={registry['uri']}", *TRAIN_SMALL])
    costs = run_training(cfg, log=False).result.model.metadata["costs"]
    assert costs["sources"]["inpatient_spells"] is False and costs["sources"]["social_care"] is True


# ----------------------------------------------------------------------------- refusals and ways on


def test_gbp_model_refused_on_usd_data_naming_both_currencies(registry, usd_dir, tmp_path):
    with pytest.raises(CostCurrencyError, match=r"cost-model version 1 was trained on costs in GBP, but this data "
                                                r"set's costs are in USD .*--currency-rate RATE.*--without-costs"):
        _score(registry, usd_dir, tmp_path / "lists")
    assert not (tmp_path / "lists" / "2025-11").exists()


def test_currency_rate_converts_the_cost_features_and_is_recorded(registry, usd_dir, tmp_path):
    manifest = _score(registry, usd_dir, tmp_path / "lists", "currency_rate=0.5")
    assert manifest["costs"] == {"data_currency": "USD", "currency": "GBP", "currency_rate": 0.5,
                                 "without_costs": False}
    assert manifest["currency"] == "GBP"  # amounts written in the model's currency
    population = pd.read_parquet(tmp_path / "lists" / "2025-11" / "population.parquet").set_index("person_id")
    as_given = build_features(load_data(load_config(None, [f"data.path={usd_dir}"], model=ScoringConfig).data), AS_OF)
    past = as_given["cost_total_12m"].reindex(population.index)
    assert (past > 0).sum() > 100
    np.testing.assert_allclose(population["cost_total_12m"], 0.5 * past)
    run = tracking.recorded_manifests(AS_OF, experiment="riskstrat-scoring", uri=registry["uri"])[0]
    assert run["costs"]["currency_rate"] == 0.5


def test_rate_given_for_data_already_in_the_models_currency_is_refused(registry, data_dir, tmp_path):
    with pytest.raises(CostCurrencyError, match=r"a currency rate \(0.5\) was given, but cost-model version 1 was "
                                                r"trained on costs in GBP and this data set's costs are in GBP too"):
        _score(registry, data_dir, tmp_path / "lists", "currency_rate=0.5")


def test_cost_free_data_refused_for_a_cost_model_and_scored_without_costs(registry, cost_free_dir, tmp_path):
    with pytest.raises(CostCurrencyError, match=r"cost-model version 1 uses cost features and was trained with costs "
                                                r"\(in GBP\) from .* but this data set \(GBP\) has none from "
                                                r"inpatient_spells \(cost column absent or blank in every row\)"):
        _score(registry, cost_free_dir, tmp_path / "refused")
    said = []
    manifest = _score(registry, cost_free_dir, tmp_path / "lists", "without_costs=true", stage=said.append)
    assert manifest["costs"]["without_costs"] is True and manifest["counts"]["scored"] > 1000
    assert any("ranking is degraded" in line for line in said)
    population = pd.read_parquet(tmp_path / "lists" / "2025-11" / "population.parquet")
    assert population["cost_total_12m"].isna().all()
    assert population["risk"].notna().all() and population["risk"].nunique() > 50


def test_model_without_cost_features_scores_cost_free_and_usd_data(registry, cost_free_dir, usd_dir, tmp_path):
    for data in (cost_free_dir, usd_dir):
        manifest = _score(registry, data, tmp_path / data.name, model=WITHOUT_COSTS)
        assert manifest["counts"]["scored"] > 1000 and manifest["costs"]["currency_rate"] is None


def test_model_saved_before_the_record_is_taken_in_the_datas_currency():
    old = SimpleNamespace(name="old", version="3", risk_model=SimpleNamespace(
        metadata={}, feature_names=["age", "cost_total_12m"], cost_estimator=None))
    said = []
    handling = check_model_costs([old, old], data_currency="usd", sources=["gp_contacts"],
                                 row_counts={"gp_contacts": 10}, blank_costs=[], stage=said.append)
    assert handling.currency == "USD" and handling.rate is None
    assert len(said) == 1 and "old version 3, old version 3 record no currency" in said[0] and "(USD)" in said[0]
    # Its cost sources are unknown: taken as every table, so cost-free data are still refused.
    with pytest.raises(CostCurrencyError, match="has none from gp_contacts"):
        check_model_costs([old], data_currency="USD", sources=["gp_contacts"], row_counts={"gp_contacts": 10},
                          blank_costs=[("gp_contacts", "cost")])


def test_a_model_predicting_costs_needs_a_rate_not_without_costs():
    model = SimpleNamespace(name="hc", version="1", risk_model=SimpleNamespace(
        metadata={"costs": {"currency": "GBP", "sources": {"gp_contacts": True}, "uses_costs": True}},
        feature_names=["age", "cost_total_12m"], cost_estimator=object()))
    with pytest.raises(CostCurrencyError, match="its cost features would read USD amounts as GBP") as refused:
        check_model_costs([model], data_currency="USD", sources=["gp_contacts"], row_counts={"gp_contacts": 1},
                          blank_costs=[], without_costs=True)
    assert "--without-costs" not in str(refused.value)  # it would not fix the predicted costs' currency


def test_evaluate_refuses_usd_data_and_converts_with_a_rate(registry, usd_dir, tmp_path):
    with pytest.raises(CostCurrencyError, match="cost-model version 1 was trained on costs in GBP, but this data set's "
                                                "costs are in USD"):
        run_evaluation(f"{WITH_COSTS}/1", usd_dir, "2024-11-01", out_dir=tmp_path / "refused", card_dir=None,
                       uri=registry["uri"], log=False)
    run = run_evaluation(f"{WITH_COSTS}/1", usd_dir, "2024-11-01", out_dir=tmp_path / "report", card_dir=None,
                         uri=registry["uri"], n_boot=10, min_events=20, include_seen=True, log=False,
                         currency_rate=0.5, figures=False)
    assert run.evaluation.n_events >= 20


def test_cli_refusals_exit_2_naming_the_model_and_currencies(registry, usd_dir, tmp_path):
    score = CliRunner().invoke(app, ["score", "--as-of", AS_OF, "--data", str(usd_dir), "--out", str(tmp_path / "out"),
                                     "--set", f"tracking.uri={registry['uri']}", "--set", f"models.risk={WITH_COSTS}",
                                     "--set", "models.high_cost=null"])
    assert score.exit_code == 2, score.output
    text = " ".join(score.output.split())
    assert "cost-model version 1 was trained on costs in GBP" in text and "costs are in USD" in text
    assert "--currency-rate RATE (currency_rate in the scoring config)" in text and "nothing was written" in text
    evaluate = CliRunner().invoke(app, ["evaluate", "--model", f"{WITH_COSTS}/1", "--data", str(usd_dir), "--as-of",
                                        "2024-11-01", "--tracking-uri", registry["uri"], "--card-dir", str(tmp_path),
                                        "--out", str(tmp_path / "report")])
    assert evaluate.exit_code == 2, evaluate.output
    assert "costs are in USD" in " ".join(evaluate.output.split())
    both = CliRunner().invoke(app, ["score", "--as-of", AS_OF, "--data", str(usd_dir), "--currency-rate", "0.5",
                                    "--without-costs", "--set", f"tracking.uri={registry['uri']}"])
    assert both.exit_code == 2 and "choose one" in " ".join(both.output.split())


@pytest.mark.parametrize("handling", [dict(rate=0.5), dict(without_costs=True), dict()])
def test_cost_handling_of_a_block_equals_that_of_the_frame(handling):
    # Scoring's blocks of people (a row per column, no frame) get the cost features converted or blanked
    # as the frame's are: the same numbers, bit for bit.
    from riskstrat.features.costs import CostHandling

    costs = CostHandling(data_currency="USD", currency="GBP", **handling)
    rng = np.random.default_rng(3)
    columns = ["age", "cost_total_12m", "inpatient_spells__cost_365d", "inpatient_spells__count_365d"]
    frame = pd.DataFrame(rng.random((50, len(columns))) * 1000, columns=columns)
    block = np.array(frame.to_numpy().T, order="C")  # a copy of its own (the frame's values are read-only)
    costs.apply_block(block, columns)
    np.testing.assert_array_equal(block.T, costs.apply(frame).to_numpy(dtype="float64"))
