"""Synthea reader: admission method rules (never guessed elective), currency, practice, record ids."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from riskstrat.pipelines.imports import import_dataset
from riskstrat.data.readers.synthea import read_synthea

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


# --- practices from primary care only (issue 22) ---------------------------------------------

def _practice_export(tmp_path: Path, providers: list[tuple] | None = None) -> Path:
    """p1: wellness only at hospital H1 (it admits p4). p2: wellness at GP practice G, more ambulatory
    visits at H1. p3: wellness only at an organisation named a hospital (no admission in the export).
    p4: admitted to H1, wellness at G."""
    def enc(eid, day, patient, org, cls, provider=""):
        return (eid, f"2020-01-{day:02d}T10:00:00Z", f"2020-01-{day:02d}T11:00:00Z", patient, org, provider, cls,
                "Encounter", "")
    encounters = [
        enc("e1", 1, "p1", "H1", "wellness", "dH1"), enc("e2", 2, "p1", "H1", "wellness", "dH1"),
        enc("e3", 3, "p2", "G", "wellness", "dG"), enc("e4", 4, "p2", "H1", "ambulatory", "dH1"),
        enc("e5", 5, "p2", "H1", "ambulatory", "dH1"), enc("e6", 6, "p2", "H1", "ambulatory", "dH1"),
        enc("e7", 7, "p3", "H2", "wellness", "dH2"),
        enc("e8", 8, "p4", "H1", "inpatient", "dH1"), enc("e9", 9, "p4", "G", "wellness", "dG"),
    ]
    src = tmp_path / "synthea"
    src.mkdir(parents=True)
    pd.DataFrame({"Id": ["p1", "p2", "p3", "p4"], "BIRTHDATE": "1950-01-01", "GENDER": "F"}).to_csv(
        src / "patients.csv", index=False)
    pd.DataFrame(encounters, columns=["Id", "START", "STOP", "PATIENT", "ORGANIZATION", "PROVIDER",
                                      "ENCOUNTERCLASS", "DESCRIPTION", "REASONDESCRIPTION"]).to_csv(
        src / "encounters.csv", index=False)
    pd.DataFrame({"Id": ["H1", "G", "H2"], "NAME": ["CITY MEDICAL CENTER", "ELM STREET FAMILY PRACTICE",
                                                  "Massachusetts General Hospital"]}).to_csv(
        src / "organizations.csv", index=False)
    if providers is not None:
        pd.DataFrame(providers, columns=["Id", "ORGANIZATION", "SPECIALITY"]).to_csv(src / "providers.csv",
                                                                                     index=False)
    return src


def _code(prefix: str, source_id: str) -> str:
    import hashlib

    return prefix + hashlib.sha256(source_id.encode()).hexdigest()[:8]


def test_a_hospital_never_becomes_a_practice_and_the_people_left_without_one_are_counted(tmp_path):
    src = _practice_export(tmp_path)
    tables, summary = read_synthea(src, pseudonym_key=KEY)
    practices = tables["persons"]["practice_id"]
    # p1 (only at H1) and p3 (only at the named hospital) have none; p2 and p4 keep the GP practice G
    # although p2 was seen more often at H1.
    assert sorted(practices.fillna("-")) == ["-", "-", _code("ORG", "G"), _code("ORG", "G")]
    assert summary.practice_exclusions == {"hospitals_excluded": 2, "people_whose_only_candidate_was_a_hospital": 2}
    assert any("2 hospital organizations" in n and "2 people seen for primary care only at a hospital" in n
               for n in summary.notes)
    from riskstrat.report.imports import format_import_report

    summary, report = import_dataset("synthea", src, tmp_path / "linked", pseudonym_key=KEY)
    import_report = json.loads((tmp_path / "linked" / "import_report.json").read_text())
    assert import_report["people_without_practice"] == 2
    assert import_report["practice_exclusions"] == {"hospitals_excluded": 2,
                                                    "people_whose_only_candidate_was_a_hospital": 2}
    assert "of whom 2 seen for primary care only at a hospital (2 hospitals not taken as practices)" \
        in format_import_report(import_report)


def test_provider_practice_only_a_general_practitioner_outside_hospital(tmp_path):
    gp = [("dH1", "H1", "GENERAL PRACTICE"), ("dG", "G", "GENERAL PRACTICE"), ("dH2", "H2", "GENERAL PRACTICE")]
    tables, summary = read_synthea(_practice_export(tmp_path / "a", gp), pseudonym_key=KEY, practice_from="provider")
    # Hospital doctors are general practitioners in Synthea too: their organisation rules them out.
    assert sorted(tables["persons"]["practice_id"].fillna("-")) == ["-", "-", _code("PRV", "dG"), _code("PRV", "dG")]
    assert summary.practice_exclusions == {"hospitals_excluded": 2, "people_whose_only_candidate_was_a_hospital": 2}
    cardiologist = [("dH1", "H1", "GENERAL PRACTICE"), ("dG", "G", "CARDIOLOGY"), ("dH2", "H2", "GENERAL PRACTICE")]
    tables, summary = read_synthea(_practice_export(tmp_path / "b", cardiologist), pseudonym_key=KEY,
                                   practice_from="provider")
    assert tables["persons"]["practice_id"].isna().all()
    assert any("1 providers seen at wellness/ambulatory encounters without SPECIALITY GENERAL PRACTICE" in n
               for n in summary.notes)


SYNTHEA_111 = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-111"


@pytest.mark.skipif(not SYNTHEA_111.is_dir(), reason=f"Synthea test export not found at {SYNTHEA_111}")
def test_synthea_111_practices_checked_against_the_source_files():
    """Hospitals and who is left without a practice, counted with pandas straight from the CSVs."""
    enc = pd.read_csv(SYNTHEA_111 / "encounters.csv")
    orgs = pd.read_csv(SYNTHEA_111 / "organizations.csv")
    hospitals = (set(enc.loc[enc["ENCOUNTERCLASS"] == "inpatient", "ORGANIZATION"])
                 | set(orgs.loc[orgs["NAME"].str.contains(r"\bhospitals?\b", case=False), "Id"]))
    primary = enc[enc["ENCOUNTERCLASS"].isin(["wellness", "ambulatory"])]
    kept = primary[~primary["ORGANIZATION"].isin(hospitals)]
    only_hospital = set(primary["PATIENT"]) - set(kept["PATIENT"])
    assert len(only_hospital) == 4 and primary.loc[primary["ORGANIZATION"].isin(hospitals),
                                                   "ORGANIZATION"].nunique() == 41
    tables, summary = read_synthea(SYNTHEA_111, pseudonym_key=KEY)
    practice = tables["persons"]["practice_id"]
    assert summary.practice_exclusions == {"hospitals_excluded": 41, "people_whose_only_candidate_was_a_hospital": 4}
    assert int(practice.isna().sum()) == 4
    assert not set(practice.dropna()) & {_code("ORG", h) for h in hospitals}
    # Each person's practice: the non-hospital organisation with the most wellness visits, then the most
    # wellness/ambulatory visits, then the latest.
    counts = (kept.assign(wellness=kept["ENCOUNTERCLASS"].eq("wellness"))
              .groupby(["PATIENT", "ORGANIZATION"]).agg(w=("wellness", "sum"), n=("Id", "size"), last=("START", "max"))
              .reset_index().sort_values(["PATIENT", "w", "n", "last"], ascending=[True, False, False, False])
              .drop_duplicates("PATIENT"))
    expected = counts["ORGANIZATION"].map(lambda o: _code("ORG", o))
    assert sorted(practice.dropna()) == sorted(expected)
    assert practice.nunique() == expected.nunique() == 72


@pytest.mark.skipif(not SYNTHEA_111.is_dir(), reason=f"Synthea test export not found at {SYNTHEA_111}")
def test_synthea_111_conditions_in_add_up_to_register_out_and_what_was_left_out():
    """conditions.csv rows = register rows + rows that are no register condition + repeats of a condition
    a person already has (kept once, at its first date), counted from the CSV with pandas."""
    from riskstrat.data.readers.synthea import match_ltc

    conditions = pd.read_csv(SYNTHEA_111 / "conditions.csv")
    hits = match_ltc(conditions["DESCRIPTION"])
    pairs = pd.DataFrame({"p": conditions.loc[hits["row"], "PATIENT"].to_numpy(), "c": hits["condition"].to_numpy()})
    tables, summary = read_synthea(SYNTHEA_111, pseudonym_key=KEY)
    not_ltc = summary.dropped["conditions that are not register long-term conditions"]
    assert len(tables["ltc_register"]) == len(pairs.drop_duplicates()) == 83
    assert not_ltc == len(conditions) - hits["row"].nunique() == 4293
    assert any(n.startswith(f"{len(hits):,} register condition records ({hits['row'].nunique():,} rows of "
                            f"conditions.csv) give 83 register entries") and f"({len(hits) - 83:,} later records" in n
               for n in summary.notes)
