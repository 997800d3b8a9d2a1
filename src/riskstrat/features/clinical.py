"""Features as of an index date: the one place that defines them, with plain-English descriptions.

Every feature uses only events strictly before the index date T (``date < T``). Windows are in
days before T: ``0-3m`` = 1..91 days, ``3-12m`` = 92..365, ``12-24m`` = 366..730.

The scorer turns a feature and a person's value into a reason with :func:`describe_value`
("3 emergency admissions in the last 3 months").

>>> [f.name for f in FEATURES][:3]
['age', 'sex_female', 'deprivation_decile']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Literal, NamedTuple

import numpy as np
import pandas as pd

from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import BNF_CHAPTERS, LONG_TERM_CONDITIONS

FeatureKind = Literal["count", "days", "flag", "years", "money", "number", "decile", "trend"]
WINDOWS = {"0_3m": (1, 91), "3_12m": (92, 365), "12_24m": (366, 730), "12m": (1, 365), "3m": (1, 91)}
_WINDOW_WORDS = {"0_3m": "in the last 3 months", "3_12m": "3 to 12 months ago", "12_24m": "1 to 2 years ago",
                 "12m": "in the last 12 months", "3m": "in the last 3 months"}
LOOKBACK_DAYS = 730
NO_EVENT_DAYS = LOOKBACK_DAYS + 1  # value of days_since_* when nothing happened within the look-back
RX_CHAPTERS = ("02", "03", "04", "06", "08", "09")
CARE_HOME_TYPES = ("residential", "nursing")


@dataclass(frozen=True)
class Feature:
    """A model input: its name, source table, kind, and what it means in words.

    ``reason`` is a template for the scorer, filled with the person's ``value`` (and ``years`` for
    condition flags); ``None`` means the feature is never shown as a reason (e.g. sex).
    """

    name: str
    source: str
    kind: FeatureKind
    description: str
    reason: str | None = None


def _window_features() -> list[Feature]:
    f: list[Feature] = []
    for w in ("0_3m", "3_12m", "12_24m"):
        words = _WINDOW_WORDS[w]
        f.append(Feature(f"emergency_admissions_{w}", "inpatient_spells", "count",
                         f"Emergency hospital admissions {words}.", f"{{value:g}} emergency admission{{s}} {words}"))
    f += [
        Feature("emergency_bed_days_12m", "inpatient_spells", "count",
                "Bed days in emergency admissions in the last 12 months.", "{value:g} day{s} in hospital after emergency admissions in the last 12 months"),
        Feature("elective_admissions_12m", "inpatient_spells", "count",
                "Planned (elective) admissions in the last 12 months.", "{value:g} planned hospital admission{s} in the last 12 months"),
        Feature("days_since_emergency_admission", "inpatient_spells", "days",
                f"Days since the last emergency admission ({NO_EVENT_DAYS} if none in 2 years).",
                "emergency admission {ago}"),
    ]
    for w in ("0_3m", "3_12m", "12_24m"):
        words = _WINDOW_WORDS[w]
        f.append(Feature(f"ae_attendances_{w}", "ae_attendances", "count",
                         f"A&E attendances {words} (emergency or single-specialty department, or type unknown; "
                         f"not urgent care or walk-in centres).",
                         f"{{value:g}} A&E visit{{s}} {words}"))
    f += [
        Feature("days_since_ae", "ae_attendances", "days",
                f"Days since the last A&E attendance, of the types counted above ({NO_EVENT_DAYS} if none in 2 "
                f"years).", "A&E visit {ago}"),
        Feature("outpatient_attended_12m", "outpatient_appointments", "count",
                "Outpatient appointments attended in the last 12 months.", "{value:g} outpatient appointment{s} in the last 12 months"),
        Feature("outpatient_missed_12m", "outpatient_appointments", "count",
                "Outpatient appointments missed (did not attend) in the last 12 months.",
                "{value:g} missed outpatient appointment{s} in the last 12 months"),
        Feature("gp_contacts_0_3m", "gp_contacts", "count", "GP practice contacts in the last 3 months.",
                "{value:g} GP contact{s} in the last 3 months"),
        Feature("gp_contacts_3_12m", "gp_contacts", "count", "GP practice contacts 3 to 12 months ago.",
                "{value:g} GP contact{s} 3 to 12 months ago"),
    ]
    return f


def _ltc_features() -> list[Feature]:
    f = [Feature(f"ltc_{code}", "ltc_register", "flag", f"Has {name} on the long-term-condition register.",
                 f"{name}{{since}}") for code, name in LONG_TERM_CONDITIONS.items()]
    f += [
        Feature("ltc_count", "ltc_register", "count", "Number of long-term conditions.",
                "{value:g} long-term condition{s}"),
        Feature("years_since_first_ltc", "ltc_register", "years",
                "Years since the first long-term condition was recorded (0 if none).", None),
    ]
    return f


def _rx_features() -> list[Feature]:
    f = [
        Feature("rx_items_3m", "prescriptions", "count",
                "Prescription items issued in the last 3 months (vaccines, BNF chapter 14, not counted).",
                "{value:g} prescription item{s} in the last 3 months"),
        Feature("rx_items_12m", "prescriptions", "count",
                "Prescription items issued in the last 12 months (vaccines, BNF chapter 14, not counted).",
                "{value:g} prescription item{s} in the last 12 months"),
        Feature("rx_chapters_12m", "prescriptions", "count",
                "Distinct BNF chapters prescribed in the last 12 months (polypharmacy; items of an unknown "
                "chapter and vaccines are not counted here).",
                "medicines from {value:g} different BNF chapter{s} in the last 12 months"),
        Feature("vaccinations_12m", "prescriptions", "count",
                "Vaccines and other immunological products (BNF chapter 14) issued in the last 12 months.",
                "{value:g} vaccination{s} in the last 12 months"),
    ]
    f += [Feature(f"rx_bnf{ch}_items_12m", "prescriptions", "count",
                  f"Prescription items for {BNF_CHAPTERS[ch]} (BNF chapter {int(ch)}) in the last 12 months.",
                  f"{{value:g}} {BNF_CHAPTERS[ch]} prescription{{s}} in the last 12 months") for ch in RX_CHAPTERS]
    return f


def _social_care_features() -> list[Feature]:
    return [
        Feature("home_care_at_index", "social_care", "flag", "Receiving home care on the index date.",
                "receives home care{started}"),
        Feature("care_home_at_index", "social_care", "flag",
                "Living in a residential or nursing care home on the index date.", "lives in a care home{started}"),
        Feature("reablement_12m", "social_care", "flag", "Had reablement in the last 12 months.",
                "had reablement in the last 12 months"),
        Feature("social_care_weekly_cost", "social_care", "money",
                "Weekly cost of social care in place on the index date (in the data set's currency).", None),
        Feature("days_since_social_care_start", "social_care", "days",
                f"Days since the current social care service started ({NO_EVENT_DAYS} if none).", None),
    ]


def _cost_features() -> list[Feature]:
    return [
        Feature("cost_hospital_12m", "inpatient_spells", "money",
                "Hospital cost (inpatient, A&E, outpatient) in the last 12 months (in the data set's currency).",
                "hospital care costing {money} in the last 12 months"),
        Feature("cost_primary_12m", "gp_contacts", "money",
                "Primary care and prescribing cost in the last 12 months (in the data set's currency).", None),
        Feature("cost_social_care_12m", "social_care", "money", "Social care cost in the last 12 months (in the data set's currency).",
                "social care costing {money} in the last 12 months"),
        Feature("cost_total_12m", "persons", "money", "Total health and social care cost in the last 12 months (in the data set's currency).",
                None),
    ]


FEATURES: tuple[Feature, ...] = tuple(
    [
        Feature("age", "persons", "years", "Age in years on the index date.", "aged {value:.0f}"),
        Feature("sex_female", "persons", "flag", "Female (1) or not (0).", None),
        Feature("deprivation_decile", "persons", "decile",
                "Index of multiple deprivation decile (1 = most deprived).", "lives in a deprived area (decile {value:.0f})"),
    ]
    + _window_features() + _ltc_features() + _rx_features() + _social_care_features() + _cost_features()
    + [Feature("frailty_deficits", "persons", "count",
               "Frailty deficits counted: dementia, stroke, heart failure, CKD, COPD, falls/fracture admission, "
               "home care or care home, 10+ items in 3 months, emergency admission in 12 months, age 85+.",
               "{value:g} frailty deficit{s}")]
)
FEATURE_NAMES = tuple(f.name for f in FEATURES)
_BY_NAME = {f.name: f for f in FEATURES}
# Context columns carried next to the features for explanations, never model inputs.
CONTEXT_COLUMNS = tuple(f"ltc_{code}_years" for code in LONG_TERM_CONDITIONS)


def feature(name: str) -> Feature:
    """The feature ``name``: a clinical one, or a generic covariate (its words made from its name)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        found = generic_feature(name)
        if found is None:
            raise KeyError(f"unknown feature {name!r}; see riskstrat.features.clinical.FEATURE_NAMES") from None
        return found


