"""Read OMOP common data model (v5.3 / v5.4) tables into canonical linked-records tables.

One file per CDM table in ``src_dir``: ``person`` and ``visit_occurrence`` are required;
``death``, ``observation_period``, ``condition_occurrence``, ``drug_exposure``, ``cost``, ``provider``,
``care_site`` and the vocabulary (``concept``, ``concept_ancestor``, ``concept_relationship``, see
:mod:`riskstrat.data.readers.vocab`) are used when present (the summary's ``notes`` say which were absent
and what the reader did instead). Files may be ``.csv``, ``.tsv``, ``.txt`` or ``.csv.gz``; the
delimiter (comma, tab, pipe or semicolon) is taken from the header line; file and column names are
matched case-insensitively. Rows whose ``person_id`` is not in ``person`` are dropped and counted.
Every drop is counted in ``summary.dropped`` with its reason.

Reader options: ``primary_care`` (``"auto"``, ``"outpatient"``, ``"gp"``), ``practice_from``
(``"primary_care_site"``, ``"care_site"``) and ``currency`` (an ISO 4217 code used when the COST table
does not say), described below.

Mappings
--------
persons (``person``, ``death``, ``observation_period``, ``care_site``)
    ``person_id`` -> keyed pseudonym; ``birth_date`` from ``birth_datetime``, else
    ``year_of_birth``/``month_of_birth``/``day_of_birth`` (missing month or day -> 1);
    ``gender_concept_id`` 8507 male, 8532 female, else unknown.
    ``ethnicity_group``: ``ethnicity_concept_id`` 38003563 (Hispanic or Latino) -> other (as in the
    Synthea reader: the ONS codes Latin American to "Other ethnic group"); otherwise
    ``race_concept_id`` 8527 white, 8516 black, 8515 asian, 0 or missing unknown, any other other.
    ``deprivation_decile`` missing (the CDM has no deprivation field).
    ``practice_id`` = ``"CS"`` + ``person.care_site_id`` only when that care site is a primary-care
    place: ``care_site.place_of_service_concept_id`` 8940 (Office) -- see :data:`PRIMARY_CARE_PLACES`.
    ETLs often point ``person.care_site_id`` at a hospital, which is never a practice: a care site is
    a hospital when its place of service is an inpatient hospital or emergency room
    (:data:`HOSPITAL_CARE_SITE_PLACES`), or, when the place of service is 0 or missing, when the visits
    held there (``visit_occurrence.care_site_id``) include an inpatient stay or are all ER visits. A
    care site with place of service 0 or missing whose visits are not so and include a primary-care
    or outpatient visit is taken as a practice (the ETL did not say, the visits do); one with no
    visits is not. With ``practice_from="care_site"`` any care site that is not a hospital is taken.
    Otherwise ``practice_id`` is left missing (never a made-up "UNKNOWN" practice); the people
    without a practice are counted in the notes, and those whose care site was a hospital, with the
    number of such hospital care sites, in ``summary.practice_exclusions``.
    ``death_date`` = earliest ``death.death_date``; where the person has no DEATH row, the person
    table's ``death_datetime`` (or ``death_date``), which some v5.3 ETLs fill. The number of deaths
    from each source is noted.
    ``registration_start`` / ``registration_end`` = earliest start / latest end of the person's
    observation periods; an end equal to the latest end in the whole extract (the extract end) means
    "still observed at extraction" and is left blank (the schema's "blank if current"). An earlier
    end is handled by ``observation_periods``:
    ``"censor"``: the CDM's meaning (OMOP CDM 5.4, OBSERVATION_PERIOD: the span in which the source
    can be expected to record events): the person's labels are censored from then on.
    ``"last_record"``: many ETLs (Synthea's, ETL-Synthea) end each period at the person's last
    record, which censors almost everybody. A person's last record is their latest visit, condition
    or drug start. People with a record in the ``observation_gap_years`` (default 2) before the extract
    end are followed to the extract end (end blank); people without one are taken to have left
    ``observation_gap_years`` after their last record (or at their period's end, if later); people
    with no record keep their period's end.
    ``"auto"`` (the default): ``"last_record"`` when the artefact shows -- at least
    :data:`OBSERVATION_ARTEFACT_SHARE` (half) of the living people whose period ends before the
    extract end have a record within :data:`OBSERVATION_MATCH_DAYS` (7) days of that end (people
    leaving a registration seldom have a contact that week) -- else ``"censor"``.
    ``"ignore"``: every end blank (everyone followed to the extract end), starts kept.
    The share, the rule and the people followed / censored are in ``summary.observation_periods``
    and the import report.
visit_occurrence (``visit_concept_id``) -- see :data:`VISIT_CONCEPTS`
    Visits are de-duplicated by ``visit_occurrence_id`` (first row kept, repeats counted), never by
    content: two same-day visits with different ids are two events. Every event row carries
    ``record_id``, a keyed hash of the source table and id, so that validation's repeated-row check
    keeps them apart.
    9201 inpatient visit, 8717 inpatient hospital, 32037 intensive care -> ``inpatient_spells``
    (``admission_date``/``discharge_date`` = ``visit_start_date``/``visit_end_date``).
    9203 emergency room visit, 8870 emergency room - hospital (CMS place of service 23, "Is a" 9203),
    8782 urgent care facility (place of service 20, "Is a" 9202 in the Visit hierarchy) ->
    ``ae_attendances``; ``admitted`` if an inpatient visit (or 262) of the same person starts that day
    or the next, or ``discharged_to_concept_id`` is an inpatient setting.
    262 emergency room and inpatient visit -> both an A&E attendance (admitted) and an emergency
    inpatient spell (the cost goes to the spell).
    ``department_type`` (:data:`AE_DEPARTMENT_TYPES`): 9203, 8870 and 262 -> emergency_department;
    8782 -> urgent_care; a 9203 visit held at a care site whose ``place_of_service_concept_id`` is 8782
    -> urgent_care too (the care site says what the visit concept does not). Note: OHDSI's ETL-Synthea
    writes Synthea's urgent-care encounters as 9203 with no trace of the class, so in such exports
    urgent care cannot be told apart and counts as an emergency department.
    9202 outpatient visit -> ``gp_contacts`` (``contact_type`` "primary care visit") when the visit's
    provider has a general-practice specialty (``provider.specialty_concept_id`` 38004446 General
    Practice, 38004453 Family Practice: :data:`GP_SPECIALTIES`) or the visit's care site is a
    primary-care place (:data:`PRIMARY_CARE_PLACES`); otherwise ``outpatient_appointments``
    (attended; ``specialty`` missing). ``primary_care="outpatient"`` keeps every 9202 visit an
    outpatient appointment, ``primary_care="gp"`` makes every 9202 visit a GP contact.
    581477 office visit, 38004207 ambulatory clinic, 581476 home visit, 5083 telehealth ->
    ``gp_contacts`` (``contact_type`` = the concept name).
    8863 skilled nursing facility, 8676 nursing facility -> ``social_care`` nursing
    (``weekly_cost`` = visit cost / stay length in days x 7).
    Any other concept (including 0) is dropped and counted per concept id.
    A spell or nursing stay that ends after the person's death ends on the death date (noted).
    ``admission_method``, the first rule that applies:
    emergency for a 262 visit; transfer if ``admitted_from_concept_id`` (v5.4) or
    ``admitting_source_concept_id`` (v5.3) is an inpatient hospital (8717, 9201); emergency if it is
    the emergency room (8870 Emergency Room - Hospital; 9203 and 262 as some ETLs write visit
    concepts there) or an urgent care facility (8782), or an emergency room or urgent care visit (9203,
    262, 8870, 8782) of the same person started that day or the day before (an admission straight
    after urgent care is unplanned too), or the admitted-from or visit source value contains "emerg"; elective only when
    the admitted-from or visit source value contains the word "elective" (the CDM has no standard
    concept for a planned admission, so this is taken only from what the source wrote);
    otherwise **unknown** -- never guessed as elective.
cost (``cost_domain_id`` Visit / Drug, joined on ``cost_event_id``)
    Per cost row ``total_cost``, else ``total_paid``, else ``total_charge``, else ``cost``; summed per
    visit or drug exposure. ``summary.currency`` from ``cost.currency_concept_id``: 44818668 is the
    US dollar; other ids are looked up in ``CONCEPT`` (vocabulary "Currency", whose ``concept_code`` is
    the ISO 4217 code). When several currencies appear the most frequent is kept and the other
    rows' amounts are dropped and counted. When COST gives none, the ``currency`` option is used,
    else GBP, and a note says so.
condition_occurrence -> ``ltc_register``
    A row counts for a register condition when any of these paths finds it (all are tried; one row may
    count for two conditions, e.g. hypertensive heart failure); first ``condition_start_date`` per
    person and condition:
    1. ``condition_concept_id`` is one of the code list's standard SNOMED concepts
       (``codelists/ltc_omop.csv``) or their descendants: those shipped in
       ``codelists/ltc_omop_descendants.csv`` (listed from an OMOP vocabulary by
       ``codelists/make_ltc_omop.py``, which cites its source per row) and, when the export has a
       hierarchy, those in ``CONCEPT_ANCESTOR`` (or found by walking "Is a" relationships when that
       table is absent or empty, as OHDSI's vocabulary conventions allow: ``CONCEPT_ANCESTOR`` is the
       transitive closure of the hierarchical relationships).
    2. ``condition_source_concept_id`` is such a concept, or (with ``CONCEPT_RELATIONSHIP``) the
       "Maps to" standard concept of the source concept or of a non-standard condition concept is.
    3. A SNOMED CT code -- ``condition_source_value`` as written, or the ``concept_code`` of the row's
       SNOMED concept when ``CONCEPT`` holds it -- is listed in ``codelists/ltc_snomed.csv`` or among
       the descendants' codes. This needs no concept id at all (ETL-Synthea writes SNOMED codes there).
    4. ``condition_source_value`` is an ICD-10 / ICD-10-CM code in ``codelists/ltc_icd10.csv``.
    ``summary.condition_matches`` gives, per condition, the people matched and the people each path
    found; ``summary.unmatched_conditions`` the :data:`TOP_UNMATCHED` most frequent codes no path
    matched (concept id and, with ``CONCEPT``, its name; else the source value), with rows and people.
drug_exposure -> ``prescriptions``
    What a row is comes from its concept (OMOP CDM 5.4, DRUG_EXPOSURE: ``drug_concept_id`` is a
    standard concept of the Drug domain; vaccines are drugs there, typically CVX or RxNorm): the
    ``drug_concept_id`` when ``CONCEPT`` holds it, else the "Maps to" target of
    ``drug_source_concept_id``, else that source concept, else a concept whose code (RxNorm, CVX or
    SNOMED; a Drug-domain one first) is the ``drug_source_value``. A concept in another domain
    (Condition, Procedure, Observation, Device ...: ETLs put medication reasons and administrations
    there) is not a prescription: the row is dropped and counted per domain. A vaccine (vocabulary
    CVX, concept class CVX / Vaccine / Vaccine Group, an ATC class under J07, or a Drug-domain concept
    named "... vaccine ...") is kept with ``bnf_chapter`` "14" (BNF chapter 14, immunological products
    and vaccines) so that counts of medicines can leave them out. Rows whose concept ``CONCEPT`` does
    not hold, and every row when there is no ``CONCEPT`` table (noted), are kept as before.
    ``summary.drug_domains`` has the counts. Repeated ``drug_exposure_id`` counted and dropped.
    ``issue_date`` = ``drug_exposure_start_date``, ``drug_code`` = ``drug_concept_id``. ``bnf_chapter``
    of a medicine: from ``drug_source_value`` when it is written as a BNF code (a 9- or 15-character
    code such as ``0212000B0AAABAB``, or dotted such as ``2.12``; purely numeric source values are not
    trusted: RxNorm and NDC codes look alike); else from the drug's ATC class (the nearest ATC
    ancestor in ``CONCEPT_ANCESTOR``, else the "RxNorm - ATC" links of its RxNorm ingredient or
    product, reached through the RxNorm relationships) via ``codelists/atc_bnf.csv``; else
    ``"unknown"``. An ATC class is read by its ``concept_code`` in ``CONCEPT``; when the links point to
    ATC concepts ``CONCEPT`` lacks (a vocabulary subset), the rows so linked are counted in the notes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.data.codelists import (atc_to_bnf, icd10_condition, load_codelist, ltc_concept_pairs, ltc_concepts,
                                  snomed_condition)
from riskstrat.errors import InvalidInputError
from riskstrat.data.privacy import pseudonymise
from riskstrat.data.readers._common import (
    ImportSummary,
    MissingSourceFileError,
    _end_at_death,
    _first_number,
    _first_present,
    _keep_known_persons,
    _nearest_within,
    _read_source_csv,
    _register_once,
    _tidy_table,
    _unique_persons,
    _to_date,
)
from riskstrat.data.readers._cdm import SUFFIXES, delimiter as _delimiter, find_table
from riskstrat.data.readers.vocab import (CODE_VOCABULARIES, Vocabulary, atc_classes, atc_links, descendants, maps_to,
                                    read_vocabulary)
from riskstrat.data.schema import BNF_UNKNOWN, LONG_TERM_CONDITIONS, VACCINE_CHAPTER

__all__ = ["read_omop", "VISIT_CONCEPTS", "AE_DEPARTMENT_TYPES", "CONDITION_CONCEPTS", "ICD10_RANGES", "icd10_condition", "bnf_from_code",
           "GP_SPECIALTIES", "PRIMARY_CARE_PLACES", "PRIMARY_CARE_OPTIONS"]

# visit_concept_id -> (canonical table, label)
VISIT_CONCEPTS: dict[int, tuple[str, str]] = {
    9201: ("inpatient_spells", "inpatient visit"),
    8717: ("inpatient_spells", "inpatient hospital"),
    32037: ("inpatient_spells", "intensive care"),
    9203: ("ae_attendances", "emergency room visit"),
    8870: ("ae_attendances", "emergency room - hospital"),
    8782: ("ae_attendances", "urgent care facility"),
    262: ("ae_attendances+inpatient_spells", "emergency room and inpatient visit"),
    9202: ("outpatient_appointments", "outpatient visit"),
    581477: ("gp_contacts", "office visit"),
    38004207: ("gp_contacts", "ambulatory clinic"),
    581476: ("gp_contacts", "home visit"),
    5083: ("gp_contacts", "telehealth"),
    8863: ("social_care", "skilled nursing facility"),
    8676: ("social_care", "nursing facility"),
}
INPATIENT_VISITS = (9201, 8717, 32037, 262)
ER_VISITS = (9203, 262, 8870)
URGENT_CARE_VISITS = (8782,)  # CMS place of service 20, Urgent Care Facility
# visit_concept_id of an A&E attendance -> department_type; a 9203 visit at an urgent-care care site
# (place of service 8782) is urgent care.
AE_DEPARTMENT_TYPES = {9203: "emergency_department", 8870: "emergency_department", 262: "emergency_department",
                       8782: "urgent_care"}
ER_PLACES = (8870, 9203, 262, 8782)  # admitted from an emergency room or an urgent care facility
HOSPITAL_PLACES = (8717, 9201)
HISPANIC = 38003563
OUTPATIENT_VISIT = 9202
# PROVIDER.specialty_concept_id of a general practitioner (Medicare specialty vocabulary).
GP_SPECIALTIES = (38004446, 38004453)  # General Practice, Family Practice
# CARE_SITE.place_of_service_concept_id of a primary-care place (CMS place of service 11, Office).
PRIMARY_CARE_PLACES = (8940,)
# CARE_SITE.place_of_service_concept_id of a hospital, never a practice. The CDM 5.4 documentation
# (ohdsi.github.io/CommonDataModel/cdm54.html#care_site) takes place_of_service from the "Place of Service"
# vocabulary (CMS place-of-service codes: 8717 Inpatient Hospital, POS 21; 8870 Emergency Room - Hospital,
# POS 23); ETLs also put "Visit" concepts there (9201 Inpatient Visit, 9203 Emergency Room Visit, 262
# Emergency Room and Inpatient Visit, 32037 Intensive Care; 9201 and 9203 are in the shipped export's
# CONCEPT table with domain Visit). 8756 Outpatient Hospital is left out: a hospital's outpatient clinic
# is not a primary-care place either (no practice by default), but it does not admit.
HOSPITAL_CARE_SITE_PLACES = (8717, 8870, 9201, 9203, 262, 32037)
PRIMARY_CARE_OPTIONS = ("auto", "outpatient", "gp")
PRACTICE_OPTIONS = ("primary_care_site", "care_site")
OBSERVATION_OPTIONS = ("auto", "censor", "ignore", "last_record")
# "auto" takes an extract's observation periods as ending at each person's last record (an ETL artefact)
# when at least this share of the people whose period ends before the extract end (and who did not
# die) have a record within OBSERVATION_MATCH_DAYS of that end; a registration-based period ends
# when a person leaves, which is seldom the day of their last contact.
OBSERVATION_ARTEFACT_SHARE = 0.5
OBSERVATION_MATCH_DAYS = 7
# Under the last-record rule, people with no record for this many years before the extract end are
# taken to have left this many years after their last record.
OBSERVATION_GAP_YEARS = 2.0
CURRENCY_CONCEPTS = {44818668: "USD"}  # others are looked up in CONCEPT (vocabulary "Currency")



def __getattr__(name: str):
    # The former constants, now read (lazily, not at import) from the code-list files.
    if name == "CONDITION_CONCEPTS":
        return ltc_concepts()
    if name == "ICD10_RANGES":
        return tuple(load_codelist("ltc_icd10")[["condition", "first", "last"]].itertuples(index=False, name=None))
    raise AttributeError(name)


def read_omop(src_dir: str | Path, *, pseudonym_key: bytes, primary_care: str = "auto",
              practice_from: str = "primary_care_site",
              currency: str | None = None,
              observation_periods: str = "auto",
              observation_gap_years: float = OBSERVATION_GAP_YEARS) -> tuple[dict[str, pd.DataFrame], ImportSummary]:
    """Read OMOP CDM tables in ``src_dir`` into canonical tables (see the module docstring).

    Returns ``(tables, summary)``, not yet validated. Raises :class:`MissingSourceFileError` naming
    ``person`` or ``visit_occurrence`` if either is absent, and :class:`InvalidInputError` (a ``ValueError``)
    for an unknown option.
    """
    if primary_care not in PRIMARY_CARE_OPTIONS:
        raise InvalidInputError(f"primary_care must be one of {', '.join(PRIMARY_CARE_OPTIONS)}, not {primary_care!r}")
    if practice_from not in PRACTICE_OPTIONS:
        raise InvalidInputError(f"practice_from must be one of {', '.join(PRACTICE_OPTIONS)}, not {practice_from!r}")
    if observation_periods not in OBSERVATION_OPTIONS:
        raise InvalidInputError(f"observation_periods must be one of {', '.join(OBSERVATION_OPTIONS)}, "
                         f"not {observation_periods!r}")
    if not (isinstance(observation_gap_years, (int, float)) and 0 < observation_gap_years <= 50):
        raise InvalidInputError(f"observation_gap_years must be a number of years above 0 (and at most 50), "
                                f"not {observation_gap_years!r}")
    if currency is not None and not (len(currency) == 3 and currency.isalpha()):
        raise InvalidInputError(f"currency must be an ISO 4217 code such as GBP or USD, not {currency!r}")
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise MissingSourceFileError(f"{src_dir}: no such folder")
    summary = ImportSummary(source="omop")
    person = _read(src_dir, "person", summary, required=True)
    visits = _read(src_dir, "visit_occurrence", summary, required=True)
    _require(person, "person", ("person_id",))
    if "birth_datetime" not in person and "year_of_birth" not in person:
        raise MissingSourceFileError("person: needs year_of_birth or birth_datetime")
    _require(visits, "visit_occurrence", ("person_id", "visit_concept_id", "visit_start_date"))

    person, pseudonyms, known = _unique_persons(person, "person_id", summary, "person rows", pseudonym_key)

    def optional(name: str, what: str, key: str | None = "person_id") -> pd.DataFrame | None:
        df = _read(src_dir, name, summary)
        if df is None:
            if what:
                summary.note(f"{name} absent: {what}")
            return None
        if key:
            _require(df, name, (key,))
        return _keep_known_persons(df, "person_id", known, summary, name) if key == "person_id" else df

    death = optional("death", "deaths only from the person table's death_datetime, if any")
    periods = optional("observation_period", "registration dates left missing")
    conditions = optional("condition_occurrence", "no long-term-condition register")
    drugs = optional("drug_exposure", "no prescriptions")
    cost = optional("cost", "visit and drug costs left missing", key="cost_event_id")
    provider = optional("provider", "", key="provider_id")
    care_site = optional("care_site", "", key="care_site_id")

    vocab = read_vocabulary(src_dir, concept_ids=_concepts_of_interest(conditions, drugs, cost),
                            roots=ltc_concepts(),
                            codes=() if drugs is None else _column(drugs, "drug_source_value").dropna().unique())
    if vocab is not None:
        kept = {"concept": vocab.concepts, "concept_ancestor": vocab.ancestors,
                "concept_relationship": vocab.relationships}
        for name in vocab.tables:
            rows = len(kept[name]) if name in kept else None
            summary.note(f"vocabulary: {name} read" + ("" if rows is None else
                                                        f" ({rows:,} rows kept)" if rows else " (no rows)"))
        # A cycle would make a long-term condition's descendants take in whatever hangs below it.
        summary.vocabulary_cycles = {k: int(v) for k, v in vocab.cycles.items() if v}
        for note in vocab.cycle_notes():
            summary.note(note)

    tables = {"persons": _persons(person, death, periods, care_site, pseudonyms, summary,
                                  practice_from=practice_from, observation_periods=observation_periods,
                                  visits=visits, last_record=_last_records(visits, conditions, drugs),
                                  gap_years=observation_gap_years)}
    visits = _keep_known_persons(visits, "person_id", known, summary, "visit_occurrence")
    summary.currency = _currency(cost, vocab, currency, summary)
    tables.update(_visit_tables(visits, _costs(cost, "Visit", summary.currency, vocab, summary), pseudonyms, summary,
                                gp_visit=_gp_visit(visits, provider, care_site, primary_care, summary),
                                pseudonym_key=pseudonym_key, urgent_care_site=_urgent_care_site(visits, care_site)))
    if conditions is not None:
        _require(conditions, "condition_occurrence", ("condition_start_date",))
        tables["ltc_register"] = _ltc_register(conditions, vocab, pseudonyms, summary)
    if drugs is not None:
        _require(drugs, "drug_exposure", ("drug_exposure_start_date",))
        tables["prescriptions"] = _prescriptions(drugs, _costs(cost, "Drug", summary.currency, vocab, summary), vocab,
                                                 pseudonyms, summary, pseudonym_key=pseudonym_key)

    _end_at_death(tables, summary)
    tables = {name: _tidy_table(name, df) for name, df in tables.items()}
    _record_routes(tables, summary)
    summary.finish(tables)
    return tables, summary


# Canonical table -> the CDM table its rows come from.
_SOURCES = {"persons": "person", "ltc_register": "condition_occurrence", "prescriptions": "drug_exposure",
            **{name: "visit_occurrence" for name in ("inpatient_spells", "ae_attendances", "outpatient_appointments",
                                                     "gp_contacts", "social_care")}}


def _record_routes(tables: dict[str, pd.DataFrame], summary: ImportSummary) -> None:
    """Where each CDM file went, for the import report (rows per canonical table, before validation)."""
    files = {Path(f).name.split(".")[0].lower(): f for f in summary.source_rows}
    for name, df in tables.items():
        source = files.get(_SOURCES.get(name, ""))
        if source:
            summary.route(source, name, len(df))


# --- reading ---------------------------------------------------------------------------------

def _read(src_dir: Path, name: str, summary: ImportSummary, *, required: bool = False) -> pd.DataFrame | None:
    path = find_table(src_dir, name)
    if path is None:
        if required:
            raise MissingSourceFileError(
                f"{src_dir / (name + '.csv')}: required OMOP table '{name}' is missing "
                "(an OMOP extract needs person and visit_occurrence)")
        return None
    df = _read_source_csv(path, sep=_delimiter(path))
    df.columns = [str(c).strip().lower() for c in df.columns]
    summary.source_rows[path.name] = len(df)
    return df


def _file(summary: ImportSummary, table: str) -> str:
    """The file name read for CDM ``table`` (as spelled on disk)."""
    return next((f for f in summary.source_rows if Path(f).name.split(".")[0].lower() == table), table)


def _require(df: pd.DataFrame, table: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingSourceFileError(f"{table}: required column(s) {', '.join(missing)} missing")


def _concept(values: pd.Series) -> pd.Series:
    """Concept ids as nullable integers (``"8507"`` and ``"8507.0"`` both -> 8507)."""
    return pd.to_numeric(values, errors="coerce").round().astype("Int64")


def _column(df: pd.DataFrame, *names: str) -> pd.Series:
    """The first of ``names`` present in ``df``, else an all-missing column."""
    name = _first_present(df, names)
    return df[name] if name else pd.Series(pd.NA, index=df.index, dtype="string")


def _concepts_of_interest(conditions: pd.DataFrame | None, drugs: pd.DataFrame | None,
                          cost: pd.DataFrame | None) -> set[int]:
    """Concept ids the data and the code lists use: the vocabulary is read for these only."""
    ids = set(ltc_concepts()) | set(CURRENCY_CONCEPTS)
    for df, columns in ((conditions, ("condition_concept_id", "condition_source_concept_id")),
                        (drugs, ("drug_concept_id", "drug_source_concept_id")),
                        (cost, ("currency_concept_id",))):
        if df is not None:
            for c in columns:
                if c in df:
                    ids.update(int(i) for i in _concept(df[c]).dropna().unique())
    ids.discard(0)
    return ids


def _record_ids(table: str, ids: pd.Series, key: bytes) -> pd.Series:
    """A keyed hash of ``table:id`` per row (missing where the source id is missing)."""
    text = ids.astype("string").str.strip()
    return pseudonymise((table + ":" + text).where(text.notna() & (text != "")), key)


def _dedupe_by_id(df: pd.DataFrame, id_column: str, table: str, summary: ImportSummary) -> pd.DataFrame:
    """First row per source id (rows without an id are kept); repeats counted."""
    if id_column not in df:
        summary.note(f"{table} has no {id_column}: rows are not de-duplicated and carry no record_id")
        return df
    ids = df[id_column].astype("string").str.strip()
    repeated = ids.notna() & ids.duplicated()
    summary.drop(f"{table} rows with a repeated {id_column} (first kept)", int(repeated.sum()))
    return df[~repeated.to_numpy(dtype=bool)]


# --- persons ---------------------------------------------------------------------------------

def _persons(person: pd.DataFrame, death: pd.DataFrame | None, periods: pd.DataFrame | None,
             care_site: pd.DataFrame | None, pseudonyms: dict, summary: ImportSummary, *,
             practice_from: str, observation_periods: str = "auto",
             visits: pd.DataFrame | None = None, last_record: pd.Series | None = None,
             gap_years: float = OBSERVATION_GAP_YEARS) -> pd.DataFrame:
    birth = _to_date(_column(person, "birth_datetime"), summary=summary, source_file=_file(summary, "person"))
    if "year_of_birth" in person:
        year = _concept(person["year_of_birth"])
        summary.unreadable_values(_file(summary, "person"), "year_of_birth", "number", person["year_of_birth"],
                                  year.isna())
        parts = pd.DataFrame({
            "year": year,
            "month": _concept(_column(person, "month_of_birth")).fillna(1),
            "day": _concept(_column(person, "day_of_birth")).fillna(1),
        })
        from_parts = pd.to_datetime(parts.astype("float64"), errors="coerce").astype("datetime64[s]")
        birth = birth.fillna(from_parts)
    gender = _concept(_column(person, "gender_concept_id"))
    race = _concept(_column(person, "race_concept_id"))
    ethnic = pd.Series(np.select(
        [race.isna().to_numpy() | (race == 0).fillna(False).to_numpy(), (race == 8527).fillna(False).to_numpy(),
         (race == 8516).fillna(False).to_numpy(), (race == 8515).fillna(False).to_numpy()],
        ["unknown", "white", "black", "asian"], default="other"), index=person.index)
    hispanic = (_concept(_column(person, "ethnicity_concept_id")) == HISPANIC).fillna(False)
    ethnic = ethnic.where(~hispanic, "other")
    persons = pd.DataFrame({
        "person_id": person["person_id"].map(pseudonyms),
        "birth_date": birth,
        "sex": gender.map({8507: "male", 8532: "female"}).astype(object).fillna("unknown"),
        "deprivation_decile": pd.Series(pd.NA, index=person.index, dtype="Int16"),
        "ethnicity_group": ethnic,
        "practice_id": _practices(person, care_site, summary, practice_from=practice_from, visits=visits),
    })
    died = _deaths(person, death, summary)
    start = end = pd.Series(pd.NaT, index=person.index, dtype="datetime64[s]")
    if periods is not None:
        file = _file(summary, "observation_period")
        p = periods.assign(start=_to_date(_column(periods, "observation_period_start_date"), summary=summary,
                                          source_file=file),
                           end=_to_date(_column(periods, "observation_period_end_date"), summary=summary,
                                        source_file=file))
        by_person = p.groupby("person_id").agg(start=("start", "min"), end=("end", "max"))
        extract_end = p["end"].max()
        # reindex, not map: a header-only table gives an empty frame that map cannot cast.
        start = pd.Series(by_person["start"].reindex(person["person_id"]).to_numpy(), index=person.index,
                          dtype="datetime64[s]")
        period_end = pd.Series(by_person["end"].reindex(person["person_id"]).to_numpy(), index=person.index,
                               dtype="datetime64[s]")
        last = pd.Series(pd.NaT, index=person.index, dtype="datetime64[s]") if last_record is None else \
            pd.Series(last_record.reindex(person["person_id"]).to_numpy(), index=person.index, dtype="datetime64[s]")
        end = period_end.where(period_end != extract_end)
        end = end.where(end.notna(), pd.NaT).astype("datetime64[s]")
        end = _apply_observation_rule(end, last, died, extract_end, summary, option=observation_periods,
                                      gap_years=gap_years, n_people=len(person))
    persons["registration_start"] = start
    persons["registration_end"] = end
    persons["death_date"] = died
    return persons.reset_index(drop=True)


def _last_records(*tables: pd.DataFrame | None) -> pd.Series:
    """Each source person's latest record date (visit, condition or drug start), indexed by ``person_id``."""
    dates = []
    for df, column in zip(tables, ("visit_start_date", "condition_start_date", "drug_exposure_start_date")):
        if df is not None and column in df and "person_id" in df:
            dates.append(pd.DataFrame({"person_id": df["person_id"], "date": _to_date(df[column])}))
    if not dates:
        return pd.Series(dtype="datetime64[s]")
    return pd.concat(dates, ignore_index=True).dropna().groupby("person_id")["date"].max()


