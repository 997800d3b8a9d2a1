"""Features as data: each per-person aggregate described once, and the features derived from them.

An engine (pandas, DuckDB, later Spark) computes only the :data:`AGGREGATES`: for one table, the
rows whose date falls in a window of days before the index date T, optionally filtered, reduced
per person by ``count``, ``sum``, ``min_days`` (days since the latest row), ``max_days`` (days
since the earliest row), ``any`` or ``distinct``. :func:`derive` then turns the aggregates (and the
cohort's age, sex and deprivation) into the model's features in numpy, once for every engine.

Days before T count from 1 (the day before T); an event on T belongs to the future. ``window``
``(1, 91)`` is the last 3 months, ``(1, None)`` everything before T.

A few aggregates sum a value computed per row (:data:`ROW_VALUES`): each engine writes these small
expressions in its own language; their meaning is given here.

>>> [a.name for a in AGGREGATES][:2]
['emergency_admissions_0_3m', 'emergency_admissions_3_12m']
>>> aggregate("days_since_ae").fill
731

What one model computes is a :class:`FeatureSpec`: the clinical aggregates above (:data:`CLINICAL`)
plus, when the training config asks for them, the generic covariates of
:mod:`riskstrat.features.generic` (more aggregates, and :class:`Derived` features computed from them by
a named rule). A model stores its spec as data (:meth:`FeatureSpec.to_dict`) and scoring builds
exactly that spec (:meth:`FeatureSpec.from_dict`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from riskstrat.features.clinical import (
    CARE_HOME_TYPES,
    CONTEXT_COLUMNS,
    FEATURE_NAMES,
    LOOKBACK_DAYS,
    META_COLUMNS,
    NO_EVENT_DAYS,
    RX_CHAPTERS,
    WINDOWS,
    features_for_sources,
)
from riskstrat.errors import RiskstratError
from riskstrat.data.schema import AE_UNPLANNED_DEPARTMENT_TYPES, BNF_UNKNOWN, LONG_TERM_CONDITIONS, VACCINE_CHAPTER

__all__ = ["AGGREGATES", "CLINICAL", "ROW_VALUES", "Aggregate", "Derived", "FeatureSpec", "FeatureSpecError",
           "PersonAggregates", "Where", "aggregate", "aggregates_for", "compact", "derive", "derive_block",
           "feature_frame", "spec_hash",
           "DERIVE_VERSION"]

AggregateKind = Literal["count", "sum", "min_days", "max_days", "any", "distinct"]

# Row values summed by some aggregates: name -> (table, meaning). Engines implement each.
ROW_VALUES = {
    "cost": (None, "the row's cost, 0 when blank"),
    "cost_recorded": (None, "1 when the row's cost is recorded (not blank), else 0: summed, the rows with a cost"),
    "bed_days_before_T": ("inpatient_spells",
                          "days from admission to the discharge or T, whichever is first (a blank discharge is "
                          "T), at least 0: only the part of the stay before T"),
    "weekly_cost": ("social_care", "the weekly cost, 0 when blank"),
    "cost_in_12m": ("social_care",
                    "weekly cost x days of the service inside the 365 days before T / 7: from the later of start "
                    "and T-365 to the earlier of end (blank = T) and T, at least 0 days"),
}


@dataclass(frozen=True)
class Where:
    """A row filter: ``column`` is one of ``values`` (``negate``: is not), or (``prefix_regex``)
    the column's text starts with a match of the regular expression ``values[0]``."""

    column: str
    values: tuple = ()
    negate: bool = False
    prefix_regex: bool = False


@dataclass(frozen=True)
class Aggregate:
    """One per-person aggregate of one table's rows dated in ``window`` (days before T).

    ``ongoing`` keeps only services in place on T (end blank or on/after T). ``fill`` is the value
    for a person with no matching row. ``value`` names the column or row value summed (``sum``)
    or counted distinct (``distinct``).
    """

    name: str
    table: str
    kind: AggregateKind
    window: tuple[int, int | None] = (1, LOOKBACK_DAYS)
    value: str | None = None
    where: tuple[Where, ...] = ()
    ongoing: bool = False
    fill: float = 0.0


