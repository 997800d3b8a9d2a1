"""The built-in outcomes, and the generic event outcome that a YAML file can declare alone."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from riskstrat.errors import RiskstratError
from riskstrat.features.clinical import person_positions, sum_by_position
from riskstrat.outcomes._base import DeathHandling, Outcome, Window, _positions_in
from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import (
    ADMISSION_METHODS,
    AE_DEPARTMENT_TYPES,
    AE_UNPLANNED_DEPARTMENT_TYPES,
    EVENT_TABLES,
    HEALTH_CARE_COST_TABLES,
    SOCIAL_CARE_TYPES,
    TABLES,
)


def future_cost(records: LinkedRecords, index_date, ids: pd.Index, *, horizon_days: int = 365) -> pd.Series:
    """Total health and social care cost of each person in ``[T, T + horizon)`` (pounds)."""
    t = pd.Timestamp(index_date)
    end = t + pd.Timedelta(days=horizon_days)
    total = np.zeros(len(ids))
    for name, col in (("inpatient_spells", "admission_date"), ("ae_attendances", "arrival_date"),
                      ("outpatient_appointments", "appointment_date"), ("gp_contacts", "contact_date"),
                      ("prescriptions", "issue_date")):
        if records.has(name):
            ev = records.get(name)
            keep, pos = _positions_in(ev, col, t, end, ids)
            total += sum_by_position(ev["cost"].to_numpy(dtype="float64", na_value=0.0)[keep], pos, len(ids))
    if records.has("social_care"):
        sc = records.get("social_care")
        pos = person_positions(sc["person_id"], ids)
        sc, pos = sc[pos >= 0], pos[pos >= 0]
        s = sc["start_date"].where(sc["start_date"] > t, t)
        e = sc["end_date"].fillna(end).where(lambda x: x < end, end)
        days = (e - s).dt.days.clip(lower=0)
        total += sum_by_position(sc["weekly_cost"].fillna(0) * days / 7, pos, len(ids))
    return pd.Series(total, index=ids)


# The admissions unplanned_hospital_use counts by default: not recorded as planned (see its docstring).
UNPLANNED_ADMISSION_METHODS = ("emergency", "unknown")

_DEATH_FIELD = Field("composite", description="Death in the window: composite (counts as the outcome, SPARRA v4) "
                                              "| exclude (no label unless the event came first) | negative.")


def _methods_field():
    return Field(default_factory=lambda: ["emergency"],
                 description=f"Admission methods that count, from {list(ADMISSION_METHODS)}.")


def _check_known(field: str, v: list[str], allowed) -> list[str]:
    """``v`` if it is a non-empty list of ``allowed`` values, else a ValueError naming ``field``."""
    bad = [x for x in v if x not in allowed]
    if bad or not v:
        raise ValueError(f"{field} {bad or v} not known; choose from {list(allowed)}")
    return v


def _check_methods(v: list[str]) -> list[str]:
    return _check_known("admission_methods", v, ADMISSION_METHODS)


def _admitted(records: LinkedRecords, window: Window, methods: list[str]) -> np.ndarray:
    spells = records.get("inpatient_spells")
    rows = spells["admission_method"].isin(methods).to_numpy()
    return window.anyone(window.positions(spells, "admission_date", rows=rows))


def _or_death(words: str, death: DeathHandling) -> str:
    return f"{words} or death" if death == "composite" else words


class _HospitalOutcome(Outcome):
    """What admission outcomes share: the admission methods that count and death handling."""

    death: DeathHandling = _DEATH_FIELD
    admission_methods: list[str] = _methods_field()

    death_applies: ClassVar[bool] = True

    @field_validator("admission_methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        return _check_methods(v)


class EmergencyAdmission(_HospitalOutcome):
    """An emergency admission in the window (SPARRA's outcome; with ``death: composite``, or death)."""

    name: Literal["emergency_admission"] = "emergency_admission"

    tables: ClassVar[tuple[str, ...]] = ("inpatient_spells",)

    @property
    def words(self) -> str:
        what = "an emergency admission" if self.admission_methods == ["emergency"] else \
            f"an admission ({' or '.join(self.admission_methods)})"
        return _or_death(what, self.death)

    @property
    def truth_column(self) -> str | None:
        if self.admission_methods != ["emergency"]:
            return None
        return "p_emergency_or_death" if self.death == "composite" else "p_emergency_admission"

    def events(self, records, window):
        return _admitted(records, window, self.admission_methods), None


class UnplannedHospitalUse(_HospitalOutcome):
    """An admission not recorded as planned, or an A&E attendance, in the window: what data without a
    recorded admission method (Synthea, many OMOP ETLs, US claims) support, and what many services use.

    ``admission_methods`` defaults to emergency **and unknown**: this outcome is for data that do not
    record how people were admitted, where most stays carry no method at all (a Synthea hospital export:
    15 of 49 spells emergency, 29 unknown); counting emergency ones only would leave most unplanned stays
    out of the label while the A&E visits before them stay in. Stays recorded as elective, maternity or
    a transfer never count. ``--set 'target.admission_methods=[emergency]'`` counts emergency ones only.

    ``ae_department_types`` chooses the attendances that count (:data:`riskstrat.data.schema.AE_DEPARTMENT_TYPES`).
    By default an emergency department (type 1), a single-specialty A&E (type 2) or an unknown type:
    an urgent treatment centre, minor injury unit (type 3) or walk-in centre (type 4) visit is not the
    unplanned hospital use case finding tries to prevent, and counting them inflated the positives by a
    third on a real export (34% of its positives had urgent care only). "unknown" is kept because data
    sets written before the column existed, and sources without the field, would otherwise lose every
    attendance. The A&E features count the same default types.
    """

    name: Literal["unplanned_hospital_use"] = "unplanned_hospital_use"
    admission_methods: list[str] = Field(
        default_factory=lambda: list(UNPLANNED_ADMISSION_METHODS),
        description=f"Admission methods that count, from {list(ADMISSION_METHODS)} (default emergency and unknown: "
                    f"the stays not recorded as planned).")
    ae_department_types: list[str] = Field(
        default_factory=lambda: list(AE_UNPLANNED_DEPARTMENT_TYPES),
        description=f"A&E department types whose attendances count, from {list(AE_DEPARTMENT_TYPES)}.")

    tables: ClassVar[tuple[str, ...]] = ("inpatient_spells", "ae_attendances")

    @field_validator("ae_department_types")
    @classmethod
    def _known_types(cls, v: list[str]) -> list[str]:
        return _check_known("ae_department_types", v, AE_DEPARTMENT_TYPES)

    @property
    def words(self) -> str:
        methods = sorted(self.admission_methods)
        admission = ("an unplanned admission" if methods == sorted(UNPLANNED_ADMISSION_METHODS)
                     else "an emergency admission" if methods == ["emergency"]
                     else f"an admission ({' or '.join(self.admission_methods)})")
        if sorted(self.ae_department_types) == sorted(AE_UNPLANNED_DEPARTMENT_TYPES):
            return _or_death(f"{admission} or A&E attendance", self.death)
        kinds = " or ".join(t.replace("_", " ") for t in self.ae_department_types)
        return _or_death(f"{admission} or A&E attendance ({kinds})", self.death)

    def events(self, records, window):
        ae = records.get("ae_attendances")
        rows = ae["department_type"].isin(self.ae_department_types).to_numpy(dtype=bool)
        return _admitted(records, window, self.admission_methods) | window.anyone(
            window.positions(ae, "arrival_date", rows=rows)), None


class Death(Outcome):
    """Death from any cause in the window (report it apart: folding it in hides who can be helped)."""

    name: Literal["death"] = "death"

    @property
    def words(self) -> str:
        return "death"

    @property
    def truth_column(self) -> str | None:
        return "p_death"

    def events(self, records, window):
        persons = records.persons.set_index("person_id")["death_date"].reindex(window.ids)
        return persons.between(window.t, window.end - pd.Timedelta(days=1)).to_numpy(), None


class HighCost(Outcome):
    """Total health and social care cost in the window in the top ``top_fraction`` of the people followed."""

    name: Literal["high_cost"] = "high_cost"
    top_fraction: float = Field(0.05, gt=0, lt=0.5, description="High-cost threshold: top fraction by cost.")

    tables: ClassVar[tuple[str, ...]] = ("inpatient_spells", "ae_attendances", "outpatient_appointments",
                                         "gp_contacts", "prescriptions", "social_care")

    @property
    def words(self) -> str:
        return f"being in the highest-cost {self.top_fraction:.0%}"

    @property
    def truth_column(self) -> str | None:
        return "p_high_cost" if self.top_fraction == 0.05 else None  # the generator's threshold

    def events(self, records, window):
        cost = future_cost(records, window.t, window.ids, horizon_days=window.horizon_days).to_numpy()
        observed = cost[window.followed]
        threshold = np.quantile(observed, 1 - self.top_fraction) if len(observed) else np.inf
        return cost > threshold, None


class MissingCostsError(RiskstratError):
    """A cost outcome on data whose health-care costs are all unknown (blank or absent)."""


def check_costs_known(outcome: Outcome, *, row_counts: dict[str, int], blank_costs) -> None:
    """Refuse (:class:`MissingCostsError`) a high-cost outcome on data in which no health-care table
    with rows has a known cost: blank costs are unknown, not zero, and a top-5% by social-care cost
    alone is another outcome. ``blank_costs``: the ``(table, column)`` cost columns blank in every row
    (an engine's ``blank_costs``, :func:`riskstrat.data.validate.blank_costs`). Other outcomes pass."""
    if not isinstance(outcome, HighCost):
        return
    blank = {table for table, column in blank_costs if column == "cost"}
    present = [t for t in HEALTH_CARE_COST_TABLES if row_counts.get(t, 0)]
    if any(t not in blank for t in present):
        return
    where = (f"the cost column is blank in every row of {', '.join(present)}" if present
             else "the data hold no health-care events with costs")
    raise MissingCostsError(
        f"{outcome.words} needs health-care costs, but {where}: those costs are unknown, not zero, and a "
        f"high-cost model judged on social-care costs alone would be judged on another outcome. Fill in the "
        f"cost column of {', '.join(present or HEALTH_CARE_COST_TABLES)} (riskstrat validate lists blank cost "
        f"columns), or use a model of another outcome")


class SocialCareEntry(Outcome):
    """A new home-care package or care-home placement in the window, among people not already
    receiving one of those services at T (who are not at risk of entry: no label)."""

    name: Literal["social_care_entry"] = "social_care_entry"
    service_types: list[str] = Field(default_factory=lambda: ["home_care", "residential", "nursing"],
                                     description=f"Services whose start counts, from {list(SOCIAL_CARE_TYPES)}.")

    tables: ClassVar[tuple[str, ...]] = ("social_care",)

    @field_validator("service_types")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return _check_known("service_types", v, SOCIAL_CARE_TYPES)

    @property
    def words(self) -> str:
        if sorted(self.service_types) == ["home_care", "nursing", "residential"]:
            return "a new home-care package or care-home admission"
        return "a new " + " or ".join(s.replace("_", " ") for s in self.service_types) + " service"

    def events(self, records, window):
        sc = records.get("social_care")
        care = sc["service_type"].isin(self.service_types).to_numpy()
        pos = person_positions(sc["person_id"], window.ids)
        ongoing = (sc["start_date"] < window.t) & (sc["end_date"].isna() | (sc["end_date"] >= window.t))
        in_care = window.anyone(pos[care & (pos >= 0) & ongoing.to_numpy()])
        new = window.anyone(window.positions(sc, "start_date", rows=care))
        return new, in_care


class EventOutcome(Outcome):
    """An outcome declared in configuration alone: any row of ``table`` matching ``where``, dated in
    the window. For example, a care-home admission::

        target:
          kind: event
          name: care_home_admission
          words: a care-home admission
          table: social_care
          where: {service_type: [residential, nursing]}
          death: exclude
    """

    kind: Literal["event"] = "event"
    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]{1,59}$",
                      description="A name of your own (lower case, digits, underscores).")
    words: str = Field(..., min_length=3, description="What the lists call it, e.g. 'a care-home admission'.")
    table: str = Field(..., description=f"Event table, one of {list(EVENT_TABLES)}.")
    where: dict[str, Any] = Field(default_factory=dict,
                                  description="Column -> value or list of values a row must match (all must).")
    date_column: str | None = Field(None, description="Date that places the row in the window (default: the "
                                                      "table's event date).")
    death: DeathHandling = Field("exclude", description="Death in the window: composite | exclude | negative.")

    death_applies: ClassVar[bool] = True

    @property
    def tables(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.table,)

    @model_validator(mode="after")
    def _columns_exist(self) -> "EventOutcome":
        if self.table not in EVENT_TABLES:
            raise ValueError(f"table {self.table!r} is not an event table; choose from {list(EVENT_TABLES)}")
        schema = TABLES[self.table]
        date = self.date_column or schema.event_date
        if date not in schema.date_columns:
            raise ValueError(f"{self.table} has no date column {date!r}; its dates: {schema.date_columns}")
        self.date_column = date
        for column, wanted in self.where.items():
            if column not in schema.column_names or column == "person_id":
                raise ValueError(f"where: {self.table} has no column {column!r}; its columns: "
                                 f"{[c for c in schema.column_names if c != 'person_id']}")
            col = schema.column(column)
            values = wanted if isinstance(wanted, list) else [wanted]
            if col.categories:
                bad = [v for v in values if v not in col.categories]
                if bad:
                    raise ValueError(f"where: {column} values {bad} not in its reference list {list(col.categories)}")
        return self

    def events(self, records, window):
        df = records.get(self.table)
        rows = np.ones(len(df), bool)
        for column, wanted in self.where.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            rows &= df[column].isin(values).fillna(False).to_numpy(dtype=bool)
        return window.anyone(window.positions(df, self.date_column, rows=rows)), None