def _apply_observation_rule(end: pd.Series, last: pd.Series, died: pd.Series, extract_end, summary: ImportSummary, *,
                            option: str, gap_years: float, n_people: int) -> pd.Series:
    """``registration_end`` under the ``observation_periods`` option (see the module docstring); the counts go
    to ``summary.observation_periods`` and the notes."""
    early = end.notna()
    compared = early & died.isna() & last.notna()
    near = compared & ((end - last).abs() <= pd.Timedelta(days=OBSERVATION_MATCH_DAYS))
    share = float(near.sum() / compared.sum()) if compared.any() else 0.0
    artefact = bool(compared.any()) and share >= OBSERVATION_ARTEFACT_SHARE
    report = {"option": option, "people_ending_early": int(early.sum()), "people_compared": int(compared.sum()),
              "ending_at_last_record": int(near.sum()), "share_ending_at_last_record": round(share, 4),
              "artefact_detected": artefact, "gap_years": gap_years}
    rule = {"auto": "last_record" if artefact else "censor"}.get(option, option)
    report["rule"] = rule
    summary.observation_periods = report
    found = (f"{int(near.sum()):,} of the {int(compared.sum()):,} living people whose observation period ends "
             f"before the extract end ({share:.0%}) have a record within {OBSERVATION_MATCH_DAYS} days of its end")
    if rule == "ignore":
        summary.note(f"observation periods: ends ignored (observation_periods='ignore'): {int(early.sum()):,} of "
                     f"{n_people:,} people are followed to the extract end instead of censored")
        report.update(extended=int(early.sum()), censored=0)
        return pd.Series(pd.NaT, index=end.index, dtype="datetime64[s]")
    if rule == "censor":
        if early.any():
            summary.note(f"observation periods: {int(early.sum()):,} of {n_people:,} people stop being observed before "
                         f"the extract ends and are censored from then on ({found}; the last-record rule applies "
                         f"from {OBSERVATION_ARTEFACT_SHARE:.0%}, or with --observation-periods last_record)")
        report.update(extended=0, censored=int(early.sum()))
        return end
    # last_record: followed to the extract end when seen in the last gap_years; otherwise taken to have
    # left gap_years after the last record (or at the period's end, if that is later).
    # People who died keep their period's end (it ends at their death, which labels censor anyway).
    gap = pd.DateOffset(months=int(round(gap_years * 12)))
    cutoff = pd.Timestamp(extract_end) - gap
    alive = died.isna()
    recent = alive & last.notna() & (last >= cutoff)
    presumed = (last + gap).where(last.notna())
    new_end = end.where(~recent, pd.NaT)
    stale = alive & last.notna() & ~recent
    new_end = new_end.where(~stale, presumed.where(end.isna() | (presumed > end), end))
    new_end = new_end.where(~(new_end >= pd.Timestamp(extract_end)).fillna(False), pd.NaT).astype("datetime64[s]")
    extended = int((early & new_end.isna()).sum())
    censored = int((alive & new_end.notna()).sum())
    without_records = int((alive & early & last.isna()).sum())
    dead = int((early & ~alive).sum())
    report.update(extended=extended, censored=censored, censored_without_records=without_records,
                  died_period_kept=dead)
    why = (f"observation periods end at each person's last record ({found})" if option == "auto"
           else "observation_periods='last_record'")
    summary.note(f"observation periods: {why}: {extended:,} living people with a record in the {gap_years:g} years "
                 f"before the extract end are followed to it; {censored:,} living {'person is' if censored == 1 else 'people are'} censored "
                 f"({int(stale.sum()):,} with no record in those years, at their last record + {gap_years:g} years or "
                 f"their period's end if later; {without_records:,} without records, at their period's end); "
                 f"{dead:,} people who died keep their period's end")
    return new_end


