"""Features in words: a feature's description and reason (a clinical one, or a generic covariate's,
made from its name), the documented feature list, and the reasons a list gives for a person.

The scorer turns a feature and a person's value into a reason with :func:`describe_value`
("3 emergency admissions in the last 3 months"); related features speak as one reason group
(:data:`REASON_GROUPS`, :func:`describe_reason`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from functools import cached_property
from fractions import Fraction
from typing import Callable, Collection, Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd

from riskstrat.data.io import money as in_currency
from riskstrat.data.schema import BNF_CHAPTERS, LONG_TERM_CONDITIONS
from riskstrat.features.clinical import AGE_BANDS, FEATURES, NO_EVENT_DAYS, RX_CHAPTERS, Feature
from riskstrat.features.generic import (GENERIC_TABLES, GenericFeaturesConfig, generic_spec, group_column,
                                        parse_name)

_BY_NAME = {f.name: f for f in FEATURES}


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
        return f.reason.format(value=value, money=in_currency(value, currency))
    if name == "deprivation_decile" and not value <= DEPRIVED_DECILES:
        # "deprived" only of the most deprived fifth of areas (deciles rank areas nationally)
        return f"lives in an area of deprivation decile {value:.0f} (1 = most deprived)"
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


# --------------------------------------------------------------------------------------------
# Words of degree ("much use of services", "many medicines") are said only of a value that is unusual
# for the scored population: above the 90th percentile of the people in the person's age band
# (AGE_BANDS; the whole population's where a band has fewer than MIN_BAND_PEOPLE people or the age
# is unknown), and never of fewer than DEGREE_FLOOR. Otherwise the reason says the number plainly.

# The uses that words of degree speak of: measure -> the feature columns summed (missing is 0).
USE_MEASURES: dict[str, tuple[str, ...]] = {
    "elective_admissions_12m": ("elective_admissions_12m",),
    "outpatient_attended_12m": ("outpatient_attended_12m",),
    "gp_contacts_12m": ("gp_contacts_0_3m", "gp_contacts_3_12m"),
    "emergency_admissions_12m": ("emergency_admissions_0_3m", "emergency_admissions_3_12m"),
    "ae_attendances_12m": ("ae_attendances_0_3m", "ae_attendances_3_12m"),
    "rx_items_3m": ("rx_items_3m",),
}
DEGREE_QUANTILE = 0.9  # "unusual": above this share of the person's age band
MIN_BAND_PEOPLE = 100  # a band with fewer people uses the whole population's percentile
DEGREE_FLOOR = 3  # "much" and "many" are never said of 1 or 2
DEPRIVED_DECILES = 2  # "lives in a deprived area": national deciles 1-2 only
_BAND_LOWS = np.array([low for low, _, _ in AGE_BANDS], dtype="float64")
_BAND_LOWS_LIST = _BAND_LOWS.tolist()
_BAND_LABELS = tuple(label for _, _, label in AGE_BANDS)
ALL_AGES = "all"


def _band_of_one(age: float) -> int:
    """:func:`age_band_index` of one age, in plain Python (the same band)."""
    if age != age or age < 0:  # unknown (NaN) or negative
        return -1
    return bisect.bisect_right(_BAND_LOWS_LIST, math.floor(age) if age != math.inf else age) - 1


def age_band_index(age) -> np.ndarray:
    """Each age's band in :data:`AGE_BANDS` by position (completed years), -1 where unknown or negative."""
    years = np.floor(np.asarray(age, dtype="float64"))
    band = np.searchsorted(_BAND_LOWS, years, side="right") - 1
    return np.where(np.isnan(years), -1, band)


