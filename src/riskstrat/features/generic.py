"""Generic covariates: the same simple counts for every event table and each of its recorded sub-types.

Beside the clinical features (:data:`riskstrat.features.spec.CLINICAL`), the training config's
``features.generic`` adds, for every event table present (not ``ltc_register``: conditions are
flags, not events) and for each sub-type of it that the training data record (:data:`GROUP_COLUMNS`):

- ``<table>__count_<w>d`` / ``<table>__<group>__count_<w>d``: events in the last ``w`` days, for
  each window ``w`` of ``features.generic.windows`` (default 90, 365, 730);
- ``<table>__days_since`` / ``<table>__<group>__days_since``: days since the last one in the longest
  window; when none, the longest window + 1 but at least 731 (the clinical ``days_since_*``' "none"), so
  that "none" is never said as a reason ("last GP contact 1 year ago" for nobody seen in 365 days);
- ``<table>__trend_<a>d_<b>d`` / ``<table>__<group>__trend_<a>d_<b>d`` (shortest window ``a``,
  longest ``b``): the events of the last ``a`` days minus the earlier ones (days ``a+1`` to ``b``)
  scaled to ``a`` days: positive when use rose lately;
- ``<table>__cost_<w>d``: the cost of the table's events in each window, for tables with a ``cost``
  column: missing (NaN), not 0, for a person whose events in the window all lack a cost, and for
  everyone when the table records no cost at all (a person with no events costs 0).

A group's name is its value in lower case with anything but letters and digits as ``_``
(``gp_contacts__face_to_face__count_90d``); BNF chapters are ``bnf02``; outpatient appointments are
``attended`` and ``missed``. Names use letters, digits and ``_`` only (MLflow-safe), ``__`` between
table, group and measure. Which groups exist is read from the training data: the most frequent values
of the group's column in the rows dated before the test date (at most ``max_values``, each on at
least ``min_share`` of the table's rows with a value and recorded for at least ``min_people``
distinct people, 10 by default: the values are stored with the model and in MLflow, so one person's
free text never becomes a feature name; ``unknown`` is not a group), stored in the model's spec, so
scoring builds the same features whatever the month's data hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from riskstrat.features.spec import CLINICAL, Aggregate, Derived, FeatureSpec, Where
from riskstrat.features.clinical import NO_EVENT_DAYS
from riskstrat.data.schema import TABLES

__all__ = ["GENERIC_TABLES", "GROUP_COLUMNS", "GenericFeaturesConfig", "GroupColumn", "build_spec", "generic_spec", "group_values",
           "parse_name", "slug"]


@dataclass(frozen=True)
class GroupColumn:
    """The column whose values make a table's sub-types; ``prefix`` goes before a value's slug."""

    column: str
    prefix: str = ""


# The event tables with generic covariates, and the column of each table's sub-types. One line a
# table: a column the schema does not have (yet) is left out (A&E department type arrives with its schema).
GENERIC_TABLES = ("inpatient_spells", "ae_attendances", "outpatient_appointments", "gp_contacts", "prescriptions",
                  "social_care")
GROUP_COLUMNS: dict[str, GroupColumn] = {
    "inpatient_spells": GroupColumn("admission_method"),
    "ae_attendances": GroupColumn("department_type"),
    "outpatient_appointments": GroupColumn("attended"),
    "gp_contacts": GroupColumn("contact_type"),
    "prescriptions": GroupColumn("bnf_chapter", prefix="bnf"),
    "social_care": GroupColumn("service_type"),
}
DEFAULT_WINDOWS = (90, 365, 730)
_NOT_A_GROUP = {"", "unknown"}


class GenericFeaturesConfig(BaseModel):
    """The training config's ``features.generic``: which generic covariates beside the clinical features."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Add the generic covariates: counts, days since, trend and cost per "
                                            "event table and sub-type.")
    windows: list[int] = Field(default_factory=lambda: [90, 365, 730],
                               description="Windows in days before the index date for the counts and costs; the "
                                           "trend compares the shortest with the longest.")
    tables: list[str] | Literal["all"] = Field("all", description="Event tables with generic covariates.")
    groups: bool = Field(True, description="Also per sub-type (admission method, A&E department type, attended or "
                                           "missed, GP contact type, BNF chapter, social care service).")
    costs: bool = Field(True, description="Cost sums per table and window (missing where the data record no cost).")
    max_values: int = Field(8, ge=1, le=50, description="At most this many sub-types per table (the most frequent).")
    min_share: float = Field(0.01, ge=0, lt=1, description="A sub-type needs at least this share of the table's rows.")
    min_people: int = Field(10, ge=1, description="A sub-type needs at least this many distinct people: its value "
                                                  "is stored with the model and in MLflow, so a free-text value one "
                                                  "person's records carry (a name, say) never becomes a feature.")

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[int]) -> list[int]:
        if not v or any(w < 1 or w > 3650 for w in v) or len(set(v)) != len(v):
            raise ValueError(f"windows must be distinct whole days from 1 to 3650, got {v}")
        return sorted(v)

    @field_validator("tables")
    @classmethod
    def _tables(cls, v):
        bad = [] if v == "all" else [t for t in v if t not in GENERIC_TABLES]
        if bad:
            raise ValueError(f"unknown tables {bad}; choose from {', '.join(GENERIC_TABLES)}")
        return v


