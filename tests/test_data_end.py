"""The data end: an explicit extract end wins; else where the monthly event volume stops."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from riskstrat.data.data_end import DataEnd, UnknownDataEndError, data_end_of, month_counts, volume_end


def steady(first: str, last: str, *, per_month: int = 20, to_day: int = 28) -> list[str]:
    """``per_month`` event dates a month from ``first`` to ``last`` (months), spread over days 1..``to_day``."""
    return [str((month + pd.Timedelta(days=k * (to_day - 1) // (per_month - 1))).date())
            for month in pd.date_range(first, last, freq="MS") for k in range(per_month)]


def end_of(dates: list[str]) -> DataEnd:
    return volume_end(month_counts(pd.Series(pd.to_datetime(dates))))


@pytest.mark.parametrize(("extra", "end", "after"), [
    ([], "2024-06-28", 0),                                   # steady to the end: its last event
    (["2025-02-14"], "2024-06-28", 1),                       # a mistyped year: left out, counted
    (["2025-02-01", "2025-03-01", "2026-07-09"], "2024-06-28", 3),  # strays dated on the 1st too
    (steady("2024-07-01", "2024-07-01", to_day=9), "2024-07-09", 0),  # extract taken on the 10th: kept
    (["2024-07-02", "2024-07-03"], "2024-06-28", 2),        # two events early in the next month: too few
])
def test_the_end_is_where_the_monthly_volume_stops(extra, end, after):
    found = end_of(steady("2023-01-01", "2024-06-01") + extra)
    assert (found.end, found.source, found.events_after) == (pd.Timestamp(end), "event volume", after)
    assert (found.warning is None) == (after == 0)


def test_a_volume_that_halves_for_a_whole_year_is_the_new_normal():
    # A feed stops in 2023-06 (volume halves): the months after are judged against the year before them.
    found = end_of(steady("2022-01-01", "2023-05-01", per_month=40) + steady("2023-06-01", "2024-12-01", per_month=15))
    assert found.end == pd.Timestamp("2024-12-28") and found.events_after == 0


def test_small_data_with_one_event_a_month_end_at_the_latest_event():
    assert end_of(["2024-01-05", "2024-03-09", "2024-04-30"]).end == pd.Timestamp("2024-04-30")
    assert volume_end(month_counts(pd.Series([], dtype="datetime64[s]"))) == DataEnd(None)


def test_an_explicit_end_wins_over_the_events(tmp_path, make_records):
    records = make_records(persons=[{"person_id": "p", "birth_date": "1950-01-01"}],
                           gp_contacts=[{"person_id": "p", "contact_date": "2024-06-30"}])
    assert data_end_of(tmp_path, records, configured="2024-09-30") == DataEnd(pd.Timestamp("2024-09-30"),
                                                                              "data.extract_end")
    (tmp_path / "dataset.json").write_text(json.dumps({"extract_end": "2024-08-31"}))
    assert data_end_of(tmp_path, records) == DataEnd(pd.Timestamp("2024-08-31"), "dataset.json")


def test_no_end_and_no_events_is_refused_by_name(tmp_path, make_records):
    records = make_records(persons=[{"person_id": "p", "birth_date": "1950-01-01"}])
    with pytest.raises(UnknownDataEndError, match="set data.extract_end"):
        data_end_of(tmp_path, records).require(tmp_path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from riskstrat.data.synth import write_population

    out = tmp_path_factory.mktemp("data-end") / "synthetic"
    write_population(out, 300, start="2021-11-01", years=4, seed=3, truth_dates=[], n_futures=1)
    return out  # dataset.json: extract_end 2025-10-31


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_training_takes_the_data_end_from_the_volume_and_refuses_labels_past_it(synthetic, tmp_path,
                                                                                with_a_stray_event, engine):
    # The red team's case for training: one contact dated 2026-06-15 and no dataset.json made 2026-06-15
    # the extract end, so a test date of 2025-06-01 passed with labels the data do not cover.
    from riskstrat.modeling.config import load_config
    from riskstrat.outcomes.labels import CensoredIndexDateError
    from riskstrat.pipelines.train import run_training

    stray = with_a_stray_event(synthetic, tmp_path / "stray", "2026-06-15")
    cfg = load_config(None, [f"data.path={stray}", f"engine={engine}", "index_dates.train=[2024-01-01]",
                             "index_dates.test=2025-06-01"])
    with pytest.raises(CensoredIndexDateError, match=r"end of the data \(2025-10-31\)"):
        run_training(cfg, log=False)


def test_training_a_high_cost_model_on_data_without_health_care_costs_is_refused(synthetic, tmp_path,
                                                                                 without_health_costs):
    from riskstrat.modeling.config import load_config
    from riskstrat.outcomes import MissingCostsError
    from riskstrat.pipelines.train import run_training

    blank = without_health_costs(synthetic, tmp_path / "blank")
    cfg = load_config(None, [f"data.path={blank}", "engine=duckdb", "target.name=high_cost"])
    with pytest.raises(MissingCostsError, match="blank in every row of inpatient_spells"):
        run_training(cfg, log=False)