@dataclass(frozen=True)
class ReasonThresholds:
    """The 90th percentile of each use (:data:`USE_MEASURES`) in the scored population, per age band:
    ``values[measure][band label or "all"]``. A value above its band's (and at least
    :data:`DEGREE_FLOOR`) is unusual; a measure the population lacks is never unusual. Made by
    :func:`reason_thresholds` (or :func:`thresholds_from_counts`); kept as plain numbers
    (:meth:`as_dict`), e.g. in a served model's metadata."""

    values: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {m: dict(by_band) for m, by_band in self.values.items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Mapping[str, float]] | None) -> "ReasonThresholds":
        return cls({m: {b: float(t) for b, t in by_band.items()} for m, by_band in (values or {}).items()})

    @cached_property
    def _tables(self) -> dict[str, np.ndarray]:
        """Per measure, the threshold of each band by position, then the whole population's (band -1)."""
        out = {}
        for measure in USE_MEASURES:
            by_band = self.values.get(measure) or {}
            overall = by_band.get(ALL_AGES, np.inf)
            out[measure] = np.array([by_band.get(label, overall) for label in _BAND_LABELS] + [overall], dtype="float64")
        return out

    def of(self, measure: str, age, *, band: np.ndarray | None = None) -> np.ndarray:
        """The threshold that applies to each person of ``age`` (or of ``band``, :func:`age_band_index`
        of it; inf where the measure has none)."""
        band = age_band_index(age) if band is None else band
        return self._tables[measure][band]  # band -1 (unknown age): the last entry, the whole population's

    def unusual_one(self, measure: str, value: float, age: float) -> bool:
        """:meth:`unusual` for one person (the words of one person are said one at a time)."""
        return value >= DEGREE_FLOOR and value > float(self._tables[measure][_band_of_one(age)])

    def unusual(self, measure: str, value, age, *, band: np.ndarray | None = None) -> np.ndarray:
        """Whether each ``value`` is unusual for people of its ``age`` (or ``band``; a bool array)."""
        value = np.asarray(value, dtype="float64")
        return (value > self.of(measure, age, band=band)) & (value >= DEGREE_FLOOR)


def _measure_values(frame: pd.DataFrame, measure: str) -> np.ndarray | None:
    columns = [c for c in USE_MEASURES[measure] if c in frame.columns]
    if not columns:
        return None
    total = np.zeros(len(frame))
    for c in columns:
        x = frame[c].to_numpy(dtype="float64", na_value=np.nan)
        total += np.where(np.isnan(x), 0.0, x)
    return total


def use_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """How many people of ``frame`` (the month's features) have each value of each use, per age band
    (``measure``, ``band`` as in :func:`age_band_index`, ``value``, ``people``): the population's
    distributions that :func:`thresholds_from_counts` reads; counts of parts (Spark's batches) add up."""
    band = age_band_index(frame["age"]) if "age" in frame.columns else np.full(len(frame), -1)
    parts = []
    for measure in USE_MEASURES:
        values = _measure_values(frame, measure)
        if values is None:
            continue
        # Each (band, value) pair counted by its number: the values' codes within the bands' (from -1),
        # a few times faster than counting the pairs of a frame.
        codes, uniques = pd.factorize(values)
        people = np.bincount((band + 1) * len(uniques) + codes, minlength=(len(_BAND_LOWS) + 1) * len(uniques))
        pair = np.flatnonzero(people)
        parts.append(pd.DataFrame({"measure": measure, "band": pair // max(len(uniques), 1) - 1,
                                   "value": np.asarray(uniques, dtype="float64")[pair % max(len(uniques), 1)],
                                   "people": people[pair].astype("int64")}))
    if not parts:
        return pd.DataFrame({"measure": pd.Series(dtype="str"), "band": pd.Series(dtype="int64"),
                             "value": pd.Series(dtype="float64"), "people": pd.Series(dtype="int64")})
    return pd.concat(parts, ignore_index=True)


def _percentile(values: np.ndarray, people: np.ndarray) -> float:
    """The smallest value that at least DEGREE_QUANTILE of the people do not exceed."""
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(people[order])
    q = Fraction(DEGREE_QUANTILE).limit_denominator(1000)  # in integers: the same on every engine
    need = cumulative * q.denominator >= q.numerator * cumulative[-1]
    return float(values[np.argmax(need)])


def thresholds_from_counts(counts: pd.DataFrame) -> ReasonThresholds:
    """:class:`ReasonThresholds` from :func:`use_counts` (of the whole population, or its parts summed).

    >>> people = pd.DataFrame({"age": [70.5] * 10, "gp_contacts_0_3m": range(10), "gp_contacts_3_12m": 0})
    >>> thresholds_from_counts(use_counts(people)).values["gp_contacts_12m"]
    {'all': 8.0}
    """
    if not len(counts):
        return ReasonThresholds({})
    counts = counts.groupby(["measure", "band", "value"], sort=False)["people"].sum().reset_index()
    out: dict[str, dict[str, float]] = {}
    for measure, rows in counts.groupby("measure", sort=False):
        values, people, band = (rows["value"].to_numpy(dtype="float64"), rows["people"].to_numpy(dtype="int64"),
                                rows["band"].to_numpy(dtype="int64"))
        by_band = {ALL_AGES: _percentile(values, people)}
        for b, label in enumerate(_BAND_LABELS):
            here = band == b
            if people[here].sum() >= MIN_BAND_PEOPLE:
                by_band[label] = _percentile(values[here], people[here])
        out[str(measure)] = by_band
    return ReasonThresholds({m: out[m] for m in USE_MEASURES if m in out})


