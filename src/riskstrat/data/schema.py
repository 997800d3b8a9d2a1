"""The canonical linked-records data model: the one place that knows tables, columns and dtypes.

A linked data set is a folder with one Parquet (or CSV) file per table, named after the table
(``persons.parquet``, ``inpatient_spells.parquet``, ...). ``persons`` is required; every other
table is optional, and a model trained without a source simply lacks its features.

In memory every table is a pandas DataFrame with the dtypes below: ids and free codes as
``str``, reference-coded columns as ``category``, dates as ``datetime64[s]`` (midnight), costs as
``float64``, flags as ``bool``, small integers as nullable ``Int8``/``Int16``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from riskstrat.errors import RiskstratError

SCHEMA_VERSION = "1.0"


class SchemaVersionError(RiskstratError):
    """Data written for a newer schema than this riskstrat understands."""


def check_schema_version(found, where: str) -> None:
    """Refuse data whose ``schema_version`` is newer than :data:`SCHEMA_VERSION`, naming both.

    >>> check_schema_version("1.0", "persons.parquet")
    """
    if found is None or str(found).strip() == "":
        return
    def parts(version) -> tuple[int, ...]:
        try:
            return tuple(int(p) for p in str(version).strip().split("."))
        except ValueError:
            raise SchemaVersionError(f"{where}: schema version {version!r} is not a version like "
                                     f"{SCHEMA_VERSION!r}") from None
    if parts(found) > parts(SCHEMA_VERSION):
        raise SchemaVersionError(f"{where} was written for riskstrat schema version {found}, newer than version "
                                 f"{SCHEMA_VERSION} that this riskstrat understands: upgrade riskstrat (or re-import "
                                 f"the data with this version)")

ColumnKind = Literal["id", "str", "category", "date", "float", "int", "bool"]

SEXES = ("female", "male", "unknown")
ETHNICITY_GROUPS = ("white", "asian", "black", "mixed", "other", "unknown")
# "unknown": the source does not say how the person was admitted (HES 98/99, most Synthea and OMOP
# stays). Never guessed as "elective"; outcomes that need the method say so (see riskstrat.outcomes).
ADMISSION_METHODS = ("emergency", "elective", "maternity", "transfer", "unknown")
# The kind of A&E department an attendance was at, after NHS England's A&E department types (HES A&E
# AEDEPTTYPE, ECDS EMERGENCY CARE DEPARTMENT TYPE): 01 a consultant-led 24-hour emergency department
# with full resuscitation facilities; 02 a consultant-led single-specialty A&E (eye, dental, ...);
# 03 other A&E / minor injury unit / urgent treatment centre; 04 NHS walk-in centre. "unknown": the
# source does not say (HES 99 or blank, data sets written before this column, sources without the field).
AE_DEPARTMENT_TYPES = ("emergency_department", "single_specialty", "urgent_care", "walk_in", "unknown")
# The types that count as unplanned hospital use by default (the outcome and the A&E features): an
# urgent treatment centre or walk-in visit is not the hospital use case finding tries to prevent, and
# "unknown" stays in so that data without the field keep every attendance (see riskstrat.outcomes).
AE_UNPLANNED_DEPARTMENT_TYPES = ("emergency_department", "single_specialty", "unknown")
# The list key (and folder) of the people with no registered practice: not a valid practice code, so
# validation refuses it as a practice_id and scoring lists those people apart under it.
NO_PRACTICE = "no-registered-practice"
NO_PRACTICE_NAME = "no registered practice"  # that group in a summary or report table
# Practice ids become folder names (riskstrat.scoring.lists): letters, digits, '_', '.', '-', starting with a
# letter or digit. Validation refuses others; writing the lists checks again.
SAFE_PRACTICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SOCIAL_CARE_TYPES = ("home_care", "reablement", "day_care", "residential", "nursing", "direct_payment")
# Long-term-condition register (QOF-like): code -> plain-English name.
LONG_TERM_CONDITIONS = {
    "hypertension": "high blood pressure",
    "diabetes": "diabetes",
    "asthma": "asthma",
    "copd": "COPD",
    "chd": "coronary heart disease",
    "heart_failure": "heart failure",
    "atrial_fibrillation": "atrial fibrillation",
    "stroke": "stroke or TIA",
    "ckd": "chronic kidney disease",
    "cancer": "cancer",
    "dementia": "dementia",
    "depression": "depression",
    "smi": "severe mental illness",
    "epilepsy": "epilepsy",
}
# BNF chapters 1-15 as two-digit strings. Prescriptions whose chapter is not known (a drug code with
# no BNF or ATC mapping) carry BNF_UNKNOWN: they still count as items and towards polypharmacy.
BNF_UNKNOWN = "unknown"
VACCINE_CHAPTER = "14"  # BNF chapter 14: immunological products and vaccines (not medicines taken)
BNF_CHAPTERS = {
    "01": "gastro-intestinal",
    "02": "cardiovascular",
    "03": "respiratory",
    "04": "central nervous system",
    "05": "infections",
    "06": "endocrine",
    "07": "obstetrics, gynaecology and urinary tract",
    "08": "malignant disease and immunosuppression",
    "09": "nutrition and blood",
    "10": "musculoskeletal and joint",
    "11": "eye",
    "12": "ear, nose and oropharynx",
    "13": "skin",
    "14": "immunological products and vaccines",
    "15": "anaesthesia",
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    description: str
    required: bool = True
    nullable: bool = False
    categories: tuple[str, ...] | None = None  # reference list for ``category`` columns
    min_value: float | None = None
    max_value: float | None = None
    # The code a blank cell, or the column's absence, stands for (validation and the engines write it
    # in), so that data written before an optional category column existed read as "unknown".
    missing_as: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    required: bool = False
    # The date that places an event in time (used for index-date cuts and life-span checks).
    event_date: str | None = None
    # Pairs (start, end) where end must not precede start.
    ordered_dates: tuple[tuple[str, str], ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    @property
    def date_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "date"]


def _person_id() -> Column:
    return Column("person_id", "id", "Pseudonymised person key linking all tables.")


def _record_id() -> Column:
    # Two same-day visits with the same content are two events when their source ids differ:
    # readers keep a hash of the source record id so that validation's repeated-row check (which
    # compares whole rows) removes true repeats only. Features never read it.
    return Column("record_id", "str", "Source record key (hashed), distinguishing events that are otherwise "
                  "identical; blank when the source has none.", required=False, nullable=True)


def _cost(description: str = "Cost in the data set's currency (dataset.json ``currency``, default GBP).") -> Column:
    return Column("cost", "float", description, required=False, nullable=True, min_value=0.0)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "persons",
            "One row per person: demographics, registered GP practice and death.",
            (
                _person_id(),
                Column("birth_date", "date", "Date of birth (may be set to the 1st of the month)."),
                Column("sex", "category", "Sex.", categories=SEXES),
                Column(
                    "deprivation_decile", "int", "Index of multiple deprivation decile, 1 = most deprived.",
                    required=False, nullable=True, min_value=1, max_value=10,
                ),
                Column("ethnicity_group", "category", "Ethnicity group.", required=False, nullable=True,
                       categories=ETHNICITY_GROUPS),
                Column("practice_id", "str", "Registered GP practice (or care team) code; blank if the person has "
                       "no registered practice (they are counted and listed apart, never as a practice).",
                       nullable=True),
                Column("registration_start", "date", "Start of registration / eligibility.",
                       required=False, nullable=True),
                Column("registration_end", "date", "End of registration / eligibility (blank if current).",
                       required=False, nullable=True),
                Column("death_date", "date", "Date of death (blank if alive).", required=False, nullable=True),
            ),
            required=True,
            ordered_dates=(("birth_date", "death_date"), ("registration_start", "registration_end")),
        ),
        Table(
            "inpatient_spells",
            "Hospital inpatient spells.",
            (
                _person_id(),
                Column("admission_date", "date", "Date of admission."),
                Column("discharge_date", "date", "Date of discharge (blank if still in hospital).",
                       nullable=True),
                Column("admission_method", "category", "How the person was admitted.",
                       categories=ADMISSION_METHODS),
                Column("primary_diagnosis", "str", "Primary diagnosis, ICD-10 code.", required=False,
                       nullable=True),
                _cost("Cost of the spell (data set currency)."),
                _record_id(),
            ),
            event_date="admission_date",
            ordered_dates=(("admission_date", "discharge_date"),),
        ),
        Table(
            "ae_attendances",
            "Accident and emergency (A&E / emergency department) attendances.",
            (
                _person_id(),
                Column("arrival_date", "date", "Date of arrival."),
                Column("admitted", "bool", "Whether the attendance ended in admission.", required=False,
                       nullable=True),
                _cost("Cost of the attendance (data set currency)."),
                Column("department_type", "category", "Kind of A&E department (NHS England's A&E department "
                       "types: emergency_department 01, single_specialty 02, urgent_care 03 (minor injury unit, "
                       "urgent treatment centre), walk_in 04).",
                       required=False, nullable=True, categories=AE_DEPARTMENT_TYPES, missing_as="unknown"),
                _record_id(),
            ),
            event_date="arrival_date",
        ),
        Table(
            "outpatient_appointments",
            "Hospital outpatient appointments, attended or missed.",
            (
                _person_id(),
                Column("appointment_date", "date", "Date of the appointment."),
                Column("specialty", "str", "Treatment specialty.", required=False, nullable=True),
                Column("attended", "bool", "True if attended, False if the person did not attend (DNA)."),
                _cost("Cost of the appointment (data set currency)."),
                _record_id(),
            ),
            event_date="appointment_date",
        ),
        Table(
            "gp_contacts",
            "Primary care (GP practice) contacts.",
            (
                _person_id(),
                Column("contact_date", "date", "Date of the contact."),
                Column("contact_type", "str", "Face to face, telephone, home visit, ...", required=False,
                       nullable=True),
                _cost("Cost of the contact (data set currency)."),
                _record_id(),
            ),
            event_date="contact_date",
        ),
        Table(
            "ltc_register",
            "Long-term-condition register: one row per person and condition.",
            (
                _person_id(),
                Column("condition", "category", "Long-term condition.",
                       categories=tuple(LONG_TERM_CONDITIONS)),
                Column("diagnosis_date", "date", "Date the condition was first recorded."),
            ),
            event_date="diagnosis_date",
        ),
        Table(
            "prescriptions",
            "Prescription items issued.",
            (
                _person_id(),
                Column("issue_date", "date", "Date the item was issued."),
                Column("bnf_chapter", "category", "BNF chapter (two digits), or 'unknown' when the source does not say.",
                       categories=(*BNF_CHAPTERS, BNF_UNKNOWN)),
                Column("drug_code", "str", "Drug code (BNF, dm+d or RxNorm).", required=False, nullable=True),
                _cost("Cost of the item (data set currency)."),
                _record_id(),
            ),
            event_date="issue_date",
        ),
        Table(
            "social_care",
            "Adult social care services.",
            (
                _person_id(),
                Column("service_type", "category", "Type of service.", categories=SOCIAL_CARE_TYPES),
                Column("start_date", "date", "Date the service started."),
                Column("end_date", "date", "Date the service ended (blank if ongoing).", nullable=True),
                Column("weekly_cost", "float", "Weekly cost (data set currency).", required=False, nullable=True,
                       min_value=0.0),
                _record_id(),
            ),
            event_date="start_date",
            ordered_dates=(("start_date", "end_date"),),
        ),
    )
}

EVENT_TABLES = tuple(name for name in TABLES if name != "persons")
# The cost columns: blank means unknown, never zero (validation warns of a table whose costs are all blank).
COST_COLUMNS = ("cost", "weekly_cost")
# The tables whose costs are health care's (social care's weekly_cost is not): a high-cost outcome needs one.
HEALTH_CARE_COST_TABLES = tuple(name for name in EVENT_TABLES
                                if name != "social_care" and "cost" in TABLES[name].column_names)


def empty_table(name: str) -> "pd.DataFrame":
    """An empty DataFrame with the canonical columns and dtypes of table ``name``."""
    import pandas as pd

    table = TABLES[name]
    return pd.DataFrame({c.name: pd.Series([], dtype=pandas_dtype(c)) for c in table.columns})


def pandas_dtype(column: Column):
    """The in-memory pandas dtype for a canonical column."""
    import pandas as pd

    if column.kind in ("id", "str"):
        return pd.StringDtype(na_value=float("nan"))
    if column.kind == "category":
        return pd.CategoricalDtype(list(column.categories or ()), ordered=False)
    if column.kind == "date":
        return "datetime64[s]"
    if column.kind == "float":
        return "float64"
    if column.kind == "int":
        return "Int16"
    if column.kind == "bool":
        return "boolean" if column.nullable else "bool"
    raise ValueError(f"unknown column kind {column.kind!r}")


def arrow_schema(name: str, present: list[str] | None = None):
    """The pyarrow schema used to write table ``name`` to Parquet (dates as date32)."""
    import pyarrow as pa

    types = {
        "id": pa.string(),
        "str": pa.string(),
        "category": pa.dictionary(pa.int32(), pa.string()),
        "date": pa.date32(),
        "float": pa.float64(),
        "int": pa.int16(),
        "bool": pa.bool_(),
    }
    fields = [
        pa.field(c.name, types[c.kind], nullable=True)
        for c in TABLES[name].columns
        if present is None or c.name in present
    ]
    return pa.schema(fields, metadata={"riskstrat_schema_version": SCHEMA_VERSION, "table": name})


def describe_schema() -> str:
    """A Markdown description of the data model (used by ``docs`` and the README)."""
    lines = [f"# riskstrat linked-records schema, version {SCHEMA_VERSION}", ""]
    for table in TABLES.values():
        status = "required" if table.required else "optional"
        lines += [f"## `{table.name}` ({status})", "", table.description, "",
                  "| column | type | required | description |", "|---|---|---|---|"]
        for c in table.columns:
            kind = c.kind + (f" ({', '.join(c.categories)})" if c.categories else "")
            default = f" Blank or absent: `{c.missing_as}`." if c.missing_as else ""
            lines.append(f"| `{c.name}` | {kind} | {'yes' if c.required else 'no'} | {c.description}{default} |")
        lines.append("")
    return "\n".join(lines)