def _practices(person: pd.DataFrame, care_site: pd.DataFrame | None, summary: ImportSummary, *,
               practice_from: str, visits: pd.DataFrame | None = None) -> pd.Series:
    """``"CS" + care_site_id`` where the person's care site is a practice (see the module docstring)."""
    site = _concept(_column(person, "care_site_id"))
    if care_site is None:
        if practice_from == "primary_care_site" and site.notna().any():
            summary.note("care_site absent: person.care_site_id not used as a practice (it may be a "
                         "hospital; practice_from='care_site' takes it as given)")
            site = site.where(pd.Series(False, index=site.index))
    else:
        hospitals, practices = _care_site_kinds(care_site, visits)
        hospital = site.isin(hospitals).fillna(False).astype(bool)
        summary.practice_exclusions = {"hospitals_excluded": int(site[hospital].nunique()),
                                       "people_whose_only_candidate_was_a_hospital": int(hospital.sum())}
        if hospital.any():
            summary.note(f"{int(hospital.sum())} people whose person.care_site_id is a hospital (place of service "
                         f"inpatient or emergency room, or only such visits there; {site[hospital].nunique()} "
                         "care sites): no practice given")
        site = site.where(~hospital)
        if practice_from == "primary_care_site":
            not_primary = site.notna() & ~site.isin(practices).fillna(False)
            if not_primary.any():
                summary.note(f"{int(not_primary.sum())} people whose person.care_site_id is not a primary-care "
                             "place (place_of_service 8940 Office): no practice given")
            site = site.where(~not_primary)
    practice = ("CS" + site.astype("string")).astype(object).where(site.notna(), np.nan)
    n = int(practice.isna().sum())
    if n:
        summary.note(f"{n} {'person has' if n == 1 else 'people have'} no registered practice "
                     "(practice_id left blank; listed apart, never as a practice)")
    return practice


