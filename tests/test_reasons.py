"""The fast reasons against the person-by-person definitions, on hostile values.

:func:`riskstrat.features.reasons.top_reasons` says each group's words once per distinct key
(:func:`riskstrat.features.words.reason_key`) and walks all people place by place at once. These tests
hold it to :func:`riskstrat.features.words.describe_reason` for every group, currency, ``money`` and
``said`` combination, and to the person-by-person loop that made the month's files before
(:func:`reference_top_reasons`), on values chosen to sit on and around every threshold the words
test (NaN, 0, -0, huge, fractional, negative, each threshold plus or minus a little).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import riskstrat.features.reasons as reasons
from riskstrat.features.clinical import CONTEXT_COLUMNS, FEATURE_NAMES
from riskstrat.features.words import (DEMOGRAPHIC_FEATURES, REASON_GROUPS, describe_reason, feature, reason_group,
                                      reason_inputs)
from riskstrat.features.reasons import REASON_SEPARATOR, top_reasons

COLUMNS = list(FEATURE_NAMES) + list(CONTEXT_COLUMNS)
GROUPS = list(dict.fromkeys(reason_group(name) for name in FEATURE_NAMES))
# Thresholds the words test (flags 0.5, 3 and 10 items, 4 chapters, 2 conditions, aged 85, 31 days,
# 24 months, no event = 731 days, "1" for plurals, 0 for "any") and what each is written with.
THRESHOLDS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0, 31.0, 85.0, 24 * 30.44, 730.0, 731.0, 1.5, 2.5, 4.5, 7.5)


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


CASES = [(currency, money) for money in (True, False) for currency in ("GBP", "USD", "EUR", "XYZ")]


@pytest.mark.parametrize("currency, money", CASES)
def test_the_words_of_every_group_are_describe_reasons(currency, money):
    rng = np.random.default_rng(sum(map(ord, currency)) + money)
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
        words = reasons._Words(frame, list(frame.columns), GROUPS, currency=currency, money=money)
        who = np.arange(len(frame))
        fast = words.texts(g, who, frame_said)
        values = people_values + person_values(variants)
        expected = [describe_reason(group, values[i], currency=currency, money=money,
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
                          money_reasons=False):
    """top_reasons as it was: one person at a time, describe_reason for each reason tried."""
    names = list(contributions.columns)
    rows = features.reindex(contributions.index)
    groups = list(dict.fromkeys(reason_group(c) for c in names))
    membership = np.zeros((len(names), len(groups)))
    for j, c in enumerate(names):
        membership[j, groups.index(reason_group(c))] = 1.0
    shap = contributions.to_numpy(dtype="float64") @ membership
    value_names = list(dict.fromkeys(names + [c for c in reasons._CONTEXT + FEATURE_NAMES if c in rows.columns]))
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
            text = describe_reason(groups[j], person, currency=currency, money=money_reasons, said=said - {groups[j]})
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
           dict(demographic_reasons=True, money_reasons=True, min_share=0.0)]


@pytest.mark.parametrize("options", OPTIONS, ids=[",".join(f"{k}={v}" for k, v in o.items()) or "defaults"
                                                  for o in OPTIONS])
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
