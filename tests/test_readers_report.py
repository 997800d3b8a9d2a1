"""The import report: which outcomes a data set can support, from hand-made canonical tables."""

from __future__ import annotations

import pandas as pd
import pytest

from riskstrat.data.readers import ImportSummary
from riskstrat.report.imports import OUTCOMES, format_import_report, import_report, supported_outcomes


def _persons(n: int = 3, deaths: int = 0) -> pd.DataFrame:
    return pd.DataFrame({
        "person_id": [f"p{i}" for i in range(n)],
        "practice_id": ["A1"] * (n - 1) + [None],
        "death_date": [pd.Timestamp("2020-01-01")] * deaths + [pd.NaT] * (n - deaths),
    })


def _spells(methods: dict[str, int], cost: float | None = None) -> pd.DataFrame:
    rows = [m for m, n in methods.items() for _ in range(n)]
    return pd.DataFrame({"person_id": "p0", "admission_date": pd.Timestamp("2020-01-01"),
                         "admission_method": pd.Categorical(rows), "cost": cost})


def _ae(n: int) -> pd.DataFrame:
    return pd.DataFrame({"person_id": ["p0"] * n, "arrival_date": pd.Timestamp("2020-01-01"), "cost": None})


def test_every_outcome_is_judged():
    verdict = supported_outcomes({"persons": _persons()})
    assert tuple(verdict) == OUTCOMES
    assert not any(v["supported"] for v in verdict.values())
    assert verdict["death"]["message"] == "no deaths recorded: death outcome not supported"
    assert verdict["high_cost"]["message"] == "no costs recorded: high_cost not supported"
    assert verdict["social_care_entry"]["message"] == "no social care data: social_care_entry not supported"


def test_method_not_recorded_points_to_unplanned_hospital_use():
    # Synthea-like: 15 of 49 emergency, 29 unknown, plenty of A&E
    tables = {"persons": _persons(), "inpatient_spells": _spells({"emergency": 15, "unknown": 29, "transfer": 5}),
              "ae_attendances": _ae(773)}
    verdict = supported_outcomes(tables)
    assert verdict["emergency_admission"] == {
        "supported": False, "events": 15,
        "message": "admission method mostly not recorded (15 of 49 spells emergency, 29 unknown): "
                   "use unplanned_hospital_use"}
    assert verdict["unplanned_hospital_use"]["supported"] is True
    # Its default counts the spells not recorded as planned: emergency and unknown, not the transfers.
    assert verdict["unplanned_hospital_use"]["events"] == 15 + 29 + 773
    assert "15 emergency spells + 29 of unknown method + 773 A&E attendances" in verdict["unplanned_hospital_use"]["message"]


def test_low_emergency_share_with_many_spells_is_not_recorded_either():
    tables = {"persons": _persons(), "inpatient_spells": _spells({"emergency": 120, "unknown": 3000}),
              "ae_attendances": _ae(10)}
    assert supported_outcomes(tables)["emergency_admission"]["supported"] is False  # 120 / 3120 < 5%


def test_recorded_method_supports_emergency_admission():
    tables = {"persons": _persons(deaths=2), "inpatient_spells": _spells({"emergency": 400, "elective": 600}),
              "ae_attendances": _ae(5)}
    verdict = supported_outcomes(tables)
    assert verdict["emergency_admission"]["supported"] is True
    assert verdict["emergency_admission"]["message"] == "400 of 1,000 spells emergency (0 unknown)"
    assert (verdict["death"]["supported"], verdict["death"]["events"]) == (True, 2)


def test_few_emergencies_without_ae_are_few_events_not_unrecorded():
    tables = {"persons": _persons(), "inpatient_spells": _spells({"emergency": 30, "elective": 30})}
    verdict = supported_outcomes(tables)
    assert verdict["emergency_admission"]["supported"] is True
    assert "fewer than 100 events" in verdict["emergency_admission"]["message"]
    assert "fewer than 100 events" in verdict["unplanned_hospital_use"]["message"]


@pytest.mark.parametrize("cost, supported", [(None, False), (0.0, False), (250.0, True)])
def test_costs_and_social_care(cost, supported):
    tables = {"persons": _persons(), "inpatient_spells": _spells({"elective": 2}, cost=cost),
              "social_care": pd.DataFrame({"person_id": ["p0"], "weekly_cost": [None]})}
    verdict = supported_outcomes(tables)
    assert verdict["high_cost"]["supported"] is supported
    assert verdict["social_care_entry"] == {
        "supported": True, "events": 1,
        "message": "1 social care services: fewer than 100 events cannot validate a model"}
    assert "fewer than" not in supported_outcomes(tables, min_events=1)["social_care_entry"]["message"]


