"""Validation: one hand-made bad input per rule, canonical dtypes for good input, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.data import io
from riskstrat.data.io import DataFileError, read_raw_tables, write_records_tables
from riskstrat.data.schema import TABLES, pandas_dtype
from riskstrat.data.validate import (
    ValidationError,
    ValidationReport,
    load_records,
    validate_data_dir,
    validate_tables,
)

# A tiny linked data set written as a CSV export would arrive: every value text, blanks missing.
# P1 is alive with heart failure; P2 is young and uses little; P3 died on 2023-06-30.
ROWS = {
    "persons": [
        ("P1", "1940-05-01", "female", "3", "white", "A81001", "2000-01-01", None, None),
        ("P2", "1975-02-01", "male", None, None, "A81002", None, None, None),
        ("P3", "1930-01-01", "female", "10", "asian", "A81001", "1995-04-01", "2023-06-30", "2023-06-30"),
    ],
    "inpatient_spells": [
        ("P1", "2022-01-10", "2022-01-15", "emergency", "I50.0", "2500"),
        ("P3", "2023-01-02", "2023-01-09", "elective", "C50.9", "1800.50"),
    ],
    "ae_attendances": [("P1", "2022-01-10", "true", "150"), ("P2", "2022-05-01", "no", "120")],
    "outpatient_appointments": [("P1", "2022-03-01", "cardiology", "1", "130"),
                                ("P2", "2022-04-01", None, "0", None)],
    "gp_contacts": [("P1", "2021-12-01", "face to face", "39"), ("P3", "2023-03-01", "telephone", None)],
    "ltc_register": [("P1", "heart_failure", "2015-06-01"), ("P3", "cancer", "2020-02-01")],
    "prescriptions": [("P1", "2022-02-01", "02", "0202010B0", "3.20"), ("P2", "2022-02-03", "4", None, "1.5")],
    "social_care": [("P3", "home_care", "2022-06-01", "2023-06-30", "350")],
}


def valid_tables() -> dict[str, pd.DataFrame]:
    # The optional record_id column (last) is left out: most extracts have none.
    return {name: pd.DataFrame(rows, columns=TABLES[name].column_names[:len(rows[0])], dtype=str)
            for name, rows in ROWS.items()}


def changed(table: str, row: int, column: str, value, tables=None) -> dict[str, pd.DataFrame]:
    """The valid set with one cell replaced."""
    tables = tables or valid_tables()
    df = tables[table].copy()
    df.loc[row, column] = value
    return {**tables, table: df}


def only(report: ValidationReport, rule: str):
    found = [i for i in report.issues if i.rule == rule]
    assert len(found) == 1, report.format()
    return found[0]


def write_csvs(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_csv(folder / f"{name}.csv", index=False)
    return folder


FILES = {name: Path(f"/data/{name}.csv") for name in ROWS}


# ----------------------------------------------------------------------------- valid data


def test_valid_tables_pass_and_come_back_in_canonical_dtypes():
    records, report = validate_tables(valid_tables())
    assert report.ok and report.issues == []
    assert report.row_counts == {name: len(rows) for name, rows in ROWS.items()}
    assert report.dropped == {}
    for name, df in records.tables.items():
        # Every schema column, except record_id when the input has none (it only tells repeats apart).
        assert list(df.columns) == [c for c in TABLES[name].column_names if c != "record_id"]
        for col in TABLES[name].columns:
            if col.name == "record_id":
                continue
            if name != "persons" and col.name == "person_id":
                # Events key people by a categorical over the persons' ids (4 bytes a row).
                assert isinstance(df[col.name].dtype, pd.CategoricalDtype), name
                assert df[col.name].cat.categories.equals(pd.Index(records.persons["person_id"]))
                continue
            assert df[col.name].dtype == pandas_dtype(col), (name, col.name)
    persons = records.persons
    assert persons["birth_date"].iloc[0] == pd.Timestamp("1940-05-01")
    assert persons["deprivation_decile"].tolist() == [3, pd.NA, 10]
    assert records.get("ae_attendances")["admitted"].tolist() == [True, False]
    assert records.get("outpatient_appointments")["attended"].tolist() == [True, False]
    assert records.get("prescriptions")["bnf_chapter"].tolist() == ["02", "04"]  # "4" zero-padded
    assert records.get("inpatient_spells")["cost"].tolist() == [2500.0, 1800.5]


def test_absent_optional_columns_are_added_as_missing():
    tables = valid_tables()
    tables["persons"] = tables["persons"].drop(columns=["ethnicity_group", "death_date"])
    tables["inpatient_spells"] = tables["inpatient_spells"].drop(columns=["cost"])
    records, report = validate_tables(tables)
    assert report.ok, report.format()
    assert records.persons["ethnicity_group"].isna().all()
    assert records.persons["death_date"].dtype == "datetime64[s]"
    assert records.get("inpatient_spells")["cost"].dtype == "float64"


def test_typed_parquet_input_gives_the_same_records(tmp_path):
    records, _ = validate_tables(valid_tables())
    write_records_tables(records.tables, tmp_path / "linked")
    raw, files = read_raw_tables(tmp_path / "linked")
    # Compact in memory: date32 arrives as datetime64 (not datetime.date objects), text as categoricals.
    assert pd.api.types.is_datetime64_dtype(raw["persons"]["birth_date"].dtype)
    assert isinstance(raw["gp_contacts"]["person_id"].dtype, pd.CategoricalDtype)
    again, report = validate_tables(raw, files=files)
    assert report.ok, report.format()
    for name, df in records.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], df)


def test_lazy_tables_give_the_same_records_and_errors(tmp_path, monkeypatch):
    real_read = io.read_table_file
    records, _ = validate_tables(valid_tables())
    write_records_tables(records.tables, tmp_path / "linked")
    files = io.table_files(tmp_path / "linked")
    lazy = io.LazyTables(files)
    assert set(lazy) == set(records.tables)
    reads = []
    monkeypatch.setattr(io, "read_table_file", lambda path: reads.append(path.name) or real_read(path))
    validate_tables(lazy, files=files)
    assert sorted(reads) == sorted(p.name for p in files.values())  # each file read once
    again, report = validate_data_dir(tmp_path / "linked")
    assert report.ok, report.format()
    for name, df in records.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], df)
    # An unknown person in one event table is still found when tables are read one at a time.
    gp = records.tables["gp_contacts"].assign(person_id=lambda d: d["person_id"].astype(str))
    gp.loc[0, "person_id"] = "nobody"
    write_records_tables({**records.tables, "gp_contacts": gp}, tmp_path / "linked")
    none, report = validate_data_dir(tmp_path / "linked")
    assert none is None
    assert [i.rule for i in report.errors] == ["unknown_person"]
    assert report.errors[0].examples == ("row 1: n…y (6 chars)",)


def test_typed_columns_are_coerced():
    # What other readers hand over: tz-aware timestamps, numbers for codes, floats for small ints.
    tables = valid_tables()
    tables["persons"] = tables["persons"].assign(
        birth_date=pd.to_datetime(["1940-05-01 23:30", "1975-02-01 00:00", "1930-01-01 08:00"]).tz_localize("Europe/London"),
        deprivation_decile=[3.0, np.nan, 10.0])
    tables["prescriptions"] = tables["prescriptions"].assign(bnf_chapter=[2, 4], cost=[3.2, np.nan])
    tables["ae_attendances"] = tables["ae_attendances"].assign(admitted=[True, False])
    records, report = validate_tables(tables)
    assert report.ok, report.format()
    assert records.persons["birth_date"].tolist() == [pd.Timestamp(d) for d in ("1940-05-01", "1975-02-01",
                                                                                 "1930-01-01")]
    assert records.persons["deprivation_decile"].dtype == "Int16"
    assert records.get("prescriptions")["bnf_chapter"].tolist() == ["02", "04"]
    assert records.get("ae_attendances")["admitted"].dtype == "boolean"


def test_validation_does_not_modify_its_inputs():
    tables = changed("persons", 0, "sex", "Other")
    tables = changed("inpatient_spells", 1, "admission_date", "1920-01-01", tables)
    before = {name: df.copy() for name, df in tables.items()}
    validate_tables(tables, unknown_codes="drop")
    for name, df in tables.items():
        pd.testing.assert_frame_equal(df, before[name])


@pytest.mark.parametrize("option, value", [("out_of_life_events", "ignore"), ("duplicate_rows", "skip"),
                                           ("unknown_codes", "keep")])
def test_unknown_option_value_is_refused(option, value):
    with pytest.raises(ValueError, match=option):
        validate_tables(valid_tables(), **{option: value})


# ----------------------------------------------------------------------------- tables and columns


def test_missing_persons_table_is_an_error():
    tables = valid_tables()
    del tables["persons"]
    records, report = validate_tables(tables)
    assert records is None
    issue = only(report, "missing_table")
    assert (issue.table, issue.severity) == ("persons", "error")
    assert "persons.csv" in issue.message


@pytest.mark.parametrize("table, column", [("persons", "birth_date"), ("inpatient_spells", "admission_method"),
                                           ("prescriptions", "bnf_chapter")])
def test_missing_required_column_is_an_error(table, column):
    tables = valid_tables()
    tables[table] = tables[table].drop(columns=[column])
    records, report = validate_tables(tables, files=FILES)
    assert records is None
    issue = only(report, "missing_column")
    assert (issue.table, issue.column, issue.severity, issue.file) == (table, column, "error", f"{table}.csv")
    assert f"{table}.csv has no column {column}" in issue.message


def test_unknown_column_is_dropped_with_a_warning():
    tables = valid_tables()
    tables["gp_contacts"] = tables["gp_contacts"].assign(clinician_notes="x")
    records, report = validate_tables(tables, files=FILES)
    assert report.ok
    issue = only(report, "unknown_column")
    assert (issue.table, issue.column, issue.severity) == ("gp_contacts", "clinician_notes", "warning")
    assert "clinician_notes" not in records.get("gp_contacts").columns


def test_headers_match_ignoring_case_and_spaces():
    tables = valid_tables()
    tables["ltc_register"] = tables["ltc_register"].rename(columns={"condition": " Condition ",
                                                                     "person_id": "\ufeffperson_id"})
    records, report = validate_tables(tables)
    assert report.ok, report.format()
    assert records.get("ltc_register")["condition"].tolist() == ["heart_failure", "cancer"]


def test_empty_table_is_a_warning():
    tables = valid_tables()
    tables["social_care"] = tables["social_care"].iloc[:0]
    records, report = validate_tables(tables, files=FILES)
    assert report.ok
    issue = only(report, "empty_table")
    assert (issue.table, issue.severity, issue.n_rows) == ("social_care", "warning", 0)
    assert "social_care.csv has no rows" in issue.message
    assert len(records.get("social_care")) == 0


def test_unknown_table_is_ignored_with_a_warning():
    records, report = validate_tables({**valid_tables(), "pharmacy_visits": pd.DataFrame({"a": ["1"]})})
    assert report.ok
    assert only(report, "unknown_table").table == "pharmacy_visits"
    assert "pharmacy_visits" not in records.tables


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("value", ["1890-13-01", "20/07/2022", "yesterday", "2022-07-20Tnoon", "2022-02-30"])
def test_unparseable_date_is_an_error(value):
    records, report = validate_tables(changed("inpatient_spells", 1, "admission_date", value), files=FILES)
    assert records is None
    issue = only(report, "unparseable_date")
    assert (issue.table, issue.column, issue.n_rows, issue.severity) == (
        "inpatient_spells", "admission_date", 1, "error")
    assert issue.examples == (f"row 2: {value}",)
    assert "inpatient_spells.csv, column admission_date: 1 row" in issue.message
    assert value in issue.message


@pytest.mark.parametrize("value", ["2022-07-20T07:13:55Z", "2022-07-20 07:13", "2022-07-20T23:59:59.123+05:00"])
def test_iso_timestamps_keep_their_date(value):
    records, report = validate_tables(changed("gp_contacts", 0, "contact_date", value))
    assert report.ok, report.format()
    assert records.get("gp_contacts")["contact_date"].iloc[0] == pd.Timestamp("2022-07-20")


@pytest.mark.parametrize("table, column, value", [
    ("inpatient_spells", "cost", "12,50"),
    ("inpatient_spells", "cost", "£12"),
    ("persons", "deprivation_decile", "3.5"),
    ("persons", "deprivation_decile", "three"),
    ("ae_attendances", "admitted", "maybe"),
    ("outpatient_appointments", "attended", "2"),
])
def test_wrong_type_is_an_error(table, column, value):
    records, report = validate_tables(changed(table, 1, column, value), files=FILES)
    assert records is None
    issue = only(report, "wrong_type")
    assert (issue.table, issue.column, issue.n_rows) == (table, column, 1)
    assert issue.examples == (f"row 2: {value}",)
    assert f"{table}.csv, column {column}" in issue.message


def test_true_false_spellings():
    spellings = {"TRUE": True, "Yes": True, "y": True, "t": True, "1": True, "false": False, "NO": False,
                 "n": False, " F ": False, "0": False, None: pd.NA}
    attendances = pd.DataFrame({"person_id": "P1", "arrival_date": "2022-01-10", "admitted": list(spellings),
                                "cost": [str(c) for c in range(len(spellings))]}, dtype=str)
    records, report = validate_tables({**valid_tables(), "ae_attendances": attendances})
    assert report.ok, report.format()
    assert records.get("ae_attendances")["admitted"].tolist() == list(spellings.values())


@pytest.mark.parametrize("table, column, value", [
    ("persons", "sex", None),
    ("inpatient_spells", "admission_date", None),
    ("outpatient_appointments", "attended", None),
    ("prescriptions", "person_id", ""),
])
def test_missing_value_in_required_column_is_an_error(table, column, value):
    records, report = validate_tables(changed(table, 1, column, value), files=FILES)
    assert records is None
    issue = only(report, "missing_value")
    assert (issue.table, issue.column, issue.n_rows, issue.examples) == (table, column, 1, ("row 2",))
    assert f"{table}.csv, column {column}: 1 row with no value" in issue.message


@pytest.mark.parametrize("table, column", [("inpatient_spells", "cost"), ("social_care", "weekly_cost")])
def test_negative_cost_is_an_error(table, column):
    records, report = validate_tables(changed(table, 0, column, "-12.5"), files=FILES)
    assert records is None
    issue = only(report, "negative_cost")
    assert (issue.table, issue.column, issue.n_rows, issue.examples) == (table, column, 1, ("row 1: -12.5",))
    assert f"{table}.csv, column {column}" in issue.message


@pytest.mark.parametrize("value", ["0", "11"])
def test_deprivation_decile_out_of_range_is_an_error(value):
    records, report = validate_tables(changed("persons", 0, "deprivation_decile", value), files=FILES)
    assert records is None
    issue = only(report, "out_of_range")
    assert (issue.column, issue.n_rows, issue.examples) == ("deprivation_decile", 1, (f"row 1: {value}",))
    assert "from 1 to 10" in issue.message


# ----------------------------------------------------------------------------- codes


@pytest.mark.parametrize("table, column, value", [
    ("persons", "sex", "F"),
    ("persons", "ethnicity_group", "Martian"),
    ("inpatient_spells", "admission_method", "urgent"),
    ("ltc_register", "condition", "gout"),
    ("prescriptions", "bnf_chapter", "16"),
    ("social_care", "service_type", "meals on wheels"),
])
def test_unknown_code_is_an_error_by_default(table, column, value):
    records, report = validate_tables(changed(table, 0, column, value), files=FILES)
    assert records is None
    issue = only(report, "unknown_code")
    assert (issue.table, issue.column, issue.n_rows, issue.severity) == (table, column, 1, "error")
    assert issue.examples == (f'"{value}" (1 row)',)
    assert f"{table}.csv, column {column}" in issue.message


def test_unknown_codes_can_be_dropped_with_a_warning():
    tables = changed("inpatient_spells", 0, "admission_method", "hospice")
    records, report = validate_tables(tables, unknown_codes="drop")
    assert report.ok
    issue = only(report, "unknown_code")
    assert (issue.severity, issue.n_rows, issue.action) == ("warning", 1, "dropped 1 row")
    assert report.dropped == {"inpatient_spells": 1}
    assert report.row_counts["inpatient_spells"] == 1
    assert records.get("inpatient_spells")["person_id"].tolist() == ["P3"]


def test_codes_are_normalised_before_checking():
    cases = [("persons", 0, "sex", " Female ", "female"),
             ("inpatient_spells", 0, "admission_method", "EMERGENCY", "emergency"),
             ("inpatient_spells", 1, "admission_method", "Elective ", "elective"),
             ("ltc_register", 0, "condition", "Heart Failure", "heart_failure"),
             ("ltc_register", 1, "condition", "heart-failure", "heart_failure"),
             ("social_care", 0, "service_type", "Home  Care", "home_care"),
             ("prescriptions", 0, "bnf_chapter", "1", "01"),
             ("prescriptions", 1, "bnf_chapter", " 15 ", "15")]
    tables = valid_tables()
    for table, row, column, value, _ in cases:
        tables = changed(table, row, column, value, tables)
    records, report = validate_tables(tables)
    assert report.ok, report.format()
    for table, row, column, _, expected in cases:
        assert records.get(table)[column].iloc[row] == expected, (table, column)


# ----------------------------------------------------------------------------- dates in order


@pytest.mark.parametrize("table, start, end, row, value", [
    ("inpatient_spells", "admission_date", "discharge_date", 0, "2022-01-09"),
    ("social_care", "start_date", "end_date", 0, "2022-05-31"),
    ("persons", "birth_date", "death_date", 2, "1929-12-31"),
    ("persons", "registration_start", "registration_end", 2, "1990-01-01"),
])
def test_end_before_start_is_an_error(table, start, end, row, value):
    records, report = validate_tables(changed(table, row, end, value), files=FILES)
    assert records is None
    issue = only(report, "end_before_start")
    assert (issue.table, issue.column, issue.n_rows) == (table, end, 1)
    assert issue.examples[0].startswith(f"row {row + 1}: {end} {value} < {start}")
    assert f"{table}.csv, column {end}: 1 row with {end} before {start}" in issue.message


# ----------------------------------------------------------------------------- duplicates and links


def with_repeated_row(table: str = "prescriptions") -> dict[str, pd.DataFrame]:
    tables = valid_tables()
    tables[table] = pd.concat([tables[table], tables[table].iloc[[0]]], ignore_index=True)
    return tables


@pytest.mark.parametrize("policy, severity, rows_after", [("drop", "warning", 2), ("keep", "warning", 3),
                                                          ("error", "error", None)])
def test_duplicate_rows(policy, severity, rows_after):
    records, report = validate_tables(with_repeated_row(), duplicate_rows=policy, files=FILES)
    issue = only(report, "duplicate_rows")
    assert (issue.table, issue.column, issue.n_rows, issue.severity) == ("prescriptions", None, 1, severity)
    assert issue.examples == ("row 3",)
    assert "prescriptions.csv: 1 row repeats an earlier row" in issue.message
    if rows_after is None:
        assert records is None
    else:
        assert len(records.get("prescriptions")) == rows_after
        assert report.dropped == ({"prescriptions": 1} if policy == "drop" else {})


def test_a_report_alone_keeps_no_records():
    kept, full = validate_tables(valid_tables())
    none, report = validate_tables(valid_tables(), keep_records=False)
    assert none is None and kept is not None
    assert report.to_dict() == full.to_dict()


def test_excluded_sources_are_never_read(tmp_path):
    records, _ = validate_tables(valid_tables())
    write_records_tables(records.tables, tmp_path / "linked")
    (tmp_path / "linked" / "social_care.parquet").write_bytes(b"not parquet")  # would fail if read
    with pytest.raises(DataFileError, match="social_care.parquet"):
        load_records(tmp_path / "linked")
    seen = []
    kept = load_records(tmp_path / "linked", exclude_sources=["social_care"],
                        on_table=lambda name, rows: seen.append((name, rows)))
    assert not kept.has("social_care")
    assert seen == [(name, len(df)) for name, df in records.tables.items() if name != "social_care"]
    with pytest.raises(ValueError, match="persons cannot be excluded"):
        load_records(tmp_path / "linked", exclude_sources=["persons"])


def test_repeated_rows_are_found_in_parquet_input(tmp_path):
    # Parquet text arrives dictionary-encoded (categoricals): repeats are found through the codes,
    # and rows equal in every column but one are not repeats.
    records, _ = validate_tables(valid_tables())
    gp = records.tables["gp_contacts"]
    near = gp.iloc[[0]].assign(contact_type="home visit")
    write_records_tables({**records.tables, "gp_contacts": pd.concat([gp, gp.iloc[[0]], near])}, tmp_path / "linked")
    again, report = validate_data_dir(tmp_path / "linked")
    issue = only(report, "duplicate_rows")
    assert (issue.table, issue.n_rows, issue.examples) == ("gp_contacts", 1, (f"row {len(gp) + 1}",))
    assert len(again.get("gp_contacts")) == len(gp) + 1


def test_extra_columns_sharing_a_name_are_compared_each():
    tables = with_repeated_row()
    extra = pd.DataFrame([["x", "1"], ["y", "2"], ["x", "3"]], columns=["note", "note"])
    tables["prescriptions"] = pd.concat([tables["prescriptions"], extra], axis=1)
    records, report = validate_tables(tables)
    assert report.ok, report.format()
    assert not [i for i in report.issues if i.rule == "duplicate_rows"]  # the second "note" differs
    assert len(records.get("prescriptions")) == 3


def test_rows_that_differ_in_an_extra_column_are_not_duplicates():
    tables = with_repeated_row()
    tables["prescriptions"] = tables["prescriptions"].assign(item_id=["a", "b", "c"])
    records, report = validate_tables(tables)
    assert [i.rule for i in report.issues] == ["unknown_column"]
    assert len(records.get("prescriptions")) == 3


def test_same_day_events_with_different_record_ids_are_both_kept():
    # Two visits on one day with the same content are two events when their source ids differ
    # (OMOP visit_occurrence_id, HES EPIKEY); the same id twice is a true repeat.
    tables = with_repeated_row()
    tables["prescriptions"] = tables["prescriptions"].assign(record_id=["r1", "r2", "r3"])
    records, report = validate_tables(tables)
    assert report.ok and not report.issues, report.format()
    assert records.get("prescriptions")["record_id"].tolist() == ["r1", "r2", "r3"]
    tables["prescriptions"] = tables["prescriptions"].assign(record_id=["r1", "r2", "r1"])
    records, report = validate_tables(tables)
    assert only(report, "duplicate_rows").n_rows == 1
    assert len(records.get("prescriptions")) == 2


def test_duplicate_person_id_is_always_an_error():
    tables = changed("persons", 1, "person_id", "P1")
    records, report = validate_tables(tables, duplicate_rows="keep", files=FILES)
    assert records is None
    issue = only(report, "duplicate_person")
    assert (issue.table, issue.column, issue.n_rows) == ("persons", "person_id", 2)
    assert issue.examples == ("… (2 chars) at rows 1, 2",)  # masked: reports are printed and kept
    assert "persons.csv, column person_id: 2 rows share 1 person id" in issue.message


def test_person_ids_in_validation_reports_are_masked_in_messages_examples_and_json():
    # The defect: `riskstrat validate` printed "share 1 person id with another row (e.g. 6d495671327bc31a at
    # rows 1, 2001)", a pseudonym in full, into terminals, logs and JSON reports.
    pseudonyms = ["6d495671327bc31a", "0a1b2c3d4e5f6071", "ffeeddccbbaa9988"]
    ids = dict(zip(["P1", "P2", "P3"], pseudonyms))
    tables = {name: df.replace({"person_id": ids}) for name, df in valid_tables().items()}
    tables = changed("persons", 1, "person_id", pseudonyms[0], tables)  # twice; P2's events now name no one
    tables = changed("persons", 2, "person_id", pseudonyms[2] + "\x1b[2J", tables)  # a control character
    records, report = validate_tables(tables, duplicate_rows="keep", files=FILES)
    assert records is None
    assert only(report, "duplicate_person").examples == ("6d…1a (16 chars) at rows 1, 2",)
    unknown = next(i for i in report.issues if i.rule == "unknown_person" and i.table == "ae_attendances")
    assert unknown.examples == ("row 2: 0a…71 (16 chars)",) and "(e.g. row 2: 0a…71 (16 chars))" in unknown.message
    assert only(report, "unsafe_value").examples == ("row 3: ff…2J (20 chars)",)
    everything = report.format() + json.dumps(report.to_dict()) + repr(report.issues)
    assert not [p for p in pseudonyms if p in everything]


def test_exact_duplicate_person_row_is_dropped_not_an_error():
    records, report = validate_tables(with_repeated_row("persons"))
    assert report.ok
    assert only(report, "duplicate_rows").table == "persons"
    assert len(records.persons) == 3


def test_event_for_unknown_person_is_an_error():
    records, report = validate_tables(changed("ae_attendances", 1, "person_id", "P99"), files=FILES)
    assert records is None
    issue = only(report, "unknown_person")
    assert (issue.table, issue.column, issue.n_rows, issue.examples) == (
        "ae_attendances", "person_id", 1, ("row 2: … (3 chars)",))
    assert "ae_attendances.csv, column person_id: 1 row refers to person ids that are not in" in issue.message


# ----------------------------------------------------------------------------- events outside a life


def outside_life() -> dict[str, pd.DataFrame]:
    """P1's heart failure dated before birth; P3's social care ends a day after death."""
    tables = changed("ltc_register", 0, "diagnosis_date", "1939-12-31")
    return changed("social_care", 0, "end_date", "2023-07-01", tables)


@pytest.mark.parametrize("policy", ["drop", "keep", "error"])
def test_events_outside_a_life(policy):
    records, report = validate_tables(outside_life(), out_of_life_events=policy, files=FILES)
    before, after = only(report, "event_before_birth"), only(report, "event_after_death")
    assert (before.table, before.column, before.n_rows) == ("ltc_register", "diagnosis_date", 1)
    assert before.examples == ("row 1: 1939-12-31, born 1940-05-01",)
    assert "ltc_register.csv, column diagnosis_date: 1 row dated before the person's birth" in before.message
    assert (after.table, after.column, after.n_rows) == ("social_care", "end_date", 1)
    assert after.examples == ("row 1: 2023-07-01, died 2023-06-30",)
    expected = "error" if policy == "error" else "warning"
    assert before.severity == after.severity == expected
    if policy == "error":
        assert records is None
    elif policy == "keep":
        assert before.action == "kept" and report.dropped == {}
        assert len(records.get("ltc_register")) == 2 and len(records.get("social_care")) == 1
    else:
        assert before.action == "dropped 1 row"
        assert report.dropped == {"ltc_register": 1}
        assert records.get("ltc_register")["person_id"].tolist() == ["P3"]
        # A service recorded as ending after death is kept and ended on the date of death.
        assert after.action == "cut back 1 row" and "set to the date of death" in after.message
        care = records.get("social_care")
        assert len(care) == 1 and care["end_date"].iloc[0] == pd.Timestamp("2023-06-30")


def test_events_on_the_day_of_birth_or_death_are_fine():
    tables = changed("ltc_register", 0, "diagnosis_date", "1940-05-01")
    records, report = validate_tables(changed("gp_contacts", 1, "contact_date", "2023-06-30", tables))
    assert report.ok and report.issues == []


# ----------------------------------------------------------------------------- folders, report, errors


def test_load_records_reads_a_csv_folder(tmp_path):
    records = load_records(write_csvs(valid_tables(), tmp_path / "linked"))
    assert records.row_counts() == {name: len(rows) for name, rows in ROWS.items()}


def test_load_records_raises_naming_file_column_and_value(tmp_path):
    folder = write_csvs(changed("inpatient_spells", 1, "admission_date", "1890-13-01"), tmp_path / "linked")
    expected = r"inpatient_spells\.csv, column admission_date: 1 row .*1890-13-01"
    with pytest.raises(ValidationError, match=expected) as caught:
        load_records(folder)
    assert len(caught.value.report.errors) == 1
    assert str(caught.value).startswith("the data failed validation with 1 error:")


def test_load_records_without_persons_file(tmp_path):
    tables = valid_tables()
    del tables["persons"]
    with pytest.raises(ValidationError, match="required table persons is missing"):
        load_records(write_csvs(tables, tmp_path / "linked"))


def test_load_records_on_a_missing_folder(tmp_path):
    with pytest.raises(DataFileError, match="no such data folder"):
        load_records(tmp_path / "nowhere")


def test_csv_with_a_byte_order_mark_reads(tmp_path):
    folder = write_csvs(valid_tables(), tmp_path / "linked")
    text = (folder / "persons.csv").read_text()
    (folder / "persons.csv").write_text(text, encoding="utf-8-sig")
    assert (folder / "persons.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    records, report = validate_data_dir(folder)
    assert report.ok, report.format()
    assert records.persons["person_id"].tolist() == ["P1", "P2", "P3"]


def test_report_format_and_json():
    tables = changed("persons", 0, "sex", "F")
    records, report = validate_tables(with_repeated_row() | {"persons": tables["persons"]}, files=FILES)
    assert not report.ok
    assert [i.rule for i in report.errors] == ["unknown_code"]
    assert [i.rule for i in report.warnings] == ["duplicate_rows"]
    lines = report.format().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error   [unknown_code] persons.csv, column sex")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["n_errors"] == 1 and data["n_warnings"] == 1
    assert data["issues"][0]["examples"] == ['"F" (1 row)']
    assert data["dropped"] == {"prescriptions": 1}
    assert report.to_dict(examples=False)["issues"][0]["examples"] == []


def test_examples_are_capped_at_five():
    tables = valid_tables()
    spells = pd.concat([tables["inpatient_spells"]] * 4, ignore_index=True)
    spells["admission_date"] = "yesterday"
    records, report = validate_tables({**tables, "inpatient_spells": spells}, duplicate_rows="keep")
    issue = only(report, "unparseable_date")
    assert issue.n_rows == 8 and len(issue.examples) == 5
    assert issue.examples[0] == "row 1: yesterday"


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def cli():
    from riskstrat.cli import app

    def run(*args):
        result = CliRunner().invoke(app, ["validate", *map(str, args)])
        result.text = " ".join(result.output.split())  # rich wraps long lines
        return result

    return run


def test_cli_passes_a_valid_folder(cli, tmp_path):
    folder = write_csvs(valid_tables(), tmp_path / "linked")
    result = cli(folder, "--json", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert "passed validation (0 warnings)" in result.text
    assert "inpatient_spells 2" in result.text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True and report["row_counts"]["persons"] == 3
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.csv" for n in ROWS)  # nothing else written


def test_cli_fails_with_the_message(cli, tmp_path):
    folder = write_csvs(changed("inpatient_spells", 1, "admission_date", "1890-13-01"), tmp_path / "linked")
    result = cli(folder)
    assert result.exit_code == 2
    assert "1890-13-01" in result.text
    assert "failed validation: 1 error" in result.text


def test_cli_out_of_life_events_option(cli, tmp_path):
    folder = write_csvs(outside_life(), tmp_path / "linked")
    assert cli(folder).exit_code == 0
    result = cli(folder, "--out-of-life-events", "error", "--json", tmp_path / "r.json")
    assert result.exit_code == 2
    rules = {i["rule"] for i in json.loads((tmp_path / "r.json").read_text())["issues"]}
    assert rules == {"event_before_birth", "event_after_death"}


def test_cli_missing_folder(cli, tmp_path):
    result = cli(tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "no such data folder" in result.text


# ----------------------------------------------------------------------------- missing is not zero


def test_a_cost_column_blank_in_every_row_is_reported_as_unknown_costs():
    tables = changed("ae_attendances", 0, "cost", None, changed("ae_attendances", 1, "cost", None))
    tables["inpatient_spells"] = tables["inpatient_spells"].drop(columns="cost")  # no cost column at all
    records, report = validate_tables(tables, files=FILES)
    assert records is not None and report.ok
    found = {(i.table, i.column, i.n_rows, i.severity) for i in report.issues if i.rule == "blank_cost"}
    # Partly blank costs (outpatients, GP contacts, prescriptions) are not reported: some costs are known.
    assert found == {("ae_attendances", "cost", 2, "warning"), ("inpatient_spells", "cost", 2, "warning")}
    text = report.format()
    assert "ae_attendances.csv, column cost is blank in all 2 rows: the ae_attendances costs are unknown, not zero" \
        in text
    assert "inpatient_spells.csv has no cost column" in text
    assert records.tables["ae_attendances"]["cost"].isna().all()  # unknown stays missing, never 0


def test_known_costs_raise_no_cost_warning():
    _, report = validate_tables(valid_tables())
    assert not [i for i in report.issues if i.rule == "blank_cost"]
