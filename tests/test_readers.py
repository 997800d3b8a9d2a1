"""Readers: Synthea and OMOP exports to canonical tables, import to a folder, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.data.readers import MissingSourceFileError
from riskstrat.pipelines.imports import import_dataset
from riskstrat.data.readers.omop import bnf_from_code, icd10_condition, read_omop
from riskstrat.data.readers.synthea import bnf_chapter, match_ltc, read_synthea
from riskstrat.data.schema import TABLES

KEY = b"test-key"
SYNTHEA_111 = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-111"
needs_synthea = pytest.mark.skipif(not SYNTHEA_111.is_dir(),
                                   reason=f"Synthea test export not found at {SYNTHEA_111}")


def _date(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


# --- Synthea: the real 111-patient export ----------------------------------------------------

@pytest.fixture(scope="module")
def synthea_import(tmp_path_factory):
    if not SYNTHEA_111.is_dir():
        pytest.skip(f"Synthea test export not found at {SYNTHEA_111}")
    out = tmp_path_factory.mktemp("synthea") / "linked"
    summary, report = import_dataset("synthea", SYNTHEA_111, out, pseudonym_key=KEY)
    return out, summary, report


@needs_synthea
def test_synthea_import_writes_a_valid_canonical_folder(synthea_import):
    from riskstrat.data.validate import load_records

    out, summary, report = synthea_import
    assert report.ok
    assert summary.people == 111
    assert summary.source_rows["patients.csv"] == 111
    assert summary.source_rows["encounters.csv"] == 7584
    records = load_records(out)
    assert len(records.persons) == 111
    for table in ("ae_attendances", "inpatient_spells", "outpatient_appointments", "gp_contacts",
                  "ltc_register", "prescriptions", "social_care"):
        assert len(records.get(table)) > 0, table
    for name, df in records.tables.items():
        assert set(df.columns) <= set(TABLES[name].column_names), name
    # import_report.json replaced import_summary.json; dataset.json records the currency (USD)
    assert (out / "import_report.json").exists() and not (out / "import_summary.json").exists()
    assert json.loads((out / "dataset.json").read_text())["currency"] == "USD"
    # hospice encounters have no canonical table and are counted, not silently lost
    assert summary.dropped["encounters of class 'hospice' (no canonical table for palliative care)"] == 14


@needs_synthea
def test_synthea_output_holds_no_source_ids_or_identifiers(synthea_import):
    out, _, _ = synthea_import
    patients = pd.read_csv(SYNTHEA_111 / "patients.csv", dtype=str)
    organisations = pd.read_csv(SYNTHEA_111 / "organizations.csv", dtype=str)
    secrets = (list(patients["Id"]) + list(patients["SSN"]) + list(patients["LAST"].head(20))
               + list(organisations["Id"].head(20)))
    for path in out.iterdir():
        blob = path.read_bytes()
        for value in secrets:
            assert value.encode() not in blob, f"{value} found in {path.name}"
    persons = pd.read_parquet(out / "persons.parquet")
    assert set(persons.columns) <= set(TABLES["persons"].column_names)
    assert persons["person_id"].str.fullmatch(r"[0-9a-f]{16}").all()


@needs_synthea
def test_synthea_rerun_with_the_same_key_is_identical(synthea_import, tmp_path):
    out, _, _ = synthea_import
    again = tmp_path / "again"
    import_dataset("synthea", SYNTHEA_111, again, pseudonym_key=KEY)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in again.iterdir())
    for path in out.iterdir():
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name


@needs_synthea
def test_synthea_mapping_on_the_real_export():
    tables, summary = read_synthea(SYNTHEA_111, pseudonym_key=KEY)
    persons = tables["persons"]
    assert set(persons["sex"]) == {"female", "male"}
    assert (persons["sex"] == "female").sum() == 69
    assert persons["death_date"].notna().sum() == 11
    assert persons["deprivation_decile"].between(1, 10).all()
    assert persons["practice_id"].str.fullmatch(r"ORG[0-9a-f]{8}").all()
    ae = tables["ae_attendances"]
    assert len(ae) == 250 + 523  # emergency + urgent care encounters
    assert ae["admitted"].sum() > 0
    spells = tables["inpatient_spells"]
    assert len(spells) == 49
    # Most stays say nothing about how they began: "unknown", never guessed "elective".
    assert {"emergency", "unknown"} <= set(spells["admission_method"])
    assert (spells["admission_method"] == "unknown").sum() == 29
    assert len(tables["outpatient_appointments"]) == 1198
    assert len(tables["gp_contacts"]) == 3171 + 2366 + 1  # ambulatory + wellness + virtual
    assert (tables["social_care"]["service_type"] == "nursing").all()
    assert not tables["ltc_register"].duplicated(["person_id", "condition"]).any()
    assert summary.date_range[0] <= summary.date_range[1]


# --- Synthea: messy exports ------------------------------------------------------------------

@pytest.fixture
def messy_synthea(tmp_path):
    """A copy of the export with a BOM, no PROVIDER column, lower-case headers, no medications.csv."""
    if not SYNTHEA_111.is_dir():
        pytest.skip(f"Synthea test export not found at {SYNTHEA_111}")
    src = tmp_path / "synthea"
    src.mkdir()
    patients = (SYNTHEA_111 / "patients.csv").read_bytes()
    (src / "patients.csv").write_bytes(b"\xef\xbb\xbf" + patients)
    encounters = pd.read_csv(SYNTHEA_111 / "encounters.csv", dtype=str).drop(columns=["PROVIDER"])
    encounters.columns = [c.lower() for c in encounters.columns]
    encounters.to_csv(src / "encounters.csv", index=False)
    shutil.copy(SYNTHEA_111 / "conditions.csv", src / "conditions.csv")
    return src


def test_synthea_copes_with_bom_lower_case_and_missing_optional_parts(messy_synthea):
    tables, summary = read_synthea(messy_synthea, pseudonym_key=KEY)
    assert len(tables["persons"]) == 111
    assert "prescriptions" not in tables
    assert any("medications.csv absent" in n for n in summary.notes)
    assert len(tables["inpatient_spells"]) == 49
    assert tables["persons"]["practice_id"].str.startswith("ORG").all()
    # with practice_from="provider" the missing PROVIDER column leaves practice_id blank, with a note
    tables, summary = read_synthea(messy_synthea, pseudonym_key=KEY, practice_from="provider")
    assert tables["persons"]["practice_id"].isna().all()
    assert any("PROVIDER" in n for n in summary.notes)


def test_synthea_without_patients_csv_names_the_file(messy_synthea):
    (messy_synthea / "patients.csv").unlink()
    with pytest.raises(MissingSourceFileError, match="patients.csv"):
        read_synthea(messy_synthea, pseudonym_key=KEY)


def _tiny_synthea(tmp_path: Path) -> Path:
    """Two patients and hand-placed encounters, to check the rules exactly."""
    src = tmp_path / "tiny"
    src.mkdir()
    pd.DataFrame({
        "Id": ["p1", "p2"], "BIRTHDATE": ["1950-01-01", "1990-06-30"], "DEATHDATE": ["", ""],
        "FIRST": ["Ann", "Bob"], "SSN": ["999-1", "999-2"], "RACE": ["white", "asian"],
        "ETHNICITY": ["hispanic", "nonhispanic"], "GENDER": ["F", "M"], "INCOME": ["10000", "90000"],
    }).to_csv(src / "patients.csv", index=False)
    rows = [  # START, STOP, PATIENT, ORGANIZATION, CLASS, DESCRIPTION, REASON, COST
        ("2020-01-01T22:00:00Z", "2020-01-01T23:00:00Z", "p1", "o1", "emergency", "Emergency room admission", "",
         "300"),
        ("2020-01-02T10:00:00Z", "2020-01-05T10:00:00Z", "p1", "o2", "inpatient", "Hospital admission", "", "5000"),
        ("2020-03-01T10:00:00Z", "2020-03-02T10:00:00Z", "p1", "o2", "inpatient", "Admission to surgical department",
         "Sterilization requested", "4000"),
        ("2020-04-01T10:00:00Z", "2020-04-02T10:00:00Z", "p1", "o2", "inpatient", "Encounter for problem",
         "Acute bronchitis", "4000"),
        ("2020-05-01T10:00:00Z", "2020-05-01T11:00:00Z", "p1", "o9", "ambulatory", "Encounter for symptom", "", "80"),
        ("2020-06-01T10:00:00Z", "2020-06-01T11:00:00Z", "p1", "o9", "wellness", "General examination", "", "80"),
        ("2020-07-01T10:00:00Z", "2020-07-15T10:00:00Z", "p1", "o3", "snf", "Admission to SNF", "", "2800"),
        ("2020-08-01T10:00:00Z", "2020-08-01T11:00:00Z", "p1", "o3", "hospice", "Admission to hospice", "", "1"),
        ("2020-09-01T10:00:00Z", "2020-09-01T11:00:00Z", "p2", "o4", "urgentcare", "Urgent care clinic", "", "100"),
        ("2020-09-05T10:00:00Z", "2020-09-05T11:00:00Z", "p2", "o4", "outpatient",
         "Consultation for treatment (procedure)", "", "150"),
        ("2020-09-06T10:00:00Z", "2020-09-06T11:00:00Z", "p2", "o4", "spaceflight", "?", "", "1"),
        ("2020-09-07T10:00:00Z", "2020-09-07T11:00:00Z", "ghost", "o4", "wellness", "?", "", "1"),
    ]
    pd.DataFrame(rows, columns=["START", "STOP", "PATIENT", "ORGANIZATION", "ENCOUNTERCLASS", "DESCRIPTION",
                                "REASONDESCRIPTION", "TOTAL_CLAIM_COST"]).to_csv(src / "encounters.csv", index=False)
    pd.DataFrame({
        "START": ["2015-01-01", "2012-01-01", "2018-01-01", "2019-01-01", "2019-02-01"],
        "PATIENT": ["p1", "p1", "p1", "p2", "p2"],
        "DESCRIPTION": ["Diabetes mellitus type 2 (disorder)", "Diabetes mellitus type 2 (disorder)",
                        "Prediabetes", "Essential hypertension (disorder)", "Viral sinusitis (disorder)"],
    }).to_csv(src / "conditions.csv", index=False)
    pd.DataFrame({
        "START": ["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z", "2020-01-03T00:00:00Z"],
        "PATIENT": ["p1", "p1", "p2"], "CODE": ["314076", "860975", "123"],
        "DESCRIPTION": ["lisinopril 10 MG Oral Tablet", "24 HR Metformin hydrochloride 500 MG", "Mystery elixir"],
        "BASE_COST": ["5", "7", "9"],
    }).to_csv(src / "medications.csv", index=False)
    return src


def test_synthea_rules_on_a_hand_made_export(tmp_path):
    tables, summary = read_synthea(_tiny_synthea(tmp_path), pseudonym_key=KEY)
    persons = tables["persons"].set_index("sex")
    assert persons.loc["female", "ethnicity_group"] == "other"  # hispanic -> other
    assert persons.loc["male", "ethnicity_group"] == "asian"
    assert persons.loc["female", "deprivation_decile"] == 5  # lower income of two -> 50th percentile
    assert persons.loc["male", "deprivation_decile"] == 10
    assert persons.loc["female", "practice_id"].startswith("ORG")  # o9: her usual primary-care organisation
    assert "FIRST" not in tables["persons"] and "Ann" not in tables["persons"].to_string()

    ae = tables["ae_attendances"].sort_values("arrival_date")
    assert ae["admitted"].tolist() == [True, False]  # inpatient 12 h after the emergency visit; none after urgent care
    spells = tables["inpatient_spells"].sort_values("admission_date")
    # via A&E; nothing says (was "elective" before: never guessed now); acute reason
    assert spells["admission_method"].tolist() == ["emergency", "unknown", "emergency"]
    assert spells["discharge_date"].iloc[0] == _date("2020-01-05")
    assert tables["outpatient_appointments"]["specialty"].tolist() == ["Consultation for treatment"]
    assert sorted(tables["gp_contacts"]["contact_type"]) == ["ambulatory", "wellness"]
    care = tables["social_care"].iloc[0]
    assert (care["service_type"], care["weekly_cost"]) == ("nursing", pytest.approx(1400.0))

    register = tables["ltc_register"]
    assert sorted(register["condition"]) == ["diabetes", "hypertension"]
    assert register.loc[register["condition"] == "diabetes", "diagnosis_date"].item() == _date("2012-01-01")
    assert sorted(tables["prescriptions"]["bnf_chapter"]) == ["02", "06", "unknown"]  # unmapped drugs kept
    assert summary.currency == "USD"
    assert tables["prescriptions"]["cost"].sum() == 21  # 5 + 7 and the unmapped elixir's 9

    assert summary.dropped == {
        "encounters with a person id not in the person table": 1,
        "encounters of class 'hospice' (no canonical table for palliative care)": 1,
        "encounters of class 'spaceflight' (no canonical table for this class)": 1,
        "conditions that are not register long-term conditions": 2,
    }
    assert any("Mystery elixir" in n for n in summary.notes)


@pytest.mark.parametrize("description, expected", [
    ("Essential hypertension (disorder)", ["hypertension"]),
    ("Prediabetes", []),
    ("Neuropathy due to type 2 diabetes mellitus (disorder)", ["diabetes"]),
    ("Chronic obstructive bronchitis (disorder)", ["copd"]),
    ("Acute bronchitis (disorder)", []),
    ("History of coronary artery bypass grafting (situation)", ["chd"]),
    ("Abnormal findings diagnostic imaging heart+coronary circulat (finding)", []),
    ("End-stage renal disease (disorder)", ["ckd"]),
    ("Malignant neoplasm of breast (disorder)", ["cancer"]),
    ("Polyp of colon", []),
    ("Familial Alzheimer's disease of early onset (disorder)", ["dementia"]),
    ("Seizure disorder", ["epilepsy"]),
    ("History of single seizure (situation)", []),
])
def test_synthea_condition_keywords(description, expected):
    assert match_ltc(pd.Series([description]))["condition"].tolist() == expected


@pytest.mark.parametrize("description, chapter", [
    ("amLODIPine 2.5 MG Oral Tablet", "02"),
    ("Clopidogrel 75 MG Oral Tablet", "02"),
    ("NDA020983 200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler [Ventolin]", "03"),
    ("Acetaminophen 325 MG Oral Tablet [Tylenol]", "04"),
    ("Acetaminophen 21.7 MG/ML / Dextromethorphan Hydrobromide 1 MG/ML Oral Solution", "03"),
    ("Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet", "05"),
    ("Cefuroxime 250 MG Oral Tablet", "05"),
    ("insulin isophane  human 70 UNT/ML Injectable Suspension [Humulin]", "06"),
    ("Yaz 28 Day Pack", "07"),
    ("10 ML oxaliplatin 5 MG/ML Injection", "08"),
    ("Ibuprofen 400 MG Oral Tablet [Ibu]", "10"),
    ("10 ML Fentanyl 0.05 MG/ML Injection", "15"),
    ("72 HR Fentanyl 0.025 MG/HR Transdermal System", "04"),
])
def test_synthea_bnf_keywords(description, chapter):
    assert bnf_chapter(pd.Series([description])).item() == chapter


# --- OMOP ------------------------------------------------------------------------------------

def _write(path: Path, rows: list[dict], *, sep: str = ",", upper: bool = False) -> None:
    df = pd.DataFrame(rows)
    if upper:
        df.columns = [c.upper() for c in df.columns]
    df.to_csv(path, index=False, sep=sep)


@pytest.fixture
def omop_dir(tmp_path) -> Path:
    src = tmp_path / "omop"
    src.mkdir()
    _write(src / "person.csv", [
        dict(person_id=1, gender_concept_id=8507, year_of_birth=1950, month_of_birth=3, day_of_birth=15,
             birth_datetime="", race_concept_id=8527, ethnicity_concept_id=38003564, care_site_id=10),
        dict(person_id=2, gender_concept_id=8532, year_of_birth=1980, month_of_birth="", day_of_birth="",
             birth_datetime="", race_concept_id=8516, ethnicity_concept_id=38003563, care_site_id=""),
        dict(person_id=3, gender_concept_id=0, year_of_birth=1940, month_of_birth=7, day_of_birth=1,
             birth_datetime="1940-07-01 00:00:00", race_concept_id=0, ethnicity_concept_id=0, care_site_id=11),
        dict(person_id=4, gender_concept_id=8532, year_of_birth=1960, month_of_birth=12, day_of_birth=31,
             birth_datetime="", race_concept_id=8515, ethnicity_concept_id=0, care_site_id=10),
        dict(person_id=5, gender_concept_id=8507, year_of_birth=1970, month_of_birth=1, day_of_birth=1,
             birth_datetime="", race_concept_id=8657, ethnicity_concept_id=0, care_site_id=10),
    ])
    _write(src / "death.csv", [dict(person_id=3, death_date="2021-06-01"), dict(person_id=99, death_date="2020-01-01")])
    _write(src / "observation_period.tsv", [
        dict(person_id=1, observation_period_start_date="2010-01-01", observation_period_end_date="2015-12-31"),
        dict(person_id=1, observation_period_start_date="2016-01-01", observation_period_end_date="2022-12-31"),
        dict(person_id=2, observation_period_start_date="2012-05-01", observation_period_end_date="2019-12-31"),
        dict(person_id=3, observation_period_start_date="2005-01-01", observation_period_end_date="2021-06-01"),
        dict(person_id=4, observation_period_start_date="2000-01-01", observation_period_end_date="2022-12-31"),
    ], sep="\t")
    visit = dict(visit_source_value="", admitted_from_concept_id="", discharged_to_concept_id="", visit_end_date="")
    visits = [
        dict(visit, visit_occurrence_id=101, person_id=1, visit_concept_id=9203, visit_start_date="2020-01-10"),
        dict(visit, visit_occurrence_id=102, person_id=1, visit_concept_id=9201, visit_start_date="2020-01-11",
             visit_end_date="2020-01-15"),
        dict(visit, visit_occurrence_id=103, person_id=1, visit_concept_id=9201, visit_start_date="2020-06-01",
             visit_end_date="2020-06-03"),
        dict(visit, visit_occurrence_id=104, person_id=2, visit_concept_id=9201, visit_start_date="2019-03-01",
             visit_end_date="2019-03-05", admitted_from_concept_id=8870),
        dict(visit, visit_occurrence_id=105, person_id=2, visit_concept_id=262, visit_start_date="2019-08-01",
             visit_end_date="2019-08-04"),
        dict(visit, visit_occurrence_id=106, person_id=2, visit_concept_id=9203, visit_start_date="2019-09-01"),
        dict(visit, visit_occurrence_id=107, person_id=3, visit_concept_id=8717, visit_start_date="2020-02-01",
             visit_end_date="2020-02-10", admitted_from_concept_id=8717),
        dict(visit, visit_occurrence_id=108, person_id=3, visit_concept_id=32037, visit_start_date="2020-03-01",
             visit_end_date="2020-03-04", visit_source_value="Emergency admission"),
        dict(visit, visit_occurrence_id=109, person_id=4, visit_concept_id=9202, visit_start_date="2020-04-01"),
        dict(visit, visit_occurrence_id=110, person_id=4, visit_concept_id=581477, visit_start_date="2020-04-02"),
        dict(visit, visit_occurrence_id=111, person_id=4, visit_concept_id=38004207, visit_start_date="2020-04-03"),
        dict(visit, visit_occurrence_id=112, person_id=4, visit_concept_id=8863, visit_start_date="2020-05-01",
             visit_end_date="2020-05-15"),
        dict(visit, visit_occurrence_id=113, person_id=5, visit_concept_id=9999, visit_start_date="2020-01-01"),
        dict(visit, visit_occurrence_id=114, person_id=99, visit_concept_id=9201, visit_start_date="2020-01-01"),
        dict(visit, visit_occurrence_id=115, person_id=5, visit_concept_id=0, visit_start_date="2020-01-02"),
        dict(visit, visit_occurrence_id=116, person_id=4, visit_concept_id=9203, visit_start_date="2020-07-01",
             discharged_to_concept_id=8717),
        dict(visit, visit_occurrence_id=117, person_id=3, visit_concept_id=9201, visit_start_date="2021-05-30",
             visit_end_date="2021-06-03"),  # died in hospital on 2021-06-01
    ]
    _write(src / "visit_occurrence.csv", visits, upper=True)  # upper-case headers are accepted
    _write(src / "cost.csv", [
        dict(cost_id=1, cost_event_id=102, cost_domain_id="Visit", total_charge="", total_cost=3000),
        dict(cost_id=2, cost_event_id=101, cost_domain_id="Visit", total_charge=250, total_cost=""),
        dict(cost_id=3, cost_event_id=112, cost_domain_id="Visit", total_charge="", total_cost=2800),
        dict(cost_id=4, cost_event_id=201, cost_domain_id="Drug", total_charge="", total_cost=12.5),
        dict(cost_id=5, cost_event_id=102, cost_domain_id="Drug", total_charge="", total_cost=999),
    ])
    _write(src / "condition_occurrence.csv", [
        dict(person_id=1, condition_concept_id=201826, condition_start_date="2015-05-01",
             condition_source_value="E11.9"),
        dict(person_id=1, condition_concept_id=0, condition_start_date="2014-01-01", condition_source_value="E119"),
        dict(person_id=1, condition_concept_id=0, condition_start_date="2016-01-01", condition_source_value="I48"),
        dict(person_id=2, condition_concept_id=320128, condition_start_date="2018-01-01", condition_source_value=""),
        dict(person_id=2, condition_concept_id=0, condition_start_date="2018-02-01", condition_source_value="R69"),
        dict(person_id=3, condition_concept_id=4182210, condition_start_date="2019-01-01", condition_source_value=""),
        dict(person_id=3, condition_concept_id=0, condition_start_date="2017-01-01", condition_source_value="C50.9"),
        dict(person_id=4, condition_concept_id=0, condition_start_date="2017-01-01",
             condition_source_value="195662009"),
        dict(person_id=99, condition_concept_id=201826, condition_start_date="2017-01-01", condition_source_value=""),
    ])
    _write(src / "drug_exposure.csv", [
        dict(drug_exposure_id=201, person_id=1, drug_concept_id=1545958, drug_exposure_start_date="2020-01-20",
             drug_source_value="0212000B0AAABAB"),
        dict(drug_exposure_id=202, person_id=1, drug_concept_id=1503297, drug_exposure_start_date="2020-02-01",
             drug_source_value="0601022B0"),
        dict(drug_exposure_id=203, person_id=2, drug_concept_id=1, drug_exposure_start_date="2020-02-01",
             drug_source_value="1049221"),
        dict(drug_exposure_id=204, person_id=3, drug_concept_id=2, drug_exposure_start_date="2020-02-02",
             drug_source_value="4.3"),
        dict(drug_exposure_id=205, person_id=4, drug_concept_id=3, drug_exposure_start_date="2020-02-03",
             drug_source_value=""),
        dict(drug_exposure_id=206, person_id=99, drug_concept_id=3, drug_exposure_start_date="2020-02-03",
             drug_source_value="0212000B0AAABAB"),
    ])
    return src


def _by_person(tables, name, pseudonyms):
    df = tables[name].copy()
    df["source_id"] = df["person_id"].map({v: k for k, v in pseudonyms.items()})
    return df


@pytest.fixture
def omop_tables(omop_dir):
    from riskstrat.data.privacy import pseudonymise

    tables, summary = read_omop(omop_dir, pseudonym_key=KEY)
    ids = pd.Series(["1", "2", "3", "4", "5"])
    pseudonyms = dict(zip(ids, pseudonymise(ids, KEY)))
    return tables, summary, pseudonyms


def test_omop_persons(omop_tables):
    tables, _, pseudonyms = omop_tables
    p = _by_person(tables, "persons", pseudonyms).set_index("source_id")
    assert p.loc["1", "birth_date"] == _date("1950-03-15")
    assert p.loc["2", "birth_date"] == _date("1980-01-01")  # missing month and day -> 1st January
    assert p["sex"].to_dict() == {"1": "male", "2": "female", "3": "unknown", "4": "female", "5": "male"}
    assert p["ethnicity_group"].to_dict() == {"1": "white", "2": "other", "3": "unknown", "4": "asian", "5": "other"}
    # No care_site table says these care sites are practices: practice left blank, never "UNKNOWN".
    assert p["practice_id"].isna().all()
    assert p.loc["3", "death_date"] == _date("2021-06-01")
    assert p["death_date"].notna().sum() == 1
    assert p.loc["1", "registration_start"] == _date("2010-01-01")
    assert pd.isna(p.loc["1", "registration_end"])  # observed to the end of the extract: still registered
    assert p.loc["2", "registration_end"] == _date("2019-12-31")
    assert pd.isna(p.loc["5", "registration_start"])


def test_omop_visits(omop_tables):
    tables, _, pseudonyms = omop_tables
    spells = _by_person(tables, "inpatient_spells", pseudonyms).set_index(["source_id", "admission_date"])
    method = spells["admission_method"]
    assert method[("1", _date("2020-01-11"))] == "emergency"  # ER visit the day before
    assert method[("1", _date("2020-06-01"))] == "unknown"  # nothing says how: never guessed elective
    assert method[("2", _date("2019-03-01"))] == "emergency"  # admitted from the emergency room (8870)
    assert method[("2", _date("2019-08-01"))] == "emergency"  # 262: ER and inpatient visit
    assert method[("3", _date("2020-02-01"))] == "transfer"  # admitted from another hospital
    assert method[("3", _date("2020-03-01"))] == "emergency"  # ICU stay, source value says emergency
    assert method[("3", _date("2021-05-30"))] == "unknown"
    assert spells.loc[("3", _date("2021-05-30")), "discharge_date"] == _date("2021-06-01")  # the death date
    assert len(spells) == 7
    assert spells.loc[("1", _date("2020-01-11")), "cost"] == 3000  # the Drug cost row with the same id is ignored
    assert spells.loc[("1", _date("2020-01-11")), "discharge_date"] == _date("2020-01-15")

    ae = _by_person(tables, "ae_attendances", pseudonyms).set_index(["source_id", "arrival_date"])
    assert ae["admitted"].to_dict() == {
        ("1", _date("2020-01-10")): True, ("2", _date("2019-08-01")): True,
        ("2", _date("2019-09-01")): False, ("4", _date("2020-07-01")): True,
    }
    assert ae.loc[("1", _date("2020-01-10")), "cost"] == 250  # total_charge when total_cost is blank

    assert _by_person(tables, "outpatient_appointments", pseudonyms)["source_id"].tolist() == ["4"]
    gp = tables["gp_contacts"]
    assert sorted(gp["contact_type"]) == ["ambulatory clinic", "office visit"]
    care = tables["social_care"].iloc[0]
    assert (care["service_type"], care["weekly_cost"]) == ("nursing", pytest.approx(1400.0))


def test_omop_conditions_drugs_and_dropped_counts(omop_tables):
    tables, summary, pseudonyms = omop_tables
    reg = _by_person(tables, "ltc_register", pseudonyms)
    got = {(r.source_id, r.condition): r.diagnosis_date for r in reg.itertuples()}
    assert got == {
        ("1", "diabetes"): _date("2014-01-01"),  # ICD-10 E119 before the SNOMED record: first date kept
        ("1", "atrial_fibrillation"): _date("2016-01-01"),
        ("2", "hypertension"): _date("2018-01-01"),
        ("3", "dementia"): _date("2019-01-01"),
        ("3", "cancer"): _date("2017-01-01"),
    }
    rx = _by_person(tables, "prescriptions", pseudonyms)
    assert sorted(rx["bnf_chapter"]) == ["02", "04", "06", "unknown", "unknown"]  # no drug dropped
    assert rx["cost"].sum() == 12.5
    assert summary.dropped == {
        "death with a person id not in the person table": 1,
        "condition_occurrence with a person id not in the person table": 1,
        "drug_exposure with a person id not in the person table": 1,
        "visit_occurrence with a person id not in the person table": 1,
        "visits with unmapped visit_concept_id 0": 1,
        "visits with unmapped visit_concept_id 9999": 1,
        "condition_occurrence rows that are not register long-term conditions": 2,
    }
    assert summary.source_rows["observation_period.tsv"] == 5
    assert summary.people == 5


def test_omop_missing_visit_table_names_it(omop_dir):
    (omop_dir / "visit_occurrence.csv").unlink()
    with pytest.raises(MissingSourceFileError, match="visit_occurrence"):
        read_omop(omop_dir, pseudonym_key=KEY)


def test_omop_optional_tables_may_be_absent(omop_dir):
    for name in ("cost.csv", "death.csv", "observation_period.tsv", "condition_occurrence.csv", "drug_exposure.csv"):
        (omop_dir / name).unlink()
    tables, summary = read_omop(omop_dir, pseudonym_key=KEY)
    assert set(tables) == {"persons", "inpatient_spells", "ae_attendances", "outpatient_appointments",
                           "gp_contacts", "social_care"}
    assert tables["persons"]["death_date"].isna().all()
    assert tables["inpatient_spells"]["cost"].isna().all()
    for name in ("cost", "death", "observation_period", "condition_occurrence", "drug_exposure"):
        assert any(note.startswith(f"{name} absent") for note in summary.notes), name


def test_icd10_and_bnf_code_helpers():
    got = icd10_condition(pd.Series(["J44.1", "F31", "F32.0", "I64", "G30.1", "C97", "D00"]))
    assert got.iloc[:6].tolist() == ["copd", "smi", "depression", "stroke", "dementia", "cancer"]
    assert pd.isna(got.iloc[6])
    chapters = bnf_from_code(pd.Series(["0212000B0AAABAB", "0601022B0", "2.12", "1049221", "00093515001", ""]))
    assert chapters.iloc[:3].tolist() == ["02", "06", "02"]
    assert chapters.iloc[3:].isna().all()


def test_omop_import_writes_a_valid_folder(omop_dir, tmp_path):
    from riskstrat.data.validate import load_records

    summary, report = import_dataset("omop", omop_dir, tmp_path / "linked", pseudonym_key=KEY)
    assert report.ok
    records = load_records(tmp_path / "linked")
    assert len(records.persons) == 5
    assert len(records.get("inpatient_spells")) == 7


# --- CLI -------------------------------------------------------------------------------------

@pytest.fixture
def cli(monkeypatch):
    from riskstrat.cli import app

    monkeypatch.setenv("RISKSTRAT_PSEUDONYM_KEY", "cli-test-key")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(map(str, args)))


def test_cli_import_synthea(cli, tmp_path):
    src = _tiny_synthea(tmp_path)
    result = cli("import", "synthea", src, "--out", tmp_path / "linked")
    assert result.exit_code == 0, result.output
    assert "2 people" in result.output
    assert "hospice" in result.output
    assert (tmp_path / "linked" / "persons.parquet").exists()


def test_cli_import_omop(cli, omop_dir, tmp_path):
    result = cli("import", "omop", omop_dir, "--out", tmp_path / "linked")
    assert result.exit_code == 0, result.output
    assert "visit_occurrence" in result.output
    assert (tmp_path / "linked" / "inpatient_spells.parquet").exists()


def test_cli_missing_required_file_exits_2_and_writes_nothing(cli, tmp_path):
    src = _tiny_synthea(tmp_path)
    (src / "encounters.csv").unlink()
    result = cli("import", "synthea", src, "--out", tmp_path / "linked")
    assert result.exit_code == 2
    assert "encounters.csv" in result.output
    assert not (tmp_path / "linked").exists()


def test_cli_validation_failure_exits_2_and_writes_nothing(cli, tmp_path):
    src = _tiny_synthea(tmp_path)
    patients = pd.read_csv(src / "patients.csv", dtype=str)
    patients["BIRTHDATE"] = "not a date"  # persons without a birth date cannot be validated
    patients.to_csv(src / "patients.csv", index=False)
    result = cli("import", "synthea", src, "--out", tmp_path / "linked")
    assert result.exit_code == 2, result.output
    assert "nothing was written" in result.output
    assert not (tmp_path / "linked").exists()


def test_cli_import_help_has_an_example(cli):
    result = cli("import", "synthea", "--help")
    assert result.exit_code == 0
    assert "Example: riskstrat import synthea" in result.output


# --- reading numbers and dates ---------------------------------------------------------------

@pytest.mark.parametrize("text, currency, number", [
    ("12.5", None, 12.5), (" 7 ", None, 7.0), ("1e3", None, 1000.0), ("-3", None, -3.0),
    ("inf", None, None), ("-Infinity", None, None), ("NaN", None, None), ("nan", None, None), ("1e999", None, None),
    ('=cmd|"/c calc"!A0', None, None), ("1,234.50", None, None), ("$120", None, None),
    ("1,234.50", "USD", 1234.5), ("$120", "USD", 120.0), ("-$1,000", "USD", -1000.0), ("£120", "GBP", 120.0),
    ("£120", "USD", None), ("$120", "GBP", None), ("1.234,50", "EUR", None), ("12,5", "EUR", None),
])
def test_numbers_are_read_strictly_and_amounts_as_spreadsheets_write_them(text, currency, number):
    from riskstrat.data.readers import ImportSummary
    from riskstrat.data.readers._common import _to_float

    summary = ImportSummary(source="test")
    got = _to_float(pd.Series([text, None]), summary=summary, source_file="f.csv", column="C", currency=currency)
    assert got.isna().tolist() == [number is None, True]
    if number is not None:
        assert got.iloc[0] == number and summary.unreadable == {}
    else:
        assert summary.unreadable["f.csv: C"]["unreadable"] == 1 and summary.unreadable["f.csv: C"]["present"] == 1


def test_shapes_hide_values():
    from riskstrat.data.readers import value_shape

    shapes = value_shape(pd.Series(['=cmd|"/c calc"!A0', "Jane Smith 1950-02-01", "x" * 40, None]))
    assert shapes.tolist()[:3] == ['=ccc|"/c cccc"!cN', "cccc ccccc NNNN-NN-NN", "c" * 23 + "\u2026"]
    assert shapes.isna().iloc[3]
