"""Synthea reader: admission method rules (never guessed elective), currency, practice, record ids."""

from __future__ import annotations

import json
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


# --- values present but unreadable ------------------------------------------------------------

def _costed_export(tmp_path: Path, total: list[str], base: list[str], income: list[str]) -> Path:
    """One wellness encounter per cost; people p1.. with the given INCOME values."""
    src = tmp_path / "synthea"
    src.mkdir()
    pd.DataFrame({"Id": [f"p{i}" for i in range(1, len(income) + 1)], "BIRTHDATE": "1950-01-01", "GENDER": "F",
                  "INCOME": income}).to_csv(src / "patients.csv", index=False)
    pd.DataFrame({"Id": [f"e{i}" for i in range(len(total))], "START": "2020-01-01T10:00:00Z",
                  "STOP": "2020-01-01T11:00:00Z", "PATIENT": "p1", "ORGANIZATION": "o1", "ENCOUNTERCLASS": "wellness",
                  "DESCRIPTION": "General examination", "TOTAL_CLAIM_COST": total, "BASE_ENCOUNTER_COST": base,
                  }).to_csv(src / "encounters.csv", index=False)
    return src


_FORMULA = '=cmd|"/c calc"!A0'


def test_unreadable_costs_are_counted_by_file_and_column_never_shown_and_warned(tmp_path):
    # The defect: NaN, inf and a formula in the cost columns were stored as missing without a word.
    total = ["100.5"] * 11 + ["NaN", "nan", "NaN", "inf", "-inf", _FORMULA, "$1,200.50", "£120", ""]
    base = ["NaN"] + [""] * 18 + ["Infinity"]  # used only where TOTAL_CLAIM_COST is blank; read and counted in every row
    src = _costed_export(tmp_path, total, base, income=["50000", "n/a", "$42,000"])
    summary, report = import_dataset("synthea", src, tmp_path / "linked", pseudonym_key=KEY)

    assert summary.unreadable["encounters.csv: TOTAL_CLAIM_COST"] == {
        "kind": "cost", "present": 19, "unreadable": 7,
        "shapes": {"ccc": 4, "-ccc": 1, '=ccc|"/c cccc"!cN': 1, "£NNN": 1}}  # £ is not the export's currency (USD)
    assert summary.unreadable["encounters.csv: BASE_ENCOUNTER_COST"] == {
        "kind": "cost", "present": 2, "unreadable": 2, "shapes": {"ccc": 1, "cccccccc": 1}}
    assert summary.unreadable["patients.csv: INCOME"] == {"kind": "number", "present": 3, "unreadable": 1,
                                                          "shapes": {"c/c": 1}}
    gp = pd.read_parquet(tmp_path / "linked" / "gp_contacts.parquet")
    assert sorted(gp["cost"].dropna().tolist()) == [100.5] * 11 + [1200.5]  # "$1,200.50" read as dollars
    assert any("TOTAL_CLAIM_COST: 1 amounts written with thousands separators" in n for n in summary.notes)
    persons = pd.read_parquet(tmp_path / "linked" / "persons.parquet")
    assert persons["deprivation_decile"].notna().sum() == 2  # "$42,000" is an income; "n/a" is not

    # Over 5% unreadable: a validation-level warning naming the file and column; the import completed.
    warned = {(i.file, i.column): i for i in report.warnings if i.rule == "unreadable_cost"}
    assert set(warned) == {("encounters.csv", "TOTAL_CLAIM_COST"), ("encounters.csv", "BASE_ENCOUNTER_COST")}
    assert "7 of 19 costs (37%)" in warned["encounters.csv", "TOTAL_CLAIM_COST"].message
    text = (tmp_path / "linked" / "import_report.json").read_text()
    assert json.loads(text)["unreadable_values"]["encounters.csv: TOTAL_CLAIM_COST"]["unreadable"] == 7
    for value in ("calc", "cmd", "inf", "£120", "n/a"):
        assert value not in text and all(value not in i.message for i in report.issues), value


def test_a_few_unreadable_costs_are_counted_without_a_warning(tmp_path):
    total = ["10"] * 40 + ["NaN"]  # 1 of 41: 2.4%
    summary, report = import_dataset("synthea", _costed_export(tmp_path, total, [""] * 41, income=["1"]),
                                     tmp_path / "linked", pseudonym_key=KEY)
    assert summary.unreadable["encounters.csv: TOTAL_CLAIM_COST"]["unreadable"] == 1
    assert not [i for i in report.issues if i.rule == "unreadable_cost"]


def test_unreadable_dates_are_counted_by_shape(tmp_path):
    src = _costed_export(tmp_path, ["1", "2", "3"], [""] * 3, income=["1", "2"])
    patients = pd.read_csv(src / "patients.csv", dtype=str)
    patients["DEATHDATE"] = ["", "2021-02-31"]
    patients.to_csv(src / "patients.csv", index=False)
    encounters = pd.read_csv(src / "encounters.csv", dtype=str)
    encounters.loc[1, "START"] = "01/02/2020"  # not ISO: the encounter cannot be dated
    encounters.loc[2, "STOP"] = "soon"
    encounters.to_csv(src / "encounters.csv", index=False)
    pd.DataFrame({"START": ["2020-01-01", "last spring"], "PATIENT": "p1", "DESCRIPTION": "Asthma"}
                 ).to_csv(src / "conditions.csv", index=False)
    _, summary = read_synthea(src, pseudonym_key=KEY)
    assert {k: (v["kind"], v["unreadable"], v["shapes"]) for k, v in summary.unreadable.items()} == {
        "patients.csv: DEATHDATE": ("date", 1, {"NNNN-NN-NN": 1}),
        "encounters.csv: START": ("date", 1, {"NN/NN/NNNN": 1}),
        "encounters.csv: STOP": ("date", 1, {"cccc": 1}),
        "conditions.csv: START": ("date", 1, {"cccc cccccc": 1}),
    }
    assert summary.dropped["encounters with a missing or unreadable START"] == 1


def test_cli_import_prints_unreadable_values_and_the_warning(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from riskstrat.cli import app

    monkeypatch.setenv("RISKSTRAT_PSEUDONYM_KEY", "cli-test-key")
    src = _costed_export(tmp_path, ["5"] * 8 + ["inf", _FORMULA], [""] * 10, income=["1"])
    result = CliRunner().invoke(app, ["import", "synthea", str(src), "--out", str(tmp_path / "linked")])
    assert result.exit_code == 0, result.output
    assert "encounters.csv: TOTAL_CLAIM_COST: 2 of 10 cost values (20.0%)" in result.output
    assert "2 of 10 costs (20%) could not be read" in " ".join(result.output.split())
    assert "calc" not in result.output
