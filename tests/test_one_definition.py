"""One definition of each rule: where two parts of riskstrat apply the same rule, they agree.

Age bands (training's subgroup table, the evaluation report, the lists' priority groups), the
metrics by group (training's table and the evaluation report's), the cohort (who is scored, and the
counts of who is not and why), the past year's use (the priority groups and the lists' columns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.evaluation import age_band, evaluate_scores, subgroup_attributes
from riskstrat.features.clinical import eligible_persons
from riskstrat.scoring.month import cohort_exclusions
from riskstrat.modeling.tiers import DEFAULT_GROUPS, group_flags
from riskstrat.scoring.lists import rank_population
from riskstrat.evaluation.held_out import evaluate

# Ages at every band's edges, in years (a birthday counts on the day: 40.0 is 40 completed years).
EDGE_AGES = [0.5, 17.99, 18.0, 39.99, 40.0, 54.5, 55.0, 55.99, 56.0, 64.99, 65.0, 74.99, 75.0, 84.99, 85.0, 101.0]


def test_training_and_the_evaluation_report_band_ages_alike():
    rng = np.random.default_rng(0)
    ages = np.repeat(EDGE_AGES, 4)
    y = np.tile([0, 1, 0, 1], len(EDGE_AGES))
    score = rng.uniform(size=len(y))
    meta = pd.DataFrame({"age": ages, "sex": "female", "ethnicity_group": "white"},
                        index=pd.Index([f"p{i}" for i in range(len(y))], name="person_id"))
    _, _, subgroups = evaluate(y, {"lightgbm": score}, meta, top_fractions=(0.05,), n_boot=2, seed=0)
    training = subgroups.by_group.loc["age band", "n"].astype(int).to_dict()
    report = subgroup_attributes(meta)["age band"].value_counts().to_dict()
    assert training == report
    assert {"under 18", "40-55", "56-64", "85+"} <= set(training)  # 40-55, not 40-54; under-18s apart


def test_training_and_the_evaluation_report_measure_groups_alike():
    # Small groups (fewer than 50 people, fewer than 20 events) and people of no recorded ethnic group
    # or practice: training's table is the report's, number for number.
    rng = np.random.default_rng(1)
    n = 300
    meta = pd.DataFrame({"age": rng.uniform(18, 95, n), "sex": rng.choice(["female", "male"], n),
                         "ethnicity_group": rng.choice(["white", "asian", None], n, p=[0.75, 0.15, 0.10]),
                         "practice_id": rng.choice(["A81001", "B82002", None], n, p=[0.6, 0.35, 0.05]),
                         "deprivation_decile": rng.choice([1.0, 4.0, 9.0, np.nan], n)},
                        index=pd.Index([f"p{i}" for i in range(n)], name="person_id"))
    prob = rng.uniform(0.01, 0.6, n)
    y = rng.binomial(1, prob)
    _, _, training = evaluate(y, {"lightgbm": prob}, meta, top_fractions=(0.05,), n_boot=2, seed=0)
    report = evaluate_scores(y, {"candidate": prob}, subgroup_attributes(meta), n_boot=2).subgroups
    # The report adds intervals and the prior-use comparison to the same table: training's columns are
    # the report's, number for number.
    assert set(training.by_group.columns) < set(report.by_group.columns)
    pd.testing.assert_frame_equal(training.by_group, report.by_group[training.by_group.columns])
    assert training.min_events == report.min_events == 20
    by_group = training.by_group
    assert {("ethnicity group", "unknown"), ("GP practice", "unknown")} <= set(by_group.index)
    small = by_group[by_group["n"] < 50]
    assert len(small) and small["auroc"].notna().all() and small["small"].all()  # shown, flagged, not blanked


def test_the_priority_groups_bands_are_the_report_bands():
    frame = pd.DataFrame({"age": EDGE_AGES, "emergency_admissions_0_3m": 0, "emergency_admissions_3_12m": 0,
                          "ae_attendances_0_3m": 0, "ae_attendances_3_12m": 0, "cost_total_12m": 0.0})
    groups = {g.name: g for g in DEFAULT_GROUPS}
    members = group_flags(frame, groups=[groups["prevention 40–55"], groups["care provision 85+"]])
    bands = age_band(frame["age"])
    np.testing.assert_array_equal(members["prevention 40–55"].to_numpy(), (bands == "40-55").to_numpy())
    np.testing.assert_array_equal(members["care provision 85+"].to_numpy(), (bands == "85+").to_numpy())


# Index date 2025-06-01; each person tests one edge of one rule.
COHORT = {
    # person: (birth_date, death_date, registration_start, registration_end), expected exclusion (None: scored)
    "18_today": (("2007-06-01", None, None, None), None),
    "18_tomorrow": (("2007-06-02", None, None, None), "younger_than_min_age"),
    "dies_on_the_date": (("1950-01-01", "2025-06-01", None, None), None),
    "died_the_day_before": (("1950-01-01", "2025-05-31", None, None), "died"),
    "leaves_on_the_date": (("1950-01-01", None, "2000-01-01", "2025-06-01"), None),
    "left_the_day_before": (("1950-01-01", None, "2000-01-01", "2025-05-31"), "not_registered"),
    "joins_on_the_date": (("1950-01-01", None, "2025-06-01", None), None),
    "joins_the_day_after": (("1950-01-01", None, "2025-06-02", None), "not_registered"),
    "died_and_left": (("1950-01-01", "2025-01-01", "2000-01-01", "2024-12-31"), "died"),
    "born_on_the_date": (("2025-06-01", None, None, None), "born_after_date"),
    "no_birth_date": ((None, None, None, None), "born_after_date"),
    "121": (("1904-01-01", None, None, None), "older_than_max_age"),
    "120_today": (("1905-06-01", None, None, None), None),
}


@pytest.mark.parametrize("min_age", [18, 0])
def test_who_is_scored_and_the_counts_of_who_is_not_follow_one_rule(make_records, min_age):
    records = make_records(persons=[
        {"person_id": pid, "birth_date": b, "death_date": d, "registration_start": rs, "registration_end": re}
        for pid, ((b, d, rs, re), _) in COHORT.items()])
    scored = set(eligible_persons(records, "2025-06-01", min_age=min_age, max_age=120)["person_id"])
    counts = cohort_exclusions(records, "2025-06-01", min_age=min_age, max_age=120)
    expected = {pid: why for pid, (_, why) in COHORT.items()
                if not (min_age == 0 and why == "younger_than_min_age")}
    assert scored == {pid for pid in COHORT if expected.get(pid) is None}
    reasons = ("died", "not_registered", "born_after_date", "younger_than_min_age", "older_than_max_age")
    assert counts == {r: sum(why == r for why in expected.values()) for r in reasons}
    assert len(scored) + sum(counts.values()) == len(COHORT)


def test_the_frequent_users_group_and_the_lists_past_year_columns_count_alike():
    # Missing periods (a source without the field), partial and full counts, on the edges 3 and 5.
    use = pd.DataFrame({
        "emergency_admissions_0_3m": [np.nan, np.nan, 1, 3, 0, 2, np.nan, 0],
        "emergency_admissions_3_12m": [np.nan, 3, 1, 0, 2, 0, np.nan, 0],
        "ae_attendances_0_3m": [np.nan, 0, np.nan, 0, 4, 5, 1, 2],
        "ae_attendances_3_12m": [np.nan, 0, 4, 0, 1, np.nan, 3, 2]},
        index=pd.Index([f"p{i}" for i in range(8)], name="person_id"))
    features = use.assign(practice_id="A81001", age=60.0, sex="female")
    frequent = next(g for g in DEFAULT_GROUPS if g.name == "frequent users")
    members = group_flags(features, groups=[frequent])["frequent users"]
    listed = rank_population(features, np.linspace(0.9, 0.1, len(features)), groups=[frequent]).set_index("person_id")
    admissions, ae = listed["emergency_admissions_12m"], listed["ae_attendances_12m"]
    shown = ((admissions >= frequent.min_emergency_admissions_12m) | (ae >= frequent.min_ae_attendances_12m))
    assert members.tolist() == shown.reindex(members.index).tolist() == [False, True, False, True, True, True, False, False]
    assert listed["groups"].reindex(members.index).eq("frequent users").tolist() == members.tolist()
    # Nothing recorded stays missing on the list (not a 0 the source never said).
    assert np.isnan(admissions["p0"]) and np.isnan(ae["p0"]) and np.isnan(admissions["p6"])
    # Without the columns the list shows the count missing; the group cannot be judged and says so.
    without = features.drop(columns=["ae_attendances_0_3m", "ae_attendances_3_12m"])
    assert rank_population(without, np.linspace(0.9, 0.1, 8), groups=[])["ae_attendances_12m"].isna().all()
    with pytest.raises(ValueError, match="ae_attendances_0_3m"):
        group_flags(without, groups=[frequent])
