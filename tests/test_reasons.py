"""The fast reasons against the person-by-person definitions, on hostile values.

:func:`riskstrat.features.reasons.top_reasons` says each group's words once per distinct key
(:func:`riskstrat.features.words.reason_key`) and walks all people place by place at once. These tests
hold it to :func:`riskstrat.features.words.describe_reason` for every group, currency, ``money`` and
``said`` combination, and to the person-by-person loop that made the month's files before
(:func:`reference_top_reasons`), on values chosen to sit on and around every threshold the words
test (NaN, 0, -0, huge, fractional, negative, each threshold plus or minus a little), with and
without the population's thresholds for words of degree.

Below those: the words of degree ("much use of services", "many medicines") at, below and above the
population's thresholds for every template that says them, and the thresholds themselves.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import riskstrat.features.reasons as reasons
from riskstrat.features.clinical import CONTEXT_COLUMNS, FEATURE_NAMES
from riskstrat.features.words import (DEGREE_FLOOR, DEMOGRAPHIC_FEATURES, MIN_BAND_PEOPLE, REASON_GROUPS,
                                      USE_MEASURES, ReasonThresholds, age_band_index, describe_reason, feature,
                                      reason_group, reason_inputs, reason_thresholds, thresholds_from_counts,
                                      use_counts)
from riskstrat.features.reasons import REASON_SEPARATOR, top_reasons
from riskstrat.features.words import USE_MEASURES, _measure_values, age_band_index, thresholds_from_counts, use_counts

COLUMNS = list(FEATURE_NAMES) + list(CONTEXT_COLUMNS)
GROUPS = list(dict.fromkeys(reason_group(name) for name in FEATURE_NAMES))
# Thresholds the words test (flags 0.5, 3 and 10 items, 4 chapters, 2 conditions, aged 85, 31 days,
# 24 months, no event = 731 days, "1" for plurals, 0 for "any") and what each is written with.
THRESHOLDS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0, 31.0, 85.0, 24 * 30.44, 730.0, 731.0, 1.5, 2.5, 4.5, 7.5,
              18.0, 40.0, 56.0, 65.0, 75.0)  # and the age bands' lower ends (the thresholds for degree)
# Thresholds for words of degree on the same values: some bands' own, some falling back to the whole
# population's, one measure with none (never unusual).
HOSTILE_THRESHOLDS = ReasonThresholds({
    "elective_admissions_12m": {"all": 0.0, "85+": 2.0},
    "outpatient_attended_12m": {"all": 4.0, "18-39": 1.0, "75-84": 10.0},
    "gp_contacts_12m": {"all": 3.0, "under 18": 7.5, "65-74": 30.0, "85+": 2.0},
    "emergency_admissions_12m": {"all": 1.0},
    "ae_attendances_12m": {"all": 2.0, "40-55": 0.0},
    "rx_items_3m": {"all": 31.0, "56-64": 10.0, "85+": 85.0},
})


def hostile_values(rng: np.random.Generator, n: int) -> np.ndarray:
    near = [t + d for t in THRESHOLDS for d in (0.0, -1e-9, 1e-9)]
    near += [np.nextafter(t, np.inf) for t in THRESHOLDS] + [np.nextafter(t, -np.inf) for t in THRESHOLDS]
    palette = np.array(near + [np.nan, -0.0, 1e12, 123_456_789.5, -1.0, -3.5, 0.25, 0.4999, 0.75, 12.0, 1234.5,
                               99_999.5, 6.0, 9.0, 30.0, 45.66, 365.0, 2.0e5])
    values = rng.choice(palette, size=n)
    plain = rng.random(n) < 0.3  # and ordinary values: small counts, days, ages, costs
    values[plain] = rng.choice([0.0, 0.0, 1.0, 2.0, 5.0, 40.0, 88.0, 200.0, 3_000.0], size=int(plain.sum())) * \
        rng.choice([1.0, 1.0, 1.37], size=int(plain.sum()))
    return values


def hostile_people(rng: np.random.Generator, n: int, columns=COLUMNS) -> pd.DataFrame:
    """Half of them wholly random (20 with mostly zeros); the other half look-alikes: copies of 40 of
    them with one or two values changed, so that words that must differ in a single value are put
    side by side."""
    index = pd.Index([f"p{i:05d}" for i in rng.permutation(n)], dtype="str")
    values = np.column_stack([hostile_values(rng, n) for _ in columns])
    quiet = np.arange(min(20, n))  # people with little use: words that name what is left
    values[quiet] *= rng.random((len(quiet), len(columns))) < 0.25
    alike = np.arange(n // 2, n)
    values[alike] = values[rng.integers(0, 40, size=len(alike))]
    for changes in (1, 2):
        rows = alike[rng.random(len(alike)) < 0.5 * changes]
        cols = rng.integers(0, len(columns), size=len(rows))
        values[rows, cols] = hostile_values(rng, len(rows))
    return pd.DataFrame(values, index=index, columns=list(columns))


def person_values(frame: pd.DataFrame) -> list[dict]:
    """Each person's values as top_reasons has always handed them to describe_reason."""
    values = frame.to_numpy(dtype="float64", copy=True)
    if "age" in frame.columns:
        values[:, frame.columns.get_loc("age")] = np.floor(values[:, frame.columns.get_loc("age")])
    return [dict(zip(frame.columns, row)) for row in values]


