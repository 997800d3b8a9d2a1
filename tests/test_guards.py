"""Guard rails: too few events, degenerate models, stale data, people without a practice, currency,
one exception root and no foreign warnings in the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.scoring import lists

from riskstrat.registry import tracking
from riskstrat.cli import app
from riskstrat.cli.app import foreign_warnings_hidden
from riskstrat.modeling.config import ConfigError, ScoringConfig, load_config
from riskstrat.errors import RiskstratError
from riskstrat.features.words import describe_reason, describe_value
from riskstrat.modeling.guards import (DegenerateModelError, InsufficientEventsError, StaleDataError, check_data_currency,
                              check_minimum_events, degenerate_reasons, likely_cause)
from riskstrat.data.io import DataFileError
from riskstrat.pipelines.score import run_scoring
from riskstrat.pipelines.train import run_training
from riskstrat.scoring.checks import ModelDataMismatchError
from riskstrat.data.records import LinkedRecords
from riskstrat.data.synth import write_population
from riskstrat.modeling.tiers import cost_band
from riskstrat.registry.tracking import RegistryError
from riskstrat.data.validate import ValidationError

# ----------------------------------------------------------------------------- one exception root


@pytest.mark.parametrize("error", [ConfigError, DataFileError, ValidationError, ModelDataMismatchError, RegistryError,
                                   InsufficientEventsError, DegenerateModelError, StaleDataError])
def test_riskstrat_refusals_share_one_root(error):
    assert issubclass(error, RiskstratError)


def test_the_older_errors_keep_their_builtin_bases():
    # Callers that caught ValueError / LookupError keep working.
    assert issubclass(ConfigError, ValueError) and issubclass(ModelDataMismatchError, ValueError)
    assert issubclass(RegistryError, LookupError)


# ----------------------------------------------------------------------------- minimum events


def test_enough_events_everywhere_returns_the_counts():
    counts = check_minimum_events({"training": [0, 1, 1, 0, 1], "test": [1, 0, 0]},
                                  minimums={"training": 2, "test": 1}, target="death")
    assert counts == {"training": {"rows": 5, "events": 3, "non_events": 2},
                      "test": {"rows": 3, "events": 1, "non_events": 2}}


def test_too_few_events_are_refused_with_the_part_the_counts_and_what_to_do():
    with pytest.raises(InsufficientEventsError, match=r"test: 7 events in 850 rows \(at least 100 needed\)") as exc:
        check_minimum_events({"training": np.r_[np.ones(150), np.zeros(1000)], "test": np.r_[np.ones(7), np.zeros(843)]},
                             minimums={"training": 100, "test": 100}, target="emergency_admission")
    message = str(exc.value)
    assert "training" not in message.split("\n")[1]  # only the short part is listed
    assert "temporal_only" in message and "guards.min_events_" in message


def test_too_few_non_events_are_refused_too():
    with pytest.raises(InsufficientEventsError, match="3 non-events"):
        check_minimum_events({"test": np.r_[np.ones(500), np.zeros(3)]}, minimums={"test": 100}, target="death")


def _persons(n: int, **extra) -> list[dict]:
    return [{"person_id": f"p{i}", "birth_date": "1950-01-01", **extra} for i in range(n)]


def test_unrecorded_admission_method_points_to_unplanned_hospital_use(make_records):
    records = make_records(
        persons=_persons(3),
        inpatient_spells=[{"person_id": "p0", "admission_date": "2024-01-01", "discharge_date": "2024-01-03",
                           "admission_method": "unknown"},
                          {"person_id": "p1", "admission_date": "2024-02-01", "discharge_date": "2024-02-02",
                           "admission_method": "elective"}],
        ae_attendances=[{"person_id": "p2", "arrival_date": "2024-03-01"}])
    cause = likely_cause(records, "emergency_admission")
    assert "only 0 of 2 inpatient spells are recorded as emergency admissions (1 have an unknown" in cause
    assert "target.name=unplanned_hospital_use" in cause
    with pytest.raises(InsufficientEventsError, match="likely cause: only 0 of 2 inpatient spells"):
        check_minimum_events({"test": [0, 0, 1]}, minimums={"test": 5}, target="emergency_admission", records=records)


def test_recorded_emergency_spells_are_not_blamed(make_records):
    records = make_records(persons=_persons(1), inpatient_spells=[
        {"person_id": "p0", "admission_date": "2024-01-01", "discharge_date": "2024-01-03",
         "admission_method": "emergency"}])
    assert likely_cause(records, "emergency_admission") == ""


def test_no_deaths_no_costs_and_no_social_care_are_named(make_records):
    records = make_records(persons=_persons(2), gp_contacts=[{"person_id": "p0", "contact_date": "2024-01-01"}])
    assert "no deaths are recorded" in likely_cause(records, "death")
    assert "no costs are recorded" in likely_cause(records, "high_cost")
    assert "no social care table" in likely_cause(records, "social_care_entry")
    dead = make_records(persons=_persons(1, death_date="2024-05-01"))
    assert likely_cause(dead, "death") == ""


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """400 synthetic people: too few for the default minimums, and a model that learns nothing."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    write_population(out, 400, start="2021-11-01", years=4, seed=3, truth_dates=[])
    return out


