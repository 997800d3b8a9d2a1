"""Validation against hostile and implausible input: future and ancient dates, unsafe ids, newer
schema versions, and (Hypothesis) randomly damaged tables that must give a report or riskstrat's
own error, never a pandas or numpy traceback."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_validate import changed, only, valid_tables, write_csvs

from riskstrat.errors import RiskstratError
from riskstrat.data.io import dataset_metadata, read_table_file
from riskstrat.data.schema import SCHEMA_VERSION, SchemaVersionError
from riskstrat.data.validate import load_records, validate_tables


@pytest.mark.parametrize(("value", "what"), [("2099-01-01", "in the future"), ("1850-06-01", "before 1900")])
def test_implausible_birth_dates_are_flagged_with_counts(value, what):
    records, report = validate_tables(changed("persons", 1, "birth_date", value))
    issue = only(report, "implausible_birth_date")
    assert issue.severity == "warning" and issue.n_rows == 1 and what in issue.message and "row 2" in issue.message


def test_an_event_dated_in_the_future_is_dropped_and_counted():
    tables = changed("gp_contacts", 0, "contact_date", "2099-03-01")
    records, report = validate_tables(tables, latest_date="2024-12-31")
    issue = only(report, "future_event")
    assert issue.n_rows == 1 and "2099-03-01" in issue.message and "after the end of the data (2024-12-31)" in issue.message
    assert report.dropped["gp_contacts"] == 1
    # The defect: one event dated 2099 moved the extract end (the latest event) and let a censored test date through.
    assert records.date_range()[1] < pd.Timestamp("2025-01-01")


def test_a_future_event_does_not_move_the_extract_end_of_records_built_by_hand(make_records, tmp_path):
    from riskstrat.data.data_end import data_end_of

    records = make_records(persons=[{"person_id": "p", "birth_date": "1950-01-01"}],
                           gp_contacts=[{"person_id": "p", "contact_date": "2024-06-30"},
                                        {"person_id": "p", "contact_date": "2099-01-01"}])
    assert data_end_of(tmp_path, records).end == pd.Timestamp("2024-06-30")


def test_events_after_the_data_sets_extract_end_are_dropped(tmp_path):
    folder = write_csvs(changed("gp_contacts", 0, "contact_date", "2023-12-01"), tmp_path / "data")
    (folder / "dataset.json").write_text(json.dumps({"extract_end": "2023-06-30"}))
    records = load_records(folder)
    assert records.get("gp_contacts")["contact_date"].max() <= pd.Timestamp("2023-06-30")


@pytest.mark.parametrize("practice", ["../../etc", "A81/001", "..", "A81\x00001", "A81 001", "x" * 65,
                                      "no-registered-practice"])
def test_an_unsafe_practice_id_is_rejected_with_its_row(practice):
    # The defect: it passed validation, then blocked every practice's month at the very end.
    records, report = validate_tables(changed("persons", 2, "practice_id", practice))
    issue = only(report, "unsafe_practice_id")
    assert records is None and issue.n_rows == 1 and "row 3" in issue.message


def test_a_practice_id_with_surrounding_spaces_is_stripped_and_safe():
    records, report = validate_tables(changed("persons", 2, "practice_id", " A81003 "))
    assert report.ok and records.persons["practice_id"].iloc[2] == "A81003"
    assert not report.issues  # one spelling: nothing merged, nothing to say


@pytest.mark.parametrize(("practice", "shown"), [("a81001", "'a81001'"), ("\uff4181001", None),
                                                 ("\uff21\uff18\uff11\uff10\uff10\uff11", None),
                                                 ("a81001\n", "'a81001\\n'")])
def test_practice_ids_equal_but_for_case_or_unicode_form_are_refused_naming_them(practice, shown):
    # The defect: A81001 and a81001 passed as two practices; on a case-insensitive file system (macOS,
    # Windows, SMB shares) their folders and reidentify look-ups are one, so one practice saw the other's list.
    # Rows 1 and 3 are A81001 in the valid set; row 2 (A81002) is respelled.
    records, report = validate_tables(changed("persons", 1, "practice_id", practice))
    issue = only(report, "practice_id_case_collision")
    assert records is None and issue.severity == "error" and issue.n_rows == 3
    assert "'A81001' (2 rows)" in issue.message and (shown or repr(practice)) in issue.message
    assert "case-insensitive file system" in issue.message


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_practice_id_is_a_report_not_a_crash(blank):
    # The defect (found by the randomly damaged tables below): a blank practice id became a missing
    # value in pandas 3's string column, and the case-collision check passed it to unicodedata: TypeError.
    records, report = validate_tables(changed("persons", 1, "practice_id", blank))
    assert not [i for i in report.issues if i.rule.startswith("practice_id_case") or i.rule == "practice_id_trimmed"]
    assert records is None or records.persons["practice_id"].iloc[1] != blank


def test_a_practice_id_written_with_white_space_beside_its_plain_spelling_is_merged_and_said():
    # The defect: "A81001\n" was trimmed into A81001 without a word.
    records, report = validate_tables(changed("persons", 1, "practice_id", "A81001\n"))
    issue = only(report, "practice_id_trimmed")
    assert report.ok and issue.severity == "warning" and issue.n_rows == 3
    assert issue.examples == ("'A81001' (2 rows), 'A81001\\n' (1 row)",)
    assert records.persons["practice_id"].tolist() == ["A81001"] * 3


@pytest.mark.parametrize(("table", "column", "value"), [
    ("persons", "person_id", "P\x1b[31m9"), ("persons", "person_id", "P" * 300),
    ("inpatient_spells", "primary_diagnosis", "I50\x07"), ("prescriptions", "drug_code", "=cmd\r|calc"),
])
def test_ids_and_codes_with_control_characters_or_absurd_length_are_rejected(table, column, value):
    tables = changed(table, 0, column, value)
    if table == "persons":  # keep the person's events linked to the new id
        for name in ("inpatient_spells", "ae_attendances", "outpatient_appointments", "gp_contacts", "ltc_register",
                     "prescriptions"):
            tables[name] = tables[name].replace({"person_id": {"P1": value}})
    records, report = validate_tables(tables)
    issues = [i for i in report.issues if i.rule == "unsafe_value" and i.table == table]
    assert records is None and len(issues) == 1
    assert issues[0].column == column and "row 1" in issues[0].message


def test_a_newer_schema_version_is_refused_naming_both_versions(tmp_path):
    table = pa.table({"person_id": ["p"]}).replace_schema_metadata({"riskstrat_schema_version": "9.3"})
    pq.write_table(table, tmp_path / "persons.parquet")
    with pytest.raises(SchemaVersionError, match=rf"schema version 9.3, newer than version {SCHEMA_VERSION}"):
        read_table_file(tmp_path / "persons.parquet")
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": "2.0"}))
    with pytest.raises(SchemaVersionError, match=rf"dataset.json was written for riskstrat schema version 2.0.*"
                                                 rf"{SCHEMA_VERSION}"):
        dataset_metadata(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION}))
    assert dataset_metadata(tmp_path)["schema_version"] == SCHEMA_VERSION


# ----------------------------------------------------------------------------- properties

_DAMAGE = st.one_of(st.none(), st.text(max_size=12), st.integers(-10**6, 10**6).map(str),
                    st.sampled_from(["", " ", "NaN", "2099-13-45", "1e309", "-0", "true", "..", "\x00", "=1+1"]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=st.lists(st.tuples(st.sampled_from(sorted(valid_tables())), st.integers(0, 2), st.integers(0, 8),
                                _DAMAGE), min_size=1, max_size=6),
       drop_column=st.one_of(st.none(), st.tuples(st.sampled_from(sorted(valid_tables())), st.integers(0, 8))))
def test_randomly_damaged_tables_give_a_report_or_riskstrats_error(cells, drop_column):
    tables = valid_tables()
    for name, row, col, value in cells:
        df = tables[name]
        if row < len(df):
            df.iloc[row, col % df.shape[1]] = value
    if drop_column is not None:
        name, col = drop_column
        tables[name] = tables[name].drop(columns=tables[name].columns[col % tables[name].shape[1]])
    try:
        records, report = validate_tables(tables)
    except RiskstratError:
        return
    assert (records is None) == (not report.ok)
    report.format()
    json.dumps(report.to_dict())
