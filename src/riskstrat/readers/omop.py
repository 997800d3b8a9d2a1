"""Read OMOP common data model (v5.3 / v5.4) tables into canonical linked-records tables.

One file per CDM table in ``src_dir``: ``person`` and ``visit_occurrence`` are required;
``death``, ``observation_period``, ``condition_occurrence``, ``drug_exposure`` and ``cost`` are used
when present (the summary's ``notes`` say which were absent). Files may be ``.csv``, ``.tsv``,
``.txt`` or ``.csv.gz``; the delimiter (comma, tab, pipe or semicolon) is taken from the header
line; column names are matched case-insensitively. Rows whose ``person_id`` is not in ``person``
are dropped and counted.

Mappings
--------
persons (``person``, ``death``, ``observation_period``)
    ``person_id`` -> keyed pseudonym; ``birth_date`` from ``birth_datetime``, else
    ``year_of_birth``/``month_of_birth``/``day_of_birth`` (missing month or day -> 1);
    ``gender_concept_id`` 8507 male, 8532 female, else unknown.
    ``ethnicity_group``: ``ethnicity_concept_id`` 38003563 (Hispanic or Latino) -> other (as in the
    Synthea reader: the ONS codes Latin American to "Other ethnic group"); otherwise
    ``race_concept_id`` 8527 white, 8516 black, 8515 asian, 0 or missing unknown, any other other.
    ``deprivation_decile`` missing (the CDM has no deprivation field).
    ``practice_id`` = ``"CS"`` + ``care_site_id``, ``"UNKNOWN"`` if missing.
    ``death_date`` = earliest ``death.death_date``.
    ``registration_start`` / ``registration_end`` = earliest start / latest end of the person's
    observation periods; an end equal to the latest end in the whole extract means "still observed
    at extraction" and is left blank (the schema's "blank if current").
visit_occurrence (``visit_concept_id``) -- see :data:`VISIT_CONCEPTS`
    9201 inpatient visit, 8717 inpatient hospital, 32037 intensive care -> ``inpatient_spells``
    (``admission_date``/``discharge_date`` = ``visit_start_date``/``visit_end_date``).
    9203 emergency room visit -> ``ae_attendances``; ``admitted`` if an inpatient visit (or 262) of
    the same person starts that day or the next, or ``discharged_to_concept_id`` is an inpatient
    setting.
    262 emergency room and inpatient visit -> both an A&E attendance (admitted) and an emergency
    inpatient spell (the cost goes to the spell).
    9202 outpatient visit -> ``outpatient_appointments`` (attended; ``specialty`` missing).
    581477 office visit, 38004207 ambulatory clinic, 581476 home visit, 5083 telehealth ->
    ``gp_contacts`` (``contact_type`` = the concept name).
    8863 skilled nursing facility, 8676 nursing facility -> ``social_care`` nursing
    (``weekly_cost`` = visit cost / stay length in days x 7).
    Any other concept (including 0) is dropped and counted per concept id.
    A spell or nursing stay that ends after the person's death ends on the death date (noted).
    ``admission_method``: transfer if ``admitted_from_concept_id`` (v5.4) or
    ``admitting_source_concept_id`` (v5.3) is an inpatient hospital (8717, 9201); emergency if it is
    an emergency room (8870, 9203, 262), or the admitted-from or visit source value mentions
    "emerg", or an emergency room visit of the same person started that day or the day before, or
    the visit is a 262; elective otherwise.
cost (``cost_domain_id`` Visit / Drug, joined on ``cost_event_id``)
    Per cost row ``total_cost``, else ``total_paid``, else ``total_charge``, else ``cost``; summed per
    visit or drug exposure.
condition_occurrence -> ``ltc_register``
    ``condition_concept_id`` in :data:`CONDITION_CONCEPTS` (exact standard SNOMED concepts, no
    descendants: that needs the vocabulary tables), else ``condition_source_value`` as an ICD-10
    code by :data:`ICD10_RANGES` (E10-E14 diabetes, I10-I15 hypertension, J45-J46 asthma, J41-J44
    copd, I50 heart failure, I48 atrial fibrillation, I20-I25 chd, I60-I64/G45 stroke, N18 ckd,
    C00-C97 cancer, F00-F03/G30 dementia, F32-F33 depression, F20-F31 smi, G40-G41 epilepsy).
    First ``condition_start_date`` per person and condition.
drug_exposure -> ``prescriptions``
    ``issue_date`` = ``drug_exposure_start_date``, ``drug_code`` = ``drug_concept_id``,
    ``bnf_chapter`` from ``drug_source_value`` when it is written as a BNF code (a 9- or 15-character
    code such as ``0212000B0AAABAB``, or dotted such as ``2.12``); purely numeric source values are
    not trusted (RxNorm and NDC codes look alike). Other rows are dropped and counted as unmapped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.readers import (
    ImportSummary,
    MissingSourceFileError,
    _end_at_death,
    _find_file,
    _first_present,
    _keep_known_persons,
    _nearest_within,
    _read_source_csv,
    _tidy_table,
    _unique_persons,
    _to_date,
    _to_float,
)

__all__ = ["read_omop", "VISIT_CONCEPTS", "CONDITION_CONCEPTS", "ICD10_RANGES", "icd10_condition", "bnf_from_code"]

SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")

# visit_concept_id -> (canonical table, label)
VISIT_CONCEPTS: dict[int, tuple[str, str]] = {
    9201: ("inpatient_spells", "inpatient visit"),
    8717: ("inpatient_spells", "inpatient hospital"),
    32037: ("inpatient_spells", "intensive care"),
    9203: ("ae_attendances", "emergency room visit"),
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
ER_VISITS = (9203, 262)
ER_PLACES = (8870, 9203, 262)
HOSPITAL_PLACES = (8717, 9201)
HISPANIC = 38003563

# Standard (SNOMED) condition concepts -> register condition. Exact ids only.
CONDITION_CONCEPTS: dict[int, str] = {
    201820: "diabetes", 201826: "diabetes", 201254: "diabetes",
    320128: "hypertension", 316866: "hypertension",
    317009: "asthma",
    255573: "copd",
    316139: "heart_failure",
    313217: "atrial_fibrillation",
    4329847: "chd", 312327: "chd", 317576: "chd", 321318: "chd",
    381316: "stroke", 443454: "stroke", 373503: "stroke",
    46271022: "ckd",
    443392: "cancer",
    4182210: "dementia", 378419: "dementia",
    440383: "depression",
    435783: "smi", 436665: "smi",
    380378: "epilepsy",
}
# (condition, first, last) over three-character ICD-10 categories, inclusive.
ICD10_RANGES: tuple[tuple[str, str, str], ...] = (
    ("diabetes", "E10", "E14"),
    ("hypertension", "I10", "I15"),
    ("asthma", "J45", "J46"),
    ("copd", "J41", "J44"),
    ("heart_failure", "I50", "I50"),
    ("atrial_fibrillation", "I48", "I48"),
    ("chd", "I20", "I25"),
    ("stroke", "I60", "I64"),
    ("stroke", "G45", "G45"),
    ("ckd", "N18", "N18"),
    ("cancer", "C00", "C97"),
    ("dementia", "F00", "F03"),
    ("dementia", "G30", "G30"),
    ("depression", "F32", "F33"),
    ("smi", "F20", "F31"),
    ("epilepsy", "G40", "G41"),
)


def read_omop(src_dir: str | Path, *, pseudonym_key: bytes) -> tuple[dict[str, pd.DataFrame], ImportSummary]:
    """Read OMOP CDM tables in ``src_dir`` into canonical tables (see the module docstring).

    Returns ``(tables, summary)``, not yet validated. Raises :class:`MissingSourceFileError` naming
    ``person`` or ``visit_occurrence`` if either is absent.
    """
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

    def optional(name: str, what: str) -> pd.DataFrame | None:
        df = _read(src_dir, name, summary)
        if df is None:
            summary.note(f"{name} absent: {what}")
            return None
        _require(df, name, ("person_id",) if name != "cost" else ("cost_event_id",))
        return df if name == "cost" else _keep_known_persons(df, "person_id", known, summary, name)

    death = optional("death", "no death dates")
    periods = optional("observation_period", "registration dates left missing")
    conditions = optional("condition_occurrence", "no long-term-condition register")
    drugs = optional("drug_exposure", "no prescriptions")
    cost = optional("cost", "visit and drug costs left missing")

    tables = {"persons": _persons(person, death, periods, pseudonyms)}
    visits = _keep_known_persons(visits, "person_id", known, summary, "visit_occurrence")
    tables.update(_visit_tables(visits, _costs(cost, "Visit"), pseudonyms, summary))
    if conditions is not None:
        _require(conditions, "condition_occurrence", ("condition_start_date",))
        tables["ltc_register"] = _ltc_register(conditions, pseudonyms, summary)
    if drugs is not None:
        _require(drugs, "drug_exposure", ("drug_exposure_start_date",))
        tables["prescriptions"] = _prescriptions(drugs, _costs(cost, "Drug"), pseudonyms, summary)

    _end_at_death(tables, summary)
    tables = {name: _tidy_table(name, df) for name, df in tables.items()}
    summary.finish(tables)
    return tables, summary


# --- reading ---------------------------------------------------------------------------------

def _read(src_dir: Path, name: str, summary: ImportSummary, *, required: bool = False) -> pd.DataFrame | None:
    path = _find_file(src_dir, name, SUFFIXES)
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


def _delimiter(path: Path) -> str:
    """The delimiter of a CDM file: tab for ``.tsv``, else the most frequent of , TAB | ; in the header."""
    if ".tsv" in path.suffixes:
        return "\t"
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    counts = {sep: header.count(sep) for sep in (",", "\t", "|", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


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


# --- persons ---------------------------------------------------------------------------------

def _persons(person: pd.DataFrame, death: pd.DataFrame | None, periods: pd.DataFrame | None,
             pseudonyms: dict) -> pd.DataFrame:
    birth = _to_date(_column(person, "birth_datetime"))
    if "year_of_birth" in person:
        parts = pd.DataFrame({
            "year": _concept(person["year_of_birth"]),
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
    care_site = _concept(_column(person, "care_site_id"))
    persons = pd.DataFrame({
        "person_id": person["person_id"].map(pseudonyms),
        "birth_date": birth,
        "sex": gender.map({8507: "male", 8532: "female"}).astype(object).fillna("unknown"),
        "deprivation_decile": pd.Series(pd.NA, index=person.index, dtype="Int16"),
        "ethnicity_group": ethnic,
        "practice_id": ("CS" + care_site.astype("string")).fillna("UNKNOWN"),
    })
    start = end = pd.Series(pd.NaT, index=person.index, dtype="datetime64[s]")
    if periods is not None:
        p = periods.assign(start=_to_date(_column(periods, "observation_period_start_date")),
                           end=_to_date(_column(periods, "observation_period_end_date")))
        by_person = p.groupby("person_id").agg(start=("start", "min"), end=("end", "max"))
        extract_end = p["end"].max()
        by_person.loc[by_person["end"] == extract_end, "end"] = pd.NaT
        start = person["person_id"].map(by_person["start"]).astype("datetime64[s]")
        end = person["person_id"].map(by_person["end"]).astype("datetime64[s]")
    persons["registration_start"] = start
    persons["registration_end"] = end
    died = pd.Series(pd.NaT, index=person.index, dtype="datetime64[s]")
    if death is not None:
        dates = death.assign(date=_to_date(_column(death, "death_date", "death_datetime")))
        died = person["person_id"].map(dates.groupby("person_id")["date"].min()).astype("datetime64[s]")
    persons["death_date"] = died
    return persons.reset_index(drop=True)


# --- costs and visits ------------------------------------------------------------------------

def _costs(cost: pd.DataFrame | None, domain: str) -> pd.Series:
    """Summed cost per event id (as text) for ``cost_domain_id == domain``."""
    if cost is None:
        return pd.Series(dtype="float64")
    if "cost_domain_id" in cost:
        cost = cost[cost["cost_domain_id"].str.strip().str.lower() == domain.lower()]
    amount = pd.Series(np.nan, index=cost.index)
    for name in ("total_cost", "total_paid", "total_charge", "cost"):
        if name in cost:
            amount = amount.fillna(_to_float(cost[name]))
    return amount.groupby(cost["cost_event_id"].str.strip()).sum(min_count=1)


def _visit_tables(visits: pd.DataFrame, visit_cost: pd.Series, pseudonyms: dict,
                  summary: ImportSummary) -> dict[str, pd.DataFrame]:
    v = visits.copy()
    v["concept"] = _concept(v["visit_concept_id"])
    v["date"] = _to_date(v["visit_start_date"])
    v["end"] = _to_date(_column(v, "visit_end_date"))
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
    tables: dict[str, pd.DataFrame] = {}

    inpatient = v[v["concept"].isin(INPATIENT_VISITS)]
    er = v[v["concept"].isin(ER_VISITS)]
    ae = v[v["concept"] == 9203]
    next_admission = _nearest_within(ae, inpatient, by="person_id", on="date", direction="forward",
                                     tolerance=pd.Timedelta(days=1))
    discharged_to = _concept(_column(ae, "discharged_to_concept_id", "discharge_to_concept_id"))
    er_admitted = v[v["concept"] == 262]
    tables["ae_attendances"] = pd.concat([
        pd.DataFrame({"person_id": ae["pid"], "arrival_date": ae["date"],
                      "admitted": next_admission.notna() | discharged_to.isin(INPATIENT_VISITS).fillna(False),
                      "cost": ae["cost"]}),
        # The cost of a combined ER + inpatient visit goes to the spell, not to the attendance.
        pd.DataFrame({"person_id": er_admitted["pid"], "arrival_date": er_admitted["date"],
                      "admitted": True, "cost": np.nan}),
    ])

    tables["inpatient_spells"] = pd.DataFrame({
        "person_id": inpatient["pid"], "admission_date": inpatient["date"],
        "discharge_date": inpatient["end"],
        "admission_method": _admission_method(inpatient, er),
        "cost": inpatient["cost"],
    })

    outpatient = v[v["concept"] == 9202]
    tables["outpatient_appointments"] = pd.DataFrame({
        "person_id": outpatient["pid"], "appointment_date": outpatient["date"], "attended": True,
        "cost": outpatient["cost"],
    })

    gp = v[v["concept"].isin(_concepts_for("gp_contacts"))]
    tables["gp_contacts"] = pd.DataFrame({
        "person_id": gp["pid"], "contact_date": gp["date"],
        "contact_type": gp["concept"].map({c: label for c, (_, label) in VISIT_CONCEPTS.items()}),
        "cost": gp["cost"],
    })

    nursing = v[v["concept"].isin(_concepts_for("social_care"))]
    days = (nursing["end"] - nursing["date"]).dt.days.clip(lower=1)
    tables["social_care"] = pd.DataFrame({
        "person_id": nursing["pid"], "service_type": "nursing", "start_date": nursing["date"],
        "end_date": nursing["end"], "weekly_cost": nursing["cost"] / days * 7,
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
    transfer = admitted_from.isin(HOSPITAL_PLACES).fillna(False)
    emergency = (admitted_from.isin(ER_PLACES).fillna(False) | source_text.str.contains("emerg", regex=False)
                 | via_er | (inpatient["concept"] == 262).fillna(False))
    method = np.select([transfer.to_numpy(dtype=bool), emergency.to_numpy(dtype=bool)],
                       ["transfer", "emergency"], default="elective")
    return pd.Series(method, index=inpatient.index)


# --- conditions and drugs --------------------------------------------------------------------

def icd10_condition(codes: pd.Series) -> pd.Series:
    """Register condition for each ICD-10 code (``"E11.9"``, ``"E119"``, ``"I10"``), else missing.

    >>> icd10_condition(pd.Series(["E11.9", "I48", "R69", "201826"])).tolist()
    ['diabetes', 'atrial_fibrillation', nan, nan]
    """
    cat = codes.astype("string").str.upper().str.replace(".", "", regex=False).str.strip() \
        .str.extract(r"^([A-Z]\d\d)", expand=False)
    result = pd.Series(np.nan, index=codes.index, dtype=object)
    for condition, first, last in ICD10_RANGES:
        hit = (cat >= first) & (cat <= last) & result.isna()
        result[hit.fillna(False).to_numpy(dtype=bool)] = condition
    return result


def _ltc_register(conditions: pd.DataFrame, pseudonyms: dict, summary: ImportSummary) -> pd.DataFrame:
    c = conditions.assign(date=_to_date(conditions["condition_start_date"]))
    no_date = c["date"].isna()
    summary.drop("condition_occurrence rows with a missing or unreadable condition_start_date", int(no_date.sum()))
    c = c[~no_date]
    by_concept = _concept(_column(c, "condition_concept_id")).map(CONDITION_CONCEPTS).astype(object)
    condition = by_concept.where(by_concept.notna(), icd10_condition(_column(c, "condition_source_value")))
    unmapped = condition.isna()
    summary.drop("condition_occurrence rows that are not register long-term conditions", int(unmapped.sum()))
    register = pd.DataFrame({"person_id": c["person_id"].map(pseudonyms), "condition": condition,
                             "diagnosis_date": c["date"]})[~unmapped]
    register = register.sort_values(["person_id", "condition", "diagnosis_date"], kind="stable")
    return register.drop_duplicates(["person_id", "condition"], keep="first")


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


def _prescriptions(drugs: pd.DataFrame, drug_cost: pd.Series, pseudonyms: dict,
                   summary: ImportSummary) -> pd.DataFrame:
    d = drugs.assign(date=_to_date(drugs["drug_exposure_start_date"]),
                     chapter=bnf_from_code(_column(drugs, "drug_source_value")))
    no_date = d["date"].isna()
    summary.drop("drug_exposure rows with a missing or unreadable drug_exposure_start_date", int(no_date.sum()))
    d = d[~no_date]
    unmapped = d["chapter"].isna()
    summary.drop("drug_exposure rows with an unmapped drug (drug_source_value is not a BNF code)",
                 int(unmapped.sum()))
    d = d[~unmapped]
    exposure_id = _column(d, "drug_exposure_id").astype("string").str.strip()
    return pd.DataFrame({
        "person_id": d["person_id"].map(pseudonyms), "issue_date": d["date"], "bnf_chapter": d["chapter"],
        "drug_code": _concept(_column(d, "drug_concept_id")).astype("string"),
        "cost": exposure_id.map(drug_cost).astype("float64"),
    })
