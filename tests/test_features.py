"""Features as of an index date T, checked by hand on tiny linked records, and for leakage.

Dates are written as ``at(n)``: n days after T (negative = before T). Windows count days before T:
0-3m is 1..91, 3-12m is 92..365, 12-24m is 366..730; an event on T itself belongs to the future.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskstrat.features.clinical import (CONTEXT_COLUMNS, FEATURE_NAMES, NO_EVENT_DAYS, eligible_persons,
                                         features_for_sources)
from riskstrat.features.reference import build_features
from riskstrat.features.words import describe_value, feature
from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import (
    ADMISSION_METHODS,
    BNF_CHAPTERS,
    EVENT_TABLES,
    LONG_TERM_CONDITIONS,
    SOCIAL_CARE_TYPES,
    TABLES,
)

T = pd.Timestamp("2024-01-01")


def at(days: int) -> pd.Timestamp:
    return T + pd.Timedelta(days=days)


def person(pid: str, birth: str = "1950-06-15", **kw) -> dict:
    return {"person_id": pid, "birth_date": birth, **kw}


# ----------------------------------------------------------------------------- eligibility


def test_eligibility_alive_registered_adults_on_the_index_date(make_records):
    records = make_records(persons=[
        person("alive"),
        person("died_before", death_date=at(-1)),
        person("died_on_T", death_date=T),
        person("died_after", death_date=at(30)),
        person("aged_17", birth="2006-06-01"),
        person("aged_18", birth="2005-06-01"),
        person("moved_away", registration_end=at(-1)),
        person("leaves_on_T", registration_end=T),
        person("registers_later", registration_start=at(10)),
    ])
    got = set(eligible_persons(records, T)["person_id"])
    assert got == {"alive", "died_on_T", "died_after", "aged_18", "leaves_on_T"}
    assert set(build_features(records, T).index) == got


def test_a_person_is_in_the_cohort_on_their_18th_birthday(make_records):
    records = make_records(persons=[person("birthday", birth="2006-01-01")])  # 18 on 2024-01-01 = T
    assert list(eligible_persons(records, T)["person_id"]) == ["birthday"]


def test_min_and_max_age_are_configurable(make_records):
    records = make_records(persons=[person("old", birth="1930-01-01"), person("young", birth="1990-01-01")])
    assert list(build_features(records, T, min_age=50).index) == ["old"]
    assert list(build_features(records, T, max_age=50).index) == ["young"]


def test_demographics(make_records):
    records = make_records(persons=[person("a", birth="1954-01-01", sex="female", deprivation_decile=2),
                                    person("b", birth="1980-01-01", sex="male", deprivation_decile=None)])
    f = build_features(records, T)
    assert f.loc["a", "age"] == pytest.approx(round((T - pd.Timestamp("1954-01-01")).days / 365.25, 2))
    assert f.loc["a", "age"] == pytest.approx(70.0, abs=0.01)
    assert (f.loc["a", "sex_female"], f.loc["b", "sex_female"]) == (1.0, 0.0)
    assert f.loc["a", "deprivation_decile"] == 2.0 and np.isnan(f.loc["b", "deprivation_decile"])
    assert list(f.columns[: len(FEATURE_NAMES)]) == list(FEATURE_NAMES)


# ----------------------------------------------------------------------------- hospital


def spell(pid, admitted, discharged=None, method="emergency", cost=None, diagnosis=None) -> dict:
    return {"person_id": pid, "admission_date": admitted, "discharge_date": discharged, "admission_method": method,
            "cost": cost, "primary_diagnosis": diagnosis}


@pytest.fixture(scope="module")
def hospital(make_records):
    # Spell costs are powers of two so the 12-month cost shows exactly which spells counted.
    records = make_records(
        persons=[person("a"), person("none")],
        inpatient_spells=[
            spell("a", at(-3), at(5), cost=1),        # 0-3m; spans T: 3 bed days before T
            spell("a", at(-91), at(-81), cost=2),     # 0-3m (last day of the window); 10 bed days
            spell("a", at(-92), at(-90), cost=4),     # 3-12m (first day); 2 bed days
            spell("a", at(-365), at(-365), cost=8),   # 3-12m (last day); 0 bed days
            spell("a", at(-366), at(-356), cost=16),  # 12-24m; outside the 12-month bed days and cost
            spell("a", at(-731), at(-700), cost=32),  # beyond the 2-year look-back
            spell("a", T, at(3), cost=64),            # on T: the future
            spell("a", at(-30), at(-28), method="elective", cost=128),
            spell("a", at(-200), at(-199), method="maternity", cost=256),
        ],
    )
    return build_features(records, T)


def test_emergency_admissions_fall_in_the_right_windows(hospital):
    a = hospital.loc["a"]
    assert a["emergency_admissions_0_3m"] == 2  # day 3 and day 91 before T, not day 0
    assert a["emergency_admissions_3_12m"] == 2  # days 92 and 365
    assert a["emergency_admissions_12_24m"] == 1  # day 366; day 731 is beyond the look-back
    assert a["elective_admissions_12m"] == 1


def test_emergency_bed_days_count_only_days_before_T(hospital):
    assert hospital.loc["a", "emergency_bed_days_12m"] == 3 + 10 + 2 + 0


def test_days_since_emergency_admission(hospital):
    assert hospital.loc["a", "days_since_emergency_admission"] == 3
    assert hospital.loc["none", "days_since_emergency_admission"] == NO_EVENT_DAYS


def test_hospital_cost_covers_the_12_months_before_T(hospital):
    # Spells from day 1 to 365 before T: 1 + 2 + 4 + 8 + elective 128 + maternity 256.
    assert hospital.loc["a", "cost_hospital_12m"] == 1 + 2 + 4 + 8 + 128 + 256


def test_people_without_events_get_zero_counts(hospital):
    none = hospital.loc["none"]
    for name in ("emergency_admissions_0_3m", "emergency_admissions_3_12m", "emergency_bed_days_12m",
                 "elective_admissions_12m", "cost_hospital_12m", "cost_total_12m"):
        assert none[name] == 0, name


def test_ae_outpatient_and_gp_windows(make_records):
    records = make_records(
        persons=[person("a"), person("none")],
        ae_attendances=[{"person_id": "a", "arrival_date": d, "admitted": False, "cost": c}
                        for d, c in ((at(-1), 1), (at(-91), 2), (at(-92), 4), (at(-400), 8), (T, 16))],
        outpatient_appointments=[
            {"person_id": "a", "appointment_date": at(-10), "attended": True, "cost": 32},
            {"person_id": "a", "appointment_date": at(-200), "attended": True, "cost": 64},
            {"person_id": "a", "appointment_date": at(-20), "attended": False, "cost": 0},
            {"person_id": "a", "appointment_date": at(-400), "attended": True, "cost": 128},
            {"person_id": "a", "appointment_date": T, "attended": False},
        ],
        gp_contacts=[{"person_id": "a", "contact_date": d, "cost": 1000}
                     for d in (at(-1), at(-91), at(-92), at(-365), at(-366), T)],
    )
    f = build_features(records, T)
    a = f.loc["a"]
    assert (a["ae_attendances_0_3m"], a["ae_attendances_3_12m"], a["ae_attendances_12_24m"]) == (2, 1, 1)
    assert a["days_since_ae"] == 1
    assert f.loc["none", "days_since_ae"] == NO_EVENT_DAYS
    assert (a["outpatient_attended_12m"], a["outpatient_missed_12m"]) == (2, 1)
    assert (a["gp_contacts_0_3m"], a["gp_contacts_3_12m"]) == (2, 2)
    assert a["cost_hospital_12m"] == 1 + 2 + 4 + 32 + 64  # A&E and outpatients within 12 months
    assert a["cost_primary_12m"] == 4 * 1000


# ----------------------------------------------------------------------------- conditions and medicines


def test_long_term_conditions_flags_count_and_years(make_records):
    records = make_records(
        persons=[person("a"), person("none")],
        ltc_register=[
            {"person_id": "a", "condition": "diabetes", "diagnosis_date": "2020-01-01"},  # 1461 days = 4.0 y
            {"person_id": "a", "condition": "diabetes", "diagnosis_date": "2022-01-01"},  # a later repeat
            {"person_id": "a", "condition": "copd", "diagnosis_date": "2023-07-02"},      # 183 days = 0.5 y
            {"person_id": "a", "condition": "heart_failure", "diagnosis_date": T},         # on T: not yet known
            {"person_id": "a", "condition": "dementia", "diagnosis_date": at(100)},
        ],
    )
    f = build_features(records, T)
    a = f.loc["a"]
    assert (a["ltc_diabetes"], a["ltc_copd"], a["ltc_heart_failure"], a["ltc_dementia"]) == (1, 1, 0, 0)
    assert a["ltc_count"] == 2
    assert a["ltc_diabetes_years"] == 4.0  # from the first diagnosis
    assert a["ltc_copd_years"] == 0.5
    assert np.isnan(a["ltc_heart_failure_years"])
    assert a["years_since_first_ltc"] == 4.0
    none = f.loc["none"]
    assert none["ltc_count"] == 0 and none["years_since_first_ltc"] == 0
    assert none[[f"ltc_{c}" for c in LONG_TERM_CONDITIONS]].eq(0).all()
    assert none[list(CONTEXT_COLUMNS)].isna().all()


def test_prescriptions_by_window_and_chapter(make_records):
    def item(days, chapter, cost=1.0):
        return {"person_id": "a", "issue_date": at(days), "bnf_chapter": chapter, "cost": cost}

    records = make_records(
        persons=[person("a")],
        prescriptions=[item(-1, "02"), item(-100, "02"), item(-50, "03"), item(-200, "01"),
                       item(-400, "04", 100.0), item(0, "06", 100.0)],
    )
    a = build_features(records, T).loc["a"]
    assert (a["rx_items_3m"], a["rx_items_12m"]) == (2, 4)
    assert (a["rx_bnf02_items_12m"], a["rx_bnf03_items_12m"], a["rx_bnf04_items_12m"], a["rx_bnf06_items_12m"]) == (
        2, 1, 0, 0)
    assert a["rx_chapters_12m"] == 3  # 01, 02 and 03: chapter 01 has no own count but is a chapter
    assert a["cost_primary_12m"] == 4.0


def test_items_of_an_unknown_chapter_count_as_items_not_as_a_chapter(make_records):
    records = make_records(persons=[person("a")], prescriptions=[
        {"person_id": "a", "issue_date": at(-10), "bnf_chapter": chapter} for chapter in ("unknown", "unknown", "02")])
    a = build_features(records, T).loc["a"]
    assert (a["rx_items_12m"], a["rx_chapters_12m"]) == (3, 1)


# ----------------------------------------------------------------------------- social care and cost


@pytest.fixture(scope="module")
def social(make_records):
    def service(pid, kind, start, end, weekly):
        return {"person_id": pid, "service_type": kind, "start_date": start, "end_date": end, "weekly_cost": weekly}

    records = make_records(
        persons=[person("home"), person("ended"), person("care_home"), person("none")],
        social_care=[
            service("home", "home_care", at(-70), None, 140.0),            # ongoing: 70 days in the year
            service("ended", "residential", at(-500), at(-100), 700.0),    # ended: 265 days in the year
            service("ended", "reablement", at(-200), at(-158), 350.0),     # 42 days
            service("care_home", "home_care", at(-400), at(-7), 70.0),     # 358 days, then
            service("care_home", "nursing", at(-7), None, 1050.0),         # 7 days in a nursing home
            service("none", "home_care", at(10), None, 140.0),             # starts after T
        ],
        gp_contacts=[{"person_id": "home", "contact_date": at(-5), "cost": 40.0}],
        inpatient_spells=[spell("home", at(-40), at(-30), cost=3000.0)],
    )
    return build_features(records, T)


def test_social_care_in_place_at_the_index_date(social):
    cols = ["home_care_at_index", "care_home_at_index", "reablement_12m", "social_care_weekly_cost",
            "days_since_social_care_start"]
    got = social.loc[["home", "ended", "care_home", "none"], cols]
    expected = pd.DataFrame(
        [[1, 0, 0, 140.0, 70], [0, 0, 1, 0.0, NO_EVENT_DAYS], [0, 1, 0, 1050.0, 7], [0, 0, 0, 0.0, NO_EVENT_DAYS]],
        index=got.index, columns=cols, dtype="float64")
    pd.testing.assert_frame_equal(got, expected)


def test_social_care_cost_is_prorated_over_the_12_months_before_T(social):
    assert social.loc["home", "cost_social_care_12m"] == pytest.approx(140 * 70 / 7)
    assert social.loc["ended", "cost_social_care_12m"] == pytest.approx(700 * 265 / 7 + 350 * 42 / 7)
    assert social.loc["care_home", "cost_social_care_12m"] == pytest.approx(70 * 358 / 7 + 1050 * 7 / 7)
    assert social.loc["none", "cost_social_care_12m"] == 0


def test_total_cost_is_hospital_plus_primary_plus_social_care(social):
    home = social.loc["home"]
    assert (home["cost_hospital_12m"], home["cost_primary_12m"]) == (3000.0, 40.0)
    assert home["cost_total_12m"] == pytest.approx(3000 + 40 + 1400)
    assert (social["cost_total_12m"] == social[["cost_hospital_12m", "cost_primary_12m",
                                                 "cost_social_care_12m"]].sum(axis=1)).all()


def test_frailty_deficits(make_records):
    records = make_records(
        persons=[person("frail", birth="1937-06-01"), person("fit", birth="1980-01-01")],
        ltc_register=[{"person_id": "frail", "condition": "copd", "diagnosis_date": "2015-01-01"},
                      {"person_id": "frail", "condition": "diabetes", "diagnosis_date": "2015-01-01"}],  # not a deficit
        inpatient_spells=[spell("frail", at(-40), at(-30), diagnosis="S72.0")],  # a fall and an emergency admission
        social_care=[{"person_id": "frail", "service_type": "home_care", "start_date": at(-20), "weekly_cost": 100.0}],
        prescriptions=[{"person_id": "frail", "issue_date": at(-d), "bnf_chapter": "02"} for d in range(1, 10)],
    )
    f = build_features(records, T)
    # COPD, fracture admission, emergency admission in 12 months, home care, age 86; 9 items are < 10.
    assert f.loc["frail", "frailty_deficits"] == 5
    assert f.loc["fit", "frailty_deficits"] == 0


def test_absent_sources_give_missing_features(make_records):
    f = build_features(make_records(persons=[person("a")]), T)
    assert np.isnan(f.loc["a", "emergency_admissions_0_3m"])
    assert np.isnan(f.loc["a", "home_care_at_index"])
    assert f.loc["a", "frailty_deficits"] == 0  # persons-only features still work


def test_features_for_sources_without_social_care():
    everything = features_for_sources(EVENT_TABLES)
    assert everything == list(FEATURE_NAMES)
    without = features_for_sources([s for s in EVENT_TABLES if s != "social_care"])
    social = {"home_care_at_index", "care_home_at_index", "reablement_12m", "social_care_weekly_cost",
              "days_since_social_care_start", "cost_social_care_12m"}
    assert social <= set(everything)
    assert set(everything) - set(without) == social
    assert {"age", "cost_total_12m", "frailty_deficits"} <= set(features_for_sources([]))


def test_dropping_social_care_leaves_its_features_missing(make_records):
    records = make_records(
        persons=[person("a")], gp_contacts=[{"person_id": "a", "contact_date": at(-5), "cost": 40.0}],
        social_care=[{"person_id": "a", "service_type": "home_care", "start_date": at(-70), "weekly_cost": 140.0}])
    assert build_features(records, T).loc["a", "cost_total_12m"] == 40 + 1400
    f = build_features(records.without("social_care"), T)
    assert f.loc["a", ["home_care_at_index", "cost_social_care_12m"]].isna().all()
    assert f.loc["a", "cost_total_12m"] == 40


# ----------------------------------------------------------------------------- no leakage


@pytest.fixture(scope="module")
def base(make_records) -> tuple[LinkedRecords, pd.DataFrame]:
    """Two people with events of every kind before, on, around and after T; and their features."""
    rows = {t: [] for t in EVENT_TABLES}
    for pid in ("a", "b"):
        for d in (-400, -100, -10, -2, 0, 5, 200):  # the spell from day -2 spans T
            rows["inpatient_spells"].append(spell(pid, at(d), at(d + 4), cost=1000.0, diagnosis="S72.0"))
            rows["ae_attendances"].append({"person_id": pid, "arrival_date": at(d), "admitted": True, "cost": 150.0})
            rows["outpatient_appointments"].append(
                {"person_id": pid, "appointment_date": at(d), "attended": d % 20 == 0, "cost": 120.0})
            rows["gp_contacts"].append({"person_id": pid, "contact_date": at(d), "cost": 35.0})
            rows["prescriptions"].append({"person_id": pid, "issue_date": at(d), "bnf_chapter": "02", "cost": 5.0})
        rows["ltc_register"] += [{"person_id": pid, "condition": "copd", "diagnosis_date": at(-900)},
                                 {"person_id": pid, "condition": "dementia", "diagnosis_date": at(30)}]
        rows["social_care"] += [
            {"person_id": pid, "service_type": "home_care", "start_date": at(-50), "end_date": at(20),
             "weekly_cost": 200.0},
            {"person_id": pid, "service_type": "residential", "start_date": at(20), "end_date": None,
             "weekly_cost": 800.0},
        ]
    records = make_records(persons=[person("a", birth="1940-01-01"), person("b", birth="1960-01-01", sex="male")],
                           **rows)
    return records, build_features(records, T)


_money = st.one_of(st.none(), st.floats(0, 50_000, allow_nan=False))
_after = st.integers(0, 800).map(at)  # on or after T


def _values(table: str, date) -> st.SearchStrategy[dict]:
    """Random values for one row of ``table`` dated ``date`` (on or after T)."""
    if table == "inpatient_spells":
        return st.fixed_dictionaries({
            "admission_date": st.just(date),
            "discharge_date": st.one_of(st.none(), st.integers(0, 60).map(lambda k: date + pd.Timedelta(days=k))),
            "admission_method": st.sampled_from(ADMISSION_METHODS),
            "primary_diagnosis": st.sampled_from([None, "S72.0", "J44.1", "W01"]), "cost": _money})
    if table == "ae_attendances":
        return st.fixed_dictionaries({"arrival_date": st.just(date), "admitted": st.sampled_from([None, True, False]),
                                      "cost": _money})
    if table == "outpatient_appointments":
        return st.fixed_dictionaries({"appointment_date": st.just(date), "attended": st.booleans(), "cost": _money})
    if table == "gp_contacts":
        return st.fixed_dictionaries({"contact_date": st.just(date), "cost": _money})
    if table == "ltc_register":
        return st.fixed_dictionaries({"condition": st.sampled_from(list(LONG_TERM_CONDITIONS)),
                                      "diagnosis_date": st.just(date)})
    if table == "prescriptions":
        return st.fixed_dictionaries({"issue_date": st.just(date), "bnf_chapter": st.sampled_from(list(BNF_CHAPTERS)),
                                      "cost": _money})
    assert table == "social_care"
    return st.fixed_dictionaries({
        "service_type": st.sampled_from(SOCIAL_CARE_TYPES), "start_date": st.just(date),
        "end_date": st.one_of(st.none(), st.integers(0, 400).map(lambda k: date + pd.Timedelta(days=k))),
        "weekly_cost": _money})


@st.composite
def _future_edits(draw):
    """A list of edits touching only what happens on or after T."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["add", "change", "delete", "extend"]))
        table = draw(st.sampled_from(EVENT_TABLES))
        pid = draw(st.sampled_from(["a", "b"]))
        values = draw(_values(table, draw(_after)))
        edits.append((kind, table, pid, values, draw(st.integers(0, 10**6)),
                      draw(st.one_of(st.none(), st.integers(0, 400)))))
    return edits


