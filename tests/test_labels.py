"""Outcome labels at an index date T on hand-made records.

T is 2024-01-01 and the horizon 365 days, so the label window is T .. T+364 (2024-12-30);
T+365 (2024-12-31) is outside. ``at(n)`` is n days after T.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.outcomes.labels import TARGETS, CensoredIndexDateError, build_labels, future_cost

T = pd.Timestamp("2024-01-01")
H = 365
EXTRACT_END = "2025-06-30"


def at(days: int) -> pd.Timestamp:
    return T + pd.Timedelta(days=days)


def person(pid: str, **kw) -> dict:
    return {"person_id": pid, "birth_date": "1950-01-01", **kw}


def emergency(pid: str, day: int, method: str = "emergency") -> dict:
    return {"person_id": pid, "admission_date": at(day), "discharge_date": at(day + 2), "admission_method": method}


def labels(records, **kw) -> dict[str, float]:
    ids = pd.Index(records.persons["person_id"])
    y = build_labels(records, T, ids, horizon_days=kw.pop("horizon_days", H),
                     extract_end=kw.pop("extract_end", EXTRACT_END), **kw)
    assert list(y.index) == list(ids)
    return {pid: (None if np.isnan(v) else v) for pid, v in y.items()}


# ----------------------------------------------------------------------------- emergency admission


@pytest.fixture(scope="module")
def admissions(make_records):
    return make_records(
        persons=[person(p) for p in ("on_T", "inside", "last_day", "on_T_plus_h", "before_only", "elective", "none")],
        inpatient_spells=[
            emergency("on_T", 0),
            emergency("inside", 100),
            emergency("last_day", H - 1),
            emergency("on_T_plus_h", H),
            emergency("before_only", -1),
            emergency("elective", 50, method="elective"),
        ],
    )


def test_emergency_admission_in_the_window(admissions):
    assert labels(admissions) == {"on_T": 1, "inside": 1, "last_day": 1, "on_T_plus_h": 0, "before_only": 0,
                                  "elective": 0, "none": 0}


def test_the_horizon_sets_the_window(admissions):
    y = labels(admissions, horizon_days=90)
    assert (y["on_T"], y["inside"], y["last_day"]) == (1, 0, 0)


@pytest.fixture(scope="module")
def deaths(make_records):
    return make_records(
        persons=[person("died", death_date=at(100)), person("died_after_admission", death_date=at(30)),
                 person("died_on_T", death_date=T), person("died_after_horizon", death_date=at(H)),
                 person("alive")],
        inpatient_spells=[emergency("died_after_admission", 10)],
    )


@pytest.mark.parametrize(("death", "expected"), [
    ("composite", {"died": 1, "died_after_admission": 1, "died_on_T": 1, "died_after_horizon": 0, "alive": 0}),
    ("exclude", {"died": None, "died_after_admission": 1, "died_on_T": None, "died_after_horizon": 0, "alive": 0}),
    ("negative", {"died": 0, "died_after_admission": 1, "died_on_T": 0, "died_after_horizon": 0, "alive": 0}),
])
def test_death_handling_for_emergency_admission(deaths, death, expected):
    assert labels(deaths, death=death) == expected


def test_death_target(deaths):
    assert labels(deaths, target="death") == {"died": 1, "died_after_admission": 1, "died_on_T": 1,
                                              "died_after_horizon": 0, "alive": 0}


# ----------------------------------------------------------------------------- censoring


@pytest.fixture(scope="module")
def movers(make_records):
    return make_records(
        persons=[person("left_quiet", registration_end=at(200)),
                 person("left_after_admission", registration_end=at(200)),
                 person("left_on_last_day", registration_end=at(H - 1)),
                 person("left_then_died", registration_end=at(50), death_date=at(60)),
                 person("stayed")],
        inpatient_spells=[emergency("left_after_admission", 20)],
    )


@pytest.mark.parametrize("target", ["emergency_admission", "death", "high_cost", "social_care_entry"])
def test_people_who_leave_before_the_horizon_ends_are_censored(movers, target):
    y = labels(movers, target=target, top_fraction=0.2)
    assert y["left_quiet"] is None
    assert y["left_on_last_day"] is not None and y["stayed"] is not None


def test_an_event_before_leaving_still_counts(movers):
    y = labels(movers)
    assert y["left_after_admission"] == 1
    assert y["left_then_died"] == 1  # death ends follow-up with the outcome
    assert labels(movers, target="death")["left_after_admission"] is None  # no death seen, left early


def test_index_date_whose_horizon_runs_past_the_extract_is_refused(admissions):
    # Window T .. T+364 = 2024-12-30: the extract must reach that day.
    assert labels(admissions, extract_end="2024-12-30")["inside"] == 1
    with pytest.raises(CensoredIndexDateError, match="on or before 2023-12-31"):
        labels(admissions, extract_end="2024-12-29")
    with pytest.raises(CensoredIndexDateError, match=r"2024-01-01 \+ 365 days runs past"):
        labels(admissions, extract_end="2024-06-30")


def test_unknown_target_is_refused(admissions):
    with pytest.raises(ValueError, match="unknown target 'readmission'"):
        labels(admissions, target="readmission")
    assert TARGETS == ("emergency_admission", "unplanned_hospital_use", "death", "high_cost", "social_care_entry")


# ----------------------------------------------------------------------------- high cost


@pytest.fixture(scope="module")
def costs(make_records):
    def service(pid, start, end, weekly, kind="home_care"):
        return {"person_id": pid, "service_type": kind, "start_date": start, "end_date": end, "weekly_cost": weekly}

    return make_records(
        persons=[person(f"gp{i}") for i in range(1, 9)] + [person("care_all_year"), person("care_late")],
        # gp1..gp8 cost 100..800 in the window; a GP contact on T+h and one before T do not count.
        gp_contacts=[{"person_id": f"gp{i}", "contact_date": at(10 * i), "cost": 100.0 * i} for i in range(1, 9)]
        + [{"person_id": "gp1", "contact_date": at(H), "cost": 10_000.0},
           {"person_id": "gp2", "contact_date": at(-1), "cost": 10_000.0}],
        social_care=[
            service("care_all_year", at(-100), None, 70.0),       # 365 days in the window: 3650
            service("care_late", at(H - 15), None, 350.0),        # 15 days: 750 (a full year would be 18,250)
            service("gp3", at(-300), at(-1), 5_000.0),            # ended before T: nothing
            service("gp4", at(H), None, 5_000.0),                 # starts after the window: nothing
        ],
    )


def test_future_cost_prorates_social_care(costs):
    ids = pd.Index(costs.persons["person_id"])
    got = future_cost(costs, T, ids, horizon_days=H)
    expected = pd.Series([100.0 * i for i in range(1, 9)] + [70 * 365 / 7, 350 * 15 / 7], index=ids)
    pd.testing.assert_series_equal(got, expected, check_names=False)


def test_high_cost_is_the_top_fraction_by_future_cost(costs):
    # Ten people, top 20%: the two highest costs, 3650 (care all year) and 800 (gp8); care_late's
    # prorated 750 is just below.
    y = labels(costs, target="high_cost", top_fraction=0.2)
    assert {p for p, v in y.items() if v == 1} == {"care_all_year", "gp8"}
    assert sum(v == 0 for v in y.values()) == 8


# ----------------------------------------------------------------------------- social care entry


def test_social_care_entry(make_records):
    def service(pid, kind, start, end=None):
        return {"person_id": pid, "service_type": kind, "start_date": start, "end_date": end, "weekly_cost": 200.0}

    records = make_records(
        persons=[person(p) for p in ("new_home_care", "new_care_home", "in_care", "in_care_moves", "ended_before",
                                     "reablement_only", "starts_after", "none")],
        social_care=[
            service("new_home_care", "home_care", at(30)),
            service("new_care_home", "residential", at(0)),
            service("in_care", "home_care", at(-100)),
            service("in_care_moves", "home_care", at(-100), at(40)),
            service("in_care_moves", "nursing", at(40)),
            service("ended_before", "home_care", at(-300), at(-10)),
            service("reablement_only", "reablement", at(10), at(52)),
            service("starts_after", "home_care", at(H)),
        ],
    )
    assert labels(records, target="social_care_entry") == {
        "new_home_care": 1, "new_care_home": 1, "in_care": None, "in_care_moves": None, "ended_before": 0,
        "reablement_only": 0, "starts_after": 0, "none": 0}