def group_column(table: str) -> GroupColumn | None:
    """The table's sub-type column, when the schema has it."""
    g = GROUP_COLUMNS.get(table)
    return g if g is not None and g.column in TABLES[table].column_names else None


def slug(value, prefix: str = "") -> str:
    """A value as a name part: lower case, letters and digits, ``_`` between (``True`` is ``attended``).

    >>> slug("Face-to-face  visit"), slug("02", "bnf"), slug(False)
    ('face_to_face_visit', 'bnf02', 'missed')
    """
    if isinstance(value, bool):
        return "attended" if value else "missed"
    text = re.sub(r"[^a-z0-9]+", "_", str(value).strip().lower()).strip("_")
    return f"{prefix}{text}" if text else ""


def group_values(counts: dict, *, prefix: str = "", max_values: int, min_share: float,
                 min_people: int = 1) -> dict[str, list]:
    """The groups of one column from its rows and people per value (``counts``: ``{value: (rows, people)}``,
    or ``{value: rows}``): ``{slug: [values]}``, the most frequent first, at most ``max_values``, each on at
    least ``min_share`` of the rows with a value and recorded for at least ``min_people`` distinct people
    (a value is stored with the model: one person's free text must never become a feature). Values written
    alike (same slug) are one group; their people are counted per value, so the group's count is at least
    its largest value's."""
    by_slug: dict[str, list] = {}
    rows: dict[str, int] = {}
    people: dict[str, int] = {}
    total = 0
    for value, n in counts.items():
        if value is None or (isinstance(value, float) and value != value):
            continue
        n_rows, n_people = (n if isinstance(n, tuple) else (n, n))
        total += int(n_rows)
        s = slug(value, prefix)
        if s in _NOT_A_GROUP or s == prefix:
            continue
        by_slug.setdefault(s, []).append(value)
        rows[s] = rows.get(s, 0) + int(n_rows)
        people[s] = max(people.get(s, 0), int(n_people))
    kept = [s for s in rows if people[s] >= min_people and total and rows[s] / total >= min_share]
    chosen = sorted(kept, key=lambda s: (-rows[s], s))[:max_values]
    return {s: sorted(by_slug[s], key=str) for s in chosen}