def _apply(records: LinkedRecords, edits, make_table) -> LinkedRecords:
    tables = {name: df.copy() for name, df in records.tables.items()}
    for kind, table, pid, values, pick, new_end in edits:
        df = tables[table]
        date_col = TABLES[table].event_date
        future = np.flatnonzero(df[date_col] >= T)
        if kind == "add" or (kind in ("change", "delete") and not len(future)):
            df = pd.concat([df, make_table(table, [{"person_id": pid, **values}])], ignore_index=True)
        elif kind == "change":
            i = future[pick % len(future)]
            new = make_table(table, [{"person_id": df.at[i, "person_id"], **values}])
            df = pd.concat([df.drop(index=i), new], ignore_index=True)
        elif kind == "delete":
            df = df.drop(index=future[pick % len(future)]).reset_index(drop=True)
        else:  # "extend": move the part after T of a spell or service that spans T
            end_col = {"inpatient_spells": "discharge_date", "social_care": "end_date"}.get(table)
            if end_col is None:
                continue
            spans = np.flatnonzero((df[date_col] < T) & (df[end_col].isna() | (df[end_col] >= T)))
            if len(spans):
                i = spans[pick % len(spans)]
                df.loc[i, end_col] = pd.NaT if new_end is None else at(new_end)
        tables[table] = df
    return LinkedRecords(tables)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=_future_edits())