def _care_site_kinds(care_site: pd.DataFrame, visits: pd.DataFrame | None) -> tuple[set, set]:
    """(hospital care site ids, primary-care care site ids), from the place of service, else the visits."""
    ids = _concept(care_site["care_site_id"])
    places = _concept(_column(care_site, "place_of_service_concept_id"))
    unknown = places.isna() | (places == 0).fillna(False)
    hospitals = set(ids[places.isin(HOSPITAL_CARE_SITE_PLACES).fillna(False)].dropna())
    practices = set(ids[places.isin(PRIMARY_CARE_PLACES).fillna(False)].dropna())
    if unknown.any() and visits is not None and "care_site_id" in visits:
        v = pd.DataFrame({"site": _concept(visits["care_site_id"]), "concept": _concept(visits["visit_concept_id"])})
        v = v[v["site"].isin(set(ids[unknown].dropna())).fillna(False)]
        by_site = v.assign(inpatient=v["concept"].isin(INPATIENT_VISITS).fillna(False),
                           er=v["concept"].isin(ER_VISITS).fillna(False),
                           primary=v["concept"].isin(_concepts_for("gp_contacts") + [OUTPATIENT_VISIT]).fillna(False)
                           ).groupby("site").agg(inpatient=("inpatient", "any"), er=("er", "all"),
                                                 primary=("primary", "any"))
        admits = by_site["inpatient"] | by_site["er"]
        hospitals |= set(by_site.index[admits])
        practices |= set(by_site.index[~admits & by_site["primary"]])
    return hospitals, practices


