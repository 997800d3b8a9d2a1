"""Features as of an index date: the one place that defines them, with plain-English descriptions.

Every feature uses only events strictly before the index date T (``date < T``). Windows are in
days before T: ``0-3m`` = 1..91 days, ``3-12m`` = 92..365, ``12-24m`` = 366..730.

Each :class:`Feature` carries its description and the template of its reason;
:mod:`riskstrat.features.words` says a person's value in words with them. Here too: the cohort on an
index date (:func:`eligible_persons`, :func:`cohort_rules`, age bands) and the positions of each
row's person that every aggregation works on. The pandas computation is
:mod:`riskstrat.features.reference`.

>>> [f.name for f in FEATURES][:3]
['age', 'sex_female', 'deprivation_decile']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

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
# Context columns carried next to the features for explanations, never model inputs.
CONTEXT_COLUMNS = tuple(f"ltc_{code}_years" for code in LONG_TERM_CONDITIONS)


def features_for_sources(sources: Iterable[str]) -> list[str]:
    """Feature names available when only ``sources`` (event tables) are present."""
    have = set(sources) | {"persons"}
    return [f.name for f in FEATURES if f.source in have]




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

    In the order :func:`riskstrat.scoring.month.cohort_exclusions` counts them (by the first that applies):
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


class PersonPositions:
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


META_COLUMNS = ("practice_id", "sex", "ethnicity_group")