def test_nothing_on_or_after_the_index_date_changes_any_feature(base, make_table, edits):
    records, before = base
    after = build_features(_apply(records, edits, make_table), T)
    pd.testing.assert_frame_equal(after, before)


def test_an_emergency_admission_before_T_does_change_the_features(base, make_table):
    records, before = base
    tables = dict(records.tables)
    tables["inpatient_spells"] = pd.concat(
        [tables["inpatient_spells"], make_table("inpatient_spells", [spell("a", at(-10), at(-8))])], ignore_index=True)
    after = build_features(LinkedRecords(tables), T)
    assert after.loc["a", "emergency_admissions_0_3m"] == before.loc["a", "emergency_admissions_0_3m"] + 1
    assert after.loc["b"].equals(before.loc["b"])


# ----------------------------------------------------------------------------- reasons in words


@pytest.mark.parametrize(("name", "value", "context", "text"), [
    ("emergency_admissions_0_3m", 3, None, "3 emergency admissions in the last 3 months"),
    ("emergency_admissions_3_12m", 1, None, "1 emergency admission 3 to 12 months ago"),
    ("ae_attendances_12_24m", 2, None, "2 A&E visits 1 to 2 years ago"),
    ("outpatient_missed_12m", 1, None, "1 missed outpatient appointment in the last 12 months"),
    ("days_since_emergency_admission", 61, None, "emergency admission 2 months ago"),
    ("days_since_emergency_admission", 1, None, "emergency admission 1 day ago"),
    ("days_since_ae", 10, None, "A&E visit 10 days ago"),
    ("ltc_heart_failure", 1, {"ltc_heart_failure_years": 4.2}, "heart failure (diagnosed 4 years ago)"),
    ("ltc_copd", 1, {"ltc_copd_years": 1.2}, "COPD (diagnosed 1 year ago)"),
    ("ltc_diabetes", 1, {"ltc_diabetes_years": 0.4}, "diabetes (diagnosed this year)"),
    ("ltc_diabetes", 1, None, "diabetes"),
    ("home_care_at_index", 1, {"days_since_social_care_start": 61}, "receives home care, started 2 months ago"),
    ("home_care_at_index", 1, None, "receives home care"),
    ("care_home_at_index", 1, {"days_since_social_care_start": 5}, "lives in a care home, started 5 days ago"),
    ("age", 86.4, None, "aged 86"),
    ("cost_hospital_12m", 12345.6, None, "hospital care costing £12,346 in the last 12 months"),
])
def test_describe_value_texts(name, value, context, text):
    assert describe_value(name, value, context=context) == text