def test_report_counts_people_without_practice_and_keeps_examples():
    from riskstrat.data.validate import ValidationReport

    summary = ImportSummary(source="hes")
    summary.source_rows = {"apc.csv": 10}
    summary.route("apc.csv", "inpatient_spells", 8)
    summary.drop("spells with a code", 2, ["ZZ", "ZZ", "Q1", "Q2", "Q3"])
    tables = {"persons": _persons(), "inpatient_spells": _spells({"elective": 8})}
    summary.finish(tables)
    report = import_report(summary, ValidationReport(), tables)
    assert report["people_without_practice"] == 1
    assert report["dropped"] == [{"reason": "spells with a code", "rows": 2, "examples": ["ZZ", "Q1", "Q2"]}]
    assert report["extract_end"] == "2020-01-01"
    text = format_import_report(report)
    assert "apc.csv: 10 -> inpatient_spells 8" in text
    assert "2  spells with a code (e.g. ZZ, Q1, Q2)" in text


def test_an_import_without_a_known_end_takes_it_from_the_event_volume_not_a_stray_date():
    # A reader that does not know the extract end wrote the latest event date to dataset.json: one
    # mistyped date (2025-02-14 after steady data to 2024-06) became the data end, explicit from then on.
    from riskstrat.report.imports import dataset_metadata
    from riskstrat.data.validate import ValidationReport

    days = [d for d in pd.date_range("2023-01-01", "2024-06-30") if d.day % 3 == 0] + [pd.Timestamp("2025-02-14")]
    tables = {"persons": _persons(), "ae_attendances": pd.DataFrame({"person_id": "p0", "arrival_date": days})}
    summary = ImportSummary(source="test")
    summary.finish(tables)
    assert summary.date_range[1] == "2025-02-14"
    assert dataset_metadata(summary)["extract_end"] == "2024-06-30"
    report = import_report(summary, ValidationReport(), tables)
    assert report["extract_end"] == "2024-06-30" and report["events_after_extract_end"] == 1
    assert "1 event after the data end (2024-06-30; latest 2025-02-14)" in format_import_report(report)


def test_social_care_costs_alone_do_not_support_high_cost():
    tables = {"persons": _persons(), "inpatient_spells": _spells({"elective": 2}, cost=None),
              "social_care": pd.DataFrame({"person_id": ["p0"], "weekly_cost": [300.0]})}
    verdict = supported_outcomes(tables)["high_cost"]
    assert verdict["supported"] is False and "no health-care costs recorded" in verdict["message"]


@pytest.mark.parametrize("bad, warned", [(5, False), (6, True)])  # of 100 present: 5% is the most left unsaid
def test_unreadable_values_are_printed_and_costs_past_five_percent_warned(bad, warned):
    from riskstrat.report.imports import unreadable_cost_issues
    from riskstrat.data.validate import ValidationReport

    summary = ImportSummary(source="synthea")
    summary.unreadable_values("enc.csv", "TOTAL_CLAIM_COST", "cost", pd.Series(["1"] * (100 - bad) + ["inf"] * bad),
                              pd.Series([False] * (100 - bad) + [True] * bad))
    dates = pd.Series(["2020-01-01"] + ["12/31/2020"] * 50)
    summary.unreadable_values("enc.csv", "STOP", "date", dates, dates.str.contains("/"))  # dates never warn
    issues = unreadable_cost_issues(summary)
    assert [(i.rule, i.severity, i.file, i.column, i.n_rows) for i in issues] == (
        [("unreadable_cost", "warning", "enc.csv", "TOTAL_CLAIM_COST", bad)] if warned else [])
    tables = {"persons": _persons()}
    summary.finish(tables)
    text = format_import_report(import_report(summary, ValidationReport(), tables))
    assert f"enc.csv: TOTAL_CLAIM_COST: {bad} of 100 cost values ({bad}.0%), e.g. ccc ({bad})" in text
    assert "enc.csv: STOP: 50 of 51 date values (98.0%), e.g. NN/NN/NNNN (50)" in text
    assert "12/31" not in text and "inf" not in text