# Generic covariates (riskstrat.features.generic): each table's events in words, "{s}" the plural.
_GENERIC_NOUNS = {"inpatient_spells": "hospital admission{s}", "ae_attendances": "A&E visit{s}",
                  "outpatient_appointments": "outpatient appointment{s}", "gp_contacts": "GP contact{s}",
                  "prescriptions": "prescription item{s}", "social_care": "social care service{s} started"}
# Groups said otherwise than their name (A&E department types as the HES AEDEPTTYPE).
_GROUP_WORDS = {("ae_attendances", "emergency_department"): "emergency department visit{s}",
                ("ae_attendances", "urgent_care"): "urgent-care visit{s}",
                ("ae_attendances", "walk_in"): "walk-in centre visit{s}",
                ("ae_attendances", "single_specialty"): "single-specialty A&E visit{s}",
                ("outpatient_appointments", "attended"): "attended outpatient appointment{s}",
                ("outpatient_appointments", "missed"): "missed outpatient appointment{s}"}


def _days_words(days: int) -> str:
    if days % 365 == 0:
        years = days // 365
        return "12 months" if years == 1 else f"{years} years"
    return f"{days} days"


def _generic_noun(table: str, group: str | None) -> str:
    if group is None:
        return _GENERIC_NOUNS[table]
    if (table, group) in _GROUP_WORDS:
        return _GROUP_WORDS[(table, group)]
    if table == "prescriptions" and group.startswith("bnf") and group[3:] in BNF_CHAPTERS:
        return f"{BNF_CHAPTERS[group[3:]]} prescription item{{s}}"
    return f"{group.replace('_', ' ')} {_GENERIC_NOUNS[table]}"


def generic_feature(name: str) -> Feature | None:
    """A generic covariate's :class:`Feature` (description and reason from its name), or None.

    >>> generic_feature("ae_attendances__urgent_care__count_90d").reason.format(value=4, s="s")
    '4 urgent-care visits in the last 90 days'
    """
    from riskstrat.features.generic import parse_name

    g = parse_name(name)
    if g is None:
        return None
    noun = _generic_noun(g.table, g.group)
    plural, one = noun.format(s="s"), noun.format(s="")
    if g.measure == "count":
        words = f"in the last {_days_words(g.days[0])}"
        return Feature(name, g.table, "count", f"Generic: {plural} {words}.", f"{{value:g}} {noun} {words}")
    if g.measure == "days_since":
        return Feature(name, g.table, "days", f"Generic: days since the last {one} in the longest window ({NO_EVENT_DAYS} "
                       f"if none, or the longest window + 1 when that is more).", f"last {one} {{ago}}")
    if g.measure == "cost":
        words = f"in the last {_days_words(g.days[0])}"
        return Feature(name, g.table, "money", f"Generic: cost of {plural} {words} (in the data set's currency; "
                       f"missing where the events carry no cost).", f"{plural} costing {{money}} {words}")
    a, b = g.days
    return Feature(name, g.table, "trend",
                   f"Generic trend: {plural} in the last {a} days minus those of days {a + 1}-{b} scaled to {a} days "
                   f"(positive: more lately than before).",
                   f"{plural} rising: {{value:.1f}} more in the last {_days_words(a)} than the earlier rate")