def generic_spec(config: dict, groups: dict[str, dict], *, tables) -> FeatureSpec:
    """The clinical spec plus the generic covariates of ``tables`` (present in the data) for ``config``
    (``windows``, ``groups``...: :class:`GenericFeaturesConfig` as a dict) and the
    group values ``groups`` (``{table: {"column": name, "values": {slug: [values]}}}``)."""
    windows = sorted(int(w) for w in config["windows"])
    longest = windows[-1]
    aggregates: list[Aggregate] = []
    derived: list[Derived] = []
    names: list[str] = []
    for table in (t for t in GENERIC_TABLES if t in set(tables)):
        parts: list[tuple[str, tuple[Where, ...]]] = [(table, ())]
        g = groups.get(table)
        if g:
            parts += [(f"{table}__{s}", (Where(g["column"], tuple(values)),)) for s, values in g["values"].items()]
        for stem, where in parts:
            for w in windows:
                aggregates.append(Aggregate(f"{stem}__count_{w}d", table, "count", (1, w), where=where))
                names.append(f"{stem}__count_{w}d")
            # "None" at least NO_EVENT_DAYS: the reasons read a value from it on as no event.
            aggregates.append(Aggregate(f"{stem}__days_since", table, "min_days", (1, longest), where=where,
                                        fill=float(max(longest + 1, NO_EVENT_DAYS))))
            names.append(f"{stem}__days_since")
            if len(windows) > 1:
                d = Derived(f"{stem}__trend_{windows[0]}d_{longest}d", table, "trend",
                            (f"{stem}__count_{windows[0]}d", f"{stem}__count_{longest}d"),
                            (float(windows[0]), float(longest)))
                derived.append(d)
                names.append(d.name)
            if stem == table and "cost" in TABLES[table].column_names and config.get("costs", True):
                for w in windows:
                    total, costed = f"_{table}__cost_sum_{w}d", f"_{table}__costed_{w}d"
                    aggregates += [Aggregate(total, table, "sum", (1, w), value="cost"),
                                   Aggregate(costed, table, "sum", (1, w), value="cost_recorded")]
                    d = Derived(f"{table}__cost_{w}d", table, "cost", (total, costed, f"{table}__count_{w}d"))
                    derived.append(d)
                    names.append(d.name)
    generic = {"config": {**config, "windows": windows}, "groups": groups}
    return FeatureSpec(aggregates=CLINICAL.aggregates + tuple(aggregates), features=CLINICAL.features + tuple(names),
                       derived=tuple(derived), generic=generic)


def build_spec(config, engine, *, until=None, stage: Callable[[str], None] = lambda m: None) -> FeatureSpec:
    """The spec a training run computes: :data:`CLINICAL` when ``config`` (``features.generic``) is off,
    else the generic covariates of the engine's tables, with groups read from its data
    (``engine.value_counts(table, column, until=until)``: rows and people per value, rows dated before
    ``until``, the test date, so that which sub-types exist is not learnt from the future)."""
    if config is None or not config.enabled:
        return CLINICAL
    wanted = GENERIC_TABLES if config.tables == "all" else tuple(config.tables)
    tables = [t for t in GENERIC_TABLES if t in wanted and engine.has(t)]
    groups: dict[str, dict] = {}
    if config.groups:
        for table in tables:
            g = group_column(table)
            if g is None:
                continue
            values = group_values(engine.value_counts(table, g.column, until=until), prefix=g.prefix,
                                  max_values=config.max_values, min_share=config.min_share,
                                  min_people=config.min_people)
            if values:
                groups[table] = {"column": g.column, "values": values}
    spec = generic_spec(config.model_dump(), groups, tables=tables)
    n = len(spec.features) - len(CLINICAL.features)
    stage(f"generic covariates: {n} features from {', '.join(tables) or 'no event table'}"
          + (" (groups: " + "; ".join(f"{t} {len(g['values'])}" for t, g in groups.items()) + ")" if groups else ""))
    return spec


_MEASURE = re.compile(r"^(?:count_(\d+)d|days_since|cost_(\d+)d|trend_(\d+)d_(\d+)d)$")


@dataclass(frozen=True)
class GenericName:
    """A generic feature's name read back: table, group slug (None: the whole table), measure
    (``count``, ``days_since``, ``cost``, ``trend``) and its window(s) in days."""

    table: str
    group: str | None
    measure: str
    days: tuple[int, ...] = ()


def parse_name(name: str) -> GenericName | None:
    """What a generic feature name says, or None if ``name`` is not one.

    >>> parse_name("ae_attendances__urgent_care__count_90d")
    GenericName(table='ae_attendances', group='urgent_care', measure='count', days=(90,))
    """
    parts = name.split("__")
    if len(parts) not in (2, 3) or parts[0] not in GENERIC_TABLES:
        return None
    group = parts[1] if len(parts) == 3 else None
    if group is not None and not re.fullmatch(r"[a-z0-9]+(?:_[a-z0-9]+)*", group):
        return None
    m = _MEASURE.match(parts[-1])
    if not m:
        return None
    if m.group(1):
        measure, days = "count", (int(m.group(1)),)
    elif m.group(2):
        if group is not None or "cost" not in TABLES[parts[0]].column_names:
            return None
        measure, days = "cost", (int(m.group(2)),)
    elif m.group(3):
        measure, days = "trend", (int(m.group(3)), int(m.group(4)))
    else:
        measure, days = "days_since", ()
    return GenericName(parts[0], group, measure, days)