def test_a_clean_column_is_not_reported():
    summary = ImportSummary(source="omop")
    summary.unreadable_values("cost.csv", "total_cost", "cost", pd.Series(["1", "2", None]),
                              pd.Series([False, False, True]))  # missing is not unreadable
    assert summary.unreadable == {}


def _registered(n: int) -> pd.DataFrame:
    """``n`` adults registered throughout, alive, with every column eligibility reads."""
    return pd.DataFrame({
        "person_id": [f"p{i}" for i in range(n)], "practice_id": "A1", "sex": "F", "deprivation_decile": 5,
        "ethnicity_group": "unknown", "birth_date": pd.Timestamp("1950-06-01"), "death_date": pd.NaT,
        "registration_start": pd.Timestamp("2000-01-01"), "registration_end": pd.NaT})


def _history_then_few(recent: int) -> dict[str, pd.DataFrame]:
    """500 costed A&E attendances of one person in 2015-2021 (plentiful over all years), then one each
    for ``recent`` other people in the latest testable horizon (2024-11-01 to 2025-10-31)."""
    old = pd.DataFrame({"person_id": "p0", "arrival_date": pd.date_range("2015-01-01", periods=500, freq="5D"),
                        "cost": 200.0})
    new = pd.DataFrame({"person_id": [f"p{i + 1}" for i in range(recent)],
                        "arrival_date": pd.Timestamp("2025-03-01"), "cost": 200.0})
    return {"persons": _registered(100), "ae_attendances": pd.concat([old, new], ignore_index=True)}


def test_can_support_counts_the_latest_testable_horizon_not_all_years():
    # All years hold 503 attendances (the old report said "yes" to both); the extract ends 2025-10-31,
    # so the latest test date is 2024-11-01 and its 12 months hold 3 events among 100 people.
    verdict = supported_outcomes(_history_then_few(3), extract_end="2025-10-31", data_start="2015-01-01")
    unplanned = verdict["unplanned_hospital_use"]
    assert unplanned["events"] == 503 and unplanned["recorded"] is True
    assert unplanned["supported"] is False
    h = unplanned["horizon"]
    assert (h["test_date"], h["eligible"], h["labelled"], h["events"], h["rate"]) == ("2024-11-01", 100, 100, 3, 0.03)
    # By hand: test 100 / (0.03 x 0.3) = 11,111.1 -> 11,112; training at 5 dates 100 / (0.03 x 0.55 x 5)
    # = 1,212.1 -> 1,213; calibration 50 / (0.03 x 0.15 x 5) = 2,222.2 -> 2,223.
    assert h["needed"] == {"training": 1213, "calibration": 2223, "test": 11112}
    assert unplanned["message"].startswith(
        "too small: 3 events per year at 2024-11-01 among 100 eligible people (rate 3.0%); about 11,112 people "
        "would be needed (test: 100 / (3.0% x 0.3), guards.min_events_test); all years: 0 emergency spells + "
        "503 A&E attendances")
    # The top 5% by cost among 100 people with 3 costed: the same 3 events, not 503.
    assert verdict["high_cost"]["supported"] is False and verdict["high_cost"]["horizon"]["events"] == 3


def test_enough_events_in_the_latest_horizon_is_yes():
    from riskstrat.modeling.config import GuardsConfig

    small = GuardsConfig(min_events_train=1, min_events_calibration=1, min_events_test=1)
    verdict = supported_outcomes(_history_then_few(30), extract_end="2025-10-31", data_start="2015-01-01",
                                 guards=small)["unplanned_hospital_use"]
    # 1 / (0.3 x 0.3) = 11.1 -> 12 people for the test part; 100 eligible meet it.
    assert verdict["horizon"]["needed"]["test"] == 12
    assert verdict["supported"] is True
    assert verdict["message"].startswith("30 events per year at 2024-11-01 among 100 eligible people (rate 30.0%)")


def test_import_report_prints_too_small_with_the_people_needed():
    from riskstrat.data.validate import ValidationReport

    tables = _history_then_few(3)
    summary = ImportSummary(source="test")
    summary.extract_end = "2025-10-31"
    summary.finish(tables)
    report = import_report(summary, ValidationReport(), tables)
    assert report["outcomes"]["unplanned_hospital_use"]["horizon"]["needed"]["test"] == 11112
    text = format_import_report(report)
    assert "  no  unplanned_hospital_use: too small: 3 events per year at 2024-11-01" in text
    assert "yes unplanned_hospital_use" not in text and "yes high_cost" not in text