def features_for_sources(sources: Iterable[str]) -> list[str]:
    """Feature names available when only ``sources`` (event tables) are present."""
    have = set(sources) | {"persons"}
    return [f.name for f in FEATURES if f.source in have]


def feature_table(names: Iterable[str] | None = None, *, generic: bool = False) -> pd.DataFrame:
    """The documented feature list (name, source, kind, description): the clinical features, or the features
    ``names`` (clinical or generic); with ``generic``, also the generic covariates of the default
    ``features.generic`` config, a sub-type's features shown once with its column as ``<column>``."""
    if names is not None:
        chosen = [feature(n) for n in names]
    else:
        chosen = list(FEATURES) + (_generic_examples() if generic else [])
    return pd.DataFrame([{"name": f.name, "source": f.source, "kind": f.kind, "description": f.description}
                         for f in chosen])


def _generic_examples() -> list[Feature]:
    """The generic covariates of the default config: per table, then per sub-type as a pattern."""
    from riskstrat.modeling.config import GenericFeaturesConfig
    from riskstrat.features.generic import GENERIC_TABLES, generic_spec, group_column

    config = GenericFeaturesConfig().model_dump()
    spec = generic_spec(config, {}, tables=GENERIC_TABLES)
    out = [feature(n) for n in spec.features if n not in _BY_NAME]
    for table in GENERIC_TABLES:
        g = group_column(table)
        if g is None:
            continue
        example = {"outpatient_appointments": "attended", "prescriptions": "bnf02"}.get(table, "x")
        sample = generic_spec(config, {table: {"column": g.column, "values": {example: ["x"]}}}, tables=[table])
        for name in sample.features:
            if f"__{example}__" in name:
                whole = feature(name.replace(f"__{example}__", "__"))  # the table's own, said per sub-type
                words = whole.description.replace("Generic", f"Generic, per {g.column} (each value the training "
                                                  f"data record)", 1)
                out.append(Feature(name.replace(f"__{example}__", f"__<{g.column}>__"), table, whole.kind, words, None))
    return out


# --------------------------------------------------------------------------------------------
# Building


# Age bands, defined once (training's subgroup table, the evaluation report, the priority groups):
# completed years, inclusive; 40-55 and 85+ are the commissioners' priority groups.
AGE_BANDS: tuple[tuple[int, int | None, str], ...] = (
    (0, 17, "under 18"), (18, 39, "18-39"), (40, 55, "40-55"), (56, 64, "56-64"), (65, 74, "65-74"),
    (75, 84, "75-84"), (85, None, "85+"))

def age_band(age) -> pd.Series:
    """The band of each age in completed years (:data:`AGE_BANDS`).

    >>> age_band([39.9, 40.0, 55.99, 56.0, 85.0]).tolist()
    ['18-39', '40-55', '40-55', '56-64', '85+']
    """
    years = np.floor(pd.Series(age, dtype="float64").to_numpy())
    out = np.full(len(years), "unknown", dtype=object)
    for low, high, label in AGE_BANDS:
        out[(years >= low) & ((years <= high) if high is not None else True)] = label
    return pd.Series(out, name="age band")


def age_on(birth_date: pd.Series, when) -> pd.Series:
    """Age in years on ``when``: completed years (so a birthday counts on the day) plus the
    fraction of the current year of life.

    >>> age_on(pd.Series(pd.to_datetime(["2006-01-01"])), "2024-01-01").tolist()
    [18.0]
    """
    t = pd.Timestamp(when)
    b = birth_date
    before_birthday = (b.dt.month > t.month) | ((b.dt.month == t.month) & (b.dt.day > t.day))
    years = t.year - b.dt.year - before_birthday.astype("int64")
    # 29 February birthdays fall on 28 February in common years.
    last = pd.to_datetime({"year": b.dt.year + years, "month": b.dt.month,
                           "day": b.dt.day.where(~((b.dt.month == 2) & (b.dt.day == 29)), 28)}, errors="coerce")
    fraction = ((t - last).dt.days / 365.25).clip(0, 0.9999)
    return (years + fraction).astype("float64")


def eligible_persons(records: LinkedRecords, index_date, *, min_age: float = 18, max_age: float = 120) -> pd.DataFrame:
    """Persons alive and registered on ``index_date`` within the age range, with their age
    (the rules of :func:`cohort_rules`: no rule excludes them)."""
    p = records.persons
    rules, age = cohort_rules(p, index_date, min_age=min_age, max_age=max_age)
    keep = ~np.logical_or.reduce(list(rules.values()))
    out = p.loc[keep, ["person_id", "practice_id", "sex", "deprivation_decile", "ethnicity_group", "birth_date"]].copy()
    out["age"] = age[keep].to_numpy()
    return out


def cohort_rules(persons: pd.DataFrame, index_date, *, min_age: float,
                 max_age: float) -> tuple[dict[str, np.ndarray], pd.Series]:
    """The cohort's rules on ``index_date``, each as the rows of ``persons`` it excludes, and everyone's age.

    In the order :func:`riskstrat.pipelines.cohort_exclusions` counts them (by the first that applies):
    died before the date (dying on it still counts as alive), not registered on it (a registration
    ending on the date still counts), born on or after it, younger than ``min_age``, older than
    ``max_age`` (age in years, :func:`age_on`). A missing birth date fails the birth and age rules.
    """
    t = pd.Timestamp(index_date)
    p = persons
    age = age_on(p["birth_date"], t)
    registered = ((p["registration_start"].isna() | (p["registration_start"] <= t))
                  & (p["registration_end"].isna() | (p["registration_end"] >= t)))
    rules = {
        "died": (p["death_date"].notna() & (p["death_date"] < t)).to_numpy(),
        "not_registered": ~registered.to_numpy(),
        "born_after_date": ~(p["birth_date"] < t).to_numpy(),
        "younger_than_min_age": ~(age >= min_age).to_numpy(),
        "older_than_max_age": ~(age <= max_age).to_numpy(),
    }
    return {name: np.asarray(hit, bool) for name, hit in rules.items()}, age


