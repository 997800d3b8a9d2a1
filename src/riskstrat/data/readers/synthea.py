"""Read a Synthea CSV export (schema v2/v3) into canonical linked-records tables.

Synthea (MITRE's synthetic patient generator) writes one CSV per resource. ``patients.csv`` and
``encounters.csv`` are required; ``conditions.csv`` and ``medications.csv`` are used when present.
Files may carry a byte-order mark, headers are matched case-insensitively (``Id``, ``ID``, ``id``)
and optional columns (``ORGANIZATION``, ``PROVIDER``, ``INCOME``, cost columns) may be missing: the
summary's ``notes`` say what was absent. Identifying columns (names, SSN, address, ...) are never read
into the output. Dates are the calendar date as written (``2020-05-01T23:10:00Z`` -> 2020-05-01).
Costs are Synthea's US-dollar amounts, kept as they are; the summary's ``currency`` is ``USD``
(written to ``dataset.json`` on import, so lists and reports print dollars).

Mappings
--------
persons (``patients.csv``)
    ``Id`` -> ``person_id`` (keyed pseudonym, :func:`riskstrat.data.privacy.pseudonymise`);
    ``BIRTHDATE``/``DEATHDATE`` -> ``birth_date``/``death_date``; ``GENDER`` F/M -> female/male,
    anything else unknown.
    ``ethnicity_group``: ``ETHNICITY`` hispanic -> other (the ONS codes Latin American to "Other
    ethnic group"; England's groups have no Hispanic category); otherwise ``RACE`` white -> white,
    black -> black, asian -> asian, native/hawaiian/other -> other, missing -> unknown.
    ``deprivation_decile``: decile of ``INCOME`` within the imported population (1 = lowest income =
    most deprived); missing when the export has no ``INCOME`` column. It is a stand-in for an area
    deprivation index, not one.
    ``practice_id``: the ``ORGANIZATION`` (or, with ``practice_from="provider"``, the ``PROVIDER``) of
    the person's primary-care encounters (classes wellness and ambulatory, :data:`PRACTICE_CLASSES`):
    the one with the most wellness encounters (Synthea sends a person's wellness visits to their
    primary-care provider), then the most primary-care encounters, then the most recent; shortened to
    ``"ORG"``/``"PRV"`` + 8 hex characters of its SHA-256. A hospital never becomes a practice: an
    organisation is a hospital if the export shows it admitting anyone (an ``inpatient`` encounter:
    Synthea admits only to hospitals, while its ``generate.providers.default_to_hospital_on_failure``
    sends wellness visits to a hospital when no primary-care facility is near) or if its
    ``organizations.csv`` ``NAME`` contains the word "hospital". With ``practice_from="provider"`` a
    provider is excluded when its organisation (the encounter's ``ORGANIZATION``, else the provider's
    in ``providers.csv``) is a hospital, and, when ``providers.csv`` has ``SPECIALITY``, unless it is
    GENERAL PRACTICE. A person whose only candidates were hospitals gets no practice; those people and
    the hospitals excluded are counted (``summary.practice_exclusions`` and ``notes``). Blank (no
    registered practice, counted in ``notes``) if the person has none: never a practice called UNKNOWN.
encounters (``ENCOUNTERCLASS``)
    emergency, urgentcare -> ``ae_attendances``: ``arrival_date`` = ``START``; ``admitted`` = an
    inpatient encounter of the same person starts 0 to ``emergency_window_hours`` (default 24) later
    (urgent care is a type 3 A&E service in England, so it is an attendance too).
    ``department_type`` (:data:`AE_DEPARTMENT_TYPES`): emergency -> emergency_department (Synthea's
    ``EncounterType.EMERGENCY``, an emergency room visit), urgentcare -> urgent_care (``URGENTCARE``,
    an urgent care facility visit); the import report counts each.
    inpatient -> ``inpatient_spells``: ``admission_date``/``discharge_date`` = ``START``/``STOP``;
    ``admission_method`` (first rule that applies): maternity if the description or reason mentions
    pregnancy, delivery or obstetrics; elective if the description says "non-urgent", "elective" or
    "planned" (not "unplanned"); transfer if the description says "transfer" (e.g. to intensive care); emergency if an
    emergency or urgent care encounter of the person started 0 to ``emergency_window_hours`` before,
    or the description says emergency/urgent/unplanned, or the reason is an acute event (acute ...,
    appendicitis, sepsis, COVID-19, fracture, injury, overdose, stroke, pneumonia); otherwise
    **unknown**: Synthea does not record how most stays began, and an unknown method is never guessed
    as elective (use the ``unplanned_hospital_use`` outcome on such data). The counts per rule are in
    ``notes``. ``primary_diagnosis`` stays missing (Synthea codes reasons in
    SNOMED CT, not ICD-10).
    outpatient -> ``outpatient_appointments`` (``attended`` True; ``specialty`` = ``DESCRIPTION``
    without its SNOMED semantic tag, e.g. "Consultation for treatment").
    ambulatory, wellness, virtual, home -> ``gp_contacts`` (``contact_type`` = the class).
    snf (skilled nursing facility) -> ``social_care`` ``service_type`` nursing, ``start_date``/
    ``end_date`` = ``START``/``STOP``, ``weekly_cost`` = cost / stay length in days x 7.
    hospice and any other class -> dropped and counted (specialist palliative care has no canonical
    table; the death date is kept on ``persons``).
    Cost: ``TOTAL_CLAIM_COST``, else ``BASE_ENCOUNTER_COST``, else ``COST`` (older exports).
    A spell or nursing stay that ends after the person's death ends on the death date (noted).
    ``record_id`` of every encounter row = keyed hash of the encounter ``Id``, so that two distinct
    encounters on the same day with the same content are both kept by validation.
conditions (``conditions.csv``) -> ``ltc_register``
    ``DESCRIPTION`` matched against :data:`LTC_PATTERNS` (e.g. "Essential hypertension" ->
    hypertension, "Diabetes mellitus type 2" -> diabetes but not "Prediabetes", "Pulmonary
    emphysema" -> copd, "History of myocardial infarction" -> chd, "Chronic kidney disease stage 3"
    -> ckd, "Malignant neoplasm of breast" -> cancer, "Alzheimer's disease" -> dementia, "Seizure
    disorder" -> epilepsy); the first ``START`` per person and condition is the diagnosis date.
    Other conditions (findings, acute illnesses) are not register conditions and are counted.
medications (``medications.csv``) -> ``prescriptions``
    ``issue_date`` = ``START``, ``drug_code`` = ``CODE`` (RxNorm), ``bnf_chapter`` from
    :data:`BNF_PATTERNS` on ``DESCRIPTION`` (first match wins; e.g. lisinopril, amlodipine, statins,
    warfarin, clopidogrel -> 02; albuterol, budesonide and fluticasone inhalers, antihistamines ->
    03; paracetamol (acetaminophen), opioids, antidepressants, dementia drugs -> 04; penicillins,
    cephalosporins -> 05; insulin, metformin, alendronate, prednisone -> 06; contraceptives -> 07;
    chemotherapy and tacrolimus -> 08; epoetin, iron, B12 -> 09; ibuprofen, naproxen -> 10;
    topical creams -> 13; vaccines -> 14; anaesthetics -> 15); unmapped drugs are kept with
    chapter ``unknown`` (they still count as items; the most common are named in ``notes``).
    ``record_id`` = keyed hash of the whole source row (medications have no Id). Cost: ``TOTALCOST``, else ``BASE_COST``.
    One row per Synthea medication order, whatever its number of dispenses.
``procedures.csv`` and the other files are not read: procedures belong to encounters imported above.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.errors import InvalidInputError
from riskstrat.data.readers._common import (
    ImportSummary,
    MissingSourceFileError,
    _end_at_death,
    _find_file,
    _first_number,
    _keep_known_persons,
    _nearest_within,
    _read_source_csv,
    _register_once,
    _tidy_table,
    _unique_persons,
    _to_date,
    _to_float,
)
from riskstrat.data.privacy import pseudonymise
from riskstrat.data.schema import BNF_UNKNOWN

__all__ = ["read_synthea", "match_ltc", "bnf_chapter", "LTC_PATTERNS", "BNF_PATTERNS", "ENCOUNTER_TABLES",
           "AE_DEPARTMENT_TYPES"]

# ENCOUNTERCLASS -> canonical table.
ENCOUNTER_TABLES = {
    "emergency": "ae_attendances",
    "urgentcare": "ae_attendances",
    "inpatient": "inpatient_spells",
    "outpatient": "outpatient_appointments",
    "ambulatory": "gp_contacts",
    "wellness": "gp_contacts",
    "virtual": "gp_contacts",
    "home": "gp_contacts",
    "snf": "social_care",
}
# ENCOUNTERCLASS of an A&E attendance -> department_type.
AE_DEPARTMENT_TYPES = {"emergency": "emergency_department", "urgentcare": "urgent_care"}
PRACTICE_CLASSES = ("ambulatory", "wellness")
# An organisation hosting an encounter of these classes admits patients: a hospital, never a practice.
HOSPITAL_CLASSES = ("inpatient",)
GP_SPECIALITY = "GENERAL PRACTICE"

# (condition, pattern on the lower-cased DESCRIPTION); a description maps to every condition it matches.
LTC_PATTERNS: tuple[tuple[str, str], ...] = (
    ("hypertension", r"(?<!pulmonary )hypertensi(?:on|ve disorder)"),
    ("diabetes", r"(?<!pre)diabet(?:es|ic)"),
    ("asthma", r"asthma"),
    ("copd", r"chronic obstructive|emphysema|chronic bronchitis"),
    ("heart_failure", r"heart failure"),
    ("atrial_fibrillation", r"atrial fibrillation"),
    ("chd", r"coronary (?:heart|artery) disease|coronary artery bypass|myocardial infarction"
            r"|isch(?:a)?emic heart|angina"),
    ("stroke", r"stroke|cerebrovascular accident|cerebral infarction|transient isch(?:a)?emic attack"),
    ("ckd", r"chronic kidney disease|end[- ]stage renal disease"),
    ("cancer", r"(?<!benign )(?:malignant|neoplasm|carcinoma|cancer|leuk(?:a)?emia|lymphoma|melanoma|sarcoma)"),
    ("dementia", r"dementia|alzheimer"),
    ("depression", r"depress"),
    ("smi", r"schizophreni|bipolar|psychosis|psychotic"),
    ("epilepsy", r"epilep|seizure disorder"),
)
# Findings that mention a condition without being one.
LTC_EXCLUDE = r"suspected|screening|family history|risk of|prediabetes|benign neoplasm|polyp"

# (pattern on the lower-cased DESCRIPTION, BNF chapter), first match wins: specific before general.
BNF_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"vaccine|vaccin", "14"),
    (r"topical|cream|ointment", "13"),
    (r"propofol|rocuronium|isoflurane|sevoflurane|midazolam|alfentanil|remifentanil|lidocaine"
     r"|fentanyl [\d.]+ mg/ml injection", "15"),
    (r"dextromethorphan|loratadine|fexofenadine|diphenhydramine|chlorpheniramine|astemizole"
     r"|cetirizine|epinephrine|albuterol|salbutamol|budesonide|fluticasone|salmeterol|tiotropium"
     r"|montelukast|ipratropium|inhaler|inhalation", "03"),
    (r"aspirin 81|lisinopril|amlodipine|hydrochlorothiazide|statin\b|simvastatin|atorvastatin"
     r"|furosemide|verapamil|warfarin|digoxin|enoxaparin|heparin|protamine|clopidogrel|prasugrel"
     r"|metoprolol|propranolol|atenolol|bisoprolol|nitroglycerin|losartan|ramipril|apixaban"
     r"|rivaroxaban|dabigatran|captopril|enalapril|spironolactone", "02"),
    (r"insulin|metformin|glipizide|gliclazide|sitagliptin|alendron|prednisone|prednisolone"
     r"|levothyroxine|liraglutide|dexamethasone", "06"),
    (r"amoxicillin|penicillin|\bcef|cephalexin|nitrofurantoin|azithromycin|clindamycin|piperacillin"
     r"|vancomycin|doxycycline|ciprofloxacin|trimethoprim|erythromycin|clarithromycin|metronidazole", "05"),
    (r"day pack|contracept|etonogestrel|intrauterine|mirena|kyleena|liletta|nuvaring|vaginal system"
     r"|norelgestromin|ethinyl estradiol|medroxyprogesterone|mestranol|norethynodrel|norethindrone"
     r"|levonorgestrel|phenazopyridine", "07"),
    (r"tacrolimus|oxaliplatin|leucovorin|anastrozole|cisplatin|carboplatin|paclitaxel|docetaxel"
     r"|cyclophosphamide|doxorubicin|methotrexate|tamoxifen|letrozole|fluorouracil|capecitabine", "08"),
    (r"epoetin|ferrous|iron|vitamin b12|cyanocobalamin|folic acid", "09"),
    (r"ibuprofen|naproxen|diclofenac|meloxicam|celecoxib", "10"),
    (r"acetaminophen|paracetamol|hydrocodone|oxycodone|fentanyl|tramadol|meperidine|morphine|codeine"
     r"|aspirin|sertraline|fluoxetine|citalopram|escitalopram|amitriptyline|diazepam|clonazepam"
     r"|lorazepam|alprazolam|methylphenidate|carbamazepine|donepezil|galantamine|memantine"
     r"|ondansetron|levetiracetam|phenytoin|valproate|lamotrigine|buprenorphine|naloxone|bupropion", "04"),
)

# Reasons (lower-cased REASONDESCRIPTION) that make an inpatient admission an emergency.
_ACUTE_REASON = r"\bacute\b|appendicitis|sepsis|septic|covid|fracture|injury|overdose|poisoning|stroke|pneumonia"
_MATERNITY = r"\b(?:obstetric|childbirth|delivery|labou?r\b|pregnan|ca?esarean|miscarriage)"

_COLUMN_ALIASES = {
    "START": ("START", "DATE"),
    "ENCOUNTER_COST": ("TOTAL_CLAIM_COST", "BASE_ENCOUNTER_COST", "COST"),
    "DRUG_COST": ("TOTALCOST", "TOTAL_COST", "BASE_COST", "COST"),
}
_ONE_DAY = pd.Timedelta(days=1)


def read_synthea(src_dir: str | Path, *, pseudonym_key: bytes, practice_from: str = "organization",
                 emergency_window_hours: float = 24.0) -> tuple[dict[str, pd.DataFrame], ImportSummary]:
    """Read the Synthea CSV export in ``src_dir`` into canonical tables (see the module docstring).

    Returns ``(tables, summary)``; the tables are not validated yet (that is
    :func:`riskstrat.data.validate.validate_tables`'s job). Raises :class:`MissingSourceFileError` naming
    ``patients.csv`` or ``encounters.csv`` if either is absent.
    """
    if practice_from not in ("organization", "provider"):
        raise InvalidInputError("practice_from must be 'organization' or 'provider'")
    if not emergency_window_hours >= 0:
        raise InvalidInputError("emergency_window_hours must be zero or more")
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise MissingSourceFileError(f"{src_dir}: no such folder")
    summary = ImportSummary(source="synthea", currency="USD")
    patients = _read(src_dir, "patients", summary, required=True)
    encounters = _read(src_dir, "encounters", summary, required=True)
    conditions = _read(src_dir, "conditions", summary)
    medications = _read(src_dir, "medications", summary)
    _require_columns(patients, "patients.csv", ("ID", "BIRTHDATE"))
    _require_columns(encounters, "encounters.csv", ("PATIENT", "START", "ENCOUNTERCLASS"))

    patients, pseudonyms, known = _unique_persons(patients, "ID", summary, "patients", pseudonym_key)

    encounters = _keep_known_persons(encounters, "PATIENT", known, summary, "encounters")
    tables: dict[str, pd.DataFrame] = {
        "persons": _persons(patients, encounters, pseudonyms, summary, practice_from=practice_from,
                            organizations=_read_reference(src_dir, "organizations"),
                            providers=_read_reference(src_dir, "providers")),
    }
    tables.update(_encounter_tables(encounters, pseudonyms, summary, key=pseudonym_key,
                                    window=pd.Timedelta(hours=emergency_window_hours)))
    for name, df in tables.items():
        summary.route(_source_name(summary, "patients" if name == "persons" else "encounters"), name, len(df))
    if conditions is not None:
        _require_columns(conditions, "conditions.csv", ("PATIENT", "START", "DESCRIPTION"))
        conditions = _keep_known_persons(conditions, "PATIENT", known, summary, "conditions")
        tables["ltc_register"] = _ltc_register(conditions, pseudonyms, summary)
    if medications is not None:
        _require_columns(medications, "medications.csv", ("PATIENT", "START", "DESCRIPTION"))
        medications = _keep_known_persons(medications, "PATIENT", known, summary, "medications")
        tables["prescriptions"] = _prescriptions(medications, pseudonyms, summary, key=pseudonym_key)

    no_practice = int(tables["persons"]["practice_id"].isna().sum())
    if no_practice:
        summary.note(f"{no_practice:,} people with no usual primary-care {practice_from}: practice_id left blank "
                     "(no registered practice)")
    for stem, name in (("conditions", "ltc_register"), ("medications", "prescriptions")):
        if name in tables:
            summary.route(_source_name(summary, stem), name, len(tables[name]))
    _end_at_death(tables, summary)
    tables = {name: _tidy_table(name, df) for name, df in tables.items()}
    summary.finish(tables)
    return tables, summary


# --- reading ---------------------------------------------------------------------------------

def _read(src_dir: Path, name: str, summary: ImportSummary, *, required: bool = False) -> pd.DataFrame | None:
    path = _find_file(src_dir, name, (".csv", ".csv.gz"))
    if path is None:
        if required:
            raise MissingSourceFileError(
                f"{src_dir / (name + '.csv')}: required Synthea file is missing "
                "(a Synthea CSV export needs patients.csv and encounters.csv)")
        summary.note(f"{name}.csv absent: no {_OPTIONAL_TABLE[name]} imported")
        return None
    df = _read_source_csv(path)
    df.columns = [str(c).strip().upper() for c in df.columns]
    for canonical, aliases in _COLUMN_ALIASES.items():
        present = [a for a in aliases if a in df.columns]
        if present and canonical not in df.columns:
            # Coalesce row by row: the first alias with a value wins.
            values = df[present[0]]
            for alias in present[1:]:
                values = values.fillna(df[alias])
            df[canonical] = values
    summary.source_rows[path.name] = len(df)
    return df


def _read_reference(src_dir: Path, name: str) -> pd.DataFrame | None:
    """``organizations.csv`` / ``providers.csv`` (only to tell hospitals and GPs apart), or None."""
    path = _find_file(src_dir, name, (".csv", ".csv.gz"))
    if path is None:
        return None
    df = _read_source_csv(path)
    df.columns = [str(c).strip().upper() for c in df.columns]
    return df


def _cost_columns(df: pd.DataFrame, canonical: str) -> list[str]:
    """The source columns behind ``canonical`` (e.g. TOTAL_CLAIM_COST, BASE_ENCOUNTER_COST), in order."""
    return [a for a in _COLUMN_ALIASES[canonical] if a in df] or [canonical]


_OPTIONAL_TABLE = {"conditions": "ltc_register", "medications": "prescriptions"}


def _source_name(summary: ImportSummary, stem: str) -> str:
    """The file name read for ``stem`` (as it was spelled on disk)."""
    return next((name for name in summary.source_rows if name.lower().startswith(stem)), f"{stem}.csv")


def _require_columns(df: pd.DataFrame, file_name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingSourceFileError(f"{file_name}: required column(s) {', '.join(missing)} missing")


# --- persons ---------------------------------------------------------------------------------

_RACE_GROUPS = {"white": "white", "black": "black", "asian": "asian", "native": "other",
                "hawaiian": "other", "other": "other", "mixed": "mixed"}


def _persons(patients: pd.DataFrame, encounters: pd.DataFrame, pseudonyms: dict,
             summary: ImportSummary, *, practice_from: str, organizations: pd.DataFrame | None = None,
             providers: pd.DataFrame | None = None) -> pd.DataFrame:
    file = _source_name(summary, "patients")
    gender = patients["GENDER"].str.strip().str.upper() if "GENDER" in patients else None
    persons = pd.DataFrame({
        "person_id": patients["ID"].map(pseudonyms),
        "birth_date": _to_date(patients["BIRTHDATE"], summary=summary, source_file=file, column="BIRTHDATE"),
        "sex": (gender.map({"F": "female", "M": "male"}).fillna("unknown") if gender is not None
                else "unknown"),
        "deprivation_decile": _income_decile(patients, summary),
        "ethnicity_group": _ethnicity(patients, summary),
        "practice_id": (patients["ID"].map(_practices(encounters, summary, practice_from,
                                                     organizations=organizations, providers=providers))
                    .astype("string")),
        "death_date": (_to_date(patients["DEATHDATE"], summary=summary, source_file=file, column="DEATHDATE")
                       if "DEATHDATE" in patients
                       else pd.Series(pd.NaT, index=patients.index, dtype="datetime64[s]")),
    })
    if gender is None:
        summary.note("patients.csv has no GENDER column: sex set to unknown")
    return persons.reset_index(drop=True)


def _ethnicity(patients: pd.DataFrame, summary: ImportSummary) -> pd.Series:
    if "RACE" not in patients and "ETHNICITY" not in patients:
        summary.note("patients.csv has no RACE or ETHNICITY column: ethnicity_group set to unknown")
        return pd.Series("unknown", index=patients.index)
    race = patients["RACE"].str.strip().str.lower() if "RACE" in patients else pd.Series(pd.NA, index=patients.index)
    group = race.map(_RACE_GROUPS)
    group = group.where(race.isna() | group.notna(), "other").fillna("unknown")
    if "ETHNICITY" in patients:
        hispanic = patients["ETHNICITY"].str.strip().str.lower().eq("hispanic").fillna(False)
        group = group.where(~hispanic, "other")
    return group


def _income_decile(patients: pd.DataFrame, summary: ImportSummary) -> pd.Series:
    if "INCOME" not in patients:
        summary.note("patients.csv has no INCOME column: deprivation_decile left missing")
        return pd.Series(pd.NA, index=patients.index, dtype="Int16")
    # Read as an amount (1,234 and $ too): an unreadable income would silently move everyone's decile.
    income = _to_float(patients["INCOME"], summary=summary, source_file=_source_name(summary, "patients"),
                       column="INCOME", currency=summary.currency)
    pct = income.rank(method="average", pct=True)
    decile = np.ceil(pct * 10).clip(1, 10)
    return decile.astype("Int16")


def _short_code(prefix: str, value: str) -> str:
    return prefix + hashlib.sha256(value.encode()).hexdigest()[:8]


def _practices(encounters: pd.DataFrame, summary: ImportSummary, practice_from: str, *,
               organizations: pd.DataFrame | None = None, providers: pd.DataFrame | None = None) -> pd.Series:
    """Source patient id -> practice code, from the person's usual primary-care organisation (or
    provider) that is not a hospital (see the module docstring)."""
    column, prefix = ("ORGANIZATION", "ORG") if practice_from == "organization" else ("PROVIDER", "PRV")
    if column not in encounters:
        summary.note(f"encounters.csv has no {column} column: practice_id left blank (no practice)")
        return pd.Series(dtype=object)
    cls = encounters["ENCOUNTERCLASS"].str.strip().str.lower()
    primary = encounters[cls.isin(PRACTICE_CLASSES) & encounters[column].notna()].assign(
        wellness=cls.eq("wellness").astype(int))
    if primary.empty:
        return pd.Series(dtype=object)
    hospitals = _hospital_organisations(encounters, cls, organizations)
    # The organisation each candidate encounter took place at (provider: its own, else providers.csv's).
    org = (primary["ORGANIZATION"] if "ORGANIZATION" in primary
           else pd.Series(pd.NA, index=primary.index, dtype=object))
    if practice_from == "provider" and providers is not None and {"ID", "ORGANIZATION"} <= set(providers):
        org = org.fillna(primary["PROVIDER"].map(providers.drop_duplicates("ID").set_index("ID")["ORGANIZATION"]))
    hospital = org.isin(hospitals).fillna(False).astype(bool)
    if practice_from == "provider" and providers is not None and {"ID", "SPECIALITY"} <= set(providers):
        speciality = providers.drop_duplicates("ID").set_index("ID")["SPECIALITY"].str.strip().str.upper()
        not_gp = primary["PROVIDER"].map(speciality).ne(GP_SPECIALITY).fillna(True) & ~hospital
        if not_gp.any():
            summary.note(f"{primary.loc[not_gp, 'PROVIDER'].nunique():,} providers seen at wellness/ambulatory "
                         f"encounters without SPECIALITY {GP_SPECIALITY} not taken as practices")
        primary, hospital = primary[~not_gp], hospital[~not_gp]
    excluded_sites = primary.loc[hospital, column].nunique()
    had_candidate = set(primary["PATIENT"])
    primary = primary[~hospital]
    hospital_only = len(had_candidate - set(primary["PATIENT"]))
    summary.practice_exclusions = {"hospitals_excluded": int(excluded_sites),
                                   "people_whose_only_candidate_was_a_hospital": int(hospital_only)}
    if excluded_sites:
        summary.note(f"{excluded_sites:,} hospital {practice_from}s (admitting inpatients, or named hospital) seen "
                     f"at wellness/ambulatory encounters not taken as practices; {hospital_only:,} people seen "
                     "for primary care only at a hospital have no practice")
    if primary.empty:
        return pd.Series(dtype=object)
    counts = (primary.groupby(["PATIENT", column], sort=True)
              .agg(wellness=("wellness", "sum"), n=("START", "size"), last=("START", "max")).reset_index())
    best = (counts.sort_values(["PATIENT", "wellness", "n", "last", column],
                               ascending=[True, False, False, False, True])
            .drop_duplicates("PATIENT"))
    codes = {site: _short_code(prefix, site) for site in best[column].unique()}
    return pd.Series(best[column].map(codes).to_numpy(), index=best["PATIENT"].to_numpy())


def _hospital_organisations(encounters: pd.DataFrame, cls: pd.Series,
                            organizations: pd.DataFrame | None) -> set:
    """Organisation ids that are hospitals: they admit patients, or their name says hospital."""
    hospitals: set = set()
    if "ORGANIZATION" in encounters:
        hospitals |= set(encounters.loc[cls.isin(HOSPITAL_CLASSES), "ORGANIZATION"].dropna())
    if organizations is not None and {"ID", "NAME"} <= set(organizations):
        named = organizations["NAME"].astype("string").str.contains(r"\bhospitals?\b", case=False, regex=True)
        hospitals |= set(organizations.loc[named.fillna(False).astype(bool), "ID"].dropna())
    return hospitals


# --- encounters ------------------------------------------------------------------------------

def _encounter_tables(encounters: pd.DataFrame, pseudonyms: dict, summary: ImportSummary, *,
                      key: bytes, window: pd.Timedelta = _ONE_DAY) -> dict[str, pd.DataFrame]:
    enc = encounters.copy()
    enc["cls"] = enc["ENCOUNTERCLASS"].str.strip().str.lower()
    file = _source_name(summary, "encounters")
    enc["start_ts"] = pd.to_datetime(enc["START"], utc=True, format="ISO8601", errors="coerce").dt.tz_localize(None)
    unreadable = enc["start_ts"].isna()
    summary.unreadable_values(file, "START", "date", enc["START"], unreadable)
    summary.drop("encounters with a missing or unreadable START", int(unreadable.sum()))
    enc = enc[~unreadable]
    missing_cls = enc["cls"].isna()
    summary.drop("encounters with a missing ENCOUNTERCLASS", int(missing_cls.sum()))
    enc = enc[~missing_cls]
    for cls, n in enc.loc[~enc["cls"].isin(list(ENCOUNTER_TABLES)), "cls"].value_counts().sort_index().items():
        reason = ("no canonical table for palliative care" if cls == "hospice"
                  else "no canonical table for this class")
        summary.drop(f"encounters of class '{cls}' ({reason})", int(n), [cls])
    if "ENCOUNTER_COST" not in enc:
        summary.note("encounters.csv has no cost column: encounter costs left missing")
    enc["pid"] = enc["PATIENT"].map(pseudonyms)
    enc["date"] = _to_date(enc["START"])
    enc["stop_date"] = (_to_date(enc["STOP"], summary=summary, source_file=file, column="STOP") if "STOP" in enc
                        else pd.NaT)
    enc["cost"] = (_first_number(enc, _cost_columns(enc, "ENCOUNTER_COST"), summary=summary, source_file=file,
                                 kind="cost", currency=summary.currency) if "ENCOUNTER_COST" in enc else np.nan)
    enc["text"] = (enc.get("DESCRIPTION", pd.Series("", index=enc.index)).fillna("").str.lower())
    enc["reason"] = (enc.get("REASONDESCRIPTION", pd.Series("", index=enc.index)).fillna("").str.lower())
    # A keyed hash of the encounter Id: distinct same-day encounters stay distinct rows.
    enc["record_id"] = (pseudonymise("encounter:" + enc["ID"].astype("string"), key) if "ID" in enc
                        else pd.Series(pd.NA, index=enc.index, dtype="string"))

    inpatient = enc[enc["cls"] == "inpatient"]
    tables: dict[str, pd.DataFrame] = {}

    ae = enc[enc["cls"].isin(["emergency", "urgentcare"])]
    next_admission = _nearest_within(ae, inpatient, by="PATIENT", on="start_ts", direction="forward",
                                     tolerance=window)
    tables["ae_attendances"] = pd.DataFrame({
        "person_id": ae["pid"], "arrival_date": ae["date"],
        "admitted": next_admission.notna(), "department_type": ae["cls"].map(AE_DEPARTMENT_TYPES),
        "cost": ae["cost"], "record_id": ae["record_id"],
    })

    came_via_ae = _nearest_within(inpatient, ae, by="PATIENT", on="start_ts", direction="backward",
                                  tolerance=window).notna()
    tables["inpatient_spells"] = pd.DataFrame({
        "person_id": inpatient["pid"], "admission_date": inpatient["date"],
        "discharge_date": inpatient["stop_date"],
        "admission_method": _admission_method(inpatient, came_via_ae, summary),
        "primary_diagnosis": pd.Series(pd.NA, index=inpatient.index, dtype="string"),
        "cost": inpatient["cost"], "record_id": inpatient["record_id"],
    })

    outpatient = enc[enc["cls"] == "outpatient"]
    tables["outpatient_appointments"] = pd.DataFrame({
        "person_id": outpatient["pid"], "appointment_date": outpatient["date"],
        "specialty": (outpatient["DESCRIPTION"].str.replace(r"\s*\([^()]*\)\s*$", "", regex=True)
                      if "DESCRIPTION" in outpatient else pd.NA),
        "attended": True, "cost": outpatient["cost"],
        "record_id": outpatient["record_id"],
    })

    gp = enc[enc["cls"].isin(["ambulatory", "wellness", "virtual", "home"])]
    tables["gp_contacts"] = pd.DataFrame({
        "person_id": gp["pid"], "contact_date": gp["date"], "contact_type": gp["cls"], "cost": gp["cost"],
        "record_id": gp["record_id"],
    })

    snf = enc[enc["cls"] == "snf"]
    days = (snf["stop_date"] - snf["date"]).dt.days.clip(lower=1)
    tables["social_care"] = pd.DataFrame({
        "person_id": snf["pid"], "service_type": "nursing", "start_date": snf["date"],
        "end_date": snf["stop_date"], "weekly_cost": snf["cost"] / days * 7,
        "record_id": snf["record_id"],
    })
    # Keep only the tables the export has events for, so "no events" and "no source" stay distinct.
    return {name: df for name, df in tables.items() if len(df)}


def _admission_method(inpatient: pd.DataFrame, came_via_ae: pd.Series,
                      summary: ImportSummary | None = None) -> pd.Series:
    """The first rule that applies (see the module docstring); "unknown" when nothing says."""
    text, reason = inpatient["text"], inpatient["reason"]
    both = text + " | " + reason
    rules = [
        ("maternity", "pregnancy, delivery or obstetrics named", both.str.contains(_MATERNITY, regex=True)),
        ("elective", "description says elective, non-urgent or planned",
         text.str.contains(r"non-urgent|elective|(?<!un)planned", regex=True)),  # not "unplanned"
        ("transfer", "description says transfer", text.str.contains("transfer", regex=False)),
        ("emergency", "after an emergency or urgent-care encounter", came_via_ae),
        ("emergency", "description says emergency, urgent or unplanned",
         text.str.contains(r"emergency|(?<!non-)urgent|unplanned", regex=True)),
        ("emergency", "acute reason", reason.str.contains(_ACUTE_REASON, regex=True)),
    ]
    conditions = [rule.to_numpy(dtype=bool) for _, _, rule in rules]
    method = pd.Series(np.select(conditions, [m for m, _, _ in rules], default="unknown"), index=inpatient.index)
    if summary is not None and len(inpatient):
        which = pd.Series(np.select(conditions, [why for _, why, _ in rules], default="nothing says"),
                          index=inpatient.index)
        counts = "; ".join(f"{why}: {n}" for why, n in which.value_counts().sort_index().items())
        summary.note(f"admission method of {len(inpatient):,} inpatient stays by rule ({counts}); "
                     f"{int((method == 'unknown').sum()):,} unknown (never guessed elective)")
    return method


# --- conditions and medications --------------------------------------------------------------

def match_ltc(descriptions: pd.Series) -> pd.DataFrame:
    """Long-term conditions named by each description: a frame (row index, condition)."""
    text = descriptions.fillna("").str.lower()
    excluded = text.str.contains(LTC_EXCLUDE, regex=True)
    hits = []
    for condition, pattern in LTC_PATTERNS:
        mask = text.str.contains(pattern, regex=True) & ~excluded
        hits.append(pd.DataFrame({"row": text.index[mask], "condition": condition}))
    return pd.concat(hits, ignore_index=True)


def _ltc_register(conditions: pd.DataFrame, pseudonyms: dict, summary: ImportSummary) -> pd.DataFrame:
    conditions = conditions.assign(date=_to_date(conditions["START"], summary=summary,
                                                 source_file=_source_name(summary, "conditions"), column="START"))
    no_date = conditions["date"].isna()
    summary.drop("conditions with a missing or unreadable START", int(no_date.sum()))
    conditions = conditions[~no_date]
    hits = match_ltc(conditions["DESCRIPTION"])
    not_ltc = int((~conditions.index.isin(hits["row"])).sum())
    summary.drop("conditions that are not register long-term conditions", not_ltc)
    register = pd.DataFrame({
        "person_id": conditions.loc[hits["row"], "PATIENT"].map(pseudonyms).to_numpy(),
        "condition": hits["condition"].to_numpy(),
        "diagnosis_date": conditions.loc[hits["row"], "date"].to_numpy(),
    })
    return _register_once(register, summary, records=len(hits), rows=len(conditions) - not_ltc,
                          source="conditions.csv")


def bnf_chapter(descriptions: pd.Series) -> pd.Series:
    """BNF chapter ("01".."15") for each drug description, missing where no pattern matches.

    >>> bnf_chapter(pd.Series(["lisinopril 10 MG Oral Tablet", "Ibuprofen 400 MG", "x"])).tolist()
    ['02', '10', nan]
    """
    text = descriptions.fillna("").str.lower()
    chapter = pd.Series(np.nan, index=descriptions.index, dtype=object)
    for pattern, code in BNF_PATTERNS:
        todo = chapter.isna()
        chapter[todo & text.str.contains(pattern, regex=True)] = code
    return chapter


def _prescriptions(medications: pd.DataFrame, pseudonyms: dict, summary: ImportSummary, *,
                   key: bytes) -> pd.DataFrame:
    file = _source_name(summary, "medications")
    meds = medications.assign(date=_to_date(medications["START"], summary=summary, source_file=file, column="START"),
                              chapter=bnf_chapter(medications["DESCRIPTION"]))
    no_date = meds["date"].isna()
    summary.drop("medications with a missing or unreadable START", int(no_date.sum()))
    meds = meds[~no_date]
    unmapped = meds["chapter"].isna()
    if unmapped.any():
        # Kept: an item still counts towards prescriptions and polypharmacy without its chapter.
        top = meds.loc[unmapped, "DESCRIPTION"].value_counts().head(5)
        summary.note(f"{int(unmapped.sum()):,} medications with no BNF chapter kept as chapter 'unknown' "
                     "(most common: " + "; ".join(f"{d} ({n})" for d, n in top.items()) + ")")
    if "DRUG_COST" not in meds:
        summary.note("medications.csv has no cost column: prescription costs left missing")
    # Medication rows have no id: a keyed hash of the whole source row tells distinct orders apart
    # (two orders of one drug on one day) while a row repeated verbatim is still a repeat.
    whole_row = meds[list(medications.columns)].astype("string").fillna("").agg("\x1f".join, axis=1)
    return pd.DataFrame({
        "person_id": meds["PATIENT"].map(pseudonyms), "issue_date": meds["date"],
        "bnf_chapter": meds["chapter"].fillna(BNF_UNKNOWN),
        "drug_code": meds["CODE"] if "CODE" in meds else pd.NA,
        "cost": (_first_number(meds, _cost_columns(meds, "DRUG_COST"), summary=summary, source_file=file, kind="cost",
                               currency=summary.currency) if "DRUG_COST" in meds else np.nan),
        "record_id": pseudonymise("medication:" + whole_row, key),
    })
