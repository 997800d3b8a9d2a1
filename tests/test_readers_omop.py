"""OMOP reader: each mapping on a small hand-made CDM folder, the vocabulary look-ups, the code lists,
and counts on the real omop-synthea27nj export checked by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from riskstrat.data.codelists import atc_to_bnf, icd10_condition, load_codelist
from riskstrat.data.readers.omop import read_omop
from riskstrat.data.readers.vocab import Vocabulary, atc_classes, descendants, maps_to, read_vocabulary
from riskstrat.data.schema import LONG_TERM_CONDITIONS

KEY = b"test-key"
SYNTHEA27NJ = Path(__file__).resolve().parents[2] / "shared" / "data" / "omop-synthea27nj"


def _date(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


def _cdm(tmp_path: Path, **tables: list[dict]) -> Path:
    """A CDM folder: one CSV per keyword (person and visit_occurrence get a one-person default)."""
    src = tmp_path / "cdm"
    src.mkdir()
    tables.setdefault("person", [dict(person_id=1, gender_concept_id=8507, year_of_birth=1950)])
    tables.setdefault("visit_occurrence", [dict(visit_occurrence_id=1, person_id=1, visit_concept_id=9202,
                                                visit_start_date="2020-01-01")])
    for name, rows in tables.items():
        df = pd.DataFrame(rows)
        if name.isupper():
            df.columns = [c.upper() for c in df.columns]
        df.to_csv(src / f"{name}.csv", index=False)
    return src


def _visit(vid: int, concept: int, start: str, end: str = "", person: int = 1, **extra) -> dict:
    return dict(visit_occurrence_id=vid, person_id=person, visit_concept_id=concept, visit_start_date=start,
                visit_end_date=end or start, **extra)


# --- code lists ------------------------------------------------------------------------------

def test_code_lists_cover_every_register_condition():
    omop, icd = load_codelist("ltc_omop"), load_codelist("ltc_icd10")
    assert set(omop["condition"]) == set(LONG_TERM_CONDITIONS)
    assert set(icd["condition"]) == set(LONG_TERM_CONDITIONS)
    assert omop["concept_id"].str.fullmatch(r"\d+").all() and not omop["concept_id"].duplicated().any()
    assert (omop["note"] != "").all() and (icd["note"] != "").all()


@pytest.mark.parametrize("code, chapter", [
    ("C09AA02", "02"), ("C05AA01", "01"), ("G03AA07", "07"), ("G03CA03", "06"), ("M03AC09", "15"),
    ("M03BX01", "10"), ("R03AC02", "03"), ("J07BB02", "14"), ("A10BA02", "06"), ("N06AB06", "04"),
    ("V08AB02", None), ("B06AA03", None), ("", None),
])
def test_atc_to_bnf_longest_prefix(code, chapter):
    got = atc_to_bnf(pd.Series([code])).iloc[0]
    assert got == chapter if chapter else pd.isna(got)


def test_icd10_condition_is_shared_and_still_importable_from_the_reader():
    from riskstrat.data.readers.omop import icd10_condition as from_reader

    codes = pd.Series(["J44.1", "N18.3", "C50.9", "I50.0", "F32.1", "Z00"])
    assert icd10_condition(codes).iloc[:5].tolist() == ["copd", "ckd", "cancer", "heart_failure", "depression"]
    assert from_reader(codes).equals(icd10_condition(codes))


# --- vocabulary look-ups (pure) --------------------------------------------------------------

def test_descendants_from_concept_ancestor_and_from_is_a_chains():
    with_ancestor = Vocabulary.from_frames(ancestors=pd.DataFrame({
        "ancestor_concept_id": [255573, 255573, 316139], "descendant_concept_id": [255573, 4000001, 4000002]}))
    got = descendants(with_ancestor, [255573])
    assert got["descendant_concept_id"].tolist() == [255573, 4000001]
    # Without CONCEPT_ANCESTOR: a grandchild two "Is a" steps down is found; a sibling is not.
    chain = Vocabulary.from_frames(relationships=pd.DataFrame({
        "concept_id_1": [4229440, 319835, 999], "concept_id_2": [319835, 316139, 4],
        "relationship_id": ["Is a", "Is a", "Is a"]}))
    assert descendants(chain, [316139])["descendant_concept_id"].tolist() == [316139, 319835, 4229440]


def test_maps_to_returns_every_standard_target():
    vocab = Vocabulary.from_frames(relationships=pd.DataFrame({
        "concept_id_1": [45576876, 45576876, 1, 45576876], "concept_id_2": [201826, 192279, 2, 5],
        "relationship_id": ["Maps to", "Maps to", "Maps to", "Is a"]}))
    got = maps_to(vocab, [45576876])
    assert sorted(got["standard_concept_id"]) == [192279, 201826]


def test_atc_classes_nearest_ancestor_then_relationship_walk():
    concepts = pd.DataFrame({"concept_id": [21600381, 21600382, 21601000],
                             "vocabulary_id": ["ATC"] * 3, "concept_code": ["C09AA", "C09AA02", "N02BE"],
                             "concept_name": ["ACE inhibitors", "enalapril", "anilides"]})
    by_ancestor = Vocabulary.from_frames(concepts=concepts, ancestors=pd.DataFrame({
        "ancestor_concept_id": [21600381, 21600382], "descendant_concept_id": [1, 1],
        "min_levels_of_separation": [2, 1]}))
    assert atc_classes(by_ancestor, [1, 2]).to_dict() == {1: "C09AA02"}
    # clinical drug -> component -> ingredient -> ATC (primary link beats a secondary one)
    by_walk = Vocabulary.from_frames(concepts=concepts, relationships=pd.DataFrame({
        "concept_id_1": [10, 11, 12, 21601000], "concept_id_2": [11, 12, 21600382, 12],
        "relationship_id": ["Consists of", "RxNorm has ing", "RxNorm - ATC pr lat", "ATC - RxNorm sec up"]}))
    assert atc_classes(by_walk, [10]).to_dict() == {10: "C09AA02"}


def test_read_vocabulary_keeps_only_what_matters(tmp_path):
    src = _cdm(tmp_path, CONCEPT=[
        dict(concept_id=255573, concept_name="Chronic obstructive lung disease", vocabulary_id="SNOMED",
             concept_code="13645005", standard_concept="S", domain_id="Condition"),
        dict(concept_id=42, concept_name="unused", vocabulary_id="SNOMED", concept_code="1", standard_concept="S",
             domain_id="Condition"),
        dict(concept_id=21600381, concept_name="ACE inhibitors", vocabulary_id="ATC", concept_code="C09AA",
             standard_concept="C", domain_id="Drug"),
    ], CONCEPT_RELATIONSHIP=[
        dict(concept_id_1=7, concept_id_2=255573, relationship_id="Maps to", invalid_reason=""),
        dict(concept_id_1=8, concept_id_2=255573, relationship_id="Maps to", invalid_reason=""),
        dict(concept_id_1=7, concept_id_2=9, relationship_id="Maps to", invalid_reason="D"),
        dict(concept_id_1=7, concept_id_2=9, relationship_id="Has finding site", invalid_reason=""),
    ])
    vocab = read_vocabulary(src, concept_ids=[255573, 7])
    assert sorted(vocab.concepts["concept_id"]) == [255573, 21600381]
    assert vocab.relationships[["concept_id_1", "concept_id_2"]].values.tolist() == [[7, 255573]]
    assert vocab.tables == ("concept", "concept_relationship")
    assert read_vocabulary(tmp_path, concept_ids=[1]) is None


# --- conditions ------------------------------------------------------------------------------

def _conditions(rows):
    return [dict(condition_occurrence_id=i, person_id=1, condition_start_date=date, condition_concept_id=concept,
                 condition_source_value=source, condition_source_concept_id=source_concept)
            for i, (concept, date, source, source_concept) in enumerate(rows, 1)]


CONDITION_ROWS = [
    (4000001, "2015-01-01", "", ""),        # a descendant of COPD (255573) by CONCEPT_ANCESTOR
    (4229440, "2016-01-01", "", ""),        # chronic congestive HF: two "Is a" steps below 316139
    (0, "2017-01-01", "", 45576876),        # source concept mapped to T2DM (201826, itself in the list)
    (0, "2018-01-01", "N18.3", ""),         # ICD-10 source value only
    (443392, "2019-01-01", "", ""),         # the cancer root itself
    (12345, "2019-06-01", "", ""),          # not a register condition
]


def test_conditions_by_descendants_maps_to_and_icd10(tmp_path):
    src = _cdm(tmp_path, condition_occurrence=_conditions(CONDITION_ROWS),
               concept_ancestor=[dict(ancestor_concept_id=255573, descendant_concept_id=4000001,
                                      min_levels_of_separation=1, max_levels_of_separation=1)],
               concept_relationship=[
                   dict(concept_id_1=4229440, concept_id_2=319835, relationship_id="Is a"),
                   dict(concept_id_1=319835, concept_id_2=316139, relationship_id="Is a"),
                   dict(concept_id_1=45576876, concept_id_2=201826, relationship_id="Maps to")])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    reg = tables["ltc_register"].set_index("condition")["diagnosis_date"].to_dict()
    # CONCEPT_ANCESTOR is present, so "Is a" is not walked; heart failure (4229440) is found all the same,
    # because the shipped ltc_omop_descendants.csv lists it below 316139.
    assert reg == {"copd": _date("2015-01-01"), "heart_failure": _date("2016-01-01"), "diabetes": _date("2017-01-01"),
                   "ckd": _date("2018-01-01"), "cancer": _date("2019-01-01")}
    assert summary.dropped["condition_occurrence rows that are not register long-term conditions"] == 1


def test_conditions_by_is_a_walk_when_concept_ancestor_is_empty(tmp_path):
    src = _cdm(tmp_path, condition_occurrence=_conditions(CONDITION_ROWS[1:2]),
               concept_relationship=[dict(concept_id_1=4229440, concept_id_2=319835, relationship_id="Is a"),
                                     dict(concept_id_1=319835, concept_id_2=316139, relationship_id="Is a")])
    (src / "concept_ancestor.csv").write_text("ancestor_concept_id,descendant_concept_id\n")  # header only
    tables, _ = read_omop(src, pseudonym_key=KEY)
    assert tables["ltc_register"]["condition"].tolist() == ["heart_failure"]


def test_conditions_without_vocabulary_use_exact_ids_and_icd10_and_say_so(tmp_path):
    src = _cdm(tmp_path, condition_occurrence=_conditions(CONDITION_ROWS))
    tables, summary = read_omop(src, pseudonym_key=KEY)
    # 4229440 (chronic congestive heart failure) is in the shipped ltc_omop_descendants.csv.
    assert sorted(tables["ltc_register"]["condition"]) == ["cancer", "ckd", "heart_failure"]
    assert any("matched on the shipped code lists" in n for n in summary.notes)


def test_one_condition_row_can_count_for_two_conditions(tmp_path):
    # hypertensive heart failure: a descendant of both hypertensive disorder and heart failure
    src = _cdm(tmp_path, condition_occurrence=_conditions([(4000003, "2020-01-01", "", "")]),
               concept_ancestor=[dict(ancestor_concept_id=a, descendant_concept_id=4000003) for a in (316866, 316139)])
    tables, _ = read_omop(src, pseudonym_key=KEY)
    assert sorted(tables["ltc_register"]["condition"]) == ["heart_failure", "hypertension"]


# --- drugs -----------------------------------------------------------------------------------

def test_drugs_are_never_dropped_for_lacking_a_bnf_code(tmp_path):
    src = _cdm(tmp_path, drug_exposure=[
        dict(drug_exposure_id=1, person_id=1, drug_concept_id=1308216, drug_exposure_start_date="2020-01-01",
             drug_source_value="0212000B0AAABAB", drug_source_concept_id=""),  # BNF source value wins
        dict(drug_exposure_id=2, person_id=1, drug_concept_id=1308216, drug_exposure_start_date="2020-02-01",
             drug_source_value="29046", drug_source_concept_id=""),  # ATC C09AA -> chapter 02
        dict(drug_exposure_id=3, person_id=1, drug_concept_id=0, drug_exposure_start_date="2020-03-01",
             drug_source_value="x", drug_source_concept_id=777),  # source concept maps to a drug in N02BE
        dict(drug_exposure_id=4, person_id=1, drug_concept_id=5555, drug_exposure_start_date="2020-04-01",
             drug_source_value="", drug_source_concept_id=""),  # no ATC class -> unknown, kept
        dict(drug_exposure_id=5, person_id=1, drug_concept_id=5555, drug_exposure_start_date="",
             drug_source_value="", drug_source_concept_id=""),  # no date: dropped and counted
    ], concept=[
        dict(concept_id=21600381, concept_name="ACE inhibitors, plain", vocabulary_id="ATC", concept_code="C09AA"),
        dict(concept_id=21604253, concept_name="Anilides", vocabulary_id="ATC", concept_code="N02BE"),
    ], concept_ancestor=[
        dict(ancestor_concept_id=21600381, descendant_concept_id=1308216, min_levels_of_separation=2),
        dict(ancestor_concept_id=21604253, descendant_concept_id=1125315, min_levels_of_separation=2),
    ], concept_relationship=[dict(concept_id_1=777, concept_id_2=1125315, relationship_id="Maps to")])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    rx = tables["prescriptions"].sort_values("issue_date")
    assert rx["bnf_chapter"].tolist() == ["02", "02", "04", "unknown"]
    assert rx["drug_code"].tolist() == ["1308216", "1308216", "0", "5555"]
    assert summary.dropped == {"drug_exposure rows with a missing or unreadable drug_exposure_start_date": 1}
    assert "drug chapters: 1 from BNF source values, 2 from ATC classes, 0 vaccines (chapter 14), 1 unknown (kept)" \
        in summary.notes


# --- deaths ----------------------------------------------------------------------------------

def test_deaths_from_the_death_table_and_from_the_person_table(tmp_path):
    src = _cdm(tmp_path, person=[
        dict(person_id=1, year_of_birth=1930, death_datetime=""),
        dict(person_id=2, year_of_birth=1930, death_datetime="2021-03-04 10:00:00"),  # v5.3 ETL style
        dict(person_id=3, year_of_birth=1930, death_datetime="2022-01-01 00:00:00"),  # DEATH wins
        dict(person_id=4, year_of_birth=1930, death_datetime=""),
    ], death=[dict(person_id=1, death_date="2020-05-06"), dict(person_id=1, death_date="2020-06-01"),
              dict(person_id=3, death_date="2021-12-30")])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    from riskstrat.data.privacy import pseudonymise

    ids = dict(zip(pseudonymise(pd.Series(["1", "2", "3", "4"]), KEY), ["1", "2", "3", "4"]))
    died = tables["persons"].assign(src=lambda d: d["person_id"].map(ids)).set_index("src")["death_date"]
    assert died["1"] == _date("2020-05-06") and died["2"] == _date("2021-03-04") and died["3"] == _date("2021-12-30")
    assert pd.isna(died["4"])
    assert "deaths: 2 from the death table, 1 from the person table's death_datetime" in summary.notes


def test_header_only_death_and_observation_period_tables_are_read_as_empty(tmp_path):
    # Real exports often ship every CDM table, some with a header and no rows.
    src = _cdm(tmp_path)
    (src / "death.csv").write_text("person_id,death_date\n")
    (src / "observation_period.csv").write_text(
        "observation_period_id,person_id,observation_period_start_date,observation_period_end_date\n")
    tables, _ = read_omop(src, pseudonym_key=KEY)
    persons = tables["persons"]
    assert persons["death_date"].isna().all() and persons["registration_end"].isna().all()


def test_observation_periods_censor_by_default_or_are_ignored_on_request(tmp_path):
    src = _cdm(tmp_path, person=[dict(person_id=1, year_of_birth=1950), dict(person_id=2, year_of_birth=1950)],
               observation_period=[
                   dict(observation_period_id=1, person_id=1, observation_period_start_date="2010-01-01",
                        observation_period_end_date="2020-01-01"),
                   dict(observation_period_id=2, person_id=2, observation_period_start_date="2012-01-01",
                        observation_period_end_date="2023-06-30")])
    tables, summary = read_omop(src, pseudonym_key=KEY, observation_periods="censor")
    assert tables["persons"]["registration_end"].notna().sum() == 1  # person 1 stops being observed in 2020
    assert any("1 of 2 people stop being observed" in n for n in summary.notes)
    tables, summary = read_omop(src, pseudonym_key=KEY, observation_periods="ignore")
    assert tables["persons"]["registration_end"].isna().all()
    assert sorted(tables["persons"]["registration_start"].dt.year) == [2010, 2012]
    with pytest.raises(ValueError, match="observation_periods must be one of auto, censor, ignore, last_record"):
        read_omop(src, pseudonym_key=KEY, observation_periods="drop")


# --- visits ----------------------------------------------------------------------------------

def test_admission_methods(tmp_path):
    src = _cdm(tmp_path, person=[dict(person_id=i, year_of_birth=1950) for i in range(1, 9)], visit_occurrence=[
        _visit(1, 262, "2020-01-01", "2020-01-03", person=1),                                   # ER + inpatient
        _visit(2, 9201, "2020-01-05", "2020-01-09", person=2, admitted_from_concept_id=8870),  # from the ER
        _visit(3, 9203, "2020-01-09", person=3), _visit(4, 9201, "2020-01-10", "2020-01-12", person=3),  # next day
        _visit(5, 9203, "2020-02-01", person=4), _visit(6, 9201, "2020-02-03", "2020-02-04", person=4),  # 2 days
        _visit(7, 9201, "2020-03-01", "2020-03-02", person=5, admitted_from_concept_id=8717),  # transfer
        _visit(8, 9201, "2020-03-01", "2020-03-02", person=6, admitted_from_concept_id=8536,
               admitted_from_source_value="Elective admission from home"),
        _visit(9, 9201, "2020-03-01", "2020-03-02", person=7, admitted_from_concept_id=0),
        _visit(10, 9201, "2020-04-01", "2020-04-02", person=8, admitted_from_concept_id=0),
        _visit(11, 9203, "2020-04-01", person=8),  # same day ER visit
    ])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    spells = tables["inpatient_spells"].sort_values(["admission_date", "record_id"])
    from riskstrat.data.privacy import pseudonymise

    by_visit = dict(zip(pseudonymise(pd.Series([f"visit_occurrence:{i}" for i in range(1, 12)]), KEY), range(1, 12)))
    got = dict(zip(spells["record_id"].map(by_visit), spells["admission_method"]))
    assert got == {1: "emergency", 2: "emergency", 4: "emergency", 6: "unknown", 7: "transfer",
                   8: "elective", 9: "unknown", 10: "emergency"}
    assert "admission methods: 4 emergency, 1 transfer, 1 elective, 2 unknown" in summary.notes
    ae = tables["ae_attendances"]
    assert ae["admitted"].sum() == 3  # the 262 visit, the next-day admission and the same-day admission


def test_v53_admitting_source_concept_id(tmp_path):
    src = _cdm(tmp_path, visit_occurrence=[
        _visit(1, 9201, "2020-01-05", "2020-01-09", admitting_source_concept_id=8870)])
    tables, _ = read_omop(src, pseudonym_key=KEY)
    assert tables["inpatient_spells"]["admission_method"].tolist() == ["emergency"]


GP_VISITS = [
    _visit(1, 9202, "2020-01-01", provider_id=10, care_site_id=""),   # general practice provider
    _visit(2, 9202, "2020-01-02", provider_id=11, care_site_id=""),   # family practice provider
    _visit(3, 9202, "2020-01-03", provider_id=12, care_site_id=""),   # cardiologist
    _visit(4, 9202, "2020-01-04", provider_id="", care_site_id=20),  # at an office (8940)
    _visit(5, 9202, "2020-01-05", provider_id="", care_site_id=21),  # outpatient hospital
    _visit(6, 581477, "2020-01-06", provider_id="", care_site_id=""),  # office visit concept
]
PROVIDERS = [dict(provider_id=10, specialty_concept_id=38004446), dict(provider_id=11, specialty_concept_id=38004453),
             dict(provider_id=12, specialty_concept_id=38004451)]
CARE_SITES = [dict(care_site_id=20, place_of_service_concept_id=8940),
              dict(care_site_id=21, place_of_service_concept_id=8756)]


@pytest.mark.parametrize("option, gp, outpatient", [("auto", 4, 2), ("gp", 6, 0), ("outpatient", 1, 5)])
def test_primary_care_from_provider_specialty_or_care_site(tmp_path, option, gp, outpatient):
    src = _cdm(tmp_path, visit_occurrence=GP_VISITS, provider=PROVIDERS, care_site=CARE_SITES)
    tables, _ = read_omop(src, pseudonym_key=KEY, primary_care=option)
    assert len(tables.get("gp_contacts", [])) == gp
    assert len(tables.get("outpatient_appointments", [])) == outpatient


def test_visits_deduplicated_by_id_never_by_content(tmp_path):
    from riskstrat.data.validate import validate_tables

    same_day = dict(visit_concept_id=9203, visit_start_date="2020-01-01", visit_end_date="2020-01-01", person_id=1)
    src = _cdm(tmp_path, visit_occurrence=[dict(same_day, visit_occurrence_id=1), dict(same_day, visit_occurrence_id=2),
                                           dict(same_day, visit_occurrence_id=2)])
    tables, summary = read_omop(src, pseudonym_key=KEY)
    ae = tables["ae_attendances"]
    assert len(ae) == 2 and ae["record_id"].nunique() == 2
    assert ae["record_id"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert summary.dropped == {"visit_occurrence rows with a repeated visit_occurrence_id (first kept)": 1}
    records, report = validate_tables(tables, unknown_codes="drop")
    assert len(records.get("ae_attendances")) == 2  # distinct same-day visits survive the repeat check


@pytest.mark.parametrize("cost_rows, option, concept, currency, visit_cost, dropped", [
    ([(1, 44818668, 100.0)], None, [], "USD", 100.0, 0),
    ([(1, 900001, 80.0)], None, [dict(concept_id=900001, concept_name="Euro", vocabulary_id="Currency",
                                      concept_code="EUR")], "EUR", 80.0, 0),
    ([(1, "", 50.0)], "USD", [], "USD", 50.0, 0),
    ([(1, "", 50.0)], None, [], "GBP", 50.0, 0),
    ([(1, 44818668, 10.0), (1, 44818668, 5.0), (2, 44818668, 7.0), (1, 900001, 99.0)], None,
     [dict(concept_id=900001, concept_name="Euro", vocabulary_id="Currency", concept_code="EUR")], "USD", 15.0, 1),
])
def test_costs_and_currency(tmp_path, cost_rows, option, concept, currency, visit_cost, dropped):
    tables_in = dict(visit_occurrence=[_visit(1, 9201, "2020-01-01", "2020-01-02"), _visit(2, 9203, "2020-02-01")],
                     cost=[dict(cost_id=i, cost_event_id=event, cost_domain_id="Visit", currency_concept_id=cur,
                                total_cost=amount) for i, (event, cur, amount) in enumerate(cost_rows)])
    if concept:
        tables_in["concept"] = concept
    tables, summary = read_omop(_cdm(tmp_path, **tables_in), pseudonym_key=KEY, currency=option)
    assert summary.currency == currency
    assert tables["inpatient_spells"]["cost"].tolist() == [visit_cost]
    assert sum(n for reason, n in summary.dropped.items() if "currency" in reason) == dropped


def test_practice_only_from_primary_care_sites(tmp_path):
    persons = [dict(person_id=1, year_of_birth=1950, care_site_id=20),
               dict(person_id=2, year_of_birth=1950, care_site_id=21),
               dict(person_id=3, year_of_birth=1950, care_site_id="")]
    src = _cdm(tmp_path, person=persons, care_site=CARE_SITES)
    tables, summary = read_omop(src, pseudonym_key=KEY)
    assert sorted(tables["persons"]["practice_id"].fillna("-")) == ["-", "-", "CS20"]
    assert "2 people have no registered practice (practice_id left blank; listed apart, never as a practice)" \
        in summary.notes
    assert "UNKNOWN" not in set(tables["persons"]["practice_id"].dropna())
    tables, _ = read_omop(src, pseudonym_key=KEY, practice_from="care_site")
    assert sorted(tables["persons"]["practice_id"].fillna("-")) == ["-", "CS20", "CS21"]


def test_a_hospital_care_site_never_becomes_a_practice(tmp_path):
    # Place of service says hospital (8717 inpatient hospital, 8870 ER); or it is 0/missing and the visits
    # held there say: only inpatient (32), inpatient among outpatient (34) -> hospital; outpatient only (33)
    # -> practice; no visits (35) -> not known to be a practice, not counted as a hospital either.
    sites = [dict(care_site_id=20, place_of_service_concept_id=8940), dict(care_site_id=30, place_of_service_concept_id=8717),
             dict(care_site_id=31, place_of_service_concept_id=8870), dict(care_site_id=32, place_of_service_concept_id=0),
             dict(care_site_id=33, place_of_service_concept_id=""), dict(care_site_id=34, place_of_service_concept_id=0),
             dict(care_site_id=35, place_of_service_concept_id=0)]
    persons = [dict(person_id=i, year_of_birth=1950, care_site_id=site)
               for i, site in enumerate([20, 30, 31, 32, 33, 34, 35], start=1)]
    visits = [_visit(1, 9201, "2020-01-01", person=4, care_site_id=32),
              _visit(2, 9202, "2020-01-02", person=5, care_site_id=33),
              _visit(3, 9202, "2020-01-03", person=6, care_site_id=34),
              _visit(4, 9201, "2020-01-04", person=6, care_site_id=34)]
    src = _cdm(tmp_path, person=persons, care_site=sites, visit_occurrence=visits)
    tables, summary = read_omop(src, pseudonym_key=KEY)
    assert sorted(tables["persons"]["practice_id"].fillna("-")) == ["-"] * 5 + ["CS20", "CS33"]
    assert summary.practice_exclusions == {"hospitals_excluded": 4, "people_whose_only_candidate_was_a_hospital": 4}
    assert any(n.startswith("4 people whose person.care_site_id is a hospital") for n in summary.notes)
    tables, summary = read_omop(src, pseudonym_key=KEY, practice_from="care_site")
    assert sorted(tables["persons"]["practice_id"].fillna("-")) == ["-"] * 4 + ["CS20", "CS33", "CS35"]
    assert summary.practice_exclusions["people_whose_only_candidate_was_a_hospital"] == 4
    from riskstrat.pipelines.imports import import_dataset

    import_dataset("omop", src, tmp_path / "linked", pseudonym_key=KEY)
    import json

    report = json.loads((tmp_path / "linked" / "import_report.json").read_text())
    assert report["people_without_practice"] == 5
    assert report["practice_exclusions"] == {"hospitals_excluded": 4, "people_whose_only_candidate_was_a_hospital": 4}


@pytest.mark.skipif(not SYNTHEA27NJ.is_dir(), reason=f"OMOP test export not found at {SYNTHEA27NJ}")
def test_synthea27nj_has_no_care_site_so_nobody_has_a_practice():
    """PERSON.csv: 28 people, care_site_id blank for all; CARE_SITE.csv is header-only (checked with pandas)."""
    person = pd.read_csv(SYNTHEA27NJ / "PERSON.csv")
    assert len(person) == 28 and person["care_site_id"].isna().all()
    assert pd.read_csv(SYNTHEA27NJ / "CARE_SITE.csv").empty
    tables, summary = read_omop(SYNTHEA27NJ, pseudonym_key=KEY)
    assert tables["persons"]["practice_id"].isna().sum() == 28
    assert summary.practice_exclusions == {"hospitals_excluded": 0, "people_whose_only_candidate_was_a_hospital": 0}


def test_bad_options_are_refused(tmp_path):
    src = _cdm(tmp_path)
    with pytest.raises(ValueError, match="primary_care"):
        read_omop(src, pseudonym_key=KEY, primary_care="sometimes")
    with pytest.raises(ValueError, match="practice_from"):
        read_omop(src, pseudonym_key=KEY, practice_from="hospital")
    with pytest.raises(ValueError, match="ISO 4217"):
        read_omop(src, pseudonym_key=KEY, currency="pounds")


# --- the real export -------------------------------------------------------------------------

@pytest.mark.skipif(not SYNTHEA27NJ.is_dir(), reason=f"OMOP test export not found at {SYNTHEA27NJ}")
def test_synthea27nj_counts_checked_by_hand(tmp_path):
    """Counts taken with pandas straight from the CSVs (see the report of issue 9), not from the reader.

    DRUG_EXPOSURE: 883 rows, 883 distinct ids, all dated, all persons known (CONCEPT holds no ATC
    class, so every chapter is "unknown"). DEATH: 3 rows, 3 people. VISIT_OCCURRENCE: 1,791 distinct
    ids (1,722 9202, 56 9203, 13 9201); all 67 providers are General Practice (38004446), so all 1,722
    outpatient visits are GP contacts; 4 of the 13 inpatient visits start on the day of or the day
    after a 9203 visit of the same person. CONDITION_OCCURRENCE, people per condition: hypertension 5
    (320128), chd 2 (317576), and 1 each for diabetes (201826, 192279, 4226121), ckd (443614, stage 1),
    heart failure (4229440, chronic congestive), dementia (378419), stroke (381316), asthma (4051466,
    childhood asthma). No COPD, cancer or depression is recorded in this export.
    """
    from riskstrat.pipelines.imports import import_dataset

    summary, report = import_dataset("omop", SYNTHEA27NJ, tmp_path / "linked", pseudonym_key=KEY)
    rows = summary.output_rows
    assert rows["prescriptions"] == 883
    assert rows["gp_contacts"] == 1722 and "outpatient_appointments" not in rows
    assert rows["ae_attendances"] == 56 and rows["inpatient_spells"] == 13
    # No same-day visit lost as a "repeat"; the only issues: the export has no costs (unknown, not zero).
    assert [(i.rule, i.table, i.n_rows) for i in report.issues] == [
        ("blank_cost", "inpatient_spells", 13), ("blank_cost", "ae_attendances", 56),
        ("blank_cost", "gp_contacts", 1722), ("blank_cost", "prescriptions", 883)]
    from riskstrat.data.validate import load_records

    records = load_records(tmp_path / "linked")
    assert records.persons["death_date"].notna().sum() == 3
    assert records.persons["practice_id"].isna().all()  # no CARE_SITE rows: nobody gets a made-up practice
    assert records.get("inpatient_spells")["admission_method"].astype(str).value_counts().to_dict() == {
        "unknown": 9, "emergency": 4}
    assert records.get("ltc_register")["condition"].astype(str).value_counts().to_dict() == {
        "hypertension": 5, "chd": 2, "diabetes": 1, "ckd": 1, "heart_failure": 1, "dementia": 1, "stroke": 1,
        "asthma": 1}
    assert records.get("prescriptions")["bnf_chapter"].astype(str).eq("unknown").all()
    assert summary.currency == "GBP" and "cost has no rows: visit and drug costs left missing" in summary.notes


def test_cli_import_omop_primary_care_option(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from riskstrat.cli import app

    monkeypatch.setenv("RISKSTRAT_PSEUDONYM_KEY", "cli-test-key")
    src = _cdm(tmp_path, visit_occurrence=GP_VISITS)
    result = CliRunner().invoke(app, ["import", "omop", str(src), "--out", str(tmp_path / "linked"),
                                      "--primary-care", "gp", "--currency", "USD"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "linked" / "gp_contacts.parquet")) == 6
    bad = CliRunner().invoke(app, ["import", "omop", str(src), "--out", str(tmp_path / "x"), "--primary-care", "no"])
    assert bad.exit_code == 2 and "primary_care" in bad.output


# --- vocabulary cycles -----------------------------------------------------------------------

# child "Is a" parent: SNOMED's top, Clinical finding, COPD (a root of the code list) with a child,
# heart failure (a root) two steps deep, the last also a hypertensive disorder (a root), and an
# unrelated finding with a child.
IS_A_EDGES = [(404684, 4008453), (255573, 404684), (4000001, 255573), (316139, 404684), (319835, 316139),
              (4229440, 319835), (316866, 404684), (4229440, 316866), (12345, 404684), (12346, 12345)]
# One condition each: person 1 COPD's child, 2 the hypertensive heart failure, 3 and 4 the unrelated
# findings, 5 heart failure's child.
PERSON_CONDITIONS = [4000001, 4229440, 12345, 12346, 319835]
CYCLES = {"through the hierarchy's hub": (404684, 255573),       # Clinical finding "Is a" COPD
          "a root under its own descendant": (316139, 4229440)}  # heart failure "Is a" its grandchild


def _closure(edges) -> list[dict]:
    """CONCEPT_ANCESTOR as a vocabulary build would write it from ``edges`` (cycles and all)."""
    parents: dict[int, list[int]] = {}
    for child, parent in edges:
        parents.setdefault(child, []).append(parent)
    rows = []
    for concept in sorted({c for edge in edges for c in edge}):
        level, frontier, seen = 0, [concept], {concept: 0}
        while frontier:
            level += 1
            frontier = [p for c in frontier for p in parents.get(c, ()) if p not in seen]
            seen.update({p: level for p in frontier})
        rows += [dict(ancestor_concept_id=a, descendant_concept_id=concept, min_levels_of_separation=n,
                      max_levels_of_separation=n) for a, n in seen.items()]
    return rows


def _vocabulary_cdm(tmp_path: Path, edges, *, with_ancestors: bool) -> Path:
    tmp_path.mkdir()
    concepts = sorted({c for edge in edges for c in edge})
    src = _cdm(tmp_path, person=[dict(person_id=p, gender_concept_id=8507, year_of_birth=1950)
                                 for p in range(1, len(PERSON_CONDITIONS) + 1)],
               condition_occurrence=[dict(condition_occurrence_id=p, person_id=p, condition_start_date="2015-01-01",
                                          condition_concept_id=c) for p, c in enumerate(PERSON_CONDITIONS, 1)],
               concept=[dict(concept_id=c, concept_name=f"c{c}", vocabulary_id="SNOMED", concept_code=str(c),
                             standard_concept="S") for c in concepts],
               concept_relationship=[dict(concept_id_1=c, concept_id_2=p, relationship_id="Is a") for c, p in edges])
    if with_ancestors:
        pd.DataFrame(_closure(edges)).to_csv(src / "concept_ancestor.csv", index=False)
    return src


@pytest.mark.parametrize("with_ancestors", [True, False], ids=["CONCEPT_ANCESTOR", "Is a only"])
@pytest.mark.parametrize("cycle", list(CYCLES))
def test_a_cycle_in_the_vocabulary_is_broken_and_the_register_does_not_grow(tmp_path, cycle, with_ancestors):
    # The red team's case: one cycle grew the register 12-fold. Here Clinical finding "Is a" COPD made
    # every finding a kind of COPD (4 rows to 8); heart failure "Is a" its grandchild made heart failure
    # a hypertensive disorder (4 rows to 5).
    expected, _ = read_omop(_vocabulary_cdm(tmp_path / "plain", IS_A_EDGES, with_ancestors=with_ancestors),
                            pseudonym_key=KEY)
    register = expected["ltc_register"]
    assert sorted(register["condition"]) == ["copd", "heart_failure", "heart_failure", "hypertension"]
    cyclic = _vocabulary_cdm(tmp_path / "cyclic", IS_A_EDGES + [CYCLES[cycle]], with_ancestors=with_ancestors)
    got, summary = read_omop(cyclic, pseudonym_key=KEY)
    pd.testing.assert_frame_equal(got["ltc_register"].reset_index(drop=True), register.reset_index(drop=True))
    assert "1 cycle in the vocabulary's Is a relationships was broken (1 relationship that closes a cycle left out)" \
        in summary.notes
    assert summary.vocabulary_cycles["is_a"] == 1
    if with_ancestors:
        assert summary.vocabulary_cycles["concept_ancestor"] >= 1
        assert any("CONCEPT_ANCESTOR" in n and "walking the 'Is a' relationships instead" in n for n in summary.notes)


def test_is_a_self_loops_and_identity_rows_are_not_cycles():
    vocab = Vocabulary.from_frames(
        relationships=pd.DataFrame({"concept_id_1": [2, 2, 3], "concept_id_2": [1, 2, 2], "relationship_id": "Is a"}),
        ancestors=pd.DataFrame({"ancestor_concept_id": [1, 1, 2], "descendant_concept_id": [1, 2, 2],
                                "min_levels_of_separation": [0, 1, 0]}))
    assert not any(vocab.cycles.values()) and vocab.uses_ancestors
    assert descendants(vocab, [1])["descendant_concept_id"].tolist() == [1, 2]


# --- values present but unreadable ------------------------------------------------------------

def test_unreadable_costs_and_dates_are_counted_by_file_and_column(tmp_path):
    # The defect: a cost of "inf" or "1.234,50" and a visit dated "13/2020" vanished without a count.
    visits = [_visit(i, 9202, "2020-01-01") for i in range(1, 6)] + [_visit(6, 9202, "13/2020", "2020-01-02")]
    amounts = ["10", "£1,234.50", "inf", "1.234,50", ""]
    src = _cdm(tmp_path, visit_occurrence=visits,
               cost=[dict(cost_id=i, cost_event_id=i, cost_domain_id="Visit", total_cost=amount, total_paid=paid)
                     for i, (amount, paid) in enumerate(zip(amounts, ["", "", "", "", "oops"]), start=1)])
    tables, summary = read_omop(src, pseudonym_key=KEY, currency="GBP")
    assert sorted(tables["outpatient_appointments"]["cost"].dropna().tolist()) == [10.0, 1234.5]
    assert {k: (v["present"], v["unreadable"], v["shapes"]) for k, v in summary.unreadable.items()} == {
        "cost.csv: total_cost": (4, 2, {"ccc": 1, "N.NNN,NN": 1}),
        "cost.csv: total_paid": (1, 1, {"cccc": 1}),
        "visit_occurrence.csv: visit_start_date": (6, 1, {"NN/NNNN": 1}),
    }
    assert any("1 amounts written with thousands separators or a currency symbol (GBP)" in n for n in summary.notes)