DATE_COLUMNS = {"inpatient_spells": "admission_date", "ae_attendances": "arrival_date",
                "outpatient_appointments": "appointment_date", "gp_contacts": "contact_date",
                "ltc_register": "diagnosis_date", "prescriptions": "issue_date", "social_care": "start_date"}

_EMERGENCY = Where("admission_method", ("emergency",))
_12M = WINDOWS["12m"]
_NAN = float("nan")


def _windows(prefix: str, table: str, names=("0_3m", "3_12m", "12_24m"), where=()) -> list[Aggregate]:
    return [Aggregate(f"{prefix}_{w}", table, "count", WINDOWS[w], where=tuple(where)) for w in names]


def _aggregates() -> list[Aggregate]:
    ip, ae, op, gp, rx, sc = ("inpatient_spells", "ae_attendances", "outpatient_appointments", "gp_contacts",
                              "prescriptions", "social_care")
    a = _windows("emergency_admissions", ip, where=[_EMERGENCY])
    a += [
        Aggregate("emergency_bed_days_12m", ip, "sum", _12M, value="bed_days_before_T", where=(_EMERGENCY,)),
        Aggregate("elective_admissions_12m", ip, "count", _12M, where=(Where("admission_method", ("elective",)),)),
        Aggregate("days_since_emergency_admission", ip, "min_days", where=(_EMERGENCY,), fill=NO_EVENT_DAYS),
        Aggregate("_cost_inpatient_12m", ip, "sum", _12M, value="cost"),
        # Falls and fractures (hip fracture S72, falls W00-W19) for the frailty count.
        Aggregate("_falls_12m", ip, "count", _12M, where=(Where("primary_diagnosis", (r"S72|W[01]",),
                                                                 prefix_regex=True),)),
    ]
    # A&E visits count the department types unplanned_hospital_use counts by default (not urgent care or
    # walk-in centres); their cost below is every attendance's.
    ae_unplanned = Where("department_type", AE_UNPLANNED_DEPARTMENT_TYPES)
    a += _windows("ae_attendances", ae, where=[ae_unplanned])
    a += [Aggregate("days_since_ae", ae, "min_days", where=(ae_unplanned,), fill=NO_EVENT_DAYS),
          Aggregate("_cost_ae_12m", ae, "sum", _12M, value="cost")]
    a += [Aggregate("outpatient_attended_12m", op, "count", _12M, where=(Where("attended", (True,)),)),
          Aggregate("outpatient_missed_12m", op, "count", _12M, where=(Where("attended", (True,), negate=True),)),
          Aggregate("_cost_outpatient_12m", op, "sum", _12M, value="cost")]
    a += _windows("gp_contacts", gp, names=("0_3m", "3_12m"))
    a += [Aggregate("_cost_gp_12m", gp, "sum", _12M, value="cost")]
    # Long-term conditions: everything recorded before T counts (no look-back limit).
    a += [Aggregate(f"_ltc_first_days_{code}", "ltc_register", "max_days", (1, None),
                    where=(Where("condition", (code,)),), fill=_NAN) for code in LONG_TERM_CONDITIONS]
    # Vaccines (BNF chapter 14, immunological products: OMOP's vaccines are imported there) are not
    # medicines taken: counted apart (vaccinations_12m), left out of the item and chapter counts.
    not_vaccine = Where("bnf_chapter", (VACCINE_CHAPTER,), negate=True)
    a += [Aggregate("rx_items_3m", rx, "count", WINDOWS["3m"], where=(not_vaccine,)),
          Aggregate("rx_items_12m", rx, "count", _12M, where=(not_vaccine,)),
          # An unknown chapter is not a chapter (its items still count above).
          Aggregate("rx_chapters_12m", rx, "distinct", _12M, value="bnf_chapter",
                    where=(Where("bnf_chapter", (BNF_UNKNOWN, VACCINE_CHAPTER), negate=True),)),
          Aggregate("vaccinations_12m", rx, "count", _12M, where=(Where("bnf_chapter", (VACCINE_CHAPTER,)),))]
    a += [Aggregate(f"rx_bnf{ch}_items_12m", rx, "count", _12M, where=(Where("bnf_chapter", (ch,)),))
          for ch in RX_CHAPTERS]
    a += [Aggregate("_cost_prescriptions_12m", rx, "sum", _12M, value="cost")]
    # Social care: services started before T (no look-back); "at index" ones still in place on T.
    now = (1, None)
    a += [
        Aggregate("home_care_at_index", sc, "any", now, where=(Where("service_type", ("home_care",)),), ongoing=True),
        Aggregate("care_home_at_index", sc, "any", now, where=(Where("service_type", CARE_HOME_TYPES),), ongoing=True),
        Aggregate("reablement_12m", sc, "any", _12M, where=(Where("service_type", ("reablement",)),)),
        Aggregate("social_care_weekly_cost", sc, "sum", now, value="weekly_cost", ongoing=True),
        Aggregate("days_since_social_care_start", sc, "min_days", now, ongoing=True, fill=NO_EVENT_DAYS),
        Aggregate("_cost_social_care_12m", sc, "sum", now, value="cost_in_12m"),
    ]
    return a