TINY = ["model.refit=none",  # one version per run: these tests count versions (tests/test_refit.py: the refit)
        "index_dates.train=[2023-08-01, 2023-11-01]", "index_dates.test=2024-11-01", "evaluation.n_bootstrap=50",
        "evaluation.figures=false"]


def test_training_refuses_too_few_events_before_fitting(tiny_data):
    cfg = load_config(None, [f"data.path={tiny_data}", *TINY])
    with pytest.raises(InsufficientEventsError, match=r"(?s)too few outcomes.*test: \d+ events in \d+ rows"):
        run_training(cfg, log=False)


# ----------------------------------------------------------------------------- degenerate models


@pytest.mark.parametrize("best_iteration, scores, ci, expected", [
    (120, [0.1, 0.2, 0.3, 0.4], (0.61, 0.80), []),
    (1, [0.1, 0.2, 0.3, 0.4], (0.61, 0.80), ["single-tree"]),
    (50, [0.1, 0.1, 0.2, 0.2], (0.61, 0.80), ["constant-score"]),
    (50, [0.1, 0.2, 0.3, 0.4], (0.45, 0.70), ["auroc-interval-includes-0.5"]),
    (50, [0.1, 0.2, 0.3, 0.4], (0.30, 0.42), ["auroc-interval-includes-0.5"]),  # worse than chance
    (50, [0.1, 0.2, 0.3, 0.4], (0.501, 0.60), []),
    (50, [0.1, 0.2, 0.3, 0.4], (float("nan"), float("nan")), ["auroc-interval-includes-0.5"]),
    (0, [0.3, 0.3, 0.3], (0.5, 0.5), ["single-tree", "constant-score", "auroc-interval-includes-0.5"]),
])
def test_degenerate_reasons(best_iteration, scores, ci, expected):
    assert degenerate_reasons(best_iteration=best_iteration, test_scores=scores, auroc_ci=ci) == expected


DEGENERATE = [*TINY, "guards.min_events_train=1", "guards.min_events_calibration=1", "guards.min_events_test=1",
              "model.lightgbm.min_child_samples=1000"]  # no split possible: one tree, a constant score


def test_a_degenerate_model_is_logged_but_not_registered(tiny_data, tmp_path, new_mlflow_store):
    import mlflow
    from mlflow import MlflowClient

    uri = new_mlflow_store(tmp_path)
    cfg = load_config(None, [f"data.path={tiny_data}", f"tracking.uri={uri}", "tracking.registered_model=tiny",
                             *DEGENERATE])
    with pytest.raises(DegenerateModelError, match="degenerate and was not registered") as exc:
        run_training(cfg)
    assert "single-tree" in exc.value.reasons and "constant-score" in exc.value.reasons
    run = exc.value.run
    assert run.logged.model_version is None and run.result.metrics["lightgbm"]["auroc"] == pytest.approx(0.5)
    logged = mlflow.get_run(run.logged.run_id)
    assert "single-tree" in logged.data.tags["riskstrat.degenerate"] and "lightgbm.auroc" in logged.data.metrics
    assert not MlflowClient().search_model_versions("name='tiny'")


