"""Features in words: a feature's description and reason (a clinical one, or a generic covariate's,
made from its name), the documented feature list, and the reasons a list gives for a person.

The scorer turns a feature and a person's value into a reason with :func:`describe_value`
("3 emergency admissions in the last 3 months"); related features speak as one reason group
(:data:`REASON_GROUPS`, :func:`describe_reason`).
"""

from __future__ import annotations

from typing import Callable, Collection, Iterable, NamedTuple

import numpy as np
import pandas as pd

from riskstrat.data.io import money as in_currency
from riskstrat.data.schema import BNF_CHAPTERS, LONG_TERM_CONDITIONS
from riskstrat.features.clinical import FEATURES, NO_EVENT_DAYS, RX_CHAPTERS, Feature
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
