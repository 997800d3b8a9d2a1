"""The refit for deployment (model.refit) and the LightGBM settings chosen from the training rows (auto)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _gate_metrics import GOOD

from riskstrat.registry import tracking
from riskstrat.modeling.config import LightGBMConfig, load_config
from riskstrat.evaluation import gate as gates
from riskstrat.pipelines.promote import check_promotion
from riskstrat.modeling.models import auto_lightgbm
from riskstrat.pipelines.train import run_training
from riskstrat.modeling.refit import REFIT_OF_RUN_TAG, REFIT_OF_VERSION_TAG, REFIT_VERSION_TAG, refit_dates
from riskstrat.data.synth import write_population
from riskstrat.modeling.train import person_groups, training_groups

# The data end 2025-10-31: training at 2023-08-01 and 2023-11-01, tested at 2024-11-01, whose year is the
# last one the data cover; so the refit's dates run every 3 months from 2023-08-01 to 2024-11-01.
SMALL = ["index_dates.train=[2023-08-01, 2023-11-01]", "index_dates.test=2024-11-01", "evaluation.n_bootstrap=10",
         "evaluation.figures=false", "model.lightgbm.n_estimators=40", "model.baselines=[prior_use]",
         "guards.min_events_train=20", "guards.min_events_calibration=20", "guards.min_events_test=20"]
REFIT_DATES = ["2023-08-01", "2023-11-01", "2024-02-01", "2024-05-01", "2024-08-01", "2024-11-01"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_population(out, 2000, start="2021-11-01", years=4, seed=5, truth_dates=[], n_futures=2)
    return out


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory, new_mlflow_store):
    uri = new_mlflow_store(tmp_path_factory.mktemp("mlflow"))
    cfg = load_config(None, [f"data.path={data_dir}", f"tracking.uri={uri}", "tracking.registered_model=test-refit",
                             *SMALL])
    return cfg, run_training(cfg)


# ----------------------------------------------------------------------------- the refit's rows


def test_refit_dates_keep_the_spacing_up_to_the_latest_labelled_date():
    got = refit_dates(["2023-08-01", "2023-11-01"], "2024-11-01", horizon_days=365, extract_end="2025-10-31")
    assert [str(d.date()) for d in got] == REFIT_DATES
    # A day less of data and 2024-11-01's year is no longer whole: it is never a refit date.
    assert str(refit_dates(["2023-08-01", "2023-11-01"], "2024-08-01", horizon_days=365,
                           extract_end="2025-10-30")[-1].date()) == "2024-08-01"


def test_refit_trains_on_every_later_date_with_the_test_people(trained):
    cfg, run = trained
    refit, evaluated = run.refit.model.metadata["refit"], run.result
    assert refit["dates"] == REFIT_DATES and refit["labels_end"] == "2025-11-01"  # labels end by the data end
    counts = refit["counts"]
    assert list(counts["rows_by_date"]) == REFIT_DATES
    assert sum(counts["rows_by_date"].values()) == counts["train_rows"] + counts["calibration_rows"]
    assert counts["train_rows"] > 2 * evaluated.data.counts["train_rows"]  # 6 dates against 2, test people too
    data = run.refit.data
    assert sorted({str(d.date()) for d in data.dates}) == REFIT_DATES
    groups = person_groups(data.X_train.index.unique(), test_fraction=0.3, calibration_fraction=0.15, seed=42)
    assert set(groups) == {"train", "test"}  # the test people train now; the calibration people do not
    cal = person_groups(data.X_cal.index.unique(), test_fraction=0.3, calibration_fraction=0.15, seed=42)
    assert set(cal) == {"calibration"}
    assert set(evaluated.data.X_test.index) <= set(data.X_train.index)
    # The same settings, with the trees early stopping kept, and the same calibration.
    assert refit["trees"] == evaluated.model.metadata["best_iteration"]
    assert run.refit.model.estimator.booster_.num_trees() == refit["trees"]
    assert refit["calibration"] == cfg.model.calibration
    assert run.refit.model.estimator.get_params()["min_child_samples"] == \
        evaluated.model.estimator.get_params()["min_child_samples"]
    # evaluate recomputes who the refit saw: nobody is a held-out test person any more.
    design = run.refit.model.metadata["training_design"]
    assert design["index_dates"] == REFIT_DATES and design["refit"]["of_version"] == run.logged.model_version
    assert "test" not in set(training_groups(evaluated.data.X_test.index, design))


def test_refit_is_its_own_version_with_the_evaluation_it_inherits(trained):
    from mlflow import MlflowClient

    cfg, run = trained
    tracking.configure(cfg.tracking.uri)
    parent, refit = run.logged, run.refit_logged
    assert int(refit.model_version) == int(parent.model_version) + 1 and refit.run_id != parent.run_id
    client = MlflowClient()
    mv = client.get_model_version("test-refit", refit.model_version)
    m = run.result.metrics["lightgbm"]
    assert mv.tags[REFIT_OF_VERSION_TAG] == parent.model_version and mv.tags[REFIT_OF_RUN_TAG] == parent.run_id
    assert mv.tags["riskstrat.inherited.test_date"] == "2024-11-01"
    assert float(mv.tags["riskstrat.inherited.lightgbm.auroc"]) == pytest.approx(m["auroc"], abs=1e-4)
    assert mv.tags["riskstrat.refit_dates"] == ",".join(REFIT_DATES)
    assert f"inherits the evaluation of version {parent.model_version} at 2024-11-01" in mv.description
    assert client.get_model_version("test-refit", parent.model_version).tags[REFIT_VERSION_TAG] == refit.model_version
    got = client.get_run(refit.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.run_id  # nested under the evaluated run
    assert got.data.metrics["data.train_rows"] == run.refit.model.metadata["refit"]["counts"]["train_rows"]
    assert "lightgbm.auroc" not in got.data.metrics  # no figures of its own: it has seen every labelled outcome


def test_score_loads_the_refit_through_the_alias(trained):
    cfg, run = trained
    tracking.promote("test-refit", run.refit_logged.model_version, alias="refit-test", uri=cfg.tracking.uri)
    loaded = tracking.load_model("test-refit", alias="refit-test", uri=cfg.tracking.uri)
    X = run.result.data.X_test
    np.testing.assert_allclose(loaded.risk_model.predict_risk(X), run.refit.model.predict_risk(X), atol=1e-12)
    assert not np.allclose(run.refit.model.predict_risk(X), run.result.model.predict_risk(X))


# ----------------------------------------------------------------------------- the gate


def _evaluation(cfg, version: str, *, as_of: str, labels_end: str, metrics: dict, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.txt").write_text("hand-made evaluation")
    return tracking.log_evaluation_run(model_name="test-refit", model_version=version, model_run_id="x",
                                       tags={gates.AS_OF_TAG: as_of, gates.LABELS_END_TAG: labels_end},
                                       metrics=metrics, folder=folder, uri=cfg.tracking.uri)


def test_gate_judges_a_refit_by_its_parents_evaluation_until_its_own_is_out_of_sample(trained, tmp_path):
    cfg, run = trained
    parent, refit = run.logged.model_version, run.refit_logged.model_version

    def check():
        return check_promotion("test-refit", refit, uri=cfg.tracking.uri, card_dir=tmp_path)

    first = check()
    assert not first.passed and f"nor of version {parent}" in first.criteria[0].detail
    parent_run = _evaluation(cfg, parent, as_of="2024-11-01", labels_end="2024-10-31", metrics=GOOD,
                             folder=tmp_path / "parent")
    inherited = check()
    assert inherited.passed, inherited.criteria
    assert inherited.inherited_from == parent and inherited.evaluation_run_id == parent_run
    assert f"inherited from version {parent}" in inherited.criteria[0].detail
    # The parent's own verdict is the same evaluation, not inherited.
    own = check_promotion("test-refit", parent, uri=cfg.tracking.uri, card_dir=tmp_path)
    assert own.passed and own.inherited_from is None
    # An evaluation of the refit in its own training years is in-sample: the parent's still counts.
    _evaluation(cfg, refit, as_of="2024-11-01", labels_end="2025-11-01", metrics={**GOOD, "n_events": 5.0},
                folder=tmp_path / "in-sample")
    assert check().inherited_from == parent and check().passed
    # A later evaluation of the refit itself is the real check, and it wins, failed or not.
    later = _evaluation(cfg, refit, as_of="2025-11-01", labels_end="2025-11-01",
                        metrics={**GOOD, "candidate.calibration_slope": 1.6,
                                 "candidate.calibration_slope_ci_low": 1.45, "candidate.calibration_slope_ci_high": 1.75}, folder=tmp_path / "later")
    verdict = check()
    assert verdict.evaluation_run_id == later and verdict.inherited_from is None
    assert [c.name for c in verdict.failures()] == ["calibration slope"]


# ----------------------------------------------------------------------------- refit: none


def test_refit_none_registers_only_the_evaluated_version(data_dir, tmp_path, new_mlflow_store):
    from mlflow import MlflowClient

    uri = new_mlflow_store(tmp_path)
    cfg = load_config(None, [f"data.path={data_dir}", f"tracking.uri={uri}", "tracking.registered_model=no-refit",
                             "model.refit=none", *SMALL])
    run = run_training(cfg)
    assert run.refit is None and run.refit_logged is None
    versions = MlflowClient().search_model_versions("name='no-refit'")
    assert [str(v.version) for v in versions] == ["1"]
    assert REFIT_VERSION_TAG not in versions[0].tags and "refit" not in run.result.model.metadata


def test_no_tracking_fits_no_refit(data_dir):
    cfg = load_config(None, [f"data.path={data_dir}", *SMALL])
    assert cfg.model.refit == "latest"  # the default
    assert run_training(cfg, log=False).refit is None  # nothing registered: nothing to deploy


# ----------------------------------------------------------------------------- auto LightGBM settings


@pytest.mark.parametrize(("rows", "min_child_samples"), [(1_000, 20), (4_000, 20), (10_000, 40), (25_000, 100),
                                                         (50_000, 200), (2_000_000, 200)])
def test_auto_settings_scale_min_child_samples_with_the_training_rows(rows, min_child_samples):
    params, chosen = auto_lightgbm(LightGBMConfig(), n_rows=rows)
    assert chosen == {"n_estimators": 1500, "learning_rate": 0.03, "min_child_samples": min_child_samples}
    assert (params.n_estimators, params.learning_rate, params.min_child_samples) == (1500, 0.03, min_child_samples)


def test_explicit_settings_win_over_auto():
    cfg = load_config(None, ["model.lightgbm.min_child_samples=300", "model.lightgbm.learning_rate=auto"])
    assert cfg.model.lightgbm.learning_rate is None and cfg.model.lightgbm.n_estimators is None
    params, chosen = auto_lightgbm(cfg.model.lightgbm, n_rows=4_000)
    assert params.min_child_samples == 300 and "min_child_samples" not in chosen
    assert params.learning_rate == 0.03


def test_the_chosen_settings_are_logged(trained):
    import mlflow

    cfg, run = trained
    tracking.configure(cfg.tracking.uri)
    rows = run.result.data.counts["train_rows"]
    params = mlflow.get_run(run.logged.run_id).data.params
    assert params["lightgbm.min_child_samples"] == str(min(max(rows // 250, 20), 200))
    assert params["lightgbm.n_estimators"] == "40"  # set in the config: not auto
    assert params["lightgbm.auto"] == "learning_rate,min_child_samples"
    assert run.result.model.metadata["lightgbm_auto"] == ["learning_rate", "min_child_samples"]