def person_positions(person_id: pd.Series, ids: pd.Index) -> np.ndarray:
    """Position of each row's person in ``ids`` (unique), or -1 for rows of other people.

    Event tables of :class:`LinkedRecords` hold ``person_id`` as a categorical over the persons
    table, so this is one lookup per person and an integer take per row; every aggregation
    then works on integer positions (``np.bincount``) instead of hashing id strings again.
    """
    if isinstance(person_id.dtype, pd.CategoricalDtype):
        per_code = _positions_of_categories(person_id.cat.categories, ids)
        codes = person_id.cat.codes.to_numpy()
    else:
        codes, uniques = pd.factorize(person_id)
        per_code = ids.get_indexer(uniques)
    if not len(per_code):
        return np.full(len(codes), -1, dtype=np.int64)
    return np.where(codes >= 0, per_code[codes], -1).astype(np.int64)


def _positions_of_categories(categories: pd.Index, ids: pd.Index) -> np.ndarray:
    """``ids.get_indexer(categories)`` (each category's position in ``ids``, -1 if absent), found the
    other way round: the ids are looked up in the categories, whose hash table pandas keeps on the
    Index that every event table of :class:`LinkedRecords` shares, instead of one built over ``ids``
    at every call (a million ids a date and a table in training)."""
    if not ids.is_unique:
        raise ValueError("the ids to find have duplicates; each row must map to one person")
    at = categories.get_indexer(ids)
    found = at >= 0
    per_code = np.full(len(categories), -1, dtype=np.intp)
    per_code[at[found]] = np.flatnonzero(found)
    return per_code


def person_in(person_id: pd.Series, ids: pd.Index) -> np.ndarray:
    """Which rows belong to the people ``ids``."""
    return person_positions(person_id, ids) >= 0


def sum_by_position(values, pos: np.ndarray, n: int) -> np.ndarray:
    """Per-person sums of ``values`` (booleans count) over rows at positions ``pos`` (0..n-1)."""
    return np.bincount(pos, weights=np.asarray(values, dtype="float64"), minlength=n)


def build_features(records: LinkedRecords, index_date, *, min_age: float = 18, max_age: float = 120,
                   spec=None) -> pd.DataFrame:
    """One row per eligible person on ``index_date``: the features (FEATURE_NAMES order) plus context.

    The index is ``person_id``; columns ``practice_id``, ``ethnicity_group`` and ``sex`` ride along
    as metadata (``META_COLUMNS``) for lists and subgroup metrics; they are not model inputs.
    Features of sources absent from ``records`` are all-missing (NaN).

    This is the reference engine: it computes the aggregates of :mod:`riskstrat.features.spec` in
    numpy (:func:`table_aggregates`) and derives the features from them with the spec's ``derive``,
    as every engine does. ``spec`` (:class:`riskstrat.features.spec.FeatureSpec`, default the clinical
    one) says which aggregates and features.
    """
    from riskstrat.features.spec import CLINICAL, feature_frame
    from riskstrat.data.validate import blank_costs

    spec = spec or CLINICAL

    t = pd.Timestamp(index_date).normalize()
    people = eligible_persons(records, t, min_age=min_age, max_age=max_age).set_index("person_id")
    ids = people.index
    values: dict[str, np.ndarray] = {}
    positions = _PersonPositions(ids)
    for name in records.sources:
        values.update(table_aggregates(records.get(name), name, t, ids, positions=positions,
                                       aggregates=spec.aggregates_for(name)))
    costless = {table for table, column in blank_costs(records) if column == "cost"}
    return feature_frame(people, values, set(records.sources), spec=spec, costless=costless)


class _PersonPositions:
    """:func:`person_positions` for several tables keyed by the same categories (LinkedRecords'
    event tables share the persons' ids): the ids are looked up once, not once a table."""

    def __init__(self, ids: pd.Index):
        self.ids = ids
        self._categories: pd.Index | None = None
        self._per_code: np.ndarray | None = None

    def __call__(self, person_id: pd.Series) -> np.ndarray:
        if not isinstance(person_id.dtype, pd.CategoricalDtype):
            return person_positions(person_id, self.ids)
        categories = person_id.cat.categories
        if self._categories is not categories:
            self._categories, self._per_code = categories, _positions_of_categories(categories, self.ids)
        codes = person_id.cat.codes.to_numpy()
        if not len(self._per_code):
            return np.full(len(codes), -1, dtype=np.int64)
        return np.where(codes >= 0, self._per_code[codes], -1).astype(np.int64)


def _days_before(dates: pd.Series | np.ndarray, t: pd.Timestamp) -> np.ndarray:
    """Whole days from each date to ``t`` (1 = the day before T), float64 with NaN where missing."""
    days = np.datetime64(t.date(), "D") - np.asarray(dates).astype("datetime64[D]")
    out = days.astype("int64").astype("float64")
    out[np.isnat(days)] = np.nan
    return out


def _matches(values: pd.Series, where) -> np.ndarray:
    """A spec ``Where`` over one column: True where it holds; a missing value never matches (also
    when negated), as SQL's ``IN`` and ``NOT IN`` treat NULL."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, distinct = values.cat.codes.to_numpy(), pd.Series(values.cat.categories)
    elif pd.api.types.is_bool_dtype(values.dtype):
        codes, distinct = values.to_numpy(dtype="int8", na_value=-1), pd.Series([False, True])
    else:
        codes, uniques = pd.factorize(values)
        distinct = pd.Series(uniques)
    if where.prefix_regex:
        hit = distinct.astype(str).str.match(f"(?:{where.values[0]})").to_numpy(dtype=bool)
    else:
        hit = distinct.isin(where.values).to_numpy(dtype=bool)
    if where.negate:
        hit = ~hit
    return np.append(hit, False)[codes]  # code -1 (missing) takes the appended False


def _row_value(name: str, rows, t: pd.Timestamp) -> np.ndarray:
    """The per-row values of :data:`riskstrat.features.spec.ROW_VALUES` (and plain columns), float64."""
    if name in ("cost", "weekly_cost"):
        return np.nan_to_num(rows.column(name).to_numpy(dtype="float64", na_value=np.nan), nan=0.0)
    if name == "cost_recorded":
        return (~np.isnan(rows.column("cost").to_numpy(dtype="float64", na_value=np.nan))).astype("float64")
    if name == "bed_days_before_T":
        end = np.fmax(_days_before(rows.column("discharge_date"), t), 0.0)  # blank or on/after T: T
        return np.maximum(rows.days - end, 0.0)
    if name == "cost_in_12m":
        weekly = np.nan_to_num(rows.column("weekly_cost").to_numpy(dtype="float64", na_value=np.nan), nan=0.0)
        end = np.fmax(_days_before(rows.column("end_date"), t), 0.0)
        start = np.minimum(rows.days, 365.0)
        return weekly * np.maximum(start - end, 0.0) / 7
    return rows.column(name).to_numpy(dtype="float64", na_value=np.nan)


class _Rows:
    """The rows of one table that an engine's aggregates can read (see :func:`table_aggregates`):
    their people's positions and days before T, and any column, taken when first asked for."""

    def __init__(self, df: pd.DataFrame, keep: np.ndarray, pos: np.ndarray, days: np.ndarray):
        self.df, self.at = df, np.flatnonzero(keep)
        self.pos, self.days = pos[self.at], days[self.at]
        self._columns: dict[str, pd.Series] = {}

    def column(self, name: str) -> pd.Series:
        if name not in self._columns:
            self._columns[name] = self.df[name].take(self.at).reset_index(drop=True)
        return self._columns[name]