def _deaths(person: pd.DataFrame, death: pd.DataFrame | None, summary: ImportSummary) -> pd.Series:
    """Earliest DEATH date per person, else the person table's death_datetime / death_date."""
    died = pd.Series(pd.NaT, index=person.index, dtype="datetime64[s]")
    if death is not None:
        dates = death.assign(date=_to_date(_column(death, "death_date", "death_datetime"), summary=summary,
                                           source_file=_file(summary, "death")))
        no_date = dates["date"].isna()
        summary.drop("death rows with a missing or unreadable death_date", int(no_date.sum()))
        first = dates[~no_date].groupby("person_id")["date"].min()
        died = pd.Series(first.reindex(person["person_id"]).to_numpy(), index=person.index, dtype="datetime64[s]")
    from_death = int(died.notna().sum())
    on_person = _to_date(_column(person, "death_datetime", "death_date"), summary=summary,
                         source_file=_file(summary, "person"))
    died = died.fillna(on_person).astype("datetime64[s]")
    from_person = int(died.notna().sum()) - from_death
    summary.note(f"deaths: {from_death} from the death table, {from_person} from the person table's death_datetime")
    return died


# --- costs and visits ------------------------------------------------------------------------

def _currency(cost: pd.DataFrame | None, vocab: Vocabulary | None, option: str | None,
              summary: ImportSummary) -> str:
    """The ISO code of the costs (see the module docstring)."""
    codes = pd.Series(dtype=object)
    if cost is not None and "currency_concept_id" in cost:
        ids = _concept(cost["currency_concept_id"])
        names = dict(CURRENCY_CONCEPTS)
        if vocab is not None:
            c = vocab.concepts[vocab.concepts["vocabulary_id"] == "Currency"]
            names.update(zip(c["concept_id"], c["concept_code"].str.upper()))
        codes = ids.map(names).dropna()
        unresolved = ids.notna() & (ids != 0) & ids.map(names).isna()
        if unresolved.any():
            summary.note(f"cost.currency_concept_id {', '.join(map(str, sorted(ids[unresolved].unique())))} "
                         "not found in the vocabulary")
    if len(codes):
        found = codes.value_counts().idxmax()
        summary.drop(f"cost amounts in a currency other than {found} (most cost rows are {found})",
                     int((codes != found).sum()))
        if option and option.upper() != found:
            summary.note(f"COST says the currency is {found}; the currency option {option.upper()} is ignored")
        return found
    chosen = (option or "GBP").upper()
    if cost is not None and cost.empty:
        summary.note("cost has no rows: visit and drug costs left missing")
    elif cost is not None:
        summary.note(f"COST does not say its currency: costs taken as {chosen}"
                     + ("" if option else " (set the reader option currency= if they are not)"))
    return chosen


def _costs(cost: pd.DataFrame | None, domain: str, currency: str, vocab: Vocabulary | None,
           summary: ImportSummary) -> pd.Series:
    """Summed cost per event id (as text) for ``cost_domain_id == domain`` in ``currency``."""
    if cost is None:
        return pd.Series(dtype="float64")
    if "cost_domain_id" in cost:
        cost = cost[cost["cost_domain_id"].str.strip().str.lower() == domain.lower()]
    amount = _first_number(cost, [c for c in ("total_cost", "total_paid", "total_charge", "cost") if c in cost],
                           summary=summary, source_file=_file(summary, "cost"), kind="cost", currency=currency)
    if "currency_concept_id" in cost:
        ids = _concept(cost["currency_concept_id"])
        names = dict(CURRENCY_CONCEPTS)
        if vocab is not None:
            c = vocab.concepts[vocab.concepts["vocabulary_id"] == "Currency"]
            names.update(zip(c["concept_id"], c["concept_code"].str.upper()))
        other = ids.map(names).notna() & (ids.map(names) != currency)
        amount = amount.where(~other.fillna(False).to_numpy(dtype=bool))
    return amount.groupby(cost["cost_event_id"].str.strip()).sum(min_count=1)