AGGREGATES: tuple[Aggregate, ...] = tuple(_aggregates())
_BY_NAME = {a.name: a for a in AGGREGATES}


def count_values(frame: pd.DataFrame, column: str, date_column: str, until=None) -> dict:
    """``{value: (rows, people)}`` of ``column`` in the event rows ``frame`` (``person_id``, ``date_column``)
    dated before ``until`` (all when None), missing values left out: what
    :func:`riskstrat.features.generic.group_values` chooses sub-types from."""
    rows = frame[[column, "person_id", date_column]]
    keep = rows[column].notna()
    if until is not None:
        keep &= rows[date_column] < pd.Timestamp(until)
    rows = rows[keep.to_numpy(dtype=bool)]
    values = rows[column].astype(object)
    people = rows["person_id"].astype(object)
    grouped = pd.DataFrame({"v": values.to_numpy(), "p": people.to_numpy()}).groupby("v", sort=False)["p"]
    n, distinct = grouped.size(), grouped.nunique()
    return {k: (int(n[k]), int(distinct[k])) for k in n.index if n[k]}


def aggregate(name: str) -> Aggregate:
    return _BY_NAME[name]


def aggregates_for(table: str) -> list[Aggregate]:
    """The aggregates computed from ``table``."""
    return [a for a in AGGREGATES if a.table == table]


# The version of :func:`derive`'s arithmetic, part of :func:`spec_hash`. Bump it whenever a derived
# feature's value changes for any input: ``tests/test_engines.py`` holds derive's output on a fixed input
# for each version and fails when the output changes under the same version.
# Version 2: prescription items and chapters leave out BNF chapter 14 (vaccines: vaccinations_12m);
# derive computes the generic Derived rules (trend, cost).
DERIVE_VERSION = 2


class FeatureSpecError(RiskstratError):
    """A stored feature spec this code cannot build, or specs that define one name two ways."""


DerivedRule = Literal["trend", "cost"]


@dataclass(frozen=True)
class Derived:
    """A feature computed by :func:`derive` from aggregates by a named ``rule`` (the generic covariates):

    - ``trend``: ``inputs`` (count in the recent window, count in the whole window), ``params`` (their
      lengths in days, ``a`` < ``b``): recent - earlier x a / (b - a), where earlier = whole - recent.
      The recent count minus what the earlier rate would give in as many days: positive when use rose.
    - ``cost``: ``inputs`` (cost summed with blanks as 0, rows with a recorded cost, rows): the sum; 0 for
      a person without rows; missing (NaN) when the person's rows all lack a cost, and for everyone
      when the table records no cost at all (``costless`` in :func:`derive`).
    """

    name: str
    table: str
    rule: DerivedRule
    inputs: tuple[str, ...]
    params: tuple[float, ...] = ()


def _aggregate_from(d: dict) -> Aggregate:
    lo, hi = d["window"]
    return Aggregate(name=d["name"], table=d["table"], kind=d["kind"], window=(int(lo), None if hi is None else int(hi)),
                     value=d.get("value"), ongoing=bool(d.get("ongoing", False)), fill=float(d.get("fill", 0.0)),
                     where=tuple(Where(w["column"], tuple(w.get("values", ())), bool(w.get("negate", False)),
                                       bool(w.get("prefix_regex", False))) for w in d.get("where", ())))


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _same(a, b) -> bool:
    """Two aggregates or derived features defined alike (a NaN fill equals a NaN fill)."""
    def key(x) -> str:
        d = asdict(x)
        if "fill" in d:
            d["fill"] = float(d["fill"])
        return json.dumps(d, sort_keys=True, default=str)

    return key(a) == key(b)