def table_aggregates(df: pd.DataFrame, table: str, index_date, ids: pd.Index, *,
                     positions: Callable[[pd.Series], np.ndarray] | None = None,
                     aggregates=None) -> dict[str, np.ndarray]:
    """The spec's aggregates of ``table`` (:func:`riskstrat.features.spec.aggregates_for`), computed
    from its validated rows ``df`` as of ``index_date``: one float64 array per aggregate, a value per
    person of ``ids`` (the aggregate's ``fill`` for people with no matching row).

    >>> from riskstrat.data.schema import empty_table
    >>> table_aggregates(empty_table("ae_attendances"), "ae_attendances", "2024-01-01",
    ...                  pd.Index(["a"]))["days_since_ae"]
    array([731.])
    """
    from riskstrat.features.spec import DATE_COLUMNS, aggregates_for

    t = pd.Timestamp(index_date).normalize()
    aggregates = aggregates_for(table) if aggregates is None else list(aggregates)
    n = len(ids)
    days = _days_before(df[DATE_COLUMNS[table]], t)
    pos = positions(df["person_id"]) if positions is not None else person_positions(df["person_id"], ids)
    # Only rows before T, of eligible people, inside the longest window are read at all.
    spans = [a.window[1] for a in aggregates]
    keep = (days >= 1) & (pos >= 0)
    if None not in spans:
        keep &= days <= max(spans)
    rows = _Rows(df, keep, pos, days)
    # Windows, filters and row values repeat across aggregates: each is computed once.
    masks: dict[object, np.ndarray] = {}
    row_values: dict[str, np.ndarray] = {}

    def mask(key, make) -> np.ndarray:
        if key not in masks:
            masks[key] = make()
        return masks[key]

    out = {}
    for a in aggregates:
        lo, hi = a.window
        m = mask(("window", lo, hi), lambda: (rows.days >= lo) & (rows.days <= hi) if hi is not None
                 else rows.days >= lo)
        for w in a.where:
            m = m & mask(w, lambda: _matches(rows.column(w.column), w))
        if a.ongoing:  # in place on T: no end, or an end on or after T
            m = m & mask("ongoing", lambda: ~(_days_before(rows.column("end_date"), t) >= 1))
        p = rows.pos[m]
        if a.kind in ("count", "any"):
            value = np.bincount(p, minlength=n).astype("float64")
            if a.kind == "any":
                value = (value > 0).astype("float64")
        elif a.kind == "sum":
            if a.value not in row_values:
                row_values[a.value] = _row_value(a.value, rows, t)
            value = np.bincount(p, weights=row_values[a.value][m], minlength=n)
        elif a.kind in ("min_days", "max_days"):
            value = np.full(n, np.inf if a.kind == "min_days" else -np.inf)
            (np.minimum if a.kind == "min_days" else np.maximum).at(value, p, rows.days[m])
            value[np.isinf(value)] = a.fill
        else:  # distinct values (missing ones not counted), per person
            column = rows.column(a.value)
            if isinstance(column.dtype, pd.CategoricalDtype):
                codes, k = column.cat.codes.to_numpy()[m], len(column.cat.categories)
            else:
                codes, uniques = pd.factorize(column[m])
                k = len(uniques)
            ok = codes >= 0
            # One flag per person and distinct value (a few per person: coded columns), then counted.
            seen = np.zeros(n * max(k, 1), dtype=bool)
            seen[p[ok] * k + codes[ok]] = True
            value = seen.reshape(n, max(k, 1)).sum(axis=1).astype("float64")
        if a.kind in ("count", "sum", "any", "distinct") and a.fill != 0:
            value[np.bincount(p, minlength=n) == 0] = a.fill
        out[a.name] = value
    return out


META_COLUMNS = ("practice_id", "sex", "ethnicity_group")


def build_feature_frames(records: LinkedRecords, index_dates: Iterable, *, min_age: float = 18,
                         max_age: float = 120, spec=None) -> pd.DataFrame:
    """Stacked person x index-date rows (MultiIndex ``person_id``, ``index_date``)."""
    frames = []
    for d in index_dates:
        f = build_features(records, d, min_age=min_age, max_age=max_age, spec=spec)
        f["index_date"] = pd.Timestamp(d)
        frames.append(f.set_index("index_date", append=True))
    return pd.concat(frames)


# --------------------------------------------------------------------------------------------
# Words


def _plural(value: float) -> str:
    return "" if value == 1 else "s"


def _ago(days: float) -> str:
    if days <= 31:
        return f"{days:.0f} day{_plural(round(days))} ago"
    months = days / 30.44
    if months < 24:
        return f"{months:.0f} month{_plural(round(months))} ago"
    return f"{days / 365.25:.0f} years ago"


_CARE_FLAGS = ("home_care_at_index", "care_home_at_index")  # said with when the care started