def test_the_train_command_shows_a_refused_models_table_with_dates_chosen_for_it(tiny_data):
    # index_dates=auto: the table's title uses the dates the run chose (a crash here once).
    overrides = [o for o in DEGENERATE if not o.startswith("index_dates")] + ["index_dates=auto"]
    args = ["train", "--no-tracking", "--set", f"data.path={tiny_data}"]
    for o in overrides:
        args += ["--set", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "test set at 2024-11-01" in " ".join(result.output.split())  # the data end 2025-10-31, 365 days
    assert "degenerate and was not registered" in " ".join(result.output.split())


def test_a_degenerate_model_registered_on_request_is_refused_by_promote_and_score(tiny_data, tmp_path, new_mlflow_store):
    uri = new_mlflow_store(tmp_path)
    cfg = load_config(None, [f"data.path={tiny_data}", f"tracking.uri={uri}", "tracking.registered_model=tiny",
                             "guards.register_degenerate=true", *DEGENERATE])
    run = run_training(cfg)
    version = run.logged.model_version
    assert "single-tree" in tracking.degenerate_tag("tiny", version, uri=uri)
    with pytest.raises(DegenerateModelError, match="refusing to make it champion; pass --force"):
        tracking.promote("tiny", version, uri=uri)
    refused = CliRunner().invoke(app, ["promote", "tiny", version, "--tracking-uri", uri])
    assert refused.exit_code == 2 and "riskstrat.degenerate" in refused.output and "Traceback" not in refused.output
    forced = CliRunner().invoke(app, ["promote", "tiny", version, "--tracking-uri", uri, "--force",
                                      "--reason", "testing the override", "--card-dir", str(tmp_path / "models")])
    assert forced.exit_code == 0, forced.output
    with pytest.raises(DegenerateModelError, match="models.allow_degenerate=true"):
        tracking.load_model("tiny", uri=uri)
    loaded = tracking.load_model("tiny", uri=uri, allow_degenerate=True)
    assert loaded.degenerate and loaded.version == version


# ----------------------------------------------------------------------------- stale data


def test_scoring_date_within_the_lag_is_allowed_and_later_refused():
    assert check_data_currency("2025-12-01", "2025-10-31", max_lag_days=62) == pd.Timestamp("2026-01-01")
    check_data_currency("2026-01-01", "2025-10-31", max_lag_days=62)
    with pytest.raises(StaleDataError, match=r"data run to 2025-10-31 .* latest allowed date is 2026-01-01"):
        check_data_currency("2026-01-02", "2025-10-31", max_lag_days=62)


def test_score_refuses_stale_data_before_loading_anything(tiny_data, tmp_path):
    # No registry exists at this URI: the refusal comes first, from dataset.json's extract_end.
    result = CliRunner().invoke(app, ["score", "--as-of", "2026-06-01", "--data", str(tiny_data),
                                      "--out", str(tmp_path / "lists"), "--set", f"tracking.uri=sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "the data run to 2025-10-31" in text and "latest allowed date is 2026-01-01" in text
    assert "--allow-stale-data" in text and "Traceback" not in result.output
    assert not (tmp_path / "lists").exists()


def test_scoring_config_data_end_wins_over_dataset_json(tiny_data):
    cfg = load_config(None, [f"data.path={tiny_data}", "data.extract_end=2026-05-31"], model=ScoringConfig)
    from riskstrat.data.data_end import DataEnd, data_end_of

    found = data_end_of(cfg.data.path, configured=cfg.data.extract_end)
    assert found == DataEnd(pd.Timestamp("2026-05-31"), "data.extract_end")
    cfg = load_config(None, [f"data.path={tiny_data}"], model=ScoringConfig)
    assert data_end_of(cfg.data.path, configured=cfg.data.extract_end) == DataEnd(pd.Timestamp("2025-10-31"),
                                                                                  "dataset.json")


def test_allowed_stale_data_gets_past_the_check(tiny_data, tmp_path):
    cfg = load_config(None, [f"data.path={tiny_data}", "allow_stale_data=true",
                             f"tracking.uri=sqlite:///{tmp_path}/none.db"], model=ScoringConfig)
    with pytest.raises(RegistryError):  # the next step: no champion in an empty registry
        run_scoring(cfg, "2026-06-01")


# ----------------------------------------------------------------------------- people without a practice


def _features(practices: list) -> pd.DataFrame:
    n = len(practices)
    return pd.DataFrame({"practice_id": pd.array(practices, dtype="str"), "sex": ["female"] * n,
                         "age": np.linspace(50, 90, n), "emergency_admissions_0_3m": np.zeros(n),
                         "emergency_admissions_3_12m": np.zeros(n), "ae_attendances_0_3m": np.zeros(n),
                         "ae_attendances_3_12m": np.zeros(n), "cost_total_12m": np.zeros(n)},
                        index=pd.Index([f"p{i}" for i in range(n)], name="person_id"))


@pytest.fixture()
def mixed_population():
    practices = ["A1", "A1", None, "B2", "", "A1", None, "B2"]
    risk = np.array([0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.05, 0.6])
    pop = lists.rank_population(_features(practices), risk, predicted_cost=np.full(8, 2_000.0), currency="USD")
    return lists.mark_lists(pop, list_size=2, month="2026-11")


def test_people_without_a_practice_are_scored_and_ranked_among_themselves(mixed_population):
    pop = mixed_population.set_index("person_id")
    assert len(pop) == 8 and pop.loc[["p2", "p4", "p6"], "practice_id"].isna().all()  # blank is missing too
    assert pop.loc[["p2", "p4", "p6"], "practice_rank"].tolist() == [1, 2, 3]
    assert pop.loc[["p2", "p4", "p6"], "listed"].tolist() == [True, True, False]


def test_they_get_one_list_of_their_own_and_one_summary_row(mixed_population):
    per_list = lists.practice_lists(mixed_population, list_size=2)
    assert sorted(per_list) == ["A1", "B2", lists.NO_PRACTICE]
    assert per_list[lists.NO_PRACTICE]["Person ID"].tolist() == ["p2", "p4"]
    summary = lists.commissioner_summary(mixed_population, list_size=2, currency="USD")
    assert summary["practice_id"].tolist() == ["A1", "B2", "no registered practice", "all practices"]
    assert summary.set_index("practice_id").loc["no registered practice", "people"] == 3
    assert summary.set_index("practice_id").loc["all practices", "people"] == 8
    assert "predicted cost ($, all people)" in summary.columns and not [c for c in summary.columns if "£" in c]


def test_their_list_is_written_apart_with_the_data_end_and_the_outcome(mixed_population, tmp_path):
    per_list = lists.practice_lists(mixed_population, list_size=2)
    summary = lists.commissioner_summary(mixed_population, list_size=2)
    manifest = {"as_of": "2026-11-01", "data_end": "2026-10-31", "currency": "USD"}
    out = lists.write_month(tmp_path / "2026-11", population=mixed_population, practice_lists=per_list,
                            summary=summary, manifest=manifest,
                            changes=lists.changes_since(None, mixed_population, list_size=2),
                            words=lists.PageWords(outcome_words="an emergency admission or death"))
    assert sorted(p.name for p in (out / "practices").iterdir()) == ["A1", "B2"]
    apart = out / lists.NO_PRACTICE
    assert {p.name for p in apart.iterdir()} == {"list.csv", "list.xlsx", "list.html", "changes.csv"}
    page = (apart / "list.html").read_text()
    assert "people with no registered practice" in page and "Data run to 2026-10-31." in page
    assert "chance of an emergency admission or death in the next 12 months" in page
    assert pd.read_csv(apart / "list.csv").columns.tolist() == pd.read_csv(out / "practices/A1/list.csv").columns.tolist()
    from openpyxl import load_workbook

    about = [r[0] for r in load_workbook(out / "practices/A1/list.xlsx")["About this list"].iter_rows(values_only=True)]
    assert "Data run to 2026-10-31." in about
    recorded = json.loads((out / "manifest.json").read_text())
    assert f"{lists.NO_PRACTICE}/list.csv" in recorded["files"] and recorded["currency"] == "USD"


def test_a_practice_may_not_take_the_reserved_name():
    with pytest.raises(ValueError, match="may not be called"):
        lists.rank_population(_features([lists.NO_PRACTICE, "A1"]), [0.1, 0.2])


# ----------------------------------------------------------------------------- currency


def test_money_in_reasons_and_bands_is_in_the_data_sets_currency():
    assert describe_value("cost_hospital_12m", 12345.6) == "hospital care costing £12,346 in the last 12 months"
    assert describe_value("cost_hospital_12m", 12345.6, currency="USD") == \
        "hospital care costing $12,346 in the last 12 months"
    assert describe_reason("costs", {"cost_total_12m": 900.0}, currency="EUR") == \
        "health and care costs of €900 in the last 12 months"
    assert describe_value("cost_social_care_12m", 50.0, currency="NOK") == \
        "social care costing 50 NOK in the last 12 months"
    assert cost_band([500, 25_000], currency="USD").tolist() == ["under $1k", "$20k+"]
    assert cost_band([500], currency="NOK").tolist() == ["under 1k NOK"]


# ----------------------------------------------------------------------------- warnings


def test_foreign_warnings_are_hidden_and_our_own_shown():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with foreign_warnings_hidden():
            warnings.warn_explicit("X does not have valid feature names", UserWarning, "sklearn/base.py", 1,
                                   module="sklearn.base")
            warnings.warn_explicit("ours", UserWarning, "riskstrat/x.py", 1, module="riskstrat.x")
    assert [str(w.message) for w in caught] == ["ours"]


def test_a_command_prints_no_library_warning(monkeypatch, tmp_path):
    import riskstrat.pipelines.train

    def noisy_training(cfg, **kwargs):
        import pandas as pd  # noqa: F401

        warnings.warn_explicit("Setting an item of incompatible dtype is deprecated", FutureWarning,
                               "pandas/core/frame.py", 1, module="pandas.core.frame")
        warnings.warn_explicit("lbfgs failed to converge (status=1)", UserWarning, "sklearn/linear_model/_l.py", 1,
                               module="sklearn.linear_model._logistic")
        raise InsufficientEventsError("too few outcomes (stand-in)")

    monkeypatch.setattr(riskstrat.pipelines.train, "run_training", noisy_training)
    result = CliRunner().invoke(app, ["train", "--no-tracking"])
    assert result.exit_code == 2 and "too few outcomes (stand-in)" in result.output
    for foreign in ("Warning", "incompatible dtype", "lbfgs", "sklearn", "pandas"):
        assert foreign not in result.output


def test_os_errors_are_a_message_not_a_traceback(monkeypatch):
    import riskstrat.pipelines.train

    def full_disk(cfg, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(riskstrat.pipelines.train, "run_training", full_disk)
    result = CliRunner().invoke(app, ["train", "--no-tracking"])
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------- the people needed


def test_the_refusal_gives_the_rate_and_the_people_needed():
    # 3 events in 33 test rows: rate 9.1%; by hand 100 / (3/33 x 0.3) = 3,666.7 -> 3,667 eligible
    # people. Training has enough and is not listed.
    with pytest.raises(InsufficientEventsError) as exc:
        check_minimum_events({"training": np.r_[np.ones(150), np.zeros(1000)], "test": np.r_[np.ones(3), np.zeros(30)]},
                             minimums={"training": 100, "test": 100}, target="high_cost",
                             shares={"training": 2.75, "test": 0.3})
    message = str(exc.value)
    assert ("test: 3 events in 33 rows (at least 100 needed); rate 9.1%: about 3,667 eligible people would be "
            "needed (100 / (9.1% x 0.3))") in message
    assert "the data are too small for the guard minimums" in message.split("\n")[0]
    assert "training:" not in message


def test_a_part_without_events_by_chance_takes_the_rate_over_every_part():
    # calibration 0 of 10; over every part 6 events in 60 rows = 10%: 5 / (10% x 0.75) = 66.7 -> 67
    with pytest.raises(InsufficientEventsError, match=r"calibration: 0 events in 10 rows \(at least 5 needed\); "
                                                      r"rate over every part 10\.0%: about 67 eligible people"):
        check_minimum_events({"training": np.r_[np.ones(6), np.zeros(44)], "calibration": np.zeros(10)},
                             minimums={"training": 1, "calibration": 5}, target="death",
                             shares={"training": 2.75, "calibration": 0.75})


@pytest.mark.filterwarnings("ignore::riskstrat.data.privacy.PseudonymKeyWarning")  # a hand-made folder
def test_training_on_a_long_small_extract_says_how_many_people_would_be_needed(make_records, tmp_path):
    # 500 A&E attendances over 2015-2021 (plentiful over all years), then 20 people with one in the
    # latest testable horizon (test date 2024-11-01 for an extract ending 2025-10-31) among 100.
    import math

    from riskstrat.modeling.train import person_groups

    persons = [{"person_id": f"p{i}", "practice_id": "A1", "birth_date": "1950-06-01",
                "registration_start": "2000-01-01"} for i in range(100)]
    old = [{"person_id": "p0", "arrival_date": str(d.date())} for d in pd.date_range("2015-01-01", periods=500, freq="5D")]
    recent = [{"person_id": f"p{i}", "arrival_date": "2025-03-01"} for i in range(1, 21)]
    earlier = [{"person_id": f"p{i}", "arrival_date": "2023-03-01"} for i in range(21, 61)]
    records = make_records(persons=persons, ae_attendances=old + recent + earlier)
    cfg = load_config(None, [f"data.path={tmp_path}", "data.extract_end=2025-10-31", "index_dates=auto",
                             "target.name=unplanned_hospital_use"])
    with pytest.raises(InsufficientEventsError) as exc:
        run_training(cfg, records=records, log=False)
    # By hand from the split: the test people among the 100, and among the 20 with an event.
    groups = person_groups([p["person_id"] for p in persons], test_fraction=0.3, calibration_fraction=0.15, seed=42)
    rows = int((groups == "test").sum())
    events = int((groups[[f"p{i}" for i in range(1, 21)]] == "test").sum())
    needed = math.ceil(round(100 / (events / rows * 0.3), 6))
    assert (f"test: {events} events in {rows} rows (at least 100 needed); rate {events / rows:.1%}: about "
            f"{needed:,} eligible people would be needed (100 / ({events / rows:.1%} x 0.3))") in str(exc.value)