def reason_thresholds(frame: pd.DataFrame) -> ReasonThresholds:
    """The scored population's :class:`ReasonThresholds` (``frame``: everyone's features)."""
    return thresholds_from_counts(use_counts(frame))


def _unusual_of(values, thresholds: ReasonThresholds | None) -> Callable[[str, float], bool]:
    """For one person (``values``): whether their value of a use is unusual (never without thresholds)."""
    if thresholds is None:
        return lambda measure, value: False
    age = values.get("age")
    age = math.nan if age is None else float(age)
    return lambda measure, value: thresholds.unusual_one(measure, value, age)


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
    if n - (v("age") >= 85) <= 0:  # no deficit, or only age: not frailty (age is a column of its own)
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


def _prescriptions(v, unusual) -> str | None:
    items_3m, items_12m, chapters = v("rx_items_3m"), v("rx_items_12m"), v("rx_chapters_12m")
    if items_3m >= 3:
        per_month = round(items_3m / 3)
        text = f"about {per_month:g} prescription item{_plural(per_month)} a month"
        if per_month >= 10 and unusual("rx_items_3m", items_3m):  # 10+ a month, and unusual for their age
            text = "many medicines: " + text
    elif items_3m > 0:
        text = f"{items_3m:g} prescription item{_plural(items_3m)} in the last 3 months"
    elif items_12m > 0:
        text = f"{items_12m:g} prescription item{_plural(items_12m)} in the last 12 months"
    else:
        return None
    return text + (f", from {chapters:g} BNF chapters" if chapters >= 4 else "")


def _use_of_services(v, unusual, said: Collection[str] = ()) -> str | None:
    """Past-year cost in words of use, for lists that are not about cost.

    Emergency admissions and A&E visits are columns of every list, so they are named only when
    nothing else explains the cost; uses that are reasons of their own (``said``: reason groups
    shown beside this one) are not repeated. "much use of services" only when a use named is
    unusual (:class:`ReasonThresholds`); otherwise the uses plainly, "in the last 12 months".
    """
    def total(measure: str) -> float:
        return sum(v(name) for name in USE_MEASURES[measure])

    other = [("elective_admissions_12m", "planned admission", "elective_admissions_12m"),
             ("outpatient_attended_12m", "outpatient appointment", "outpatient_attended_12m"),
             ("gp_contacts_12m", "GP contact", "GP contacts")]
    urgent = [("emergency_admissions_12m", "emergency admission", "emergency admissions"),
              ("ae_attendances_12m", "A&E visit", "A&E visits")]
    parts = [(measure, total(measure), noun) for measure, noun, group in other
             if total(measure) > 0 and group not in said]
    if v("cost_social_care_12m") > 0 and "social care" not in said:
        parts.append((None, None, "social care"))
    if not parts:
        parts = [(measure, total(measure), noun) for measure, noun, group in urgent
                 if total(measure) > 0 and group not in said]
    if not parts:
        return None
    parts = parts[:3]
    words = ", ".join(noun if n is None else f"{n:g} {noun}{_plural(n)}" for _, n, noun in parts)
    if any(measure is not None and unusual(measure, n) for measure, n, _ in parts):
        return "much use of services: " + words  # the page says: the last 12 months unless said
    return words + " in the last 12 months"