def _gp_visit(visits: pd.DataFrame, provider: pd.DataFrame | None, care_site: pd.DataFrame | None,
              primary_care: str, summary: ImportSummary) -> pd.Series:
    """Whether each visit was with a GP (provider specialty or a primary-care care site)."""
    if primary_care == "gp":
        return pd.Series(True, index=visits.index)
    if primary_care == "outpatient":
        return pd.Series(False, index=visits.index)
    gp = pd.Series(False, index=visits.index)
    if provider is not None and "provider_id" in visits:
        specialty = _concept(_column(provider, "specialty_concept_id"))
        gps = set(_concept(provider["provider_id"])[specialty.isin(GP_SPECIALTIES).fillna(False)].dropna())
        gp |= _concept(visits["provider_id"]).isin(gps).fillna(False)
    if care_site is not None and "care_site_id" in visits:
        places = _concept(_column(care_site, "place_of_service_concept_id"))
        sites = set(_concept(care_site["care_site_id"])[places.isin(PRIMARY_CARE_PLACES).fillna(False)].dropna())
        gp |= _concept(visits["care_site_id"]).isin(sites).fillna(False)
    if provider is None and care_site is None:
        summary.note("provider and care_site absent: outpatient visits (9202) stay outpatient appointments "
                     "(primary_care='gp' makes them GP contacts)")
    return gp


def _urgent_care_site(visits: pd.DataFrame, care_site: pd.DataFrame | None) -> pd.Series:
    """Whether each visit was held at a care site whose place of service is an urgent care facility."""
    if care_site is None or "care_site_id" not in visits:
        return pd.Series(False, index=visits.index)
    places = _concept(_column(care_site, "place_of_service_concept_id"))
    sites = set(_concept(care_site["care_site_id"])[places.isin(URGENT_CARE_VISITS).fillna(False)].dropna())
    return _concept(visits["care_site_id"]).isin(sites).fillna(False).astype(bool)


def _visit_tables(visits: pd.DataFrame, visit_cost: pd.Series, pseudonyms: dict, summary: ImportSummary, *,
                  gp_visit: pd.Series, pseudonym_key: bytes,
                  urgent_care_site: pd.Series | None = None) -> dict[str, pd.DataFrame]:
    v = visits.assign(gp_visit=gp_visit,
                      urgent_care_site=False if urgent_care_site is None else urgent_care_site)
    v = _dedupe_by_id(v, "visit_occurrence_id", "visit_occurrence", summary)
    v["concept"] = _concept(v["visit_concept_id"])
    file = _file(summary, "visit_occurrence")
    v["date"] = _to_date(v["visit_start_date"], summary=summary, source_file=file)
    v["end"] = _to_date(_column(v, "visit_end_date"), summary=summary, source_file=file)
    no_date = v["date"].isna()
    summary.drop("visits with a missing or unreadable visit_start_date", int(no_date.sum()))
    v = v[~no_date]
    mapped = v["concept"].isin(list(VISIT_CONCEPTS)).fillna(False)
    for concept, n in v.loc[~mapped, "concept"].astype("string").fillna("missing").value_counts().sort_index().items():
        summary.drop(f"visits with unmapped visit_concept_id {concept}", int(n))
    v = v[mapped]
    v["pid"] = v["person_id"].map(pseudonyms)
    visit_id = _column(v, "visit_occurrence_id").astype("string").str.strip()
    v["cost"] = visit_id.map(visit_cost).astype("float64")
    v["record_id"] = _record_ids("visit_occurrence", visit_id, pseudonym_key)
    tables: dict[str, pd.DataFrame] = {}

    inpatient = v[v["concept"].isin(INPATIENT_VISITS)]
    # An admission straight after urgent care is unplanned too: both say "came via A&E".
    er = v[v["concept"].isin(ER_VISITS + URGENT_CARE_VISITS)]
    ae = v[v["concept"].isin([c for c in AE_DEPARTMENT_TYPES if c != 262])]
    department = ae["concept"].map(AE_DEPARTMENT_TYPES).where(~ae["urgent_care_site"], "urgent_care")
    next_admission = _nearest_within(ae, inpatient, by="person_id", on="date", direction="forward",
                                     tolerance=pd.Timedelta(days=1))
    discharged_to = _concept(_column(ae, "discharged_to_concept_id", "discharge_to_concept_id"))
    er_admitted = v[v["concept"] == 262]
    tables["ae_attendances"] = pd.concat([
        pd.DataFrame({"person_id": ae["pid"], "arrival_date": ae["date"],
                      "admitted": next_admission.notna() | discharged_to.isin(INPATIENT_VISITS).fillna(False),
                      "department_type": department, "cost": ae["cost"], "record_id": ae["record_id"]}),
        # The cost of a combined ER + inpatient visit goes to the spell, not to the attendance.
        pd.DataFrame({"person_id": er_admitted["pid"], "arrival_date": er_admitted["date"],
                      "admitted": True, "department_type": "emergency_department", "cost": np.nan,
                      "record_id": er_admitted["record_id"]}),
    ])

    method = _admission_method(inpatient, er)
    tables["inpatient_spells"] = pd.DataFrame({
        "person_id": inpatient["pid"], "admission_date": inpatient["date"],
        "discharge_date": inpatient["end"], "admission_method": method,
        "cost": inpatient["cost"], "record_id": inpatient["record_id"],
    })
    if len(method):
        counts = method.value_counts()
        summary.note("admission methods: " + ", ".join(f"{counts.get(m, 0)} {m}" for m in
                                                      ("emergency", "transfer", "elective", "unknown")))

    is_outpatient = v["concept"] == OUTPATIENT_VISIT
    outpatient = v[is_outpatient & ~v["gp_visit"]]
    tables["outpatient_appointments"] = pd.DataFrame({
        "person_id": outpatient["pid"], "appointment_date": outpatient["date"], "attended": True,
        "cost": outpatient["cost"], "record_id": outpatient["record_id"],
    })

    labels = {c: label for c, (_, label) in VISIT_CONCEPTS.items()}
    labels[OUTPATIENT_VISIT] = "primary care visit"
    gp = v[v["concept"].isin(_concepts_for("gp_contacts")) | (is_outpatient & v["gp_visit"])]
    n_gp_outpatient = int((is_outpatient & v["gp_visit"]).sum())
    if n_gp_outpatient:
        summary.note(f"{n_gp_outpatient} outpatient visits (9202) with a general-practice provider or care site "
                     "(or primary_care='gp') written as GP contacts")
    tables["gp_contacts"] = pd.DataFrame({
        "person_id": gp["pid"], "contact_date": gp["date"], "contact_type": gp["concept"].map(labels),
        "cost": gp["cost"], "record_id": gp["record_id"],
    })

    nursing = v[v["concept"].isin(_concepts_for("social_care"))]
    days = (nursing["end"] - nursing["date"]).dt.days.clip(lower=1)
    tables["social_care"] = pd.DataFrame({
        "person_id": nursing["pid"], "service_type": "nursing", "start_date": nursing["date"],
        "end_date": nursing["end"], "weekly_cost": nursing["cost"] / days * 7, "record_id": nursing["record_id"],
    })
    return {name: df for name, df in tables.items() if len(df)}


def _concepts_for(table: str) -> list[int]:
    return [concept for concept, (name, _) in VISIT_CONCEPTS.items() if name == table]


def _admission_method(inpatient: pd.DataFrame, er: pd.DataFrame) -> pd.Series:
    admitted_from = _concept(_column(inpatient, "admitted_from_concept_id", "admitting_source_concept_id"))
    source_text = (_column(inpatient, "admitted_from_source_value", "admitting_source_value").fillna("")
                   + " " + _column(inpatient, "visit_source_value").fillna("")).str.lower()
    via_er = _nearest_within(inpatient, er, by="person_id", on="date", direction="backward",
                             tolerance=pd.Timedelta(days=1)).notna()
    combined = (inpatient["concept"] == 262).fillna(False)
    transfer = admitted_from.isin(HOSPITAL_PLACES).fillna(False)
    emergency = (admitted_from.isin(ER_PLACES).fillna(False) | via_er
                 | source_text.str.contains("emerg", regex=False))
    elective = source_text.str.contains(r"\belective\b", regex=True)
    method = np.select([combined.to_numpy(dtype=bool), transfer.to_numpy(dtype=bool),
                        emergency.to_numpy(dtype=bool), elective.to_numpy(dtype=bool)],
                       ["emergency", "transfer", "emergency", "elective"], default="unknown")
    return pd.Series(method, index=inpatient.index, dtype=object)


# --- conditions and drugs --------------------------------------------------------------------

# How a condition row was matched, in the order tried (the import report counts people per path).
CONDITION_PATHS = ("condition_concept_id", "source concept or Maps to", "SNOMED code", "ICD-10 source value")
# The import report lists this many of the most frequent unmatched condition codes.
TOP_UNMATCHED = 10