def describe_value(name: str, value: float, *, context: dict[str, float] | None = None,
                   currency: str = "GBP") -> str | None:
    """The plain-English reason for a feature at a person's value, or None if not expressible.

    Money is written in ``currency`` (the data set's ISO code, :func:`riskstrat.data.io.currency_of`).

    >>> describe_value("emergency_admissions_0_3m", 3)
    '3 emergency admissions in the last 3 months'
    >>> describe_value("ltc_heart_failure", 1, context={"ltc_heart_failure_years": 4.2})
    'heart failure (diagnosed 4 years ago)'
    """
    f = feature(name)
    if f.reason is None or value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    context = context or {}
    if f.kind == "flag":
        if value < 0.5:
            return None
        since = ""
        if name.startswith("ltc_"):
            years = context.get(f"{name}_years")
            if years is not None and not np.isnan(years):
                since = " (diagnosed this year)" if years < 1 else f" (diagnosed {years:.0f} year{_plural(round(years))} ago)"
        started = ""
        if name in _CARE_FLAGS:
            days = context.get("days_since_social_care_start")
            if days is not None and days < NO_EVENT_DAYS:
                started = f", started {_ago(days)}"
        return f.reason.format(since=since, started=started)
    if f.kind == "days":
        if value >= NO_EVENT_DAYS:
            return None
        return f.reason.format(ago=_ago(value))
    if f.kind in ("count", "trend") and value <= 0:
        return None
    if f.kind == "money":
        from riskstrat.data.io import money

        return f.reason.format(value=value, money=money(value, currency))
    return f.reason.format(value=value, s=_plural(value))


# --------------------------------------------------------------------------------------------
# Reasons: related features speak as one ("3 emergency admissions in the last 12 months, the last
# 2 months ago" rather than three window counts, each with a small share).

REASON_GROUPS: dict[str, tuple[str, ...]] = {
    "emergency admissions": ("emergency_admissions_0_3m", "emergency_admissions_3_12m", "emergency_admissions_12_24m",
                             "days_since_emergency_admission", "emergency_bed_days_12m"),
    "A&E visits": ("ae_attendances_0_3m", "ae_attendances_3_12m", "ae_attendances_12_24m", "days_since_ae"),
    "GP contacts": ("gp_contacts_0_3m", "gp_contacts_3_12m"),
    "prescriptions": ("rx_items_3m", "rx_items_12m", "rx_chapters_12m", *(f"rx_bnf{ch}_items_12m" for ch in RX_CHAPTERS)),
    "social care": ("home_care_at_index", "care_home_at_index", "reablement_12m", "social_care_weekly_cost",
                    "days_since_social_care_start", "cost_social_care_12m"),
    "costs": ("cost_hospital_12m", "cost_primary_12m", "cost_total_12m"),
    "long-term conditions": ("ltc_count", "years_since_first_ltc"),
}
_GROUP_OF = {name: group for group, names in REASON_GROUPS.items() for name in names}


# A generic covariate (riskstrat.features.generic) speaks through the clinical reason about the same
# events, so that one history is said once, in the clinical words ("3 emergency admissions in the last
# 12 months, the last 2 months ago"), not again per window ("7 prescription items in the last 2 years"
# beside "about 14 prescription items a month"). (table, sub-type) -> reason; None: any sub-type of the
# table not listed. Sub-types the clinical words do not count (urgent care, walk-in A&E, vaccines,
# stays of unknown or other method) speak alone, in their own true words.
_GENERIC_REASON: dict[tuple[str, str | None], str] = {
    ("inpatient_spells", "emergency"): "emergency admissions",
    ("inpatient_spells", "elective"): "elective_admissions_12m",
    ("ae_attendances", "emergency_department"): "A&E visits",
    ("ae_attendances", "single_specialty"): "A&E visits",
    ("outpatient_appointments", None): "outpatient_attended_12m",
    ("outpatient_appointments", "attended"): "outpatient_attended_12m",
    ("outpatient_appointments", "missed"): "outpatient_missed_12m",
    ("gp_contacts", None): "GP contacts",
    ("prescriptions", "bnf14"): "vaccinations_12m",
    ("social_care", None): "social care",
}
_GENERIC_WHOLE_TABLE = {"ae_attendances": "A&E visits", "prescriptions": "prescriptions"}


def _generic_reason(name: str) -> str | None:
    from riskstrat.features.generic import parse_name

    g = parse_name(name)
    if g is None:
        return None
    if g.measure == "cost":
        return "costs"
    if g.group is None and g.table in _GENERIC_WHOLE_TABLE:  # every A&E visit / prescription item
        return _GENERIC_WHOLE_TABLE[g.table]
    if g.table == "prescriptions" and g.group != "bnf14":  # a BNF chapter's items: medicines
        return "prescriptions"
    return _GENERIC_REASON.get((g.table, g.group), _GENERIC_REASON.get((g.table, None)))


def reason_group(name: str) -> str:
    """The reason a feature speaks through: its group's name, or the feature's own name (a generic
    covariate: the clinical reason about the same events where there is one, see _GENERIC_REASON).

    >>> reason_group("emergency_admissions_0_3m"), reason_group("prescriptions__bnf02__count_730d")
    ('emergency admissions', 'prescriptions')
    >>> reason_group("ae_attendances__urgent_care__count_90d")
    'ae_attendances__urgent_care__count_90d'
    """
    feature(name)
    return _GROUP_OF.get(name) or _generic_reason(name) or name


def _count_since(n: float, noun: str, days: float | None) -> str:
    text = f"{n:g} {noun}{_plural(n)} in the last 12 months"
    if days is not None and not np.isnan(days) and days < NO_EVENT_DAYS:
        text += f", the last {_ago(days)}"
    return text


# The parts of frailty_deficits that other features name (the rest is a fall or hip fracture admission).
_FRAILTY_NAMED = (("ltc_dementia", "dementia"), ("ltc_stroke", "stroke or TIA"), ("ltc_heart_failure", "heart failure"),
                  ("ltc_ckd", "chronic kidney disease"), ("ltc_copd", "COPD"), ("home_care_at_index", "home care"),
                  ("care_home_at_index", "lives in a care home"))
# Features that say who a person is rather than what happened to them: columns on every list already.
DEMOGRAPHIC_FEATURES = ("age", "sex_female", "deprivation_decile")