def describe_reason(group: str, values: dict[str, float], *, currency: str = "GBP", money: bool = True,
                    said: Collection[str] = (), thresholds: ReasonThresholds | None = None) -> str | None:
    """Plain words for a reason group (or a single feature) from a person's own values (money in ``currency``).

    With ``money=False`` (lists that are not about cost) costs are said as use of services
    ("much use of health and care in the last 12 months: 2 planned admissions, 6 outpatient
    appointments"), never as amounts, leaving out the uses that ``said`` (the other reason groups
    shown for the person) already name. Words of degree ("much use", "many medicines") are said
    only of a use above the scored population's ``thresholds`` for the person's age (none without).

    >>> describe_reason("emergency admissions", {"emergency_admissions_0_3m": 1, "emergency_admissions_3_12m": 2,
    ...     "emergency_admissions_12_24m": 0, "days_since_emergency_admission": 40, "emergency_bed_days_12m": 9})
    '3 emergency admissions in the last 12 months, the last 1 month ago (9 days in hospital)'
    >>> describe_reason("prescriptions", {"rx_items_3m": 42, "rx_items_12m": 160, "rx_chapters_12m": 9, "age": 80},
    ...     thresholds=ReasonThresholds({"rx_items_3m": {"all": 30.0}}))
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
        return _prescriptions(v, _unusual_of(values, thresholds))
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
            return _use_of_services(v, _unusual_of(values, thresholds), said) if total > 0 else None
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
            ReasonInputs(("cost_total_12m", *_USE_OF_SERVICES, "age"), _USE_OF_SERVICES_SAID)
    if group == "social care":
        return ReasonInputs(("care_home_at_index", "home_care_at_index", "reablement_12m",
                             "days_since_social_care_start", "cost_social_care_12m"))
    if group == "long-term conditions":
        return ReasonInputs(("ltc_count", *(f"ltc_{code}" for code in LONG_TERM_CONDITIONS)))
    if group in ("emergency admissions", "A&E visits", "GP contacts"):
        return ReasonInputs(REASON_GROUPS[group])
    if group == "prescriptions":
        return ReasonInputs(("rx_items_3m", "rx_items_12m", "rx_chapters_12m", "age"))
    f = feature(group)  # a feature that speaks alone: describe_value's reads
    if f.kind == "money" and not money:
        return ReasonInputs(())
    if f.kind == "flag" and group.startswith("ltc_"):
        return ReasonInputs((group, f"{group}_years"))
    if group in _CARE_FLAGS:
        return ReasonInputs((group, "days_since_social_care_start"))
    return ReasonInputs((group,))


def reason_key(group: str, get: Callable[[str], np.ndarray], *, money: bool = True,
               thresholds: ReasonThresholds | None = None) -> list[np.ndarray]:
    """What the words of ``group`` depend on, for many people at once: arrays (a value per person)
    such that people equal in all of them get the same :func:`describe_reason` words (given the
    same ``said`` names). ``get(name)`` gives the values of one of :func:`reason_inputs` (NaN where
    missing). Where only a test of a value is said ("any emergency admission this year?"), the
    key holds the test, so that the many people who differ only in unsaid detail share the words;
    otherwise it holds the values themselves. A use said with a word of degree adds whether it is
    unusual for the person's age (``thresholds``, as :func:`describe_reason`).
    """
    def v(name: str) -> np.ndarray:  # as describe_reason's v: missing is 0
        x = get(name)
        return np.where(np.isnan(x), 0.0, x)

    def at_least(name: str, bound: float) -> np.ndarray:
        return (v(name) >= bound).astype("float64")

    def recent(stem: str) -> np.ndarray:
        return v(f"{stem}_0_3m") + v(f"{stem}_3_12m")

    band: list[np.ndarray] = []  # the people's age bands, found once

    def unusual(measure: str, value: np.ndarray) -> np.ndarray:
        if thresholds is None:
            return np.zeros(len(value), dtype=bool)
        if not band:
            band.append(age_band_index(get("age")))
        return thresholds.unusual(measure, value, None, band=band[0])

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
        return [items_3m, np.where(items_3m > 0, 0.0, v("rx_items_12m")), np.where(chapters >= 4, chapters, 0.0),
                unusual("rx_items_3m", items_3m).astype("float64")]

    if group == "social care":
        cost = v("cost_social_care_12m")
        return [at_least("care_home_at_index", 0.5), at_least("home_care_at_index", 0.5),
                at_least("reablement_12m", 0.5), get("days_since_social_care_start"),
                cost if money else (cost > 0).astype("float64")]
    if group == "costs" and not money:
        uses = {measure: sum(v(name) for name in names) for measure, names in USE_MEASURES.items()
                if measure != "rx_items_3m"}
        unusual_uses = sum(unusual(measure, value) * 2.0 ** k for k, (measure, value) in enumerate(uses.items()))
        return [(v("cost_total_12m") > 0).astype("float64"), *uses.values(),
                (v("cost_social_care_12m") > 0).astype("float64"), unusual_uses]  # which uses are unusual: bits
    if group == "long-term conditions":
        n = v("ltc_count")
        return [n, *(np.where(n >= 2, at_least(f"ltc_{code}", 0.5), 0.0) for code in LONG_TERM_CONDITIONS)]
    return [get(name) for name in reason_inputs(group, money=money).values]