@dataclass(frozen=True, eq=False)
class FeatureSpec:
    """Everything a model's features are made of, as data: the ``aggregates`` the engines compute, the
    ``derived`` generic features, the model-input ``features`` :func:`derive` returns (in order), and
    ``generic``: the generic config and the group values read from the training data (None: clinical only).

    :data:`CLINICAL` is the clinical spec (every model trained before specs were stored used it).
    """

    aggregates: tuple[Aggregate, ...]
    features: tuple[str, ...]
    derived: tuple[Derived, ...] = ()
    generic: dict | None = field(default=None, compare=False)

    def aggregates_for(self, table: str) -> list[Aggregate]:
        return [a for a in self.aggregates if a.table == table]

    def __eq__(self, other) -> bool:  # the same definition (dataclass equality would find NaN fills unequal)
        return isinstance(other, FeatureSpec) and self.hash() == other.hash()

    def __hash__(self) -> int:
        return hash(self.hash())

    def features_for_sources(self, sources) -> list[str]:
        """The spec's features that ``sources`` (event tables) can give (clinical ones by their source)."""
        have = set(sources)
        clinical = set(features_for_sources(have))
        generic = {d.name for d in self.derived if d.table in have}
        generic |= {a.name for a in self.aggregates if a.table in have and a.name not in _BY_NAME}
        return [f for f in self.features if f in clinical or f in generic]

    def definition(self) -> dict:
        """What the hash covers: the aggregates, row values, features in order, derive's version and
        (generic specs only) the derived rules and the generic config with its group values."""
        # Fills as floats: 731 and 731.0 are one definition (JSON would tell them apart).
        out = {"aggregates": [{**asdict(a), "fill": float(a.fill)} for a in self.aggregates], "row_values": ROW_VALUES,
               "features": list(self.features), "derive_version": DERIVE_VERSION}
        if self.derived or self.generic:
            out["derived"] = [asdict(d) for d in self.derived]
            out["generic"] = self.generic
        return _jsonable(out)

    def hash(self) -> str:
        """A short hash of :meth:`definition` (logged with a model, checked at scoring)."""
        text = json.dumps(self.definition(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        """The spec as JSON-ready data (stored in a model's metadata as ``feature_spec``)."""
        return {**self.definition(), "hash": self.hash()}

    @classmethod
    def from_dict(cls, d: dict, *, what: str = "the stored feature spec") -> "FeatureSpec":
        """The spec stored by :meth:`to_dict`, as stored. Refused (:class:`FeatureSpecError`) when this
        code cannot build it: another version of derive's arithmetic, a row value it does not know, or a
        hash that does not match the content."""
        if d.get("derive_version") != DERIVE_VERSION:
            raise FeatureSpecError(f"{what} was made with derive version {d.get('derive_version')}, this riskstrat "
                                   f"computes version {DERIVE_VERSION}")
        unknown = sorted({a["value"] for a in d["aggregates"] if a.get("value") and a["kind"] == "sum"}
                         - set(ROW_VALUES))
        if unknown:
            raise FeatureSpecError(f"{what} sums row values this riskstrat does not compute: {unknown}")
        spec = cls(aggregates=tuple(_aggregate_from(a) for a in d["aggregates"]), features=tuple(d["features"]),
                   derived=tuple(Derived(x["name"], x["table"], x["rule"], tuple(x["inputs"]),
                                         tuple(float(p) for p in x.get("params", ()))) for x in d.get("derived", ())),
                   generic=d.get("generic"))
        if d.get("hash") and spec.hash() != d["hash"]:
            raise FeatureSpecError(f"{what} does not match its own hash ({d['hash']}, content {spec.hash()}): it was "
                                   f"changed after training")
        return spec

    @classmethod
    def union(cls, specs) -> "FeatureSpec":
        """One spec computing every spec's features (several models scored together). Refused
        (:class:`FeatureSpecError`) when two specs give one name two definitions."""
        specs = list(specs)
        if len(specs) == 1:
            return specs[0]
        aggregates: dict[str, Aggregate] = {}
        derived: dict[str, Derived] = {}
        features: dict[str, None] = {}
        for spec in specs:
            for kind, mine, theirs in (("aggregate", aggregates, spec.aggregates), ("feature", derived, spec.derived)):
                for x in theirs:
                    if x.name in mine and not _same(mine[x.name], x):
                        raise FeatureSpecError(
                            f"the models define the {kind} {x.name} differently (its window, filter or rule): they "
                            f"cannot be scored in one run; retrain them with the same features.generic settings on "
                            f"the same data, or score them in separate runs")
                    mine[x.name] = x
            features.update(dict.fromkeys(spec.features))
        generic = [s.generic for s in specs if s.generic]
        return cls(tuple(aggregates.values()), tuple(features), tuple(derived.values()),
                   {"union_of": generic} if generic else None)


def spec_hash() -> str:
    """A short hash of the clinical feature definitions (:data:`CLINICAL`'s :meth:`FeatureSpec.hash`): the
    aggregates, the row values they sum, the model's feature names in order and :data:`DERIVE_VERSION`.

    Code is not hashed (a comment would change it); derive's behaviour is pinned by its version and the
    reference output the tests keep for each version.
    """
    return clinical_spec().hash()


def clinical_spec() -> FeatureSpec:
    """The clinical spec (read at call time: tests may change the module's names)."""
    return FeatureSpec(aggregates=AGGREGATES, features=tuple(FEATURE_NAMES))


CLINICAL: FeatureSpec = clinical_spec()


# --------------------------------------------------------------------------------------------
# Derived features: computed once, in numpy, from the cohort and the aggregates.


def _sum_present(parts: list[np.ndarray | None]) -> np.ndarray | None:
    present = [p for p in parts if p is not None]
    return sum(present) if present else None


def derive(people: pd.DataFrame, aggregates: dict[str, np.ndarray], sources: set[str], *,
           spec: FeatureSpec | None = None, costless=(), consume: bool = False) -> pd.DataFrame:
    """The feature frame (the spec's features, then CONTEXT_COLUMNS, all float64) for the cohort ``people``.

    :func:`derive_block`'s block handed to pandas without a copy, indexed as ``people``.
    """
    block, columns = derive_block(people, aggregates, sources, spec=spec, costless=costless, consume=consume)
    return pd.DataFrame(block.T, index=people.index, columns=columns, copy=False)


def derive_block(people: pd.DataFrame, aggregates: dict[str, np.ndarray], sources: set[str], *,
                 spec: FeatureSpec | None = None, costless=(), consume: bool = False,
                 into: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """:func:`derive`'s values as one float64 array with a row per column (the spec's features, then
    CONTEXT_COLUMNS: the column names returned beside it), each column contiguous: what scoring reads
    a block of people at a time without a frame around it. ``into``: an array of that shape to fill
    (a block reused: a fresh one of hundreds of megabytes is mapped from the system, page by page,
    each time), else a new one.

    ``people`` is :func:`riskstrat.features.clinical.eligible_persons` indexed by ``person_id``;
    ``aggregates`` maps every aggregate of ``spec`` (default :data:`CLINICAL`) of the tables in
    ``sources`` to one value per person in that order, people without rows already holding the
    aggregate's ``fill``. Features of tables not in ``sources`` are missing (NaN). ``costless``: tables
    whose cost is blank in every row (the engine's ``blank_costs``): their generic costs are missing.
    ``consume``: ``aggregates`` is emptied before the block's last columns are filled (the caller's last
    use of them), so that the aggregates not cast straight into the block are freed then, instead of
    outliving the whole frame.
    """
    spec = spec or CLINICAL
    n = len(people)
    columns = list(spec.features) + list(CONTEXT_COLUMNS)
    if into is None:
        block = np.empty((len(columns), n), dtype="float64")
    elif into.shape != (len(columns), n) or into.dtype != np.float64 or not into.flags["C_CONTIGUOUS"]:
        raise ValueError(f"derive_block fills a C-ordered float64 array of shape {(len(columns), n)}, "
                         f"got {into.dtype} of shape {into.shape}")
    else:
        block = into
    row_of = {name: i for i, name in enumerate(columns)}
    out: dict[str, np.ndarray] = {
        "age": people["age"].round(2).to_numpy(dtype="float64"),
        "sex_female": (people["sex"] == "female").to_numpy(dtype="float64"),
        "deprivation_decile": people["deprivation_decile"].to_numpy(dtype="float64", na_value=np.nan),
    }
    placed: dict[str, np.ndarray] = {}  # columns already in their row of the block (out holds that row)
    for a in spec.aggregates:
        if a.table in sources and not a.name.startswith("_"):
            if a.name in row_of:  # cast straight into its row: no float64 copy on the way
                row = block[row_of[a.name]]
                row[...] = aggregates[a.name]
                out[a.name] = placed[a.name] = row
            else:
                out[a.name] = np.asarray(aggregates[a.name], dtype="float64")
    for d in spec.derived:
        if d.table in sources:
            out[d.name] = _derived(d, aggregates, costless)

    def agg(name: str) -> np.ndarray | None:
        a = aggregate(name)
        return np.asarray(aggregates[name], dtype="float64") if a.table in sources else None

    if "social_care" in sources:
        out["days_since_social_care_start"] = np.minimum(out["days_since_social_care_start"], NO_EVENT_DAYS)
    if "ltc_register" in sources:
        years = {c: agg(f"_ltc_first_days_{c}") / 365.25 for c in LONG_TERM_CONDITIONS}
        for code, y in years.items():
            out[f"ltc_{code}"] = (~np.isnan(y)).astype("float64")
            out[f"ltc_{code}_years"] = pd.Series(y).round(1).to_numpy()
        out["ltc_count"] = sum(out[f"ltc_{c}"] for c in LONG_TERM_CONDITIONS)
        stacked = np.column_stack(list(years.values()))
        first = np.full(n, np.nan)
        has = ~np.isnan(stacked).all(axis=1)
        first[has] = np.nanmax(stacked[has], axis=1)
        out["years_since_first_ltc"] = pd.Series(np.nan_to_num(first, nan=0.0)).round(1).to_numpy()

    costs = {}
    hospital = _sum_present([agg("_cost_inpatient_12m"), agg("_cost_ae_12m"), agg("_cost_outpatient_12m")])
    primary = _sum_present([agg("_cost_gp_12m"), agg("_cost_prescriptions_12m")])
    social = agg("_cost_social_care_12m")
    for name, value in (("cost_hospital_12m", hospital), ("cost_primary_12m", primary),
                        ("cost_social_care_12m", social)):
        if value is not None:
            out[name] = costs[name] = pd.Series(value).round(2).to_numpy()
    out["cost_total_12m"] = sum(costs.values()) if costs else np.full(n, np.nan)

    deficits = np.zeros(n)
    for name in ("ltc_dementia", "ltc_stroke", "ltc_heart_failure", "ltc_ckd", "ltc_copd",
                 "home_care_at_index", "care_home_at_index"):
        if name in out:
            deficits = deficits + out[name]
    falls = agg("_falls_12m")
    if falls is not None:
        deficits = deficits + (falls > 0)
    if "rx_items_3m" in out:
        deficits = deficits + (out["rx_items_3m"] >= 10)
    if "emergency_admissions_0_3m" in out:
        deficits = deficits + ((out["emergency_admissions_0_3m"] + out["emergency_admissions_3_12m"]) > 0)
    out["frailty_deficits"] = deficits + (out["age"] >= 85)

    # Filled column by column: a frame built from the dict and then reordered held about three copies at once.
    if consume:  # from here on only ``out`` and the block hold what the frame needs: each aggregate goes now
        aggregates.clear()
    for i, name in enumerate(columns):
        value = out.pop(name, None)
        if value is None:
            block[i] = np.nan
        elif value is not placed.get(name):
            block[i] = value
    return block, columns


def _derived(d: Derived, aggregates: dict[str, np.ndarray], costless) -> np.ndarray:
    x = [np.asarray(aggregates[name], dtype="float64") for name in d.inputs]
    if d.rule == "trend":
        recent, whole = x
        a, b = d.params
        return np.round(recent - (whole - recent) * a / (b - a), 6)
    total, costed, rows = x  # cost
    if d.table in costless:
        return np.full(len(total), np.nan)
    return np.where((rows > 0) & (costed == 0), np.nan, np.round(total, 2))


def feature_frame(people: pd.DataFrame, aggregates: dict[str, np.ndarray], sources: set[str], *,
                  spec: FeatureSpec | None = None, costless=(), consume: bool = False) -> pd.DataFrame:
    """What every engine's ``features`` returns: :func:`derive`'s frame with the people's practice, sex
    and ethnic group (:data:`~riskstrat.features.clinical.META_COLUMNS`) added, indexed by ``person_id``
    (``consume``: see :func:`derive_block`)."""
    result = derive(people, aggregates, sources, spec=spec, costless=costless, consume=consume)
    result["practice_id"] = people["practice_id"].astype("string")
    for column in META_COLUMNS:
        if column != "practice_id":
            result[column] = people[column]
    result.index.name = "person_id"
    return result


# --------------------------------------------------------------------------------------------
# The month's aggregates kept, its feature frame made a block of people at a time.


def compact(values: np.ndarray) -> np.ndarray:
    """``values`` (float64) in the smallest type that gives every one of them back bit for bit as
    float64 (counts in 1 or 2 bytes, days with a missing fill in float16/float32), else as they are.

    The month's aggregates kept this way take about a third of their float64 size (most are counts)."""
    x = np.asarray(values, dtype="float64")
    if not len(x):
        return x
    missing = np.isnan(x)
    present = x if not missing.any() else x[~missing]
    if not len(present) or not np.isfinite(present).all() or (np.floor(present) != present).any():
        candidates = ["float32"]
    else:
        low, high = float(present.min()), float(present.max())
        if missing.any():
            candidates = ["float16"] if -2048 <= low and high <= 2048 else ["float32"]
        else:
            candidates = [t for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32")
                          if np.iinfo(t).min <= low and high <= np.iinfo(t).max][:1] or ["float32"]
    small = x.astype(candidates[0])
    # Bit for bit (a -0.0 or a cost with cents would not survive the trip): kept only when exact.
    if np.array_equal(small.astype("float64").view("int64"), x.view("int64")):
        return small
    return x


class PersonAggregates:
    """One index date's cohort (``people``, :func:`riskstrat.features.clinical.eligible_persons` indexed by
    ``person_id``) and every aggregate of ``spec`` of the tables in ``sources``, one value a person in the
    people's order (any numeric type: :func:`compact`); :meth:`frame` derives the feature frame of any of
    the people.

    :func:`derive` works person by person, so the frame of some rows equals those rows of the whole
    frame, bit for bit: scoring derives a block of people at a time instead of holding the month's
    frame (at 5M people, 4M eligible × 200 columns, 6.4 GB in float64)."""

    def __init__(self, people: pd.DataFrame, values: dict[str, np.ndarray], sources: set[str], *,
                 spec: FeatureSpec | None = None, costless=()):
        self.people, self.values, self.sources = people, values, set(sources)
        self.spec, self.costless = spec or CLINICAL, set(costless)

    def __len__(self) -> int:
        return len(self.people)

    def frame(self, rows=None) -> pd.DataFrame:
        """:func:`feature_frame` of the people at positions ``rows`` (a slice or an integer array, in that
        order; None: everyone)."""
        people, values = self._at(rows)
        return feature_frame(people, values, self.sources, spec=self.spec, costless=self.costless)

    def block(self, rows=None, *, into: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """:func:`derive_block` of the people at positions ``rows`` (as :meth:`frame`; ``into`` as there):
        the values with a row per column, and the column names (the frame's without the people's
        practice, sex and ethnic group)."""
        people, values = self._at(rows)
        return derive_block(people, values, self.sources, spec=self.spec, costless=self.costless, into=into)

    def _at(self, rows) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """The people at positions ``rows`` and their aggregates (None: everyone)."""
        if rows is None:
            return self.people, self.values
        return self.people.iloc[rows], {name: v[rows] for name, v in self.values.items()}

    @property
    def columns(self) -> list[str]:
        """The feature frame's columns."""
        return list(self.frame(slice(0, 0)).columns)
