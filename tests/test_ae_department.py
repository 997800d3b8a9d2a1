"""A&E department type: each reader's mapping from its own codes, the import report's counts, the
outcome's option, the A&E features, and data sets written before the column existed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from riskstrat.outcomes import parse_outcome
from riskstrat.pipelines.imports import import_dataset
from riskstrat.data.readers.hes import read_hes
from riskstrat.data.readers.omop import read_omop
from riskstrat.report.imports import format_import_report
from riskstrat.data.readers.synthea import read_synthea
from riskstrat.data.validate import load_records, validate_tables

KEY = b"ae-test-key"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
T = pd.Timestamp("2024-01-01")


def at(days: int) -> pd.Timestamp:
    return T + pd.Timedelta(days=days)


def _types(df: pd.DataFrame) -> list[str]:
    return df.sort_values("arrival_date")["department_type"].astype(str).tolist()


# --- readers ---------------------------------------------------------------------------------

def test_hes_aedepttype_maps_by_the_data_dictionary(tmp_path):
    src = tmp_path / "hes"
    src.mkdir()
    codes = ["01", "02", "03", "04", "99", "", "1", "07"]
    pd.DataFrame({"PSEUDO_HESID": "P1", "AEKEY": [f"k{i}" for i in range(len(codes))],
                  "ARRIVALDATE": [f"2020-01-{i + 1:02d}" for i in range(len(codes))], "ARRIVALAGE": "70",
                  "AEDEPTTYPE": codes}).to_csv(src / "ae.csv", index=False)
    tables, summary = read_hes(src, pseudonym_key=KEY)
    assert _types(tables["ae_attendances"]) == ["emergency_department", "single_specialty", "urgent_care", "walk_in",
                                                "unknown", "unknown", "emergency_department", "unknown"]
    assert summary.unknown_codes == {"AEDEPTTYPE": {"07": 1}}  # 99 and blank are the dictionary's "not known"


def test_hes_without_aedepttype_says_every_type_is_unknown(tmp_path):
    src = tmp_path / "hes"
    src.mkdir()
    pd.DataFrame({"PSEUDO_HESID": ["P1"], "AEKEY": ["k"], "ARRIVALDATE": ["2020-01-01"], "ARRIVALAGE": ["70"]}
                 ).to_csv(src / "ae.csv", index=False)
    tables, summary = read_hes(src, pseudonym_key=KEY)
    assert _types(tables["ae_attendances"]) == ["unknown"]
    assert any("no AEDEPTTYPE column" in n for n in summary.notes)


def _synthea(tmp_path: Path) -> Path:
    src = tmp_path / "synthea"
    src.mkdir()
    pd.DataFrame({"Id": ["p1"], "BIRTHDATE": ["1950-01-01"], "GENDER": ["F"]}).to_csv(src / "patients.csv", index=False)
    pd.DataFrame([("e1", "2020-01-01", "p1", "emergency"), ("e2", "2020-02-01", "p1", "urgentcare"),
                  ("e3", "2020-03-01", "p1", "urgentcare"), ("e4", "2020-04-01", "p1", "wellness")],
                 columns=["Id", "START", "PATIENT", "ENCOUNTERCLASS"]).to_csv(src / "encounters.csv", index=False)
    return src


def test_synthea_emergency_and_urgentcare(tmp_path):
    tables, _ = read_synthea(_synthea(tmp_path), pseudonym_key=KEY)
    assert _types(tables["ae_attendances"]) == ["emergency_department", "urgent_care", "urgent_care"]


def test_omop_visit_concepts_and_an_urgent_care_site(tmp_path):
    src = tmp_path / "cdm"
    src.mkdir()
    pd.DataFrame({"person_id": [1], "gender_concept_id": [8532], "year_of_birth": [1950]}).to_csv(
        src / "person.csv", index=False)
    # 9203 ER visit, 262 ER + inpatient, 8782 urgent care facility, 8870 ER - hospital, a 9203 visit held at a
    # care site whose place of service is 8782, and an outpatient visit (not an attendance).
    visits = [(1, 9203, "2020-01-01", ""), (2, 262, "2020-02-01", ""), (3, 8782, "2020-03-01", ""),
              (4, 8870, "2020-04-01", ""), (5, 9203, "2020-05-01", "77"), (6, 9202, "2020-06-01", "")]
    pd.DataFrame(visits, columns=["visit_occurrence_id", "visit_concept_id", "visit_start_date", "care_site_id"]
                 ).assign(person_id=1).to_csv(src / "visit_occurrence.csv", index=False)
    pd.DataFrame({"care_site_id": [77], "place_of_service_concept_id": [8782]}).to_csv(src / "care_site.csv",
                                                                                       index=False)
    tables, _ = read_omop(src, pseudonym_key=KEY)
    assert _types(tables["ae_attendances"]) == ["emergency_department", "emergency_department", "urgent_care",
                                                "emergency_department", "urgent_care"]
    assert len(tables["inpatient_spells"]) == 1  # the 262 visit's spell


def test_the_import_report_counts_attendances_per_type(tmp_path):
    summary, _ = import_dataset("synthea", _synthea(tmp_path), tmp_path / "linked", pseudonym_key=KEY)
    report = json.loads((tmp_path / "linked" / "import_report.json").read_text())
    assert report["ae_department_types"] == {"emergency_department": 1, "single_specialty": 0, "urgent_care": 2,
                                             "walk_in": 0, "unknown": 0}
    text = format_import_report(report)
    assert "A&E attendances by department type: emergency department 1, urgent care 2; type unknown: 0" in text
    assert "1 A&E attendances (2 urgent-care or walk-in attendances not counted)" in \
        report["outcomes"]["unplanned_hospital_use"]["message"]


# --- the shared exports, counted from the source files ----------------------------------------

@pytest.mark.skipif(not (SHARED / "synthea-111").is_dir(), reason="Synthea test export not found")
def test_synthea_111_types_equal_the_encounter_classes(tmp_path):
    enc = pd.read_csv(SHARED / "synthea-111" / "encounters.csv", usecols=["ENCOUNTERCLASS"])
    counts = enc["ENCOUNTERCLASS"].value_counts()
    assert (counts["emergency"], counts["urgentcare"]) == (250, 523)
    import_dataset("synthea", SHARED / "synthea-111", tmp_path / "linked", pseudonym_key=KEY)
    report = json.loads((tmp_path / "linked" / "import_report.json").read_text())
    assert report["ae_department_types"] == {"emergency_department": 250, "single_specialty": 0,
                                             "urgent_care": 523, "walk_in": 0, "unknown": 0}


@pytest.mark.skipif(not (SHARED / "omop-synthea27nj").is_dir(), reason="OMOP test export not found")
def test_omop_synthea27nj_types_equal_the_visit_concepts(tmp_path):
    visits = pd.read_csv(SHARED / "omop-synthea27nj" / "VISIT_OCCURRENCE.csv")
    concepts = visits.drop_duplicates("visit_occurrence_id")["visit_concept_id"].value_counts().to_dict()
    assert concepts == {9202: 1722, 9203: 56, 9201: 13}  # no 262, 8782 or 8870 in this export
    import_dataset("omop", SHARED / "omop-synthea27nj", tmp_path / "linked", pseudonym_key=KEY)
    report = json.loads((tmp_path / "linked" / "import_report.json").read_text())
    assert report["ae_department_types"] == {"emergency_department": 56, "single_specialty": 0, "urgent_care": 0,
                                             "walk_in": 0, "unknown": 0}


@pytest.mark.skipif(not (SHARED / "artificial-hes").is_dir(), reason="artificial HES not found")
def test_artificial_hes_types_equal_aedepttype():
    raw = pd.read_csv(SHARED / "artificial-hes" / "artificial_hes_ae_0708.csv", dtype=str, usecols=["AEDEPTTYPE"])
    assert raw["AEDEPTTYPE"].value_counts().to_dict() == {"99": 1000}  # "not known" throughout
    tables, summary = read_hes(SHARED / "artificial-hes", pseudonym_key=KEY)
    # Two attendances belong to the two people with no birth date (tests/test_readers_hes.py).
    assert tables["ae_attendances"]["department_type"].value_counts().to_dict() == {"unknown": 998}
    assert "AEDEPTTYPE" not in summary.unknown_codes


# --- the outcome and the features --------------------------------------------------------------

@pytest.fixture
def visits(make_records):
    kinds = {"ed": "emergency_department", "urgent": "urgent_care", "walk_in": "walk_in", "blank": None,
             "specialty": "single_specialty"}
    return make_records(persons=[{"person_id": p, "birth_date": "1950-01-01"} for p in kinds],
                        ae_attendances=[{"person_id": p, "arrival_date": at(30), "department_type": k}
                                        for p, k in kinds.items()])


def _labels(outcome: dict, records) -> dict[str, float]:
    ids = pd.Index(records.persons["person_id"])
    return parse_outcome(outcome).labels(records, T, ids, extract_end="2025-06-30").to_dict()


def test_urgent_care_only_is_not_unplanned_hospital_use_by_default(visits):
    assert _labels({"name": "unplanned_hospital_use"}, visits) == {
        "ed": 1, "urgent": 0, "walk_in": 0, "blank": 1, "specialty": 1}
    every = {"name": "unplanned_hospital_use", "ae_department_types": ["emergency_department", "single_specialty",
                                                                       "urgent_care", "walk_in", "unknown"]}
    assert set(_labels(every, visits).values()) == {1}
    assert _labels({"name": "unplanned_hospital_use", "ae_department_types": ["urgent_care"]}, visits)["urgent"] == 1
    assert parse_outcome(every).words == ("an unplanned admission or A&E attendance (emergency department or "
                                          "single specialty or urgent care or walk in or unknown) or death")
    with pytest.raises(ValidationError, match="ae_department_types"):
        parse_outcome({"name": "unplanned_hospital_use", "ae_department_types": ["minor_injuries"]})


def test_ae_features_count_the_default_types(visits):
    from riskstrat.features.reference import build_features

    f = build_features(visits, at(60), min_age=0)
    assert f["ae_attendances_0_3m"].to_dict() == {"ed": 1, "urgent": 0, "walk_in": 0, "blank": 1, "specialty": 1}
    assert f.loc["urgent", "days_since_ae"] == 731 and f.loc["ed", "days_since_ae"] == 30


# --- data sets written before the column existed -----------------------------------------------

def _without_column(folder: Path) -> None:
    path = folder / "ae_attendances.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["department_type"]), path)


def test_an_old_data_set_without_the_column_reads_as_unknown(tmp_path, make_table):
    from riskstrat.features.duckdb import DuckDBEngine
    from riskstrat.features.reference import build_features
    from riskstrat.data.io import write_records_tables

    ae = make_table("ae_attendances", [{"person_id": "a", "arrival_date": at(-10), "cost": 100.0},
                                       {"person_id": "a", "arrival_date": at(-400), "department_type": "walk_in",
                                        "cost": 90.0}])
    folder = write_records_tables({"persons": make_table("persons", [{"person_id": "a", "birth_date": "1950-01-01"}]),
                                   "ae_attendances": ae}, tmp_path / "old")
    _without_column(folder)
    assert "department_type" not in pq.read_schema(folder / "ae_attendances.parquet").names
    records = load_records(folder)
    assert records.get("ae_attendances")["department_type"].astype(str).tolist() == ["unknown", "unknown"]
    _, report = validate_tables({name: pd.read_parquet(folder / f"{name}.parquet")
                                 for name in ("persons", "ae_attendances")})
    assert report.ok and report.issues == []
    reference = build_features(records, T)
    assert reference.loc["a", "ae_attendances_0_3m"] == 1 and reference.loc["a", "ae_attendances_12_24m"] == 1
    got = DuckDBEngine(folder).features(T)
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    assert DuckDBEngine(folder).tables(["ae_attendances"]).get("ae_attendances")["department_type"] \
        .astype(str).tolist() == ["unknown", "unknown"]


def test_an_old_synthetic_data_set_still_trains(tmp_path):
    from riskstrat.modeling.config import load_config
    from riskstrat.pipelines.train import run_training
    from riskstrat.data.synth import write_population

    folder = tmp_path / "synthetic"
    write_population(folder, 1500, start="2021-11-01", years=4, seed=3, truth_dates=[], n_futures=1)
    assert set(pd.read_parquet(folder / "ae_attendances.parquet")["department_type"].astype(str)) == {
        "emergency_department"}
    _without_column(folder)
    small = ["index_dates.train=[2023-08-01]", "index_dates.test=2024-11-01", "evaluation.n_bootstrap=5",
             "model.lightgbm.n_estimators=20", "model.baselines=[prior_use]", "guards.min_events_train=10",
             "guards.min_events_calibration=10", "guards.min_events_test=10", "target.name=unplanned_hospital_use"]
    run = run_training(load_config(None, [f"data.path={folder}", *small]), log=False)
    # Every attendance read as "unknown", so counted: the features are not all zero.
    assert run.result.data.X_train["ae_attendances_3_12m"].sum() > 0
    assert np.isfinite(run.result.model.predict_risk(run.result.data.X_train.head(5))).all()