@pytest.mark.parametrize(("name", "value"), [
    ("emergency_admissions_0_3m", 0),            # zero counts are no reason
    ("days_since_emergency_admission", NO_EVENT_DAYS),
    ("ltc_heart_failure", 0),
    ("home_care_at_index", 0),
    ("sex_female", 1),                           # never shown as a reason
    ("years_since_first_ltc", 12),
    ("emergency_admissions_0_3m", float("nan")),
])
def test_describe_value_gives_no_reason(name, value):
    assert describe_value(name, value) is None


def test_every_feature_has_a_description_and_unknown_names_fail():
    assert all(feature(n).description for n in FEATURE_NAMES)
    with pytest.raises(KeyError, match="unknown feature 'emergency_admisions_0_3m'"):
        describe_value("emergency_admisions_0_3m", 1)


@pytest.mark.parametrize("group, values, text", [
    ("emergency admissions", {"emergency_admissions_0_3m": 1, "emergency_admissions_3_12m": 1,
                              "days_since_emergency_admission": 12, "emergency_bed_days_12m": 1},
     "2 emergency admissions in the last 12 months, the last 12 days ago (1 day in hospital)"),
    ("emergency admissions", {"emergency_admissions_0_3m": 0, "emergency_admissions_3_12m": 0,
                              "emergency_admissions_12_24m": 1}, "1 emergency admission 1 to 2 years ago"),
    ("emergency admissions", {"emergency_admissions_0_3m": 0, "emergency_admissions_12_24m": 0}, None),
    ("A&E visits", {"ae_attendances_0_3m": 2, "ae_attendances_3_12m": 3, "days_since_ae": 70},
     "5 A&E visits in the last 12 months, the last 2 months ago"),
    ("GP contacts", {"gp_contacts_0_3m": 4, "gp_contacts_3_12m": 8}, "12 GP contacts in the last 12 months"),
    ("prescriptions", {"rx_items_12m": 40, "rx_chapters_12m": 5},
     "40 prescription items in the last 12 months, from 5 BNF chapters"),
    ("social care", {"care_home_at_index": 1, "home_care_at_index": 0, "days_since_social_care_start": 400},
     "lives in a care home, started 13 months ago"),
    ("long-term conditions", {"ltc_count": 1}, None),
    ("long-term conditions", {"ltc_count": 2, "ltc_copd": 1, "ltc_diabetes": 1, "ltc_asthma": 0},
     "2 long-term conditions: diabetes, COPD"),
    ("long-term conditions", {"ltc_count": 5, **{f"ltc_{c}": 1 for c in ("hypertension", "diabetes", "asthma", "copd",
                                                                          "chd")}},
     "5 long-term conditions: high blood pressure, diabetes, asthma, …"),
    ("ltc_copd", {"ltc_copd": 1, "ltc_copd_years": 0.4}, "COPD (diagnosed this year)"),
])
def test_describe_reason_speaks_for_a_group(group, values, text):
    from riskstrat.features.words import describe_reason

    assert describe_reason(group, values) == text