def _condition_lookup(vocab: Vocabulary | None) -> pd.DataFrame:
    """(concept_id, condition) pairs: the shipped code lists (roots and listed descendants) and, with a
    vocabulary hierarchy, the roots' descendants in it."""
    pairs = [ltc_concept_pairs()]
    if vocab is not None and vocab.has_hierarchy:
        code_list = ltc_concepts()
        codes = pd.DataFrame({"ancestor_concept_id": list(code_list), "condition": list(code_list.values())})
        found = descendants(vocab, code_list).merge(codes, on="ancestor_concept_id")
        pairs.append(found.rename(columns={"descendant_concept_id": "concept_id"})[["concept_id", "condition"]])
    return pd.concat(pairs, ignore_index=True).drop_duplicates().astype({"concept_id": "int64"})


def _by_concept(rows: pd.Series, ids: pd.Series, lookup: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({"row": rows.to_numpy(), "concept_id": ids.to_numpy()}).dropna()
    return frame.astype({"concept_id": "int64"}).merge(lookup, on="concept_id")[["row", "condition"]]


def _ltc_register(conditions: pd.DataFrame, vocab: Vocabulary | None, pseudonyms: dict,
                  summary: ImportSummary) -> pd.DataFrame:
    c = conditions.assign(date=_to_date(conditions["condition_start_date"], summary=summary,
                                        source_file=_file(summary, "condition_occurrence")))
    no_date = c["date"].isna()
    summary.drop("condition_occurrence rows with a missing or unreadable condition_start_date", int(no_date.sum()))
    c = c[~no_date].reset_index(drop=True)
    c["row"] = c.index
    lookup = _condition_lookup(vocab)
    if vocab is None or not vocab.has_hierarchy:
        summary.note("no vocabulary hierarchy (CONCEPT_ANCESTOR or 'Is a' relationships): long-term conditions "
                     "matched on the shipped code lists (codelists/ltc_omop.csv and the descendants listed in "
                     "ltc_omop_descendants.csv), SNOMED codes (ltc_snomed.csv) and ICD-10 source values")
    concept = _concept(_column(c, "condition_concept_id"))
    source = _concept(_column(c, "condition_source_concept_id"))
    source_value = _column(c, "condition_source_value")
    found = {CONDITION_PATHS[0]: _by_concept(c["row"], concept, lookup)}
    # The source concept itself (ETL-Synthea writes the SNOMED concept there too), and with a vocabulary
    # the "Maps to" standard concepts of the source concept and of a non-standard condition concept.
    by_source = [_by_concept(c["row"], source, lookup)]
    if vocab is not None:
        for ids in (source, concept):
            rows = pd.DataFrame({"row": c["row"], "concept_id": ids}).dropna().astype({"concept_id": "int64"})
            standard = rows.merge(maps_to(vocab, rows["concept_id"]), on="concept_id")
            by_source.append(_by_concept(standard["row"], standard["standard_concept_id"], lookup))
    found[CONDITION_PATHS[1]] = pd.concat(by_source, ignore_index=True)
    # SNOMED CT codes: the source value as written, and the SNOMED code of the row's concepts.
    codes = [source_value.rename("code").reset_index(drop=True).to_frame().assign(row=c["row"])]
    if vocab is not None:
        snomed = vocab.concepts[vocab.concepts["vocabulary_id"] == "SNOMED"].set_index("concept_id")["concept_code"]
        for ids in (concept, source):
            codes.append(pd.DataFrame({"code": ids.map(snomed).astype("string"), "row": c["row"]}))
    codes = pd.concat(codes, ignore_index=True).dropna()
    hits = snomed_condition(codes["code"].reset_index(drop=True))
    found[CONDITION_PATHS[2]] = pd.DataFrame({"row": codes["row"].to_numpy()[hits["index"].to_numpy()],
                                              "condition": hits["condition"].to_numpy()})
    icd = pd.DataFrame({"row": c["row"], "condition": icd10_condition(source_value)}).dropna()
    found[CONDITION_PATHS[3]] = icd
    matched = pd.concat([f.assign(path=path) for path, f in found.items()], ignore_index=True)
    matched = matched.drop_duplicates(["row", "condition", "path"])
    unmatched = ~c["row"].isin(matched["row"])
    summary.drop("condition_occurrence rows that are not register long-term conditions", int(unmatched.sum()))
    summary.condition_matches = _condition_report(matched, c, pseudonyms)
    summary.unmatched_conditions = _unmatched_conditions(c[unmatched], concept[unmatched], vocab)
    first = matched.drop_duplicates(["row", "condition"])
    register = first.merge(c[["row", "person_id", "date"]], on="row")
    register = pd.DataFrame({"person_id": register["person_id"].map(pseudonyms), "condition": register["condition"],
                             "diagnosis_date": register["date"]})
    return _register_once(register, summary, records=len(first), rows=int((~unmatched).sum()),
                          source="CONDITION_OCCURRENCE.csv")


def _condition_report(matched: pd.DataFrame, c: pd.DataFrame, pseudonyms: dict) -> dict[str, dict]:
    """Per register condition: people matched, and people found by each path (a person may be found by several)."""
    m = matched.merge(c[["row", "person_id"]], on="row")
    out = {}
    for condition in LONG_TERM_CONDITIONS:
        rows = m[m["condition"] == condition]
        by_path = rows.groupby("path")["person_id"].nunique()
        out[condition] = {"people": int(rows["person_id"].nunique()),
                          "by_path": {path: int(by_path.get(path, 0)) for path in CONDITION_PATHS if by_path.get(path, 0)}}
    return out


def _unmatched_conditions(rest: pd.DataFrame, concept: pd.Series, vocab: Vocabulary | None) -> list[dict]:
    """The most frequent codes of the rows no path matched: concept id (and name, when ``CONCEPT`` has it),
    else the source value as written; rows and people per code (counts only, never person ids)."""
    if rest.empty:
        return []
    source_value = _column(rest, "condition_source_value").astype("string").str.strip().str.slice(0, 40)
    known = concept.notna() & (concept != 0).fillna(False)
    key = ("concept " + concept.astype("string")).where(known, "source value " + source_value.fillna("(blank)"))
    counts = pd.DataFrame({"key": key.to_numpy(), "person_id": rest["person_id"].to_numpy(),
                           "concept_id": concept.to_numpy(), "source_value": source_value.to_numpy()})
    top = counts.groupby("key").agg(rows=("person_id", "size"), people=("person_id", "nunique"),
                                    concept_id=("concept_id", "first"), source_value=("source_value", "first"))
    top = top.reset_index().sort_values(["rows", "people", "key"], ascending=[False, False, True]).head(TOP_UNMATCHED)
    names = {} if vocab is None else dict(zip(vocab.concepts["concept_id"], vocab.concepts["concept_name"]))
    out = []
    for r in top.itertuples():
        cid = None if pd.isna(r.concept_id) or r.concept_id == 0 else int(r.concept_id)
        out.append({"concept_id": cid if cid is not None else 0,
                    "concept_name": (names.get(cid) or "") if cid is not None else "",
                    "source_value": "" if cid is not None or pd.isna(r.source_value) else str(r.source_value),
                    "rows": int(r.rows), "people": int(r.people)})
    return out


def bnf_from_code(codes: pd.Series) -> pd.Series:
    """BNF chapter ("01".."15") of source values written as BNF codes, else missing.

    >>> bnf_from_code(pd.Series(["0212000B0AAABAB", "0601023AA", "2.12", "1049221", "x"])).tolist()
    ['02', '06', '02', nan, nan]
    """
    text = codes.astype("string").str.upper().str.strip().str.removeprefix("BNF:").str.strip()
    # 9-character chemical or 15-character presentation codes carry a letter; 7-digit numbers do not.
    coded = text.str.extract(r"^(0[1-9]|1[0-5])\d{5}[0-9A-Z]{2}(?:[0-9A-Z]{6})?$", expand=False)
    coded = coded.where(text.str.contains(r"[A-Z]", regex=True).fillna(False))
    dotted = text.str.extract(r"^(\d{1,2})\.\d{1,2}(?:\.\d{1,2})*$", expand=False).str.zfill(2)
    dotted = dotted.where(dotted.isin([f"{i:02d}" for i in range(1, 16)]))
    return coded.fillna(dotted).astype(object).where(lambda s: s.notna(), np.nan)


# What a DRUG_EXPOSURE row is, from its concept (see the module docstring, "drug_exposure").
VACCINE_VOCABULARIES = ("CVX",)
VACCINE_CLASSES = ("CVX", "Vaccine", "Vaccine Group")
VACCINE_ATC = "J07"


def _drug_concepts(drugs: pd.DataFrame, vocab: Vocabulary) -> pd.DataFrame:
    """Per exposure the concept that says what it is: ``drug_concept_id`` when ``CONCEPT`` holds it, else the
    "Maps to" target of ``drug_source_concept_id``, else that source concept, else a concept whose code is
    the ``drug_source_value`` (RxNorm, CVX or SNOMED; a Drug-domain one first). Columns ``concept_id``,
    ``domain_id``, ``vocabulary_id``, ``concept_class_id``, ``concept_name`` (missing when none is known)."""
    info = vocab.concepts.drop_duplicates("concept_id").set_index("concept_id")
    concept = _concept(_column(drugs, "drug_concept_id"))
    source = _concept(_column(drugs, "drug_source_concept_id"))
    known = set(info.index)
    standard = maps_to(vocab, source.dropna()).drop_duplicates("concept_id").set_index("concept_id")[
        "standard_concept_id"]
    mapped = source.map(standard).astype("Int64")
    chosen = concept.where(concept.isin(known).fillna(False))
    chosen = chosen.fillna(mapped.where(mapped.isin(known).fillna(False)))
    chosen = chosen.fillna(source.where(source.isin(known).fillna(False)))
    by_code = info.reset_index().dropna(subset=["concept_code"])
    by_code = by_code[by_code["vocabulary_id"].isin(CODE_VOCABULARIES)]
    if chosen.isna().any() and len(by_code):
        # A Drug-domain concept first (a code may exist in two vocabularies), then RxNorm before SNOMED.
        order = {v: i for i, v in enumerate(CODE_VOCABULARIES)}
        by_code = by_code.assign(drug=by_code["domain_id"] != "Drug", rank=by_code["vocabulary_id"].map(order))
        by_code = by_code.sort_values(["drug", "rank", "concept_id"]).drop_duplicates("concept_code")
        code = _column(drugs, "drug_source_value").astype("string").str.strip()
        chosen = chosen.fillna(code.map(by_code.set_index("concept_code")["concept_id"]).astype("Int64"))
    out = pd.DataFrame(index=drugs.index)
    for column in ("domain_id", "vocabulary_id", "concept_class_id", "concept_name"):
        out[column] = chosen.map(info[column]).astype(object) if column in info else np.nan
    # A drug concept CONCEPT does not hold still leads to an ATC class through CONCEPT_ANCESTOR.
    out.insert(0, "concept_id", chosen.fillna(concept.where(concept != 0)))
    return out


def _atc_chapters(ids: pd.Series, vocab: Vocabulary | None) -> tuple[pd.Series, pd.Series]:
    """(BNF chapter, ATC code) from each concept's ATC class (missing where none is found)."""
    if vocab is None:
        empty = pd.Series(np.nan, index=ids.index, dtype=object)
        return empty, empty
    atc = atc_classes(vocab, ids.dropna())
    chapters = pd.Series(atc_to_bnf(atc).to_numpy(), index=atc.index, dtype=object)
    return ids.map(chapters).astype(object), ids.map(atc).astype(object)


def _prescriptions(drugs: pd.DataFrame, drug_cost: pd.Series, vocab: Vocabulary | None, pseudonyms: dict,
                   summary: ImportSummary, *, pseudonym_key: bytes) -> pd.DataFrame:
    d = _dedupe_by_id(drugs, "drug_exposure_id", "drug_exposure", summary)
    d = d.assign(date=_to_date(d["drug_exposure_start_date"], summary=summary,
                               source_file=_file(summary, "drug_exposure")))
    no_date = d["date"].isna()
    summary.drop("drug_exposure rows with a missing or unreadable drug_exposure_start_date", int(no_date.sum()))
    d = d[~no_date]
    report: dict = {"rows": len(d)}
    if vocab is None or vocab.concepts.empty:
        summary.note("drug_exposure: no CONCEPT table, so a drug's domain cannot be read: every row is kept as a "
                     "prescription (vaccines and rows carrying condition or procedure concepts cannot be told "
                     "apart); import with the vocabulary's CONCEPT table to separate them")
        kind = pd.Series("domain unknown", index=d.index, dtype=object)
        ids = _concept(_column(d, "drug_concept_id"))
        what = pd.DataFrame(index=d.index, columns=["domain_id", "vocabulary_id", "concept_class_id", "concept_name"])
    else:
        what = _drug_concepts(d, vocab)
        ids = what["concept_id"]
        domain = what["domain_id"].astype("string").str.strip()
        atc_code = _atc_chapters(ids, vocab)[1].astype("string")
        vaccine = (what["vocabulary_id"].isin(VACCINE_VOCABULARIES) | what["concept_class_id"].isin(VACCINE_CLASSES)
                   | atc_code.str.startswith(VACCINE_ATC).fillna(False)
                   | ((domain == "Drug").fillna(False)
                      & what["concept_name"].astype("string").str.contains(r"\bvaccine\b", case=False,
                                                                            regex=True).fillna(False)))
        kind = pd.Series(np.select([vaccine.to_numpy(dtype=bool), (domain == "Drug").fillna(False).to_numpy(dtype=bool),
                                    domain.notna().to_numpy(dtype=bool)],
                                   ["vaccine", "medicine", "not a drug"], default="domain unknown"),
                         index=d.index, dtype=object)
        others = kind == "not a drug"
        dropped = {}
        for dom, n in domain[others].value_counts().sort_index().items():
            examples = ids[others & (domain == dom).fillna(False)].dropna().astype(int).astype(str).value_counts().index[:3]
            summary.drop(f"drug_exposure rows whose concept is in the {dom} domain, not Drug (not prescriptions)",
                         int(n), examples=list(examples))
            dropped[str(dom)] = int(n)
        report["not_drugs_dropped"] = dropped
        unknown = int((kind == "domain unknown").sum())
        if unknown:
            summary.note(f"drug_exposure: {unknown:,} rows whose concept (drug_concept_id, drug_source_concept_id or "
                         "drug_source_value) is not in CONCEPT: domain unknown, kept as prescriptions")
        keep = (kind != "not a drug").to_numpy()
        d, kind, ids, what = d[keep], kind[keep], ids[keep], what[keep]
    report.update({"medicines": int((kind == "medicine").sum()), "vaccines": int((kind == "vaccine").sum()),
                   "domain_unknown_kept": int((kind == "domain unknown").sum())})
    by_bnf = bnf_from_code(_column(d, "drug_source_value"))
    by_atc = _atc_chapters(ids, vocab)[0]
    if vocab is not None:
        # A source concept mapped elsewhere may reach an ATC class where the chosen concept does not.
        source = _concept(_column(d, "drug_source_concept_id"))
        pairs = maps_to(vocab, source.dropna()).drop_duplicates("concept_id")
        by_source = _atc_chapters(source.map(pairs.set_index("concept_id")["standard_concept_id"]).astype("Int64"),
                                  vocab)[0]
        by_atc = by_atc.where(by_atc.notna(), by_source)
    is_vaccine = (kind == "vaccine").to_numpy()
    chapter = by_bnf.where(by_bnf.notna(), by_atc)
    chapter = chapter.where(~is_vaccine, VACCINE_CHAPTER).where(lambda s: s.notna(), BNF_UNKNOWN)
    n_vaccine = int(is_vaccine.sum())
    n_bnf = int((by_bnf.notna() & ~is_vaccine).sum())
    n_atc = int((by_bnf.isna() & by_atc.notna() & ~is_vaccine).sum())
    n_unknown = len(d) - n_vaccine - n_bnf - n_atc
    report["bnf_chapter"] = {"from BNF source values": n_bnf, "from ATC classes": n_atc,
                             "vaccines (chapter 14)": n_vaccine, "unknown": n_unknown}
    summary.note(f"drug chapters: {n_bnf} from BNF source values, {n_atc} from ATC classes, "
                 f"{n_vaccine} vaccines (chapter {VACCINE_CHAPTER}), {n_unknown} unknown (kept)")
    if vocab is not None and n_unknown:
        missing = atc_links(vocab, ids[chapter == BNF_UNKNOWN].dropna())
        n_linked = int(ids[chapter == BNF_UNKNOWN].isin(missing.index).sum())
        if n_linked:
            report["unknown_linked_to_atc_not_in_concept"] = n_linked
            summary.note(f"drug chapters: {n_linked:,} of the unknown rows are linked (RxNorm - ATC) to ATC classes "
                         "that the CONCEPT table does not hold, so their codes and chapters cannot be read; "
                         "include the ATC concepts (an Athena download has them) to get these chapters")
    summary.drug_domains = report
    exposure_id = _column(d, "drug_exposure_id").astype("string").str.strip()
    return pd.DataFrame({
        "person_id": d["person_id"].map(pseudonyms), "issue_date": d["date"], "bnf_chapter": chapter,
        "drug_code": _concept(_column(d, "drug_concept_id")).astype("string"),
        "cost": exposure_id.map(drug_cost).astype("float64"),
        "record_id": _record_ids("drug_exposure", exposure_id, pseudonym_key),
    })