def _frailty(v) -> str | None:
    n = v("frailty_deficits")
    if n <= 0:
        return None
    named = [words for name, words in _FRAILTY_NAMED if v(name) >= 0.5]
    if v("rx_items_3m") >= 10:
        named.append("10+ prescription items in 3 months")
    if v("emergency_admissions_0_3m") + v("emergency_admissions_3_12m") > 0:
        named.append("emergency admission this year")
    if v("age") >= 85:
        named.append("aged 85+")
    if n - len(named) >= 1:  # the one deficit no other feature carries
        named.append("fall or hip fracture admission")
    listed = f": {', '.join(named[:int(n)])}" if named else ""
    return f"{n:g} frailty deficit{_plural(n)}{listed}"


def _prescriptions(v) -> str | None:
    items_3m, items_12m, chapters = v("rx_items_3m"), v("rx_items_12m"), v("rx_chapters_12m")
    if items_3m >= 3:
        per_month = round(items_3m / 3)
        text = f"about {per_month:g} prescription item{_plural(per_month)} a month"
        if per_month >= 10:
            text = "many medicines: " + text
    elif items_3m > 0:
        text = f"{items_3m:g} prescription item{_plural(items_3m)} in the last 3 months"
    elif items_12m > 0:
        text = f"{items_12m:g} prescription item{_plural(items_12m)} in the last 12 months"
    else:
        return None
    return text + (f", from {chapters:g} BNF chapters" if chapters >= 4 else "")


def _use_of_services(v, said: Collection[str] = ()) -> str | None:
    """Past-year cost in words of use, for lists that are not about cost.

    Emergency admissions and A&E visits are columns of every list, so they are named only when
    nothing else explains the cost; uses that are reasons of their own (``said``: reason groups
    shown beside this one) are not repeated.
    """
    other = [(v("elective_admissions_12m"), "planned admission", "elective_admissions_12m"),
             (v("outpatient_attended_12m"), "outpatient appointment", "outpatient_attended_12m"),
             (v("gp_contacts_0_3m") + v("gp_contacts_3_12m"), "GP contact", "GP contacts")]
    urgent = [(v("emergency_admissions_0_3m") + v("emergency_admissions_3_12m"), "emergency admission",
               "emergency admissions"),
              (v("ae_attendances_0_3m") + v("ae_attendances_3_12m"), "A&E visit", "A&E visits")]
    parts = [f"{n:g} {noun}{_plural(n)}" for n, noun, group in other if n > 0 and group not in said]
    if v("cost_social_care_12m") > 0 and "social care" not in said:
        parts.append("social care")
    if not parts:
        parts = [f"{n:g} {noun}{_plural(n)}" for n, noun, group in urgent if n > 0 and group not in said]
    if not parts:
        return None
    return "much use of services: " + ", ".join(parts[:3])  # the page says: the last 12 months unless said


def describe_reason(group: str, values: dict[str, float], *, currency: str = "GBP", money: bool = True,
                    said: Collection[str] = ()) -> str | None:
    """Plain words for a reason group (or a single feature) from a person's own values (money in ``currency``).

    With ``money=False`` (lists that are not about cost) costs are said as use of services
    ("much use of health and care in the last 12 months: 2 planned admissions, 6 outpatient
    appointments"), never as amounts, leaving out the uses that ``said`` (the other reason groups
    shown for the person) already name.

    >>> describe_reason("emergency admissions", {"emergency_admissions_0_3m": 1, "emergency_admissions_3_12m": 2,
    ...     "emergency_admissions_12_24m": 0, "days_since_emergency_admission": 40, "emergency_bed_days_12m": 9})
    '3 emergency admissions in the last 12 months, the last 1 month ago (9 days in hospital)'
    >>> describe_reason("prescriptions", {"rx_items_3m": 42, "rx_items_12m": 160, "rx_chapters_12m": 9})
    'many medicines: about 14 prescription items a month, from 9 BNF chapters'
    """
    def v(name: str) -> float:
        x = values.get(name)
        return 0.0 if x is None or x != x else float(x)  # x != x: NaN

    if group == "frailty_deficits":
        return _frailty(v)
    if group not in REASON_GROUPS:
        if not money and feature(group).kind == "money":
            return None
        return describe_value(group, values.get(group, np.nan), context=values, currency=currency)
    if group == "emergency admissions":
        recent = v("emergency_admissions_0_3m") + v("emergency_admissions_3_12m")
        if recent > 0:
            text = _count_since(recent, "emergency admission", values.get("days_since_emergency_admission"))
            beds = v("emergency_bed_days_12m")
            return text + (f" ({beds:g} day{_plural(beds)} in hospital)" if beds > 0 else "")
        older = v("emergency_admissions_12_24m")
        return f"{older:g} emergency admission{_plural(older)} 1 to 2 years ago" if older > 0 else None
    if group == "A&E visits":
        recent = v("ae_attendances_0_3m") + v("ae_attendances_3_12m")
        if recent > 0:
            return _count_since(recent, "A&E visit", values.get("days_since_ae"))
        older = v("ae_attendances_12_24m")
        return f"{older:g} A&E visit{_plural(older)} 1 to 2 years ago" if older > 0 else None
    if group == "GP contacts":
        n = v("gp_contacts_0_3m") + v("gp_contacts_3_12m")
        return f"{n:g} GP contact{_plural(n)} in the last 12 months" if n > 0 else None
    if group == "prescriptions":
        return _prescriptions(v)
    if group == "social care":
        for flag in ("care_home_at_index", "home_care_at_index", "reablement_12m"):
            if v(flag) >= 0.5:
                return describe_value(flag, 1.0, context=values)
        cost = v("cost_social_care_12m")
        if cost <= 0:
            return None
        return describe_value("cost_social_care_12m", cost, currency=currency) if money else \
            "social care in the last 12 months"
    if group == "costs":
        total = v("cost_total_12m")
        if not money:
            return _use_of_services(v, said) if total > 0 else None
        from riskstrat.data.io import money as in_currency

        return f"health and care costs of {in_currency(total, currency)} in the last 12 months" if total > 0 else None
    n = v("ltc_count")  # long-term conditions, named (up to three, so that the reason fits a line)
    if n < 2:
        return None
    held = [name for code, name in LONG_TERM_CONDITIONS.items() if v(f"ltc_{code}") >= 0.5]
    named = f": {', '.join(held[:3])}{', …' if len(held) > 3 else ''}" if held else ""
    return f"{n:g} long-term conditions{named}"