def test_every_feature_has_one_reason_group():
    from riskstrat.features.words import REASON_GROUPS, reason_group

    grouped = [name for names in REASON_GROUPS.values() for name in names]
    assert len(grouped) == len(set(grouped)) and set(grouped) <= set(FEATURE_NAMES)
    assert reason_group("emergency_admissions_3_12m") == "emergency admissions"
    assert reason_group("ltc_copd") == "ltc_copd"


def test_person_positions_of_a_categorical_match_a_lookup_of_every_row():
    from riskstrat.features.clinical import person_positions

    categories = pd.Index(["p3", "p1", "p9", "p2", "p7"], dtype="str")
    rows = pd.Series(pd.Categorical(["p1", "p9", None, "p2", "p1", "p7", "p3"], categories=categories))
    ids = pd.Index(["p2", "p1", "p5", "p3"], dtype="str")  # p5 has no rows; p9 and p7 are not asked for
    expected = [ids.get_loc(p) if isinstance(p, str) and p in ids else -1 for p in rows]
    assert person_positions(rows, ids).tolist() == expected == [1, -1, -1, 0, 1, -1, 3]
    assert person_positions(rows.astype("str"), ids).tolist() == expected  # the same without categories
    with pytest.raises(ValueError, match="duplicates"):
        person_positions(rows, pd.Index(["p1", "p2", "p1"], dtype="str"))
