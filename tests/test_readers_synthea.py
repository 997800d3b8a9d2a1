"""Synthea reader: admission method rules (never guessed elective), currency, practice, record ids."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from riskstrat.readers import import_dataset
from riskstrat.readers.synthea import read_synthea

KEY = b"synthea-test-key"


def _export(tmp_path: Path, encounters: list[tuple], *, patients: int = 1) -> Path:
    src = tmp_path / "synthea"
    src.mkdir()
    pd.DataFrame({"Id": [f"p{i}" for i in range(1, patients + 1)], "BIRTHDATE": "1950-01-01",
                  "GENDER": "F"}).to_csv(src / "patients.csv", index=False)
    pd.DataFrame(encounters, columns=["Id", "START", "STOP", "PATIENT", "ORGANIZATION", "ENCOUNTERCLASS",
                                      "DESCRIPTION", "REASONDESCRIPTION"]).to_csv(src / "encounters.csv", index=False)
    return src


def _stay(eid: str, start: str, description: str = "Hospital admission", reason: str = "",
          patient: str = "p1") -> tuple:
    return (eid, start, start, patient, "o2", "inpatient", description, reason)


def _er(eid: str, start: str, cls: str = "emergency", patient: str = "p1") -> tuple:
    return (eid, start, start, patient, "o1", cls, "Emergency room admission", "")


@pytest.mark.parametrize("description, reason, method", [
    ("Hospital admission", "", "unknown"),
    ("Encounter for problem", "Chronic sinusitis", "unknown"),
    ("Admission to surgical department", "Sterilization requested", "unknown"),
    ("Elective hospital admission", "", "elective"),
    ("Non-urgent orthopedic admission", "", "elective"),
    ("Planned admission for procedure", "", "elective"),
    ("Unplanned admission", "", "emergency"),
    ("Emergency hospital admission", "", "emergency"),
    ("Hospital admission", "Acute bronchitis", "emergency"),
    ("Admission to intensive care unit (transfer)", "", "transfer"),
    ("Obstetric emergency hospital admission", "Normal pregnancy", "maternity"),
])
def test_method_from_the_description_and_reason(tmp_path, description, reason, method):
    tables, _ = read_synthea(_export(tmp_path, [_stay("e1", "2020-03-01T10:00:00Z", description, reason)]),
                             pseudonym_key=KEY)
    assert tables["inpatient_spells"]["admission_method"].tolist() == [method]


@pytest.mark.parametrize("hours_before, window, method", [
    (12, 24, "emergency"), (30, 24, "unknown"), (30, 48, "emergency"), (0, 24, "emergency"), (2, 1, "unknown"),
])
def test_emergency_window(tmp_path, hours_before, window, method):
    stay = pd.Timestamp("2020-03-02T10:00:00")
    er = (stay - pd.Timedelta(hours=hours_before)).strftime("%Y-%m-%dT%H:%M:%SZ")
    src = _export(tmp_path, [_er("a1", er, cls="urgentcare"), _stay("e1", "2020-03-02T10:00:00Z")])
    tables, _ = read_synthea(src, pseudonym_key=KEY, emergency_window_hours=window)
    assert tables["inpatient_spells"]["admission_method"].tolist() == [method]
    # the attendance is "admitted" by the same window
    assert tables["ae_attendances"]["admitted"].tolist() == [method == "emergency"]


def test_another_persons_emergency_does_not_count(tmp_path):
    src = _export(tmp_path, [_er("a1", "2020-03-02T08:00:00Z", patient="p2"), _stay("e1", "2020-03-02T10:00:00Z")],
                  patients=2)
    tables, summary = read_synthea(src, pseudonym_key=KEY)
    assert tables["inpatient_spells"]["admission_method"].tolist() == ["unknown"]
    assert any("1 unknown (never guessed elective)" in n for n in summary.notes)


def test_negative_window_is_refused(tmp_path):
    with pytest.raises(ValueError, match="emergency_window_hours"):
        read_synthea(_export(tmp_path, [_stay("e1", "2020-03-01T10:00:00Z")]), pseudonym_key=KEY,
                     emergency_window_hours=-1)


def test_currency_practice_and_record_ids(tmp_path):
    # p1 has a usual practice (wellness visits at o9); p2 has none. Two same-day outpatient visits that
    # differ only in their Id are two events.
    encounters = [
        ("w1", "2020-01-01T10:00:00Z", "2020-01-01T11:00:00Z", "p1", "o9", "wellness", "General examination", ""),
        ("v1", "2020-02-01T10:00:00Z", "2020-02-01T11:00:00Z", "p2", "o4", "outpatient", "Consultation", ""),
        ("v2", "2020-02-01T10:00:00Z", "2020-02-01T11:00:00Z", "p2", "o4", "outpatient", "Consultation", ""),
    ]
    src = _export(tmp_path, encounters, patients=2)
    tables, summary = read_synthea(src, pseudonym_key=KEY)
    assert summary.currency == "USD"
    practice = tables["persons"]["practice_id"]
    assert practice.notna().sum() == 1 and practice.dropna().str.startswith("ORG").all()
    assert "UNKNOWN" not in set(practice.dropna())
    assert any("1 people with no usual primary-care organization" in n for n in summary.notes)
    op = tables["outpatient_appointments"]
    assert op["record_id"].nunique() == 2 and op["record_id"].str.fullmatch(r"[0-9a-f]{16}").all()
    summary, report = import_dataset("synthea", src, tmp_path / "linked", pseudonym_key=KEY)
    assert summary.output_rows["outpatient_appointments"] == 2  # not removed as repeats
    assert not report.dropped.get("outpatient_appointments")


def test_distinct_medication_orders_are_kept_and_verbatim_repeats_dropped(tmp_path):
    # Medications have no Id: two orders of one drug on one day that differ in any source column
    # (here STOP) are two items; a row repeated verbatim is a repeat. Unmapped drugs are kept.
    src = _export(tmp_path, [("w1", "2020-01-01T10:00:00Z", "2020-01-01T11:00:00Z", "p1", "o9", "wellness",
                              "General examination", "")])
    order = {"START": "2020-03-01T09:00:00Z", "PATIENT": "p1", "ENCOUNTER": "w1", "CODE": "314076",
             "DESCRIPTION": "lisinopril 10 MG Oral Tablet"}
    pd.DataFrame([{**order, "STOP": "2020-04-01"}, {**order, "STOP": "2020-05-01"}, {**order, "STOP": "2020-05-01"},
                  {**order, "CODE": "1", "DESCRIPTION": "Mystery elixir", "STOP": ""}]
                 ).to_csv(src / "medications.csv", index=False)
    summary, report = import_dataset("synthea", src, tmp_path / "linked", pseudonym_key=KEY)
    assert summary.output_rows["prescriptions"] == 3
    assert report.dropped == {"prescriptions": 1}
    rx = pd.read_parquet(tmp_path / "linked" / "prescriptions.parquet")
    assert sorted(rx["bnf_chapter"].astype(str)) == ["02", "02", "unknown"]
