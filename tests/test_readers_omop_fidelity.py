"""OMOP fidelity (issue 22): drugs by CONCEPT domain with vaccines apart, long-term conditions without
CONCEPT_ANCESTOR (shipped descendants, SNOMED and ICD-10 source codes), the import report's condition
and drug sections, and the rule for observation periods that end at each person's last record.
Hand-made CDM rows for each mapping; counts on the real omop-synthea27nj export checked with pandas."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from riskstrat.data.codelists import load_codelist, snomed_condition
from riskstrat.data.privacy import pseudonymise
from riskstrat.data.readers.omop import read_omop
from riskstrat.data.schema import LONG_TERM_CONDITIONS
from test_readers_omop import _cdm  # the CDM folder helper the OMOP reader tests share

KEY = b"test-key"
SYNTHEA27NJ = Path(__file__).resolve().parents[2] / "shared" / "data" / "omop-synthea27nj"
needs_export = pytest.mark.skipif(not SYNTHEA27NJ.is_dir(), reason=f"OMOP test export not found at {SYNTHEA27NJ}")


def _drug(i: int, concept: int, source_value: str = "", source_concept="") -> dict:
    return dict(drug_exposure_id=i, person_id=1, drug_concept_id=concept, drug_exposure_start_date="2020-01-01",
                drug_source_value=source_value, drug_source_concept_id=source_concept)


def _concept(cid, name, domain, vocabulary, cls, code) -> dict:
    return dict(concept_id=cid, concept_name=name, domain_id=domain, vocabulary_id=vocabulary, concept_class_id=cls,
                concept_code=code, standard_concept="S")


DRUG_CONCEPTS = [
    _concept(1308216, "lisinopril", "Drug", "RxNorm", "Ingredient", "29046"),
    _concept(40213154, "influenza, seasonal, injectable", "Drug", "CVX", "CVX", "140"),
    _concept(19000001, "pneumococcal vaccine", "Drug", "RxNorm", "Clinical Drug", "999001"),
    _concept(4000010, "Acute bronchitis", "Condition", "SNOMED", "Clinical Finding", "10509002"),
    _concept(4000020, "Medication review", "Procedure", "SNOMED", "Procedure", "182836005"),
    _concept(21600381, "ACE inhibitors, plain", "Drug", "ATC", "ATC 4th", "C09AA"),
]


# --- drugs -----------------------------------------------------------------------------------

def test_drugs_only_from_the_drug_domain_vaccines_in_chapter_14(tmp_path):
    src = _cdm(tmp_path, concept=DRUG_CONCEPTS, drug_exposure=[
        _drug(1, 1308216),                        # a medicine: ATC C09AA -> chapter 02
        _drug(2, 40213154, "140"),                # CVX vaccine -> chapter 14
        _drug(3, 19000001),                       # RxNorm vaccine (by name) -> chapter 14
        _drug(4, 0, "10509002"),                  # concept 0, SNOMED condition code as source value: dropped
        _drug(5, 4000020),                        # a procedure concept: dropped
        _drug(6, 0, "140"),                       # concept 0, CVX code as source value: a vaccine
        _drug(7, 5555),                           # not in CONCEPT: domain unknown, kept
    ], concept_ancestor=[dict(ancestor_concept_id=21600381, descendant_concept_id=1308216,
                              min_levels_of_separation=1)])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    rx = tables["prescriptions"].sort_values("drug_code")
    assert dict(zip(rx["drug_code"], rx["bnf_chapter"])) == {
        "0": "14", "1308216": "02", "19000001": "14", "40213154": "14", "5555": "unknown"}
    assert summary.dropped["drug_exposure rows whose concept is in the Condition domain, not Drug (not prescriptions)"] == 1
    assert summary.dropped["drug_exposure rows whose concept is in the Procedure domain, not Drug (not prescriptions)"] == 1
    assert summary.drop_examples[
        "drug_exposure rows whose concept is in the Procedure domain, not Drug (not prescriptions)"] == ["4000020"]
    assert summary.drug_domains == {
        "rows": 7, "not_drugs_dropped": {"Condition": 1, "Procedure": 1}, "medicines": 1, "vaccines": 3,
        "domain_unknown_kept": 1,
        "bnf_chapter": {"from BNF source values": 0, "from ATC classes": 1, "vaccines (chapter 14)": 3, "unknown": 1}}


def test_drugs_without_concept_table_are_all_kept_and_the_report_says_why(tmp_path):
    src = _cdm(tmp_path, drug_exposure=[_drug(1, 40213154, "140"), _drug(2, 0, "10509002")])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    assert len(tables["prescriptions"]) == 2 and tables["prescriptions"]["bnf_chapter"].eq("unknown").all()
    assert summary.drug_domains["domain_unknown_kept"] == 2
    assert any("no CONCEPT table, so a drug's domain cannot be read" in n for n in summary.notes)


def test_unknown_chapter_says_when_the_atc_class_is_linked_but_not_in_concept(tmp_path):
    # As in omop-synthea27nj: RxNorm - ATC links exist but CONCEPT holds no ATC concept.
    src = _cdm(tmp_path, concept=DRUG_CONCEPTS[:1], drug_exposure=[_drug(1, 1308216)],
               concept_relationship=[dict(concept_id_1=1308216, concept_id_2=21600999,
                                          relationship_id="RxNorm - ATC pr up", invalid_reason="")])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    assert tables["prescriptions"]["bnf_chapter"].tolist() == ["unknown"]
    assert summary.drug_domains["unknown_linked_to_atc_not_in_concept"] == 1


# --- conditions without CONCEPT_ANCESTOR -----------------------------------------------------

def _condition(i, person, concept, source_value="", source_concept="", date="2019-01-01") -> dict:
    return dict(condition_occurrence_id=i, person_id=person, condition_start_date=date, condition_concept_id=concept,
                condition_source_value=source_value, condition_source_concept_id=source_concept)


def test_shipped_lists_find_conditions_without_any_vocabulary(tmp_path):
    src = _cdm(tmp_path, person=[dict(person_id=i, year_of_birth=1950) for i in (1, 2, 3, 4, 5)], condition_occurrence=[
        _condition(1, 1, 443597, "433144002"),     # CKD stage 3: a listed descendant id (and its SNOMED code)
        _condition(2, 2, 0, "254837009"),          # concept 0, SNOMED source value: breast cancer
        _condition(3, 3, 0, "185086009"),          # chronic obstructive bronchitis (SNOMED)
        _condition(4, 4, 0, "F32.9"),              # ICD-10-CM depression
        _condition(5, 5, 4251306, "73595000"),     # stress: no register condition
        _condition(6, 4, 4251306, "73595000"),
    ])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    assert sorted(tables["ltc_register"]["condition"]) == ["cancer", "ckd", "copd", "depression"]
    m = summary.condition_matches
    assert set(m) == set(LONG_TERM_CONDITIONS)
    assert m["ckd"] == {"people": 1, "by_path": {"condition_concept_id": 1, "SNOMED code": 1}}
    assert m["cancer"] == {"people": 1, "by_path": {"SNOMED code": 1}}
    assert m["depression"] == {"people": 1, "by_path": {"ICD-10 source value": 1}}
    assert m["asthma"] == {"people": 0, "by_path": {}}
    assert summary.unmatched_conditions == [
        {"concept_id": 4251306, "concept_name": "", "source_value": "", "rows": 2, "people": 2}]


def test_unmatched_codes_named_from_concept_and_maps_to_used(tmp_path):
    src = _cdm(tmp_path, condition_occurrence=[
        _condition(1, 1, 4251306, "73595000"), _condition(2, 1, 0, "X99", source_concept=45576876)],
        concept=[_concept(4251306, "Stress", "Condition", "SNOMED", "Clinical Finding", "73595000")],
        concept_relationship=[dict(concept_id_1=45576876, concept_id_2=201826, relationship_id="Maps to")])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    assert tables["ltc_register"]["condition"].tolist() == ["diabetes"]
    assert summary.condition_matches["diabetes"]["by_path"] == {"source concept or Maps to": 1}
    assert summary.unmatched_conditions == [
        {"concept_id": 4251306, "concept_name": "Stress", "source_value": "", "rows": 1, "people": 1}]


def test_code_lists_cite_their_source_and_every_snomed_code_is_one_condition():
    desc, snomed = load_codelist("ltc_omop_descendants"), load_codelist("ltc_snomed")
    assert desc["source"].str.len().gt(20).all() and snomed["source"].str.startswith("SNOMED CT").all()
    assert set(snomed["condition"]) == set(LONG_TERM_CONDITIONS)
    assert not snomed["snomed_code"].duplicated().any()
    roots = set(load_codelist("ltc_omop")["concept_id"])
    assert not desc["concept_id"].isin(roots).any() and not desc.duplicated(["condition", "concept_id"]).any()
    assert snomed_condition(pd.Series(["126906006", "92691004"])).empty  # prostate neoplasm / in situ: not listed


# --- observation periods ---------------------------------------------------------------------

def _periods_cdm(tmp_path, ends: dict[int, str], visits: dict[int, list[str]]) -> Path:
    people = sorted(ends)
    return _cdm(tmp_path, person=[dict(person_id=i, year_of_birth=1950) for i in people],
                observation_period=[dict(observation_period_id=i, person_id=i, observation_period_start_date="2010-01-01",
                                         observation_period_end_date=e) for i, e in ends.items()],
                visit_occurrence=[dict(visit_occurrence_id=10 * i + k, person_id=i, visit_concept_id=9202,
                                       visit_start_date=d) for i, ds in visits.items() for k, d in enumerate(ds)])


def _ends(tables) -> dict[str, pd.Timestamp]:
    ids = dict(zip(pseudonymise(pd.Series([str(i) for i in range(1, 10)]), KEY), range(1, 10)))
    persons = tables["persons"]
    return dict(zip(persons["person_id"].map(ids), persons["registration_end"]))


def test_periods_ending_at_the_last_record_are_detected_and_handled(tmp_path):
    # Every period ends on the person's last visit (the ETL artefact); the extract ends 2022-12-31.
    src = _periods_cdm(tmp_path, ends={1: "2022-12-31", 2: "2022-03-01", 3: "2015-06-01", 4: "2019-06-01"},
                       visits={1: ["2022-12-31"], 2: ["2018-01-01", "2022-03-01"], 3: ["2015-06-01"],
                               4: ["2019-06-01"]})
    tables, summary = read_omop(src, pseudonym_key=KEY)
    ends = _ends(tables)
    assert pd.isna(ends[1]) and pd.isna(ends[2])                 # seen in the last 2 years: to the extract end
    assert ends[3] == pd.Timestamp("2017-06-01")                 # last seen 2015: last record + 2 years
    assert ends[4] == pd.Timestamp("2021-06-01")
    o = summary.observation_periods
    assert (o["artefact_detected"], o["rule"], o["people_compared"], o["ending_at_last_record"]) == (
        True, "last_record", 3, 3)
    assert (o["extended"], o["censored"]) == (1, 2)
    # A longer gap: person 4 (last seen 3.6 years before the end) is now followed; person 3 until 2019-06-01.
    tables, summary = read_omop(src, pseudonym_key=KEY, observation_gap_years=4)
    ends = _ends(tables)
    assert pd.isna(ends[4]) and ends[3] == pd.Timestamp("2019-06-01")
    # The former options still work.
    tables, _ = read_omop(src, pseudonym_key=KEY, observation_periods="censor")
    assert _ends(tables)[3] == pd.Timestamp("2015-06-01") and _ends(tables)[2] == pd.Timestamp("2022-03-01")
    tables, _ = read_omop(src, pseudonym_key=KEY, observation_periods="ignore")
    assert tables["persons"]["registration_end"].isna().all()


def test_registration_like_periods_are_censored_as_the_cdm_means(tmp_path):
    # Periods end months after the last visit (people who left): no artefact, so 'auto' censors.
    src = _periods_cdm(tmp_path, ends={1: "2022-12-31", 2: "2019-06-01", 3: "2016-03-01"},
                       visits={1: ["2022-05-01"], 2: ["2018-11-01"], 3: ["2015-06-01"]})
    tables, summary = read_omop(src, pseudonym_key=KEY)
    ends = _ends(tables)
    assert ends[2] == pd.Timestamp("2019-06-01") and ends[3] == pd.Timestamp("2016-03-01")
    assert summary.observation_periods["rule"] == "censor" and not summary.observation_periods["artefact_detected"]
    # Forced: persons 2 and 3 were last seen more than 2 years before the end: last record + 2 years.
    tables, _ = read_omop(src, pseudonym_key=KEY, observation_periods="last_record")
    ends = _ends(tables)
    assert ends[2] == pd.Timestamp("2020-11-01") and ends[3] == pd.Timestamp("2017-06-01")


def test_bad_gap_is_refused(tmp_path):
    with pytest.raises(ValueError, match="observation_gap_years"):
        read_omop(_cdm(tmp_path), pseudonym_key=KEY, observation_gap_years=0)


# --- the real export -------------------------------------------------------------------------

# SNOMED codes in CONDITION_OCCURRENCE.condition_source_value of omop-synthea27nj per register condition,
# read by hand from the CSV (condition names from its CONCEPT.csv).
HAND_CODES = {"hypertension": {"59621000"}, "chd": {"53741008"},
              "diabetes": {"44054006", "127013003", "422034002"}, "ckd": {"431855005"},
              "heart_failure": {"88805009"}, "dementia": {"26929004"}, "stroke": {"230690007"},
              "asthma": {"233678006"}}


@needs_export
@pytest.mark.parametrize("hide", ["nothing", "concept_ancestor", "vocabulary"])
def test_synthea27nj_people_per_condition_with_and_without_the_vocabulary(tmp_path, hide):
    src = tmp_path / "export"
    shutil.copytree(SYNTHEA27NJ, src)
    if hide != "nothing":
        for name in (["CONCEPT_ANCESTOR"] if hide == "concept_ancestor" else
                     ["CONCEPT_ANCESTOR", "CONCEPT", "CONCEPT_RELATIONSHIP"]):
            (src / f"{name}.csv").unlink()
    co = pd.read_csv(SYNTHEA27NJ / "CONDITION_OCCURRENCE.csv", dtype=str)
    expected = {c: co.loc[co["condition_source_value"].isin(codes), "person_id"].nunique()
                for c, codes in HAND_CODES.items()}
    assert expected == {"hypertension": 5, "chd": 2, "diabetes": 1, "ckd": 1, "heart_failure": 1, "dementia": 1,
                        "stroke": 1, "asthma": 1}
    tables, summary = read_omop(src, pseudonym_key=KEY)
    assert tables["ltc_register"]["condition"].value_counts().to_dict() == expected
    assert {c: m["people"] for c, m in summary.condition_matches.items() if m["people"]} == expected
    # The most frequent unmatched code: Stress (4251306), 113 rows of 22 people.
    stress = co[co["condition_concept_id"] == "4251306"]
    top = summary.unmatched_conditions[0]
    assert (top["concept_id"], top["rows"], top["people"]) == (4251306, len(stress), stress["person_id"].nunique())
    assert top["concept_name"] == ("" if hide == "vocabulary" else "Stress")


@needs_export
def test_synthea27nj_drugs_and_observation_periods_checked_with_pandas():
    drugs = pd.read_csv(SYNTHEA27NJ / "DRUG_EXPOSURE.csv", dtype=str)
    concept = pd.read_csv(SYNTHEA27NJ / "CONCEPT.csv", dtype=str, keep_default_na=False)
    domains = drugs.merge(concept, left_on="drug_concept_id", right_on="concept_id")["domain_id"].value_counts()
    assert domains.to_dict() == {"Drug": 883}
    # Observation periods: each person's last visit, condition or drug start against the period end.
    last = pd.concat([pd.read_csv(SYNTHEA27NJ / f, dtype=str)[["person_id", c]].set_axis(["person_id", "d"], axis=1)
                      for f, c in (("VISIT_OCCURRENCE.csv", "visit_start_date"),
                                   ("CONDITION_OCCURRENCE.csv", "condition_start_date"),
                                   ("DRUG_EXPOSURE.csv", "drug_exposure_start_date"))])
    last = pd.to_datetime(last["d"]).groupby(last["person_id"]).max()
    op = pd.read_csv(SYNTHEA27NJ / "OBSERVATION_PERIOD.csv", dtype=str)
    end = pd.to_datetime(op.set_index("person_id")["observation_period_end_date"])
    extract_end = end.max()
    dead = set(pd.read_csv(SYNTHEA27NJ / "DEATH.csv", dtype=str)["person_id"])
    early = end[end < extract_end]
    alive = early[~early.index.isin(dead)]
    near = ((alive - last.reindex(alive.index)).abs() <= pd.Timedelta(days=7)).sum()
    recent = last >= extract_end - pd.DateOffset(years=2)
    tables, summary = read_omop(SYNTHEA27NJ, pseudonym_key=KEY)
    assert summary.drug_domains["medicines"] == 883 and summary.drug_domains["vaccines"] == 0
    o = summary.observation_periods
    assert (o["people_compared"], o["ending_at_last_record"]) == (len(alive), near) == (24, 24)
    # The living are followed or censored by the rule; people who died keep their period's end.
    living = ~recent.index.isin(dead)
    assert o["extended"] == int(recent.reindex(alive.index).sum())
    assert o["censored"] == int((~recent & living).sum())
    assert o["died_period_kept"] == len(early) - len(alive) == 3
    assert tables["persons"]["registration_end"].notna().sum() == o["censored"] + o["died_period_kept"]