def describes_money(group: str) -> bool:
    names = reason_inputs(group, money=True).values
    return any(feature(name).kind == "money" for name in names if name in FEATURE_NAMES)


def one_change_apart(rng: np.random.Generator, group: str, money: bool, base: pd.DataFrame,
                     base_said: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Copies of ``base`` with one of the group's inputs (a value, or a ``said`` name) changed:
    the pairs that words keyed too coarsely would confuse."""
    inputs = reason_inputs(group, money=money)
    frames, saids = [], []
    for name in inputs.values:
        if name not in base.columns:
            continue
        for _ in range(4):
            copy = base.copy()
            copy[name] = hostile_values(rng, len(base))
            frames.append(copy)
            saids.append(base_said)
    for name in inputs.said:
        if name in GROUPS:
            flipped = base_said.copy()
            flipped[:, GROUPS.index(name)] ^= True
            frames += [base, base]
            saids += [flipped, np.where(rng.random(base_said.shape) < 0.5, flipped, base_said)]
    if not frames:
        return base.iloc[:0], base_said[:0]
    out = pd.concat(frames)
    out.index = pd.Index([f"v{i:06d}" for i in range(len(out))], dtype="str")
    return out, np.concatenate(saids)


CASES = [(currency, money, HOSTILE_THRESHOLDS) for money in (True, False) for currency in ("GBP", "USD", "EUR", "XYZ")]
CASES += [("GBP", False, None), ("GBP", True, None)]


@pytest.mark.parametrize("currency, money, thresholds", CASES)
def test_the_words_of_every_group_are_describe_reasons(currency, money, thresholds):
    rng = np.random.default_rng(sum(map(ord, currency)) + money + (thresholds is None))
    people = hostile_people(rng, 1000)
    said = rng.random((len(people), len(GROUPS))) < 0.35
    said[len(people) // 2:] = said[rng.integers(0, 40, size=len(people) - len(people) // 2)]  # look-alikes too
    # A few columns absent from the frame (a source the data set lacks): read as missing.
    absent = list(rng.choice([c for c in COLUMNS if c != "cost_total_12m"], size=3, replace=False))
    people_values = person_values(people.drop(columns=absent))
    checked, spoken = 0, 0
    for g, group in enumerate(GROUPS):
        if currency != "GBP" and not describes_money(group):
            continue  # words without money do not depend on the currency
        variants, variants_said = one_change_apart(rng, group, money, people.iloc[:40], said[:40])
        variants = variants.drop(columns=absent)
        frame = pd.concat([people.drop(columns=absent), variants])
        frame_said = np.concatenate([said, variants_said])
        words = reasons._Words(frame, list(frame.columns), GROUPS, currency=currency, money=money,
                               thresholds=thresholds)
        who = np.arange(len(frame))
        fast = words.texts(g, who, frame_said)
        values = people_values + person_values(variants)
        expected = [describe_reason(group, values[i], currency=currency, money=money, thresholds=thresholds,
                                    said={GROUPS[k] for k in np.flatnonzero(frame_said[i])} - {group}) for i in who]
        mismatch = [(frame.index[i], fast[i], expected[i]) for i in who if fast[i] != expected[i]]
        assert not mismatch, f"{group}: {len(mismatch)} people differ, e.g. {mismatch[:3]}"
        checked += 1
        spoken += sum(t is not None for t in expected)
    assert checked >= (len(GROUPS) if currency == "GBP" else 2)
    assert spoken > checked * 250  # most groups have words for many of these people


def test_every_group_is_checked():
    """The groups above are all the reasons a model's features can speak through."""
    assert set(REASON_GROUPS) <= set(GROUPS)
    assert {"frailty_deficits", "age", "ltc_copd", "outpatient_attended_12m"} <= set(GROUPS)


def test_a_read_that_reason_inputs_does_not_declare_raises(monkeypatch):
    real = reasons.reason_inputs

    def forgetful(group, *, money=True):
        inputs = real(group, money=money)
        return inputs._replace(values=tuple(v for v in inputs.values if v != "days_since_ae"))

    monkeypatch.setattr(reasons, "reason_inputs", forgetful)
    people = pd.DataFrame({"ae_attendances_0_3m": [2.0], "ae_attendances_3_12m": [0.0], "ae_attendances_12_24m": [0.0],
                           "days_since_ae": [40.0]}, index=["a"])
    shap = pd.DataFrame({"ae_attendances_0_3m": [1.0]}, index=["a"])
    with pytest.raises(RuntimeError, match="does not declare"):
        top_reasons(shap, people)


def test_a_said_name_that_reason_inputs_does_not_declare_raises(monkeypatch):
    real = reasons.reason_inputs

    def forgetful(group, *, money=True):
        inputs = real(group, money=money)
        return inputs._replace(said=tuple(s for s in inputs.said if s != "GP contacts"))

    monkeypatch.setattr(reasons, "reason_inputs", forgetful)
    people = pd.DataFrame({name: [1.0] for name in COLUMNS}, index=["a"])
    shap = pd.DataFrame({"cost_total_12m": [1.0], "gp_contacts_0_3m": [0.5]}, index=["a"])
    with pytest.raises(RuntimeError, match="does not declare"):
        top_reasons(shap, people)


# ------------------------------------------------------------------ against the person-by-person loop


def reference_top_reasons(contributions, features, *, n=3, min_share=0.05, currency="GBP", demographic_reasons=False,
                          money_reasons=False, thresholds=None):
    """top_reasons as it was: one person at a time, describe_reason for each reason tried."""
    names = list(contributions.columns)
    rows = features.reindex(contributions.index)
    groups = list(dict.fromkeys(reason_group(c) for c in names))
    membership = np.zeros((len(names), len(groups)))
    for j, c in enumerate(names):
        membership[j, groups.index(reason_group(c))] = 1.0
    shap = contributions.to_numpy(dtype="float64") @ membership
    value_names = list(dict.fromkeys(names + [c for c in reasons.REASON_CONTEXT + FEATURE_NAMES if c in rows.columns]))
    values = rows[value_names].to_numpy(dtype="float64", copy=True)
    if "age" in value_names:
        values[:, value_names.index("age")] = np.floor(values[:, value_names.index("age")])
    positive_total = np.where(shap > 0, shap, 0.0).sum(axis=1)
    order = np.argsort(-shap, axis=1, kind="stable")
    texts = np.full((len(shap), n), None, dtype=object)
    shares = np.full((len(shap), n), np.nan)
    for i in range(len(shap)):
        found, person, skipped = 0, None, []
        for j in order[i]:
            share = shap[i, j] / positive_total[i] if shap[i, j] > 0 else 0.0
            if share <= 0 or share < min_share:
                break
            if person is None:
                person = dict(zip(value_names, values[i]))
                said = {groups[k] for k in order[i][:n + 2] if shap[i, k] > 0
                        and shap[i, k] / positive_total[i] >= max(min_share, 1e-12)}
            text = describe_reason(groups[j], person, currency=currency, money=money_reasons, said=said - {groups[j]},
                                   thresholds=thresholds)
            if text is None:
                continue
            if not demographic_reasons and groups[j] in DEMOGRAPHIC_FEATURES:
                skipped.append((text, share))
                continue
            texts[i, found], shares[i, found] = text, share
            found += 1
            if found == n:
                break
        for text, share in skipped[:n] if not found else ():
            texts[i, found], shares[i, found] = text, share
            found += 1
    out = pd.DataFrame(index=contributions.index)
    for k in range(n):
        out[f"reason_{k + 1}"] = pd.array(texts[:, k], dtype="str")
    for k in range(n):
        out[f"share_{k + 1}"] = shares[:, k]
    out["reasons"] = pd.array([REASON_SEPARATOR.join(t for t in row if t is not None) for row in texts], dtype="str")
    return out


def hostile_shap(rng: np.random.Generator, index: pd.Index, names: list[str]) -> pd.DataFrame:
    """SHAP values with ties (a few rounded levels), zeros, negatives and a dominant reason or two."""
    values = rng.choice([0.0, -0.0, 0.01, 0.05, 0.05, 0.2, -0.1, 0.5, 1.0, 1e-13], size=(len(index), len(names)))
    values *= rng.choice([1.0, 1.0, 3.0], size=values.shape)
    continuous = rng.random(values.shape) < 0.2
    values[continuous] = rng.normal(size=int(continuous.sum()))
    # And people whose reasons share exactly: 2, 4 or 8 equal values (shares of 1/2, 1/4, 1/8).
    for i in range(5, min(300, len(index))):
        values[i] = 0.0
        values[i, rng.choice(len(names), size=min(len(names), 2 ** (1 + i % 3)), replace=False)] = 0.75
    return pd.DataFrame(values, index=index, columns=names)


OPTIONS = [dict(), dict(n=1), dict(n=4, min_share=0.0), dict(min_share=0.25), dict(min_share=0.125, n=5),
           dict(demographic_reasons=True),
           dict(money_reasons=True, currency="USD"), dict(money_reasons=True, currency="XYZ", n=2),
           dict(demographic_reasons=True, money_reasons=True, min_share=0.0),
           dict(thresholds=HOSTILE_THRESHOLDS), dict(thresholds=HOSTILE_THRESHOLDS, n=5, min_share=0.0),
           dict(thresholds=HOSTILE_THRESHOLDS, money_reasons=True)]


@pytest.mark.parametrize("options", OPTIONS, ids=[",".join(f"{k}={'hostile' if k == 'thresholds' else v}"
                                                           for k, v in o.items()) or "defaults" for o in OPTIONS])
def test_top_reasons_equals_the_person_by_person_loop(options):
    rng = np.random.default_rng(len(str(options)))
    features = hostile_people(rng, 1500)
    model_features = [name for name in FEATURE_NAMES if rng.random() < 0.85 or name in DEMOGRAPHIC_FEATURES]
    shap = hostile_shap(rng, features.index, model_features)
    shap.iloc[:5] = 0.0  # people with no reason at all
    shuffled = shap.sample(frac=1.0, random_state=1)  # the features' rows in another order
    expected = reference_top_reasons(shuffled, features, **options)
    pd.testing.assert_frame_equal(top_reasons(shuffled, features, **options), expected, check_exact=True)
    assert (expected["reasons"] != "").any() and expected["reason_1"].isna().any()


def test_top_reasons_equals_the_loop_without_context_columns_and_for_nobody():
    rng = np.random.default_rng(11)
    features = hostile_people(rng, 800, columns=list(FEATURE_NAMES[:40]))
    shap = hostile_shap(rng, features.index, list(FEATURE_NAMES[:40]))
    pd.testing.assert_frame_equal(top_reasons(shap, features), reference_top_reasons(shap, features), check_exact=True)
    nobody = shap.iloc[:0]
    pd.testing.assert_frame_equal(top_reasons(nobody, features), reference_top_reasons(nobody, features))


# ------------------------------------------------------------------ words of degree at their thresholds

# Each use said in "much use of services", its noun, and its values split over its features (the
# 12-month counts add the two windows).
USES = [("elective_admissions_12m", "planned admission"), ("outpatient_attended_12m", "outpatient appointment"),
        ("gp_contacts_12m", "GP contact"), ("emergency_admissions_12m", "emergency admission"),
        ("ae_attendances_12m", "A&E visit")]


def use_values(measure: str, count: float) -> dict[str, float]:
    columns = USE_MEASURES[measure]
    first = float(np.floor(count / 2)) if len(columns) == 2 else count
    return {columns[0]: first, **({columns[1]: count - first} if len(columns) == 2 else {})}


def said_plainly(count: float, noun: str) -> str:
    return f"{count:g} {noun}{'' if count == 1 else 's'} in the last 12 months"


@pytest.mark.parametrize("measure, noun", USES)
@pytest.mark.parametrize("threshold", [6.0, 0.0])
def test_much_use_of_services_only_above_the_age_bands_threshold(measure, noun, threshold):
    """At, below and above the person's band's threshold (70: the 65-74 band), for every use said; the
    whole population's threshold (20) for an unknown age or a band without its own; never of 1 or 2."""
    thresholds = ReasonThresholds({measure: {"all": 20.0, "65-74": threshold}})
    counts = [1.0, 2.0, 3.0, 4.0] if threshold == 0 else [threshold - 1, threshold, threshold + 1, 21.0]
    for age in (70.0, 74.9, 30.0, np.nan):
        for count in counts:
            person = {"cost_total_12m": 900.0, "age": age, **use_values(measure, count)}
            band_threshold = threshold if age in (70.0, 74.9) else 20.0
            text = describe_reason("costs", person, money=False, thresholds=thresholds)
            much = count > band_threshold and count >= DEGREE_FLOOR
            words = f"{count:g} {noun}{'' if count == 1 else 's'}"
            assert text == (f"much use of services: {words}" if much else said_plainly(count, noun)), (age, count)
            # Without a population to compare with, always plainly.
            assert describe_reason("costs", person, money=False) == said_plainly(count, noun)
    assert describe_reason("costs", {"cost_total_12m": 900.0, "age": 70.0, **use_values(measure, 1.0)},
                           money=False, thresholds=thresholds) == said_plainly(1.0, noun)


def test_much_use_is_claimed_only_of_a_use_it_names():
    """An unusual use that another reason beside it already says is not named here, so it cannot make
    the uses that are named "much"; one unusual use among those named can."""
    thresholds = ReasonThresholds({"gp_contacts_12m": {"all": 10.0}, "outpatient_attended_12m": {"all": 5.0}})
    person = {"cost_total_12m": 900.0, "age": 80.0, "gp_contacts_0_3m": 30.0, "outpatient_attended_12m": 1.0}
    assert describe_reason("costs", person, money=False, thresholds=thresholds, said={"GP contacts"}) == \
        "1 outpatient appointment in the last 12 months"
    assert describe_reason("costs", person, money=False, thresholds=thresholds) == \
        "much use of services: 1 outpatient appointment, 30 GP contacts"
    # Emergency admissions and A&E visits are named only when nothing else is: and judged the same way.
    urgent = {"cost_total_12m": 900.0, "age": 80.0, "emergency_admissions_0_3m": 1.0, "ae_attendances_3_12m": 2.0}
    assert describe_reason("costs", urgent, money=False, thresholds=thresholds) == \
        "1 emergency admission, 2 A&E visits in the last 12 months"


@pytest.mark.parametrize("items, threshold, text", [
    (35.0, 36.0, "about 12 prescription items a month"),                   # below
    (36.0, 36.0, "about 12 prescription items a month"),                   # at
    (37.0, 36.0, "many medicines: about 12 prescription items a month"),   # above
    (28.0, 20.0, "about 9 prescription items a month"),                    # above, but under 10 a month
    (29.0, 28.0, "many medicines: about 10 prescription items a month"),   # above, and about 10 a month
])
def test_many_medicines_only_above_the_age_bands_threshold(items, threshold, text):
    thresholds = ReasonThresholds({"rx_items_3m": {"all": 1000.0, "85+": threshold}})
    person = {"rx_items_3m": items, "rx_items_12m": 4 * items, "rx_chapters_12m": 2.0, "age": 91.0}
    assert describe_reason("prescriptions", person, thresholds=thresholds) == text
    assert describe_reason("prescriptions", {**person, "age": 60.0}, thresholds=thresholds) == text.replace(
        "many medicines: ", "")  # another band: the whole population's (1000)
    assert "many" not in describe_reason("prescriptions", person)


@pytest.mark.parametrize("values, text", [
    ({"frailty_deficits": 1.0, "age": 88.0}, None),  # age alone: not a frailty reason
    ({"frailty_deficits": 1.0, "age": 84.0}, "1 frailty deficit: fall or hip fracture admission"),
    ({"frailty_deficits": 2.0, "age": 88.0, "ltc_copd": 1.0}, "2 frailty deficits: COPD, aged 85+"),
    ({"frailty_deficits": 0.0, "age": 95.0}, None),
])
def test_a_frailty_reason_is_more_than_age(values, text):
    assert describe_reason("frailty_deficits", values) == text


@pytest.mark.parametrize("decile, text", [
    (1.0, "lives in a deprived area (decile 1)"), (2.0, "lives in a deprived area (decile 2)"),
    (3.0, "lives in an area of deprivation decile 3 (1 = most deprived)"),
    (9.0, "lives in an area of deprivation decile 9 (1 = most deprived)")])
def test_deprived_only_of_the_most_deprived_deciles(decile, text):
    assert describe_reason("deprivation_decile", {"deprivation_decile": decile}) == text


# ------------------------------------------------------------------ the thresholds from a population


def test_thresholds_are_each_age_bands_90th_percentile():
    n_old, n_young = 200, MIN_BAND_PEOPLE - 1
    people = pd.DataFrame({
        "age": [70.0] * n_old + [30.0] * n_young + [np.nan],
        "gp_contacts_0_3m": list(range(n_old)) + [0.0] * n_young + [np.nan],
        "gp_contacts_3_12m": [1.0] * n_old + [0.0] * n_young + [0.0],
        "outpatient_attended_12m": [0.0] * (n_old + n_young + 1)})
    t = reason_thresholds(people)
    # 70-year-olds: 1..200 GP contacts; 180 of 200 have at most 180. The 30-year-olds' band is too
    # small for its own: the whole population's (300 people: 270 have at most 170).
    assert t.values["gp_contacts_12m"] == {"all": 170.0, "65-74": 180.0}
    assert t.values["outpatient_attended_12m"] == {"all": 0.0, "65-74": 0.0}
    assert "rx_items_3m" not in t.values  # no prescriptions in the data: never "many medicines"
    assert not t.unusual("rx_items_3m", [1e9], [70.0])[0]
    assert t.unusual("gp_contacts_12m", [181.0, 180.0, 171.0, 171.0], [70.0, 70.0, 30.0, np.nan]).tolist() == \
        [True, False, True, True]
    assert ReasonThresholds.from_dict(t.as_dict()) == t  # as the served model keeps them


def test_counts_of_parts_add_up_to_the_wholes_thresholds():
    """Spark counts each batch and sums: the same thresholds as counting everyone at once."""
    rng = np.random.default_rng(5)
    people = hostile_people(rng, 3000)
    parts = pd.concat([use_counts(people.iloc[i:i + 700]) for i in range(0, len(people), 700)])
    assert thresholds_from_counts(parts) == reason_thresholds(people)
    assert set(reason_thresholds(people).values) == set(USE_MEASURES)


def test_age_bands_as_the_lists_say_them():
    assert age_band_index([0.0, 17.99, 18.0, 39.9, 40.0, 55.99, 56.0, 85.0, 120.0, np.nan, -1.0]).tolist() == \
        [0, 0, 1, 1, 2, 2, 3, 6, 6, -1, -1]
    ages = hostile_values(np.random.default_rng(2), 2000).tolist() + [np.inf, -np.inf, -0.0, 1e300]
    t = HOSTILE_THRESHOLDS  # one person at a time (describe_reason) as many at once (reason_key)
    assert [t.unusual_one("gp_contacts_12m", 7.6, a) for a in ages] == \
        t.unusual("gp_contacts_12m", np.full(len(ages), 7.6), ages).tolist()


def realistic_people(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """People whose use rises with age, as in a practice's population."""
    age = rng.uniform(18, 100, n)
    rate = np.exp((age - 60) / 25)
    people = pd.DataFrame({"age": age, "cost_total_12m": rng.gamma(1.0, 800, n) + 1.0,
                           "rx_items_3m": rng.poisson(6 * rate * rng.gamma(0.7, 1 / 0.7, n)).astype(float),
                           "rx_items_12m": rng.poisson(16 * rate).astype(float),
                           "rx_chapters_12m": rng.integers(0, 8, n).astype(float)},
                          index=pd.Index([f"p{i}" for i in range(n)], name="person_id"))
    for measure, _ in USES:
        scale = {"gp_contacts_12m": 3.0, "outpatient_attended_12m": 1.0}.get(measure, 0.15)
        for c in USE_MEASURES[measure]:
            people[c] = rng.poisson(scale * rate / len(USE_MEASURES[measure])).astype(float)
    return people


def test_on_a_population_much_and_many_are_said_only_of_unusual_uses():
    """Every "much use" names a use above the person's band's 90th percentile (and at least 3); every
    plain use of services names none; the words are the same as said one person at a time."""
    rng = np.random.default_rng(24)
    people = realistic_people(rng, 4000)
    thresholds = reason_thresholds(people)
    costs, rx = (pd.DataFrame({name: 1.0}, index=people.index) for name in ("cost_total_12m", "rx_items_3m"))
    said = top_reasons(costs, people, thresholds=thresholds)
    assert said.equals(reference_top_reasons(costs, people, thresholds=thresholds))
    medicines = top_reasons(rx, people, thresholds=thresholds)["reason_1"]
    age = np.floor(people["age"].to_numpy())
    noun_of = {noun: measure for measure, noun in USES}
    much = plain = many = 0
    for i, text in enumerate(said["reason_1"]):
        if pd.isna(text):  # no use at all
            continue
        named = re.findall(r"(\d+) ([a-zA-Z& ]+?)s?(?:,|$| in the last)", text.removeprefix("much use of services: "))
        unusual = [thresholds.unusual(noun_of[noun], [float(k)], [age[i]])[0] for k, noun in named if noun in noun_of]
        assert any(unusual) == text.startswith("much use of services: "), text
        much += any(unusual)
        plain += not any(unusual)
    for i, text in enumerate(medicines):
        items = people["rx_items_3m"].iloc[i]
        if items >= 3:  # said a month
            claimed = round(items / 3) >= 10 and thresholds.unusual("rx_items_3m", [items], [age[i]])[0]
            assert text.startswith("many medicines: ") == claimed, (text, items, age[i])
            many += claimed
    assert much > 100 and plain > 1000 and many > 10
    # The count: no "much use" of 2 contacts or fewer.
    assert not said["reason_1"].str.fullmatch(r"much use of services: [12] [^,]*").any()


def test_explain_people_says_the_words_against_the_thresholds_it_is_given():
    from riskstrat.scoring.month import InMemoryFeatures, explain_people

    class Model:  # the SHAP values a model would give: all on the cost
        def contributions(self, frame):
            return pd.DataFrame({"cost_total_12m": np.ones(len(frame))}, index=frame.index), 0.0

    people = realistic_people(np.random.default_rng(3), 600)
    month = InMemoryFeatures(people)
    assert month.reason_thresholds() == reason_thresholds(people)
    gp = people["gp_contacts_0_3m"] + people["gp_contacts_3_12m"]
    heavy = pd.Index([gp.idxmax()])
    assert month.reason_thresholds().unusual("gp_contacts_12m", [gp.max()], [people.loc[heavy[0], "age"]])[0]
    words, _ = explain_people(Model(), people.loc[heavy], np.ones(1), n=3, thresholds=month.reason_thresholds(),
                              chunk_size=1)
    assert words["reasons"].iloc[0].startswith("much use of services")
    words, _ = explain_people(Model(), people.loc[heavy], np.ones(1), n=3, chunk_size=1)
    assert "much" not in words["reasons"].iloc[0]


def test_use_counts_are_the_counts_of_each_band_and_value():
    # use_counts counts each (age band, value) pair by number (factorised values within bands): the
    # pairs and people a frame's value_counts gives, and so the same thresholds.

    rng = np.random.default_rng(5)
    n = 5000
    frame = pd.DataFrame({"age": rng.uniform(10, 105, n),
                          **{c: rng.poisson(2.0, n).astype(float) for cs in USE_MEASURES.values() for c in cs}})
    frame.loc[frame.index[::13], "age"] = np.nan
    frame.loc[frame.index[::7], "rx_items_3m"] = np.nan
    want = pd.concat([pd.DataFrame({"band": age_band_index(frame["age"]), "value": _measure_values(frame, m)})
                      .value_counts().rename("people").reset_index().assign(measure=m) for m in USE_MEASURES])
    key = ["measure", "band", "value"]
    got = use_counts(frame)
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  want[got.columns].sort_values(key).reset_index(drop=True), check_dtype=False)
    assert thresholds_from_counts(got) == thresholds_from_counts(want)
    assert use_counts(frame.iloc[:0]).empty