class ReasonInputs(NamedTuple):
    """What :func:`describe_reason` reads for one reason group: the person's ``values`` (by name)
    and the names in ``said`` whose presence it asks about."""

    values: tuple[str, ...]
    said: tuple[str, ...] = ()


_USE_OF_SERVICES = ("elective_admissions_12m", "outpatient_attended_12m", "gp_contacts_0_3m", "gp_contacts_3_12m",
                    "emergency_admissions_0_3m", "emergency_admissions_3_12m", "ae_attendances_0_3m",
                    "ae_attendances_3_12m", "cost_social_care_12m")
_USE_OF_SERVICES_SAID = ("elective_admissions_12m", "outpatient_attended_12m", "GP contacts", "social care",
                         "emergency admissions", "A&E visits")


def reason_inputs(group: str, *, money: bool = True) -> ReasonInputs:
    """Everything :func:`describe_reason` reads for ``group`` (with ``money``): its words depend on
    these values and names of ``said`` only (and on the currency), so people who share them share
    the words. :func:`riskstrat.features.reasons.top_reasons` says each distinct combination once; it
    refuses a read outside this list, so a new read here must be declared here too.

    >>> reason_inputs("GP contacts")
    ReasonInputs(values=('gp_contacts_0_3m', 'gp_contacts_3_12m'), said=())
    >>> reason_inputs("ltc_copd").values
    ('ltc_copd', 'ltc_copd_years')
    """
    if group == "frailty_deficits":
        return ReasonInputs(("frailty_deficits", *(name for name, _ in _FRAILTY_NAMED), "rx_items_3m",
                             "emergency_admissions_0_3m", "emergency_admissions_3_12m", "age"))
    if group == "costs":
        return ReasonInputs(("cost_total_12m",)) if money else \
            ReasonInputs(("cost_total_12m", *_USE_OF_SERVICES), _USE_OF_SERVICES_SAID)
    if group == "social care":
        return ReasonInputs(("care_home_at_index", "home_care_at_index", "reablement_12m",
                             "days_since_social_care_start", "cost_social_care_12m"))
    if group == "long-term conditions":
        return ReasonInputs(("ltc_count", *(f"ltc_{code}" for code in LONG_TERM_CONDITIONS)))
    if group in ("emergency admissions", "A&E visits", "GP contacts"):
        return ReasonInputs(REASON_GROUPS[group])
    if group == "prescriptions":
        return ReasonInputs(("rx_items_3m", "rx_items_12m", "rx_chapters_12m"))
    f = feature(group)  # a feature that speaks alone: describe_value's reads
    if f.kind == "money" and not money:
        return ReasonInputs(())
    if f.kind == "flag" and group.startswith("ltc_"):
        return ReasonInputs((group, f"{group}_years"))
    if group in _CARE_FLAGS:
        return ReasonInputs((group, "days_since_social_care_start"))
    return ReasonInputs((group,))


def reason_key(group: str, get: Callable[[str], np.ndarray], *, money: bool = True) -> list[np.ndarray]:
    """What the words of ``group`` depend on, for many people at once: arrays (a value per person)
    such that people equal in all of them get the same :func:`describe_reason` words (given the
    same ``said`` names). ``get(name)`` gives the values of one of :func:`reason_inputs` (NaN where
    missing). Where only a test of a value is said ("any emergency admission this year?"), the
    key holds the test, so that the many people who differ only in unsaid detail share the words;
    otherwise it holds the values themselves.
    """
    def v(name: str) -> np.ndarray:  # as describe_reason's v: missing is 0
        x = get(name)
        return np.where(np.isnan(x), 0.0, x)

    def at_least(name: str, bound: float) -> np.ndarray:
        return (v(name) >= bound).astype("float64")

    def recent(stem: str) -> np.ndarray:
        return v(f"{stem}_0_3m") + v(f"{stem}_3_12m")

    if group == "frailty_deficits":
        return [v("frailty_deficits"), *(at_least(name, 0.5) for name, _ in _FRAILTY_NAMED),
                at_least("rx_items_3m", 10), (recent("emergency_admissions") > 0).astype("float64"), at_least("age", 85)]
    if group in ("emergency admissions", "A&E visits"):
        stem, days = (("emergency_admissions", "days_since_emergency_admission") if group == "emergency admissions"
                      else ("ae_attendances", "days_since_ae"))
        n = recent(stem)
        said = [np.where(n > 0, get(days), 0.0), np.where(n > 0, 0.0, v(f"{stem}_12_24m"))]
        if group == "emergency admissions":
            said.append(np.where(n > 0, v("emergency_bed_days_12m"), 0.0))
        return [n, *said]
    if group == "GP contacts":
        return [recent("gp_contacts")]
    if group == "prescriptions":
        items_3m, chapters = v("rx_items_3m"), v("rx_chapters_12m")
        return [items_3m, np.where(items_3m > 0, 0.0, v("rx_items_12m")), np.where(chapters >= 4, chapters, 0.0)]
    if group == "social care":
        cost = v("cost_social_care_12m")
        return [at_least("care_home_at_index", 0.5), at_least("home_care_at_index", 0.5),
                at_least("reablement_12m", 0.5), get("days_since_social_care_start"),
                cost if money else (cost > 0).astype("float64")]
    if group == "costs" and not money:
        return [(v("cost_total_12m") > 0).astype("float64"), v("elective_admissions_12m"), v("outpatient_attended_12m"),
                recent("gp_contacts"), recent("emergency_admissions"), recent("ae_attendances"),
                (v("cost_social_care_12m") > 0).astype("float64")]
    if group == "long-term conditions":
        n = v("ltc_count")
        return [n, *(np.where(n >= 2, at_least(f"ltc_{code}", 0.5), 0.0) for code in LONG_TERM_CONDITIONS)]
    return [get(name) for name in reason_inputs(group, money=money).values]
