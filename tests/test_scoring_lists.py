"""Monthly scoring outputs: tiers, priority groups, reasons, hold-out, changes and the written month.

Hand-made people and scores where the answer can be checked by eye; one small real LightGBM for
the SHAP checks and the end-to-end month.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import textwrap
import time
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from markupsafe import Markup

from riskstrat.scoring import lists

from riskstrat.scoring import publish
from riskstrat.scoring.published import TamperedFileError
from riskstrat.features.clinical import CONTEXT_COLUMNS, FEATURES, FEATURE_NAMES, NO_EVENT_DAYS
from riskstrat.features.words import describe_reason, describe_value, feature, reason_group
from riskstrat.modeling.models import RiskModel
from riskstrat.features.reasons import check_additivity, top_reasons
from riskstrat.modeling.tiers import (DEFAULT_GROUP_PAGE_NAMES, DEFAULT_GROUPS, GroupRule, assign_groups, assign_tiers, cost_band, group_flags,
                             rank_by_score)

LIST_SIZE = 25
MONTH = "2026-11"


# ----------------------------------------------------------------------------- fixtures


def make_features(n: int = 300, *, seed: int = 0, practices=("P001", "P002", "P003")) -> pd.DataFrame:
    """A features frame shaped like build_features output (index person_id, features, context, metadata)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(0.0, index=pd.Index([f"id{i:04d}" for i in range(n)], name="person_id"),
                     columns=list(FEATURE_NAMES) + list(CONTEXT_COLUMNS))
    X[list(CONTEXT_COLUMNS)] = np.nan
    X["age"] = rng.uniform(18, 98, n).round(2)
    X["sex_female"] = rng.integers(0, 2, n).astype(float)
    X["deprivation_decile"] = rng.integers(1, 11, n).astype(float)
    X["emergency_admissions_0_3m"] = rng.poisson(0.3, n).astype(float)
    X["emergency_admissions_3_12m"] = rng.poisson(0.6, n).astype(float)
    X["ae_attendances_0_3m"] = rng.poisson(0.4, n).astype(float)
    X["ae_attendances_3_12m"] = rng.poisson(1.0, n).astype(float)
    X["emergency_bed_days_12m"] = (X["emergency_admissions_0_3m"] + X["emergency_admissions_3_12m"]) * 4
    X["days_since_emergency_admission"] = np.where(X["emergency_admissions_0_3m"] > 0, 40, NO_EVENT_DAYS)
    X["ltc_heart_failure"] = rng.binomial(1, 0.15, n).astype(float)
    X["ltc_heart_failure_years"] = np.where(X["ltc_heart_failure"] > 0, rng.uniform(0.1, 12, n).round(1), np.nan)
    X["ltc_copd"] = rng.binomial(1, 0.1, n).astype(float)
    X["ltc_copd_years"] = np.where(X["ltc_copd"] > 0, rng.uniform(0.1, 12, n).round(1), np.nan)
    X["ltc_count"] = X["ltc_heart_failure"] + X["ltc_copd"]
    X["home_care_at_index"] = rng.binomial(1, 0.08, n).astype(float)
    X["days_since_social_care_start"] = np.where(X["home_care_at_index"] > 0, rng.integers(10, 700, n), NO_EVENT_DAYS)
    X["cost_total_12m"] = rng.gamma(1.0, 800, n).round(2) + 2_000 * X["emergency_admissions_3_12m"]
    X["practice_id"] = pd.array(rng.choice(practices, n), dtype="string")
    X["sex"] = np.where(X["sex_female"] > 0, "female", "male")
    X["ethnicity_group"] = "white"
    return X


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return make_features()


@pytest.fixture(scope="module")
def model(features) -> RiskModel:
    """A real LightGBM (small, fast) whose risk rises with admissions, age, heart failure and home care."""
    import lightgbm as lgb

    names = [c for c in FEATURE_NAMES if c not in ("years_since_first_ltc",)]
    rng = np.random.default_rng(1)
    logit = (-3 + 0.8 * features["emergency_admissions_0_3m"] + 0.4 * features["emergency_admissions_3_12m"]
             + 0.03 * (features["age"] - 50) + 1.0 * features["ltc_heart_failure"] + 0.8 * features["home_care_at_index"])
    y = rng.random(len(features)) < 1 / (1 + np.exp(-logit))
    clf = lgb.LGBMClassifier(n_estimators=25, num_leaves=7, max_depth=4, min_child_samples=5, learning_rate=0.2,
                             random_state=0, deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)
    clf.fit(features[names].astype("float64"), y.astype(int))
    return RiskModel("lightgbm", "emergency_admission", names, clf)


def score_month(features: pd.DataFrame, model: RiskModel, *, previous=None, month=MONTH, fraction=0.1):
    """The batch job's pure half, as lists.py documents it."""
    population = lists.rank_population(features, model.predict_risk(features),
                                       predicted_cost=features["cost_total_12m"] * 1.1)
    ids = population.loc[lists.listed_mask(population, list_size=LIST_SIZE), "person_id"]
    shap, base = model.contributions(features.loc[ids])
    check_additivity(shap, base, model.raw_score(features.loc[ids]))
    population = lists.mark_lists(population, list_size=LIST_SIZE, month=month, previous=previous,
                                  reasons=top_reasons(shap, features.loc[ids]), holdout_fraction=fraction, seed=42)
    return population


def write(out, population, *, previous=None, reidentify=None, manifest=None):
    return lists.write_month(
        out, population=population, practice_lists=lists.practice_lists(population, list_size=LIST_SIZE),
        summary=lists.commissioner_summary(population, list_size=LIST_SIZE, groups=DEFAULT_GROUPS),
        manifest=manifest or {"as_of": "2026-11-01", "models": {"emergency_admission": {"version": "3"}}},
        reidentify=reidentify, changes=lists.changes_since(previous, population, list_size=LIST_SIZE))


# ----------------------------------------------------------------------------- tiers


def test_tiers_of_1000_people_follow_the_pyramid():
    rng = np.random.default_rng(3)
    risk = pd.Series(rng.random(1000), index=[f"id{i}" for i in range(1000)])
    tiers = assign_tiers(risk)
    assert tiers.value_counts().reindex(["very high", "high", "moderate", "low"]).tolist() == [5, 45, 150, 800]
    assert list(tiers.cat.categories) == ["very high", "high", "moderate", "low"] and tiers.cat.ordered
    # Every person in a higher tier has a higher risk than everyone in a lower one.
    lowest = risk.groupby(tiers, observed=True).min()
    highest = risk.groupby(tiers, observed=True).max()
    assert lowest["very high"] > highest["high"] and lowest["high"] > highest["moderate"]
    assert lowest["moderate"] > highest["low"]
    assert set(risk.nlargest(5).index) == set(tiers[tiers == "very high"].index)


def test_ties_are_ranked_by_person_id_whatever_the_row_order_and_share_a_tier():
    risk = pd.Series([0.5] * 10, index=[f"id{i}" for i in range(10)])
    cutoffs = {"very high": 0.1, "high": 0.3}
    tiers = assign_tiers(risk, cutoffs=cutoffs)
    assert tiers.eq("very high").all()  # one risk, one tier: the cut-offs do not split a tie
    shuffled = risk.sample(frac=1, random_state=1)
    assert assign_tiers(shuffled, cutoffs=cutoffs).reindex(risk.index).equals(tiers)
    assert rank_by_score(shuffled).reindex(risk.index).tolist() == list(range(1, 11))


@pytest.mark.parametrize("cutoffs, match", [
    ({"very high": 0.05, "high": 0.005}, "increase"),
    ({"high": 0.0}, r"\(0, 1\)"),
    ({"high": 1.2}, r"\(0, 1\)"),
    ({"high": 0.05, "low": 0.5}, "rest of the population"),
    ({}, "empty"),
])
def test_bad_tier_cutoffs_are_refused(cutoffs, match):
    with pytest.raises(ValueError, match=match):
        assign_tiers(pd.Series([0.1, 0.2]), cutoffs=cutoffs)


def test_missing_risk_cannot_be_tiered():
    with pytest.raises(ValueError, match="NaN"):
        assign_tiers(pd.Series([0.1, np.nan]))


# ----------------------------------------------------------------------------- priority groups


def people(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"age": [60.0] * n, "emergency_admissions_0_3m": [0] * n, "emergency_admissions_3_12m": [0] * n,
            "ae_attendances_0_3m": [0] * n, "ae_attendances_3_12m": [0] * n, "cost_total_12m": [100.0] * n}
    return pd.DataFrame({**base, **columns}, index=[f"id{i}" for i in range(n)])


@pytest.mark.parametrize("age, groups", [
    (39.9, ""), (40.0, "prevention 40–55"), (55.0, "prevention 40–55"), (55.9, "prevention 40–55"),
    (56.0, ""), (84.9, ""), (85.0, "care provision 85+"), (101.0, "care provision 85+"),
])
def test_age_groups_use_completed_years_inclusive(age, groups):
    rules = [g for g in DEFAULT_GROUPS if g.min_age is not None]
    assert assign_groups(people(age=[age]), groups=rules).iloc[0] == groups


def test_frequent_users_need_3_admissions_or_5_ae_visits_in_the_past_year():
    frame = people(emergency_admissions_0_3m=[1, 1, 0, 0, 0, np.nan],
                   emergency_admissions_3_12m=[2, 1, 0, 0, 0, np.nan],
                   ae_attendances_0_3m=[0, 0, 2, 2, 0, 5],
                   ae_attendances_3_12m=[0, 0, 3, 2, 0, 0])
    flags = group_flags(frame, groups=[DEFAULT_GROUPS[3]])["frequent users"]
    assert flags.tolist() == [True, False, True, False, False, True]


def test_high_cost_is_top_5_percent_of_predicted_or_past_cost():
    n = 100
    predicted = np.arange(n, dtype=float)          # top 5 predicted: id95..id99
    past = np.arange(n, dtype=float)[::-1].copy()  # top 5 past: id0..id4
    frame = people(age=[60.0] * n, cost_total_12m=past, predicted_cost=predicted)
    rule = [g for g in DEFAULT_GROUPS if g.name == "high-cost individuals"]
    members = set(frame.index[group_flags(frame, groups=rule).iloc[:, 0]])
    assert members == {f"id{i}" for i in (0, 1, 2, 3, 4, 95, 96, 97, 98, 99)}
    # Without a predicted cost in pounds the high-cost model's risk ranks people instead.
    by_risk = frame.drop(columns="predicted_cost").assign(high_cost_risk=predicted / n)
    assert set(by_risk.index[group_flags(by_risk, groups=rule).iloc[:, 0]]) == members
    # match="all": both conditions at once - nobody here.
    both = GroupRule(name="both", top_fraction_predicted_cost=0.05, top_fraction_past_cost=0.05, match="all")
    assert not group_flags(frame, groups=[both]).iloc[:, 0].any()


def test_a_person_can_be_in_several_groups():
    frame = people(age=[88.0, 45.0], emergency_admissions_0_3m=[3, 0], cost_total_12m=[0.0, 0.0])
    rules = [g for g in DEFAULT_GROUPS if g.name != "high-cost individuals"]
    assert assign_groups(frame, groups=rules).tolist() == ["care provision 85+; frequent users", "prevention 40–55"]


@pytest.mark.parametrize("config, match", [
    ({"name": "x", "min_age": 40, "maximum_age": 55}, "Extra inputs"),
    ({"name": "nobody"}, "no condition"),
    ({"name": "x", "min_age": 60, "max_age": 50}, "above max_age"),
    ({"name": "a;b", "min_age": 60}, "must not contain"),
    ({"name": "x", "top_fraction_past_cost": 5}, "less than 1"),
])
def test_group_rules_fail_loudly(config, match):
    with pytest.raises(ValueError, match=match):
        GroupRule.model_validate(config)


@pytest.mark.parametrize("cost, band", [(0, "under £1k"), (999.99, "under £1k"), (1_000, "£1k–5k"),
                                        (19_999, "£5k–20k"), (20_000, "£20k+"), (np.nan, None)])
def test_cost_bands(cost, band):
    got = cost_band(pd.Series([cost])).iloc[0]
    assert (pd.isna(got) and band is None) or got == band


# ----------------------------------------------------------------------------- reasons


def hand_made_explanations():
    names = ["age", "sex_female", "emergency_admissions_0_3m", "ltc_heart_failure", "home_care_at_index",
             "ae_attendances_3_12m"]
    feats = pd.DataFrame({
        "age": [82.0, 45.0], "sex_female": [1.0, 0.0], "emergency_admissions_0_3m": [3.0, 0.0],
        "ltc_heart_failure": [1.0, 0.0], "home_care_at_index": [1.0, 0.0], "ae_attendances_3_12m": [2.0, 1.0],
        "ltc_heart_failure_years": [4.2, np.nan], "days_since_social_care_start": [61.0, NO_EVENT_DAYS],
    }, index=pd.Index(["alice", "bob"], name="person_id"))
    shap = pd.DataFrame([
        # alice: sex has the largest SHAP but is never a reason; age lowers her risk (negative).
        [-0.30, 0.50, 0.60, 0.30, 0.20, 0.01],
        # bob: nothing raises his risk.
        [-0.20, -0.10, -0.05, 0.0, 0.0, -0.01],
    ], index=feats.index, columns=names)
    return shap, feats


def test_reasons_use_the_persons_own_values_and_shares():
    shap, feats = hand_made_explanations()
    r = top_reasons(shap, feats, n=3)
    total = 0.50 + 0.60 + 0.30 + 0.20 + 0.01  # positive SHAP only
    # Shares order the reasons but are not printed: a coordinator reads facts, not a model's shares.
    assert r.loc["alice", "reason_1"] == "3 emergency admissions in the last 12 months"
    assert r.loc["alice", "reason_2"] == "heart failure (diagnosed 4 years ago)"
    assert r.loc["alice", "reason_3"] == "receives home care, started 2 months ago"
    assert r.loc["alice", "reasons"] == "; ".join(r.loc["alice", ["reason_1", "reason_2", "reason_3"]])
    assert r.loc["alice", "share_1"] == pytest.approx(0.60 / total)
    assert r.loc["alice", ["share_1", "share_2", "share_3"]].sum() <= 1


def test_reasons_never_show_what_lowers_risk():
    shap, feats = hand_made_explanations()
    r = top_reasons(shap, feats, n=5, min_share=0.0)
    assert r.loc["bob", "reasons"] == "" and r.loc["bob", ["reason_1", "reason_2"]].isna().all()
    assert not r["reasons"].str.contains("aged|female").any()
    # The tiny A&E contribution (0.6%) shows only when min_share allows it.
    assert "A&E" in r.loc["alice", "reasons"]
    assert "A&E" not in top_reasons(shap, feats, n=5)["reasons"].loc["alice"]


def test_reasons_and_shares_on_a_real_model(features, model):
    shap, _ = model.contributions(features)
    r = top_reasons(shap, features, demographic_reasons=True)
    shares = r[["share_1", "share_2", "share_3"]]
    assert (shares.sum(axis=1) <= 1 + 1e-12).all()
    assert (shares.fillna(1) >= 0.05).all().all()
    # The first reason is the person's largest positive reason group (related features summed)
    # that can be put into words: every group ranked above it is unsayable (e.g. sex).
    groups = shap.T.groupby(lambda name: reason_group(name)).sum().T
    checked = 0
    for person in r.index[r["reason_1"].notna()][:60]:
        row = groups.loc[person]
        first = (row / row[row > 0].sum() - r.loc[person, "share_1"]).abs().idxmin()
        values = features.loc[person].to_dict()
        values["age"] = np.floor(values["age"])
        if first == "costs":  # names only the uses that the reasons beside it do not
            assert r.loc[person, "reason_1"].endswith(" in the last 12 months")  # no population: no "much"
        else:
            assert r.loc[person, "reason_1"] == describe_reason(first, values, money=False)
        # (Use of services may also be skipped when the reasons beside it already name every use.)
        assert all(describe_reason(g, values, money=False) is None for g in row.index[row > row[first]]
                   if g != "costs")
        checked += 1
    assert checked == 60
    # Ages are said in completed years, as the list's Age column shows them.
    said = r["reasons"].str.extract(r"aged (\d+)")[0].dropna().astype(int)
    assert (said == np.floor(features.loc[said.index, "age"]).astype(int)).all() and len(said)


def test_shap_is_additive_and_native_equals_the_shap_package(features, model):
    shap_values, base = model.contributions(features)
    error = check_additivity(shap_values, base, model.raw_score(features))
    assert error < 1e-6
    import shap

    explainer = shap.TreeExplainer(model.estimator.booster_)
    package = explainer.shap_values(features[model.feature_names].astype("float64"))
    package = package[1] if isinstance(package, list) else package
    assert np.max(np.abs(package - shap_values.to_numpy())) < 1e-6


def test_additivity_check_catches_mismatched_explanations(features, model):
    shap_values, base = model.contributions(features.iloc[:10])
    with pytest.raises(ValueError, match="differ from the raw score"):
        check_additivity(shap_values, base, model.raw_score(features.iloc[:10]) + 0.01)


# ----------------------------------------------------------------------------- population, opt-outs, hold-out


def test_rank_population_ranks_everyone_and_within_each_practice(features, model):
    pop = lists.rank_population(features, model.predict_risk(features))
    assert pop["rank"].tolist() == list(range(1, len(features) + 1))
    assert pop["risk"].is_monotonic_decreasing
    for _, part in pop.groupby("practice_id"):
        assert sorted(part["practice_rank"]) == list(range(1, len(part) + 1))
        assert part.sort_values("practice_rank")["risk"].is_monotonic_decreasing
    person = pop.iloc[0]
    row = features.loc[person["person_id"]]
    assert person["emergency_admissions_12m"] == row["emergency_admissions_0_3m"] + row["emergency_admissions_3_12m"]
    assert pop["predicted_cost_band"].isna().all()


def test_opted_out_people_are_removed_before_scoring_and_counted(features, model):
    opted_out = {"id0003", "id0100", "not-in-data"}
    kept, removed = lists.apply_opt_outs(features, opted_out)
    assert removed == 2 and not kept.index.isin(list(opted_out)).any()
    pop = lists.rank_population(kept, model.predict_risk(kept))
    assert len(pop) == len(features) - 2 and not pop["person_id"].isin(opted_out).any()
    # On an already ranked population the ranks close up.
    full = lists.rank_population(features, model.predict_risk(features))
    top = full.iloc[0]["person_id"]
    after, n = lists.apply_opt_outs(full, {top})
    assert n == 1 and after["rank"].tolist() == list(range(1, len(full)))
    for _, part in after.groupby("practice_id"):
        assert sorted(part["practice_rank"]) == list(range(1, len(part) + 1))


def test_holdout_is_seeded_stable_and_per_practice(features, model):
    pop = lists.rank_population(features, model.predict_risk(features))
    flags = lists.holdout_flags(pop, list_size=LIST_SIZE, fraction=0.2, seed=7, month=MONTH)
    again = lists.holdout_flags(pop.sample(frac=1, random_state=3), list_size=LIST_SIZE, fraction=0.2, seed=7,
                                month=MONTH)
    assert again.reindex(pop.index).equals(flags)
    listed = lists.listed_mask(pop, list_size=LIST_SIZE)
    assert not (flags & ~listed).any()
    per_practice = flags.groupby(pop["practice_id"]).sum()
    assert (per_practice == 5).all()  # 20% of 25 listed in each practice
    other = lists.holdout_flags(pop, list_size=LIST_SIZE, fraction=0.2, seed=8, month=MONTH)
    assert not other.equals(flags)
    assert not lists.holdout_flags(pop, list_size=LIST_SIZE, fraction=0.0, seed=7, month=MONTH).any()
    with pytest.raises(ValueError, match="hold-out fraction"):
        lists.holdout_flags(pop, list_size=LIST_SIZE, fraction=1.0, seed=7, month=MONTH)


# ----------------------------------------------------------------------------- changes


def toy_population(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["person_id", "practice_id", "practice_rank", "tier"])
    frame["tier"] = pd.Categorical(frame["tier"], categories=["very high", "high", "moderate", "low"], ordered=True)
    return frame


def test_month_over_month_changes():
    before = toy_population([("a", "P1", 1, "high"), ("b", "P1", 2, "high"), ("c", "P1", 3, "moderate"),
                             ("d", "P2", 1, "high")])
    now = toy_population([("a", "P1", 1, "very high"), ("c", "P1", 2, "moderate"), ("b", "P1", 3, "moderate"),
                          ("e", "P2", 1, "high"), ("d", "P1", 4, "high")])
    ch = lists.changes_since(before, now, list_size=2).set_index(["practice_id", "person_id"])
    assert set(ch.index) == {("P1", "a"), ("P1", "b"), ("P1", "c"), ("P2", "d"), ("P2", "e")}
    assert ch.loc[("P1", "c"), "new_this_month"] and ch.loc[("P2", "e"), "new_this_month"]
    assert ch.loc[("P1", "b"), "left"] and ch.loc[("P2", "d"), "left"]
    assert not ch.loc[("P1", "a"), ["new_this_month", "left"]].any()
    assert ch.loc[("P1", "a"), "tier_change"] == "high → very high"
    assert ch.loc[("P1", "b"), "tier_change"] == "high → moderate"
    # d moved to P1: the old practice gets no current information about them.
    assert pd.isna(ch.loc[("P2", "d"), "tier"]) and pd.isna(ch.loc[("P2", "d"), "tier_change"])


def test_first_month_nobody_is_new_and_holdout_is_not_on_the_list():
    now = toy_population([("a", "P1", 1, "high"), ("b", "P1", 2, "high"), ("c", "P1", 3, "low")])
    ch = lists.changes_since(None, now, list_size=2)
    # No list last month: nobody is new to it (unknown, not "new"), nobody left it.
    assert ch["person_id"].tolist() == ["a", "b"] and ch["new_this_month"].isna().all() and not ch["left"].any()
    held = now.assign(holdout=[False, True, False])
    assert lists.changes_since(None, held, list_size=2)["person_id"].tolist() == ["a"]


def test_mark_lists_records_new_people_and_tier_moves(tmp_path, features, model):
    first = score_month(features, model, month="2026-10", fraction=0.0)
    assert first["new_this_month"].isna().all()  # the first month: no last month's list to be new to
    assert first["tier_change"].isna().all()
    assert first.loc[first["listed"], "reasons"].notna().all() and first.loc[~first["listed"], "reasons"].isna().all()
    # Last month comes back from its own population.parquet; same data again: nobody new, nothing moved.
    previous = pd.read_parquet(write(tmp_path / "2026-10", first) / "population.parquet")
    same = score_month(features, model, previous=previous, month="2026-11", fraction=0.0)
    assert not same["new_this_month"].any() and same["tier_change"].isna().all()
    assert same["previous_tier"].eq(same["tier"].astype("str")).all()
    # Next month the same people score higher in one practice: nobody new there, some move tier.
    later = features.copy()
    later["emergency_admissions_0_3m"] += np.where(later["practice_id"] == "P001", 2, 0)
    second = score_month(later, model, previous=first, month="2026-11", fraction=0.0)
    assert second["tier_change"].dropna().str.contains(" → ").all()
    assert second["tier_change"].notna().any()


# ----------------------------------------------------------------------------- tables and files


def test_practice_list_holds_only_that_practice_without_the_holdout(features, model):
    pop = score_month(features, model)
    table = lists.practice_list(pop, "P002", list_size=LIST_SIZE)
    mine = pop[pop["practice_id"] == "P002"]
    assert set(table["Person ID"]) <= set(mine["person_id"])
    held = set(mine.loc[mine["holdout"], "person_id"])
    assert held and not held & set(table["Person ID"])
    assert len(table) == LIST_SIZE - len(held)
    assert table["Rank"].tolist() == list(range(1, len(table) + 1))
    assert table["Risk (%)"].is_monotonic_decreasing
    assert list(table.columns) == [c for c in lists.PRACTICE_LIST_COLUMNS if c != "High-cost risk (%)"]
    assert table["Top reasons"].str.len().gt(0).all()
    with pytest.raises(ValueError, match="nobody"):
        lists.practice_list(pop, "P999", list_size=LIST_SIZE)


def test_commissioner_summary_has_no_person_rows_and_adds_up(features, model):
    pop = score_month(features, model)
    summary = lists.commissioner_summary(pop, list_size=LIST_SIZE, groups=DEFAULT_GROUPS)
    assert summary["practice_id"].tolist() == ["P001", "P002", "P003", "all practices"]
    text = summary.to_csv()
    assert not any(pid in text for pid in pop["person_id"])
    total = summary.iloc[-1]
    assert total["people"] == len(pop) == summary["people"].iloc[:-1].sum()
    tier_cols = [c for c in summary if c.startswith("tier: ")]
    assert (summary[tier_cols].sum(axis=1) == summary["people"]).all()
    assert total["expected people with the outcome (all people)"] == pytest.approx(pop["risk"].sum(), abs=0.01)
    p1 = pop[(pop["practice_id"] == "P001") & pop["listed"]]
    # In % (as the pages say risks), not a 0-1 fraction.
    assert summary.iloc[0]["expected % of listed people with the outcome"] == pytest.approx(100 * p1["risk"].mean(),
                                                                                            abs=0.05)
    first = summary.iloc[0]
    assert first["listed"] == LIST_SIZE and first["shown"] == LIST_SIZE - first["held back"]
    assert "group: frequent users" in summary
    assert not [c for c in summary if "held out" in c or "PPV" in c]  # one word for the hold-out: held back
    # Nothing published with the PPV gives back the listed count (sum over listed / PPV = listed).
    ratios = summary.select_dtypes("number").div(summary["expected % of listed people with the outcome"] / 100, axis=0)
    assert not (ratios.sub(summary["listed"], axis=0).abs() < 0.5).drop(columns="listed", errors="ignore").any().any()


def read_practice_files(folder):
    texts = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".xlsx":
            import openpyxl

            wb = openpyxl.load_workbook(path)
            texts[path.name] = " ".join(str(c) for ws in wb for row in ws.iter_rows(values_only=True) for c in row)
        else:
            texts[path.name] = path.read_text(encoding="utf-8-sig")
    return texts


def test_each_practice_folder_holds_only_its_own_people(tmp_path, features, model):
    pop = score_month(features, model)
    out = write(tmp_path / "2026-11", pop)
    practices = sorted(p.name for p in (out / "practices").iterdir())
    assert practices == ["P001", "P002", "P003"]
    for pid in practices:
        files = read_practice_files(out / "practices" / pid)
        assert set(files) == {"list.csv", "list.xlsx", "list.html", "changes.csv"}
        others = pop.loc[pop["practice_id"] != pid, "person_id"]
        for name, text in files.items():
            leaked = [p for p in others if p in text]
            assert not leaked, f"{pid}/{name} names other practices' people: {leaked[:3]}"
        mine = pop.loc[(pop["practice_id"] == pid) & pop["listed"] & ~pop["holdout"], "person_id"]
        assert all(p in files["list.html"] for p in mine)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["as_of"] == "2026-11-01" and "practices/P001/list.csv" in manifest["files"]
    back = pd.read_parquet(out / "population.parquet")
    assert len(back) == len(pop) and back["holdout"].sum() == pop["holdout"].sum()


def test_rerun_of_the_same_month_gives_identical_parquet_and_csv(tmp_path, features, model):
    first = write(tmp_path / "a", score_month(features, model))
    second = write(tmp_path / "b", score_month(features, model))
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*")
                   if p.suffix in (".parquet", ".csv", ".html"))
    assert "population.parquet" in names and "summary.csv" in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_failure_mid_write_leaves_no_partial_month(tmp_path, features, model, monkeypatch):
    pop = score_month(features, model)
    target = tmp_path / "months" / "2026-11"

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(lists, "_write_xlsx", broken)
    with pytest.raises(OSError, match="disk full"):
        write(target, pop)
    # Only the publishing machinery's hidden entries (riskstrat.scoring.publish): no month, no run folder left.
    assert [p.name for p in (tmp_path / "months").iterdir() if not p.name.startswith(".")] == []
    assert list((tmp_path / "months" / ".runs").iterdir()) == []
    # A month already written is left whole when its rewrite fails.
    monkeypatch.undo()
    write(target, pop)
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    monkeypatch.setattr(lists, "_write_xlsx", broken)
    with pytest.raises(OSError):
        write(target, pop)
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before
    assert [p.name for p in (tmp_path / "months").iterdir() if not p.name.startswith(".")] == ["2026-11"]
    assert len(list((tmp_path / "months" / ".runs").iterdir())) == 1


def test_reidentification_applies_only_to_that_practices_files(tmp_path, features, model):
    pop = score_month(features, model)
    p1 = pop.loc[pop["practice_id"] == "P001", "person_id"]
    lookup = pd.DataFrame({"pseudonym": list(p1) + ["id9999"], "local_id": [f"NHS-{i}" for i in range(len(p1) + 1)]})
    out = write(tmp_path / "m", pop, reidentify={"P001": lookup})
    p1_list = pd.read_csv(out / "practices" / "P001" / "list.csv", dtype=str, keep_default_na=False)
    assert list(p1_list.columns[:3]) == ["Rank", "Local ID", "Person ID"]
    assert p1_list["Local ID"].str.startswith("NHS-").all()
    for pid in ("P002", "P003"):
        assert "NHS-" not in "".join(read_practice_files(out / "practices" / pid).values())
    assert "NHS-" not in (out / "summary.csv").read_text()
    assert "local_id" not in pd.read_parquet(out / "population.parquet").columns
    with pytest.raises(ValueError, match="without a list"):
        write(tmp_path / "n", pop, reidentify={"P777": lookup})


def test_write_month_refuses_a_list_with_another_practices_person(tmp_path, features, model):
    pop = score_month(features, model)
    tables = lists.practice_lists(pop, list_size=LIST_SIZE)
    stray = tables["P002"].iloc[:1]
    tables["P001"] = pd.concat([tables["P001"], stray], ignore_index=True)
    with pytest.raises(ValueError, match="not its patients"):
        lists.write_month(tmp_path / "m", population=pop, practice_lists=tables,
                          summary=lists.commissioner_summary(pop, list_size=LIST_SIZE), manifest={})
    assert not (tmp_path / "m").exists()


def test_html_is_self_contained_and_explains_itself(tmp_path, features, model):
    pop = score_month(features, model)
    page = (write(tmp_path / "m", pop) / "practices" / "P001" / "list.html").read_text()
    assert "http://" not in page and "https://" not in page and "src=" not in page and "<link" not in page
    assert "<script>" in page and "<style>" in page and "How to read this list" in page
    assert "does not reduce admissions" in page and "very high" in page and "Why this person" in page
    assert "held back at random" in page and "On this list, of the practice" in page
    assert "model version 3" in page.lower() or "version 3" in page


def test_excel_sheet_is_formatted_for_coordinators(tmp_path, features, model):
    import openpyxl

    pop = score_month(features, model)
    out = write(tmp_path / "m", pop)
    ws = openpyxl.load_workbook(out / "practices" / "P003" / "list.xlsx")["List"]
    header = [c.value for c in ws[1]]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref
    assert ws[1][0].font.bold
    csv = pd.read_csv(out / "practices" / "P003" / "list.csv")
    risk = [ws.cell(i, header.index("Risk (%)") + 1) for i in range(2, len(csv) + 2)]
    # The workbook holds the CSV's numbers (90.6, not 0.906) in a plain number format, so that a filter
    # "greater than 50" keeps the people who read above 50.
    assert [c.value for c in risk] == csv["Risk (%)"].tolist()
    decimals = lists.risk_decimals(pop, list_size=LIST_SIZE)
    assert {c.number_format for c in risk} == {"0." + "0" * decimals}
    assert [c.value for c in risk if c.value > 50] == csv.loc[csv["Risk (%)"] > 50, "Risk (%)"].tolist() != []
    assert ws.column_dimensions["A"].width >= len("Rank")  # sized to its heading and values, not a fixed 8


# ----------------------------------------------------------------------------- reasons a nurse would use


@pytest.mark.parametrize("name", [f.name for f in FEATURES if f.reason is not None])
def test_every_reason_template_says_one_and_many_correctly(name):
    """Each feature's template on a hand-made person: counts say "1 thing" and "3 things"."""
    f = feature(name)
    context = {f"{name}_years": 2.0, "days_since_social_care_start": 1.0}
    if f.kind == "count":
        assert "{s}" in f.reason, f"{name}: a count's template must pluralise"
        one, three = describe_value(name, 1.0, context=context), describe_value(name, 3.0, context=context)
        assert one == f.reason.format(value=1.0, s="") and three == f.reason.format(value=3.0, s="s")
        assert not re.search(r"\b1 \S+s\b", one.replace("1 to 2 years", "").replace("3 to 12 months", "")), one
    elif f.kind == "days":
        assert describe_value(name, 1.0).endswith("1 day ago") and describe_value(name, 3.0).endswith("3 days ago")
        assert describe_value(name, 31.0).endswith("31 days ago") and describe_value(name, 45.0).endswith("1 month ago")
    elif f.kind == "flag":
        text = describe_value(name, 1.0, context=context)
        assert text and "{" not in text and describe_value(name, 0.0) is None
        if name.startswith("ltc_"):
            assert text.endswith("(diagnosed 2 years ago)")
            assert describe_value(name, 1.0, context={f"{name}_years": 1.2}).endswith("(diagnosed 1 year ago)")
    else:
        text = describe_value(name, 86.4 if f.kind == "years" else 1.0)
        assert text and "{" not in text


@pytest.mark.parametrize("group, values, text", [
    # Prescriptions: items a month from the last 3 months, chapters only when there are many
    # ("many medicines" only against a population's thresholds: tests/test_reasons.py).
    ("prescriptions", {"rx_items_3m": 42, "rx_items_12m": 160, "rx_chapters_12m": 9},
     "about 14 prescription items a month, from 9 BNF chapters"),
    ("prescriptions", {"rx_items_3m": 3, "rx_items_12m": 12, "rx_chapters_12m": 2},
     "about 1 prescription item a month"),
    ("prescriptions", {"rx_items_3m": 1, "rx_items_12m": 1, "rx_chapters_12m": 1}, "1 prescription item in the last 3 months"),
    ("prescriptions", {"rx_items_3m": 2, "rx_items_12m": 5}, "2 prescription items in the last 3 months"),
    ("prescriptions", {"rx_items_3m": 0, "rx_items_12m": 1}, "1 prescription item in the last 12 months"),
    ("prescriptions", {"rx_items_3m": 0, "rx_items_12m": 0}, None),
    # Frailty deficits are named from the person's other values; the rest is the fall admission.
    ("frailty_deficits", {"frailty_deficits": 1, "ltc_copd": 1}, "1 frailty deficit: COPD"),
    ("frailty_deficits", {"frailty_deficits": 4, "ltc_dementia": 1, "home_care_at_index": 1, "age": 88},
     "4 frailty deficits: dementia, home care, aged 85+, fall or hip fracture admission"),
    ("frailty_deficits", {"frailty_deficits": 2, "rx_items_3m": 12, "emergency_admissions_3_12m": 1},
     "2 frailty deficits: 10+ prescription items in 3 months, emergency admission this year"),
    ("frailty_deficits", {"frailty_deficits": 0}, None),
    ("frailty_deficits", {"frailty_deficits": 1, "age": 88}, None),  # age alone is not frailty
    # Costs as use of services (not money) unless the list is about cost; plainly without a population
    # to call them "much" against (tests/test_reasons.py).
    ("costs", {"cost_total_12m": 5000, "elective_admissions_12m": 1, "outpatient_attended_12m": 6},
     "1 planned admission, 6 outpatient appointments in the last 12 months"),
    ("costs", {"cost_total_12m": 900, "emergency_admissions_0_3m": 1, "ae_attendances_3_12m": 2},
     "1 emergency admission, 2 A&E visits in the last 12 months"),
    ("costs", {"cost_total_12m": 900, "gp_contacts_0_3m": 1, "cost_social_care_12m": 50},
     "1 GP contact, social care in the last 12 months"),
    ("costs", {"cost_total_12m": 0.0}, None),
    ("social care", {"cost_social_care_12m": 2500.0}, "social care in the last 12 months"),
    ("cost_hospital_12m", {"cost_hospital_12m": 12000.0}, None),
    ("long-term conditions", {"ltc_count": 4, "ltc_copd": 1, "ltc_diabetes": 1, "ltc_asthma": 1, "ltc_cancer": 1},
     "4 long-term conditions: diabetes, asthma, COPD, …"),
    ("emergency admissions", {"emergency_admissions_0_3m": 1, "days_since_emergency_admission": 1,
                              "emergency_bed_days_12m": 1},
     "1 emergency admission in the last 12 months, the last 1 day ago (1 day in hospital)"),
    ("A&E visits", {"ae_attendances_3_12m": 1, "days_since_ae": 100}, "1 A&E visit in the last 12 months, the last 3 months ago"),
    ("GP contacts", {"gp_contacts_0_3m": 1}, "1 GP contact in the last 12 months"),
])
def test_reasons_in_plain_words_from_the_persons_own_values(group, values, text):
    assert describe_reason(group, values, money=False) == text


def test_use_of_services_does_not_repeat_the_reasons_beside_it():
    person = {"cost_total_12m": 900.0, "gp_contacts_0_3m": 16, "outpatient_attended_12m": 5,
              "elective_admissions_12m": 1}
    assert describe_reason("costs", person, money=False, said={"GP contacts", "outpatient_attended_12m"}) == \
        "1 planned admission in the last 12 months"
    assert describe_reason("costs", person, money=False,
                           said={"GP contacts", "outpatient_attended_12m", "elective_admissions_12m"}) is None
    names = ["cost_total_12m", "GP contacts"]
    feats = pd.DataFrame({"cost_total_12m": [900.0], "gp_contacts_0_3m": [16.0], "gp_contacts_3_12m": [0.0],
                          "outpatient_attended_12m": [5.0]}, index=pd.Index(["erin"], name="person_id"))
    shap = pd.DataFrame([[0.6, 0.3, 0.0]], index=feats.index,
                        columns=["cost_total_12m", "gp_contacts_0_3m", "outpatient_attended_12m"])
    assert top_reasons(shap, feats)["reasons"].iloc[0] == \
        "5 outpatient appointments in the last 12 months; 16 GP contacts in the last 12 months"


def test_money_is_said_only_on_a_cost_list():
    person = {"cost_total_12m": 5000.0, "outpatient_attended_12m": 2}
    assert describe_reason("costs", person, money=True) == "health and care costs of £5,000 in the last 12 months"
    assert "£" not in describe_reason("costs", person, money=False)
    shap = pd.DataFrame({"cost_total_12m": [1.0]}, index=pd.Index(["p"], name="person_id"))
    feats = pd.DataFrame({"cost_total_12m": [5000.0], "outpatient_attended_12m": [2.0]}, index=shap.index)
    assert top_reasons(shap, feats)["reasons"].iloc[0] == "2 outpatient appointments in the last 12 months"
    assert "£5,000" in top_reasons(shap, feats, money_reasons=True)["reasons"].iloc[0]


def test_demographics_are_not_reasons_unless_nothing_else_is():
    names = ["age", "deprivation_decile", "ltc_heart_failure"]
    feats = pd.DataFrame({"age": [86.7, 90.2], "deprivation_decile": [1.0, 2.0], "ltc_heart_failure": [1.0, 0.0]},
                         index=pd.Index(["carol", "dave"], name="person_id"))
    shap = pd.DataFrame([[0.9, 0.3, 0.2], [0.9, 0.0, 0.0]], index=feats.index, columns=names)
    default = top_reasons(shap, feats)
    assert default.loc["carol", "reasons"] == "heart failure"  # age and deprivation are columns already
    assert default.loc["dave", "reasons"] == "aged 90"          # ...unless nothing else raises the risk
    shown = top_reasons(shap, feats, demographic_reasons=True)
    assert shown.loc["carol", "reasons"] == "aged 86; lives in a deprived area (decile 1); heart failure"


def test_reason_texts_carry_no_shares_or_model_words(features, model):
    shap, _ = model.contributions(features)
    texts = top_reasons(shap, features)["reasons"]
    assert texts.str.len().gt(0).mean() > 0.9
    assert not texts.str.contains(r"\(\d+%\)|BNF chapters in|prescription items in the last 12 months across").any()
    assert not texts.str.contains(r"\b1 [a-z-]+s\b(?! ago)").any()


# ----------------------------------------------------------------------------- hold-out policy


def test_very_high_tier_is_never_held_out_by_default(features, model):
    pop = lists.rank_population(features, model.predict_risk(features),
                                tier_cutoffs={"very high": 0.05, "high": 0.2, "moderate": 0.4})
    flags = lists.holdout_flags(pop, list_size=LIST_SIZE, fraction=0.4, seed=1, month=MONTH)
    very_high = pop["tier"].astype(str) == "very high"
    listed = lists.listed_mask(pop, list_size=LIST_SIZE)
    assert (very_high & listed).sum() >= 10 and not (flags & very_high).any()
    # The fraction applies to the listed people outside the exempt tier, per practice.
    eligible = (listed & ~very_high).groupby(pop["practice_id"]).sum()
    assert flags.groupby(pop["practice_id"]).sum().tolist() == [int(np.floor(0.4 * n + 0.5)) for n in eligible]
    anyone = lists.holdout_flags(pop, list_size=LIST_SIZE, fraction=0.4, seed=1, month=MONTH, exempt_tiers=())
    assert (anyone & very_high).any()
    rule = lists.holdout_rule(fraction=0.4, seed=1)
    assert rule["exempt_tiers"] == ["very high"] and "always shown" in rule["rule"]


def test_the_page_says_how_many_were_held_back_and_why(tmp_path, features, model):
    pop = score_month(features, model, fraction=0.2)
    rule = lists.holdout_rule(fraction=0.2, seed=42)
    out = write(tmp_path / "m", pop, manifest={"as_of": "2026-11-01", "month": MONTH, "holdout": rule})
    held = int((pop["holdout"] & (pop["practice_id"] == "P002")).sum())
    page = (out / "practices" / "P002" / "list.html").read_text()
    notice = page[page.index('id="held-back"'):page.index("</p>", page.index('id="held-back"'))]
    assert f"{held} people who would be on this list are not shown this month" in notice
    assert "20% of the listed people outside the very high tier" in notice and "always shown" in notice
    assert json.loads((out / "manifest.json").read_text())["holdout"]["exempt_tiers"] == ["very high"]
    from riskstrat.modeling.config import ListsConfig

    assert ListsConfig().holdout_exempt_tiers == ["very high"]
    with pytest.raises(ValueError, match="unknown tiers"):
        ListsConfig(holdout_exempt_tiers=["top"])


# ----------------------------------------------------------------------------- small numbers


@pytest.mark.parametrize("count, shown", [(0, "0"), (1, "<8"), (7, "<8"), (8, "10"), (12, "10"), (13, "15"),
                                          (2347, "2345"), (2348, "2350")])
def test_small_counts_are_suppressed_and_the_rest_rounded(count, shown):
    summary = pd.DataFrame({"practice_id": ["P1"], "people": [count], "tier: high": [count],
                            "group: frequent users": [count], "expected % of listed people with the outcome": [25.3],
                            "expected people with the outcome (all people)": [count + 0.4]})
    safe = lists.suppress_small_numbers(summary)
    assert safe.loc[0, ["people", "tier: high", "group: frequent users"]].tolist() == [shown] * 3
    # An expected number of people reads as the counts beside it (not 107.05 beside 105); the % stays.
    assert safe.loc[0, "expected people with the outcome (all people)"] == shown
    assert safe.loc[0, "expected % of listed people with the outcome"] == 25.3
    assert lists.suppress_small_numbers(safe).equals(safe)  # applying it twice changes nothing
    assert lists.suppress_small_numbers(summary, threshold=1, round_to=1).loc[0, "people"] == str(count)


def test_summary_csv_is_suppressed(tmp_path, features, model):
    pop = score_month(features, model)
    out = write(tmp_path / "m", pop)
    summary = pd.read_csv(out / "summary.csv", dtype=str)
    raw = lists.commissioner_summary(pop, list_size=LIST_SIZE, groups=DEFAULT_GROUPS)
    assert (raw["tier: very high"].between(1, 7)).any()
    for column in [c for c in summary if c.startswith(("tier: ", "group: ")) or c in ("people", "listed")]:
        for value in summary[column]:
            assert value == "0" or value == "<8" or int(value) % 5 == 0, (column, value)


# ----------------------------------------------------------------------------- spreadsheet safety and determinism


HOSTILE = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


@pytest.mark.parametrize("value", HOSTILE)
def test_formulas_are_neutralised_in_every_csv_and_workbook(tmp_path, features, model, value):
    from riskstrat.scoring.sheets import neutralise_formula

    assert neutralise_formula(value) == "'" + value and neutralise_formula("3 admissions") == "3 admissions"
    pop = score_month(features, model)
    first = pop.index[pop["listed"] & ~pop["holdout"] & (pop["practice_id"] == "P001")][0]
    pop.loc[first, "reasons"] = value
    pop.loc[first, "groups"] = value
    changes = lists.changes_since(None, pop, list_size=LIST_SIZE)
    changes.loc[changes.index[0], "tier_change"] = value
    summary = lists.commissioner_summary(pop, list_size=LIST_SIZE).assign(note=value)
    out = lists.write_month(tmp_path / "m", population=pop, practice_lists=lists.practice_lists(pop, list_size=LIST_SIZE),
                            summary=summary, manifest={"as_of": "2026-11-01"}, changes=changes)
    folder = out / "practices" / "P001"
    for path in (folder / "list.csv", folder / "changes.csv", out / "summary.csv"):
        cells = [c for row in pd.read_csv(path, dtype=str, keep_default_na=False).itertuples(index=False) for c in row]
        assert "'" + value.replace("\r", "\n") in cells, path.name
        assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), path.name
    import openpyxl

    ws = openpyxl.load_workbook(folder / "list.xlsx")["List"]
    stored = value.replace("\r", "_x000D_")  # how OOXML escapes a carriage return (openpyxl leaves it so)
    cells = [c for row in ws.iter_rows(min_row=2) for c in row if c.value in (value, stored)]
    assert cells and all(c.data_type == "s" and c.quotePrefix for c in cells)  # text, never a formula
    assert not [c for row in ws.iter_rows() for c in row if c.data_type == "f"]


def test_workbooks_are_deterministic_and_set_up_for_printing(tmp_path, features, model):
    import openpyxl

    pop = score_month(features, model)
    first = write(tmp_path / "a", pop)
    second = write(tmp_path / "b", pop)
    for path in sorted(first.rglob("*.xlsx")):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes(), path
    ws = openpyxl.load_workbook(first / "practices" / "P001" / "list.xlsx")["List"]
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.paperSize == 9
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth in (None, 1)  # 1 is the default
    assert ws.page_setup.fitToHeight == 0 and ws.print_title_rows == "$1:$1"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref.startswith("A1:")
    about = " ".join(str(c.value) for row in openpyxl.load_workbook(first / "practices" / "P001" / "list.xlsx")[
        "About this list"].iter_rows() for c in row)
    assert "Finding each person:" in about and "Who to ask:" in about and "held back at random" in about


# ----------------------------------------------------------------------------- the page


def test_page_names_practice_month_dates_and_how_to_find_people(tmp_path, features, model):
    pop = score_month(features, model)
    manifest = {"as_of": "2026-11-01", "month": MONTH, "data_end": "2026-10-31"}
    p1 = pop.loc[pop["practice_id"] == "P001", "person_id"]
    lookup = pd.DataFrame({"person_id": list(p1), "local_id": [f"EMIS-{i}" for i in range(len(p1))]})
    out = lists.write_month(
        tmp_path / "m", population=pop, practice_lists=lists.practice_lists(pop, list_size=LIST_SIZE),
        summary=lists.commissioner_summary(pop, list_size=LIST_SIZE), manifest=manifest,
        reidentify={"P001": lookup},
        words=lists.PageWords(practice_names={"P002": "Riverside <Surgery> & Co"},
                              find_person="Search the pseudonym in the Population Health Portal.",
                              contact="Jo Bloggs, population health team",
                              next_steps=["Offer a multidisciplinary review."],
                              outcome_words="an emergency admission or death"))
    named = (out / "practices" / "P002" / "list.html").read_text()
    top = named[:named.index("<table")]
    assert "<title>Case-finding list: Riverside &lt;Surgery&gt; &amp; Co (P002), November 2026</title>" in named
    assert "Data run to 2026-10-31" in top and "scored 2026-11-01" in top
    assert "Search the pseudonym in the Population Health Portal." in top and "Jo Bloggs" in top
    assert "emergency admission or death" in top and "Offer a multidisciplinary review." in named
    assert "<Surgery>" not in named  # autoescaped
    for g in DEFAULT_GROUPS:
        assert f"<dt>{DEFAULT_GROUP_PAGE_NAMES[g.name]}</dt>" in named
    assert "Aged 40 to 55." in named and "3 or more emergency admissions, or 5 or more A&amp;E visits" in named
    assert "by risk, usually offered intensive case management." in named
    identified = (out / "practices" / "P001" / "list.html").read_text()
    assert "Case-finding list: practice P001, November 2026" in identified
    assert 'id="find"' not in identified  # the Local ID column says who it is
    header = identified[identified.index('<tr class="cols">'):identified.index("</tr>", identified.index('<tr class="cols">'))]
    assert header.index("Local ID") < header.index("Person ID")
    assert identified.count('<tr class="person">') == len(lists.practice_list(pop, "P001", list_size=LIST_SIZE))
    assert "@page{size:A4 landscape" in identified and "display:table-header-group" in identified


def test_describe_group_in_words():
    words = {g.name: lists.describe_group(g) for g in DEFAULT_GROUPS}
    assert words == {
        "prevention 40–55": "Aged 40 to 55.",
        "care provision 85+": "Aged 85 or over.",
        "high-cost individuals": "In the area's top 5% by predicted cost next year, or in the area's top 5% by "
                                 "health and care cost in the last 12 months.",
        "frequent users": "3 or more emergency admissions, or 5 or more A&E visits, in the last 12 months.",
    }
    rule = GroupRule(name="older frequent", min_age=65, min_emergency_admissions_12m=2)
    assert lists.describe_group(rule) == "Aged 65 or over, with 2 or more emergency admissions, in the last 12 months."


# ----------------------------------------------------------------------------- the page in a real browser

_PROBE = """<script>
window.addEventListener("load", function () {
  var h = window.innerHeight, rows = Array.from(document.querySelectorAll("tr.person"));
  function onScreen(el) { var b = el.getBoundingClientRect(); return b.top >= 0 && b.bottom <= h && b.height > 0; }
  var out = {width: window.innerWidth, height: h, rows: rows.length,
             visible: rows.filter(onScreen).length,
             withReasons: rows.filter(function (r) { return r.querySelectorAll("td.reasons li:not(.none)").length > 0; }).length,
             title: document.querySelector("h1").textContent, titleOnScreen: onScreen(document.querySelector("h1")),
             dates: document.getElementById("dates").textContent, datesOnScreen: onScreen(document.getElementById("dates")),
             resources: performance.getEntriesByType("resource").map(function (e) { return e.name; }),
             external: Array.from(document.querySelectorAll("[src],[href]")).map(function (e) {
               return e.getAttribute("src") || e.getAttribute("href"); }).filter(function (u) { return !/^#/.test(u); })};
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def test_practice_page_in_headless_chromium(tmp_path, features, model):
    """At 1280x800 the month and data date are in the first screen with at least 5 people, every
    listed person has a reason, and nothing is loaded from anywhere."""
    from riskstrat.scoring.listpage import chromium, find_chromium

    if find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    pop = score_month(features, model)
    out = lists.write_month(tmp_path / "m", population=pop,
                            practice_lists=lists.practice_lists(pop, list_size=LIST_SIZE),
                            summary=lists.commissioner_summary(pop, list_size=LIST_SIZE),
                            manifest={"as_of": "2026-11-01", "month": MONTH, "data_end": "2026-10-31",
                                      "holdout": lists.holdout_rule(fraction=0.1, seed=42)},
                            words=lists.PageWords(
                                contact="Jo Bloggs, population health team (jo.bloggs@example.nhs.uk)",
                                outcome_words="an emergency admission or death"))
    page = (out / "practices" / "P001" / "list.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"))
    dom = chromium(probe, width=1280, height=800)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    import html as html_lib

    seen = json.loads(html_lib.unescape(found.group(1)))
    # Headless Chromium keeps room for its window frame: the page gets ~657 of the 800 pixels, so
    # "5 people on screen" here is stricter than on a real 1280x800 laptop screen.
    assert seen["height"] >= 600 and seen["width"] >= 1200, seen
    assert "November 2026" in seen["title"] and seen["titleOnScreen"]
    assert "Data run to 2026-10-31" in seen["dates"] and "scored 2026-11-01" in seen["dates"] and seen["datesOnScreen"]
    assert seen["visible"] >= 5, seen
    assert seen["rows"] == len(lists.practice_list(pop, "P001", list_size=LIST_SIZE))
    assert seen["withReasons"] == seen["rows"]
    assert seen["resources"] == [] and seen["external"] == [], seen


def test_page_settings_come_from_the_lists_config(tmp_path):
    from riskstrat.modeling.config import ListsConfig
    from riskstrat.scoring.inputs import page_words

    names = tmp_path / "names.csv"
    names.write_text("practice_id,name\nP001,Riverside Surgery\nP002,Old Name\n", encoding="utf-8")
    cfg = ListsConfig(practice_names={"P002": "Hill Street Practice"}, practice_names_file=names,
                      contact="Jo Bloggs", suppress_below=10)
    outcome = {"words": "an emergency admission or death", "horizon_words": "in the next 6 months"}
    words = page_words(cfg, outcome=outcome, groups=DEFAULT_GROUPS[:1])
    assert words.practice_names == {"P001": "Riverside Surgery", "P002": "Hill Street Practice"}
    assert words.contact == "Jo Bloggs" and words.find_person == lists.DEFAULT_FIND_PERSON
    assert words.next_steps == lists.DEFAULT_NEXT_STEPS and words.groups == DEFAULT_GROUPS[:1]
    assert (words.outcome_words, words.horizon_words) == (outcome["words"], outcome["horizon_words"])
    names.write_text("code,title\nP001,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="practice_id and name"):
        page_words(cfg, outcome=outcome, groups=DEFAULT_GROUPS)


# ----------------------------------------------------------------------------- grouped once, same answers


def test_practice_lists_split_once_equal_each_practice_filtered_alone(features, model):
    unregistered = features.copy()
    unregistered.loc[unregistered.index[::17], "practice_id"] = None  # no registered practice: a list of their own
    pop = score_month(unregistered, model)
    tables = lists.practice_lists(pop, list_size=LIST_SIZE)
    assert sorted(tables) == ["P001", "P002", "P003", lists.NO_PRACTICE]
    for pid, table in tables.items():
        pd.testing.assert_frame_equal(table, lists.practice_list(pop, pid, list_size=LIST_SIZE))
    # Everyone shown is on exactly one list.
    shown = pop["listed"] & ~pop["holdout"]
    assert sum(len(t) for t in tables.values()) == int(shown.sum())


def test_summary_group_counts_equal_counting_each_persons_groups(features, model):
    pop = score_month(features, model)
    pop.loc[pop.index[:3], "groups"] = "frequent users; frequent users of A&E"
    pop.loc[pop.index[3:6], "groups"] = "frequent users of A&E"  # holds "frequent users" as text, not as a group
    summary = lists.commissioner_summary(pop, list_size=LIST_SIZE, groups=[
        *DEFAULT_GROUPS, GroupRule(name="frequent users of A&E", min_ae_attendances_12m=99)])
    for _, row in summary.iterrows():
        part = pop if row["practice_id"] == "all practices" else pop[pop["practice_id"] == row["practice_id"]]
        names = part["groups"].fillna("").astype(str).str.split("; ")
        for g in [*DEFAULT_GROUPS]:
            assert row[f"group: {g.name}"] == sum(g.name in n for n in names), (row["practice_id"], g.name)
        assert row["group: frequent users of A&E"] == sum("frequent users of A&E" in n for n in names)


def test_workbooks_only_for_the_practices_that_asked(tmp_path, features, model):
    pop = score_month(features, model)
    tables = lists.practice_lists(pop, list_size=LIST_SIZE)
    common = dict(population=pop, practice_lists=tables, summary=lists.commissioner_summary(pop, list_size=LIST_SIZE),
                  manifest={"as_of": "2026-11-01"}, changes=lists.changes_since(None, pop, list_size=LIST_SIZE))
    out = lists.write_month(tmp_path / "some", options=lists.MonthOptions(workbooks=["P002"]), **common)
    assert sorted(p.parent.name for p in out.rglob("list.xlsx")) == ["P002"]
    assert len(list(out.rglob("list.csv"))) == len(list(out.rglob("list.html"))) == 3
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert [n for n in files if n.endswith(".xlsx")] == ["practices/P002/list.xlsx"]
    everyone = lists.write_month(tmp_path / "all", **common)
    assert (out / "practices/P002/list.xlsx").read_bytes() == (everyone / "practices/P002/list.xlsx").read_bytes()
    none = lists.write_month(tmp_path / "none", options=lists.MonthOptions(workbooks="none"), **common)
    assert not list(none.rglob("*.xlsx"))
    with pytest.raises(ValueError, match="without a list this month: \\['P999'\\]"):
        lists.write_month(tmp_path / "bad", options=lists.MonthOptions(workbooks=["P999"]), **common)
    # A month with every workbook holds no recipe (its files as before); the others hold one for each
    # list left without, from which the workbook comes back byte for byte.
    assert not list(everyone.rglob(lists.WORKBOOK_RECIPE))
    assert sorted(p.parent.name for p in out.rglob(lists.WORKBOOK_RECIPE)) == ["P001", "P003"]
    manifest = json.loads((none / "manifest.json").read_text())
    for pid in tables:
        expected = (everyone / "practices" / pid / "list.xlsx").read_bytes()
        assert lists.published_workbook(none, pid, manifest=manifest) == expected
        assert lists.published_workbook(everyone, pid, manifest=json.loads((everyone / "manifest.json").read_text())
                                        ) == expected
    # Only the people asked for: one person fewer, one row fewer.
    recipe = json.loads((none / "practices/P001" / lists.WORKBOOK_RECIPE).read_text())
    ids = recipe["cells"][recipe["columns"].index("Person ID")]
    fewer = openpyxl.load_workbook(io.BytesIO(lists.published_workbook(none, "P001", manifest=manifest,
                                                                       people=set(ids[1:]))))
    assert fewer["List"].max_row == len(ids) and fewer["List"]["B2"].value == ids[1]
    with pytest.raises(lists.WorkbookUnavailableError, match="no list for practice 'P999'"):
        lists.published_workbook(none, "P999", manifest=manifest)
    with pytest.raises(lists.WorkbookUnavailableError, match="holds Person ID .re-identified"):
        lists.published_workbook(none, "P001", manifest=manifest, refuse_columns={"Local ID", "Person ID"})
    (none / "practices/P001" / lists.WORKBOOK_RECIPE).write_text(json.dumps({**recipe, "title": "edited"}))
    with pytest.raises(TamperedFileError):
        lists.published_workbook(none, "P001", manifest=manifest)


# ----------------------------------------------------------------------------- writing fast, same bytes


def _folder_bytes(root) -> dict:
    """The month's files (not the publishing marker, which names the run folder)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != publish.MARKER}


def test_writing_in_two_processes_gives_the_same_month_as_one(tmp_path, features, model):
    import hashlib

    previous = score_month(features, model, month="2026-10")
    pop = score_month(features, model, previous=previous)
    tables = lists.practice_lists(pop, list_size=LIST_SIZE)
    first = sorted(tables)[0]
    common = dict(population=pop, practice_lists=tables, summary=lists.commissioner_summary(pop, list_size=LIST_SIZE),
                  manifest={"as_of": "2026-11-01", "month": "2026-11"},
                  changes=lists.changes_since(previous, pop, list_size=LIST_SIZE),
                  reidentify={first: pd.DataFrame({"person_id": tables[first]["Person ID"], "local_id": "=L<1>"})})
    serial = _folder_bytes(lists.write_month(tmp_path / "one" / "2026-11", **common))
    parallel = _folder_bytes(lists.write_month(tmp_path / "two" / "2026-11", options=lists.MonthOptions(workers=2), **common))
    assert parallel == serial and len(serial) == 1 + 1 + 1 + 1 + 4 * len(tables)  # parquet, summary.csv/.json, manifest
    # The manifest's hashes, taken from the bytes as they were written, are the files' hashes.
    recorded = json.loads(serial.pop("manifest.json"))["files"]
    assert recorded == {name: hashlib.sha256(data).hexdigest() for name, data in serial.items()}
    for bad in (0, "two", 1.5):
        with pytest.raises(ValueError, match=f"workers must be a positive whole number or 'auto', got {bad!r}"):
            lists.write_month(tmp_path / "bad" / "2026-11", options=lists.MonthOptions(workers=bad), **common)


def test_auto_writers_use_the_free_cpus_only_for_hundreds_of_workbooks(monkeypatch):
    monkeypatch.setattr(lists, "_usable_cpus", lambda: 2)
    assert lists.writer_processes("auto", workbooks=lists.AUTO_WRITERS_MIN_WORKBOOKS - 1) == 1
    assert lists.writer_processes("auto", workbooks=666) == 2
    # Without workbooks, for many lists only (their pages and CSVs).
    assert lists.writer_processes("auto", workbooks=0, lists=lists.AUTO_WRITERS_MIN_LISTS - 1) == 1
    assert lists.writer_processes("auto", workbooks=0, lists=666) == 2
    monkeypatch.setattr(lists, "_usable_cpus", lambda: 1)
    assert lists.writer_processes("auto", workbooks=666) == 1
    monkeypatch.setattr(lists, "_usable_cpus", lambda: 64)
    assert lists.writer_processes("auto", workbooks=666) == lists.AUTO_WRITERS_MAX
    assert lists.writer_processes(3, workbooks=1) == 3


def _folder_state(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*"))}


def _writer_workers() -> list[str]:
    """The command lines of this process's live children that are joblib (loky) workers (Linux;
    empty elsewhere)."""
    found = []
    for pid in _children(os.getpid()):
        with contextlib.suppress(OSError):
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "loky.backend.popen_loky" in line:  # not its resource trackers, which write nothing
                found.append(line)
    return found


def _children(pid: int) -> list[int]:
    """The live children of ``pid``, whichever of its threads started them."""
    found = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        with contextlib.suppress(OSError):  # a thread that ended since the listing (DuckDB's, joblib's)
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_a_list_that_fails_in_any_writer_process_raises_and_leaves_no_worker_running(tmp_path, features, model):
    """Every list's files, in two worker processes: one list cannot be written (its folder is
    taken), so its own error reaches the run, and by then every worker has ended: nothing more is
    written into the folder."""
    pop = score_month(features, model)
    tables = lists.practice_lists(pop, list_size=LIST_SIZE)
    month = lists._month_context(lists._in_rank_order(pop), {"as_of": "2026-11-01", "month": "2026-11"},
                                 lists.PageWords())
    jobs = lists._list_jobs({p: tables[p] for p in sorted(tables)}, month=month, counts=lists._list_counts(pop),
                            changes=None, identified=set(), with_workbook=set(tables))
    for clash in (jobs[0][0], jobs[-1][0]):  # in the first chunk handed out, and in the last
        folder = tmp_path / f"clash-{clash.replace('/', '-')}"
        (folder / clash).mkdir(parents=True)
        with pytest.raises(FileExistsError) as raised:
            lists._write_lists(folder, jobs, workers=2)
        assert clash in str(raised.value)
        after = _folder_state(folder)
        assert _writer_workers() == []  # killed and waited for before the error was raised
        time.sleep(0.3)
        assert _folder_state(folder) == after  # and so nothing was written after it
    # The run's own files, written while the workers write the lists, fail: the workers are stopped first.
    folder = tmp_path / "meanwhile"

    def meanwhile():
        deadline = time.monotonic() + 20
        while not (folder / "practices").exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # until the workers are writing lists
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        lists._write_lists(folder, jobs, workers=2, meanwhile=meanwhile)
    after = _folder_state(folder)
    assert _writer_workers() == []
    time.sleep(0.3)
    assert _folder_state(folder) == after
    # With no clash: the same files as one process writes, and the hashes of what is on disk.
    def summary_file(where):
        return lambda: {"summary.csv": lists._write_bytes(b"x\n", where / "summary.csv")}

    written = lists._write_lists(tmp_path / "two", jobs, workers=2, meanwhile=summary_file(tmp_path / "two"))
    assert written == lists._write_lists(tmp_path / "one", jobs, workers=1, meanwhile=summary_file(tmp_path / "one"))
    assert written == {k: hashlib.sha256(v).hexdigest() for k, v in _folder_bytes(tmp_path / "two").items()}
    assert "summary.csv" in written and len(written) == 1 + 3 * len(jobs)  # list.csv, list.xlsx, list.html each


def test_writers_started_ahead_write_the_month_and_stop_when_dropped(tmp_path, features, model):
    """Worker processes started before the run's own work on the lists (start_writers) are the ones
    that write them (no second start), with the same bytes; a second start dropped unused raises no
    warning and leaves the same workers, idle. (Dropping workers half-started, the case the wait on
    drop exists for, is not made here: it needs loky's pool cold.)"""
    import gc

    pop = score_month(features, model)
    tables = lists.practice_lists(pop, list_size=LIST_SIZE)
    common = dict(population=pop, practice_lists=tables, summary=lists.commissioner_summary(pop, list_size=LIST_SIZE),
                  manifest={"as_of": "2026-11-01", "month": "2026-11"}, options=lists.MonthOptions(workers=2))
    writers = lists.start_writers(pop["practice_id"], options=common["options"])
    writers.wait()
    started = sorted(_children(os.getpid()))
    assert len(_writer_workers()) == 2
    ahead = _folder_bytes(lists.write_month(tmp_path / "ahead" / "2026-11", writers=writers, **common))
    assert sorted(_children(os.getpid())) == started  # the same processes wrote the lists
    assert ahead == _folder_bytes(lists.write_month(tmp_path / "one" / "2026-11",
                                                    **{**common, "options": lists.MonthOptions(workers=1)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unused = lists.start_writers(pop["practice_id"], options=lists.MonthOptions(workers=2))
        del unused
        gc.collect()
    assert sorted(_children(os.getpid())) == started
    # None started for a month this process writes alone, or a refused number of workers.
    for options in (lists.MonthOptions(), lists.MonthOptions(workers=1), lists.MonthOptions(workers="two")):
        assert lists.start_writers(pop["practice_id"], options=options)._starting is None


def test_page_rows_are_escaped_cell_by_cell():
    """The page's rows against hand-written HTML: hostile text escaped, missing numbers shown as dashes."""
    table = pd.DataFrame({
        "Rank": np.array([1, 2], dtype="int64"), "Local ID": ["<b>L1</b>", ""],
        "Person ID": pd.array(["p&1", "p2"], dtype="str"), "Age": pd.array([81, pd.NA], dtype="Int64"),
        "Sex": pd.array(["female", None], dtype="str"), "Risk (%)": [41.25, 3.0],
        "Tier": ["very high", "low"], "Priority groups": ["frail 85+; frequent users", ""],
        "Predicted cost": ["£5k–20k", ""], "High-cost risk (%)": [12.34, np.nan],
        "Emergency admissions (12m)": pd.array([3, pd.NA], dtype="Int64"),
        "A&E visits (12m)": pd.array([0, 1], dtype="Int64"), "Bed days (12m)": pd.array([14, 0], dtype="Int64"),
        "Top reasons": ["<script>x</script>; 3 admissions' worth", ""], "New this month": ["yes", ""]})
    html = str(lists._people_rows(table, {"very high": 0, "low": 3}))
    assert html == (
        '<tr class="person">\n'
        '<td class="num" data-v="1">1<br><span class="new" title="Not on last month\'s list">new</span></td>\n'
        '<td class="local">&lt;b&gt;L1&lt;/b&gt;</td>\n'
        '<td class="pid">p&amp;1<details class="more"><summary>more</summary>Predicted cost next year: £5k–20k<br>'
        'Chance of being in the area&#39;s top 5% by cost: 12.3%</details></td>\n'
        '<td class="num risk" data-v="41.25">41.2%</td>\n'
        '<td class="tiername" data-v="0"><span class="tier t-very-high">very high</span></td>\n'
        '<td class="num" data-v="81">81</td>\n<td>female</td>\n'
        '<td class="groups"><span class="g">frail 85+</span><br><span class="g">frequent users</span></td>\n'
        '<td class="num" data-v="3">3</td>\n<td class="num" data-v="0">0</td>\n<td class="num" data-v="14">14</td>\n'
        '<td class="reasons"><ul><li>&lt;script&gt;x&lt;/script&gt;</li><li>3 admissions&#39; worth</li></ul></td>\n'
        '</tr>\n'
        '<tr class="person">\n<td class="num" data-v="2">2</td>\n<td class="local"></td>\n<td class="pid">p2</td>\n'
        '<td class="num risk" data-v="3.0">3.0%</td>\n'
        '<td class="tiername" data-v="3"><span class="tier t-low">low</span></td>\n'
        '<td class="num" data-v="-1"></td>\n<td></td>\n<td class="groups"></td>\n'
        '<td class="num" data-v="-1">–</td>\n<td class="num" data-v="1">1</td>\n<td class="num" data-v="0">0</td>\n'
        '<td class="reasons"><ul><li class="none">no single recorded fact stands out</li></ul></td>\n'
        '</tr>\n')


@pytest.mark.parametrize("values", [
    ["plain", "a&b", "<i>", "it's; \"so\"", "", "£–"],
    ["nul\x00inside", "x"],
    [None, "x", 3, Markup("<b>kept</b>")],
    [],
])
def test_page_text_is_escaped_in_one_call_as_value_by_value(values):
    """The page's bulk escaping (one markupsafe call per column) against escaping each value, and
    each piece after cutting at the separator (an escape such as &#39; must not make a cut)."""
    from markupsafe import escape

    assert lists._escaped(values) == [str(escape(v)) for v in values]
    assert lists._escaped_items(values, "; ") == [[str(escape(p)) for p in str(v or "").split("; ")] for v in values]


@pytest.mark.parametrize("dtype", ["str", object])
def test_a_list_holding_strangers_is_refused_with_their_count(dtype):
    """Listed people are looked up among the population's (Arrow text or Python objects alike):
    another practice's patient and someone not in the population are both strangers."""
    population = pd.DataFrame({"person_id": pd.array(["a", "b", "c", "d"], dtype=dtype),
                               "practice_id": pd.array(["P1", "P1", "P2", "P2"], dtype=dtype)})
    good = {"P1": pd.DataFrame({"Person ID": ["b", "a"]}), "P2": pd.DataFrame({"Person ID": ["c"]})}
    lists._check_practice_lists(population, good)
    bad = {**good, "P2": pd.DataFrame({"Person ID": ["c", "a", "zz"]})}
    with pytest.raises(ValueError, match="the list for practice 'P2' holds 2 people who are not its patients"):
        lists._check_practice_lists(population, bad)


def _page_table(ids, *, local=False, tier=("low",)):
    n = len(ids)
    table = pd.DataFrame({
        "Rank": np.arange(1, n + 1, dtype="int64"), "Person ID": pd.array(ids, dtype="str"),
        "Age": pd.array([81, None, 40, 7][:n] + [1] * max(n - 4, 0), dtype="Int64"),
        "Sex": pd.array(["female", None, "<m>", "x"][:n] + ["f"] * max(n - 4, 0), dtype="str"),
        "Risk (%)": [41.25, 3.0, 99.95, 0.05][:n] + [1.0] * max(n - 4, 0),
        "Tier": [tier[i % len(tier)] for i in range(n)],
        "Priority groups": ["frail 85+; frequent users", "", "a&b", "=x"][:n] + [""] * max(n - 4, 0),
        "Emergency admissions (12m)": pd.array([3, None, 0, 1][:n] + [0] * max(n - 4, 0), dtype="Int64"),
        "A&E visits (12m)": pd.array([0, 1, None, 2][:n] + [0] * max(n - 4, 0), dtype="Int64"),
        "Bed days (12m)": pd.array([14, 0, 2, None][:n] + [0] * max(n - 4, 0), dtype="Int64"),
        "Top reasons": ["<script>x</script>; 3 admissions' worth", "", "  ; spaced", "x\x00y"][:n]
        + ["r"] * max(n - 4, 0),
        "New this month": ["yes", "", "yes", ""][:n] + [""] * max(n - 4, 0)})
    if local:
        table.insert(1, "Local ID", ["<b>L1</b>", "", "L3", "L4"][:n] + ["L"] * max(n - 4, 0))
    return table


def test_page_rows_and_cells_made_for_all_lists_at_once_are_each_lists_own():
    """write_month makes every list's cells and page rows in one pass and cuts them apart: against
    each list's own rows (lists._people_rows) and cells, with hostile text, missing values, an
    empty list, lists with a Local ID column among lists without, and tiers the order does not know."""
    tables = [_page_table(["p&1", "p2", "p3"]), _page_table([]), _page_table(["a"], local=True),
              _page_table(["q1", "q2", "q3", "q4"], tier=("very high", "odd tier")),
              _page_table(["r1", "r2"], local=True)]
    order = {"very high": 0, "low": 3}
    cells, rows = lists._cells_and_rows_many(tables, order)
    assert rows == [str(lists._people_rows(t, order)) for t in tables]
    assert cells == [lists._table_cells(t) for t in tables]


def test_the_hold_out_hash_is_the_first_eight_bytes_of_each_digest():
    """The hold-out's numbers, made for all people at once, against the digest read person by person."""
    import hashlib

    ids = pd.Series(pd.array(["a", "0123456789abcdef", "Zoë", "🙂", ""], dtype="str"))
    expected = [int.from_bytes(hashlib.sha256(f"7|2026-11|{pid}".encode()).digest()[:8], "big") / 2.0**64
                for pid in ids]
    assert lists._uniform_hash(ids, seed=7, month="2026-11").tolist() == expected
    assert lists._uniform_hash(ids.iloc[:0], seed=7, month="2026-11").tolist() == []


@pytest.mark.parametrize("tier", [
    pd.Series(pd.Categorical(["low", None, "high", "low", "very high"], categories=["very high", "high", "low"])),
    pd.Series(pd.Categorical([1, 2, None, 1], categories=[2, 1, 3])),  # categories that are not text
    pd.Series(pd.array(["low", "high", "high", "low"], dtype="str")),
], ids=["categorical", "number categories", "text"])
def test_tier_look_ups_by_code_match_the_text_they_replace(tier):
    """The tier helpers that work on a categorical's codes against what they replace: the cells
    turned into text, then matched, counted and grouped by pandas."""
    text = tier.astype("str")
    names = ["high", "low", "1", "very high"]
    assert lists._text_in(tier, {"high", "1"}).tolist() == text.isin(["high", "1"]).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns of values outside the categories (they are -1)
        assert lists._text_codes(tier, names).tolist() == pd.Categorical(text, categories=names).codes.tolist()
    keys = pd.Series(pd.array(["P2", "P1", "P2", "P1", "P9"][:len(tier)], dtype="str"))
    population = pd.DataFrame({"tier": tier})
    counts = pd.Series(1, index=pd.MultiIndex.from_arrays([keys.to_numpy(), text.to_numpy()])).groupby(
        level=[0, 1]).sum()
    reference: dict = {}
    for (key, name), n in counts.items():
        reference.setdefault(str(key), {})[str(name)] = int(n)
    assert lists._registered_by_tier(population, keys)[1] == reference
    order, shares = lists._tier_shares(population)
    expected_order = list(tier.cat.categories) if isinstance(tier.dtype, pd.CategoricalDtype) else sorted(text.unique())
    assert order == expected_order
    assert shares.tolist() == (text.value_counts().reindex(order, fill_value=0).cumsum() / len(text)).tolist()


def test_list_look_ups_through_arrow_match_pandas():
    """isin, map and the tier change made through Arrow against pandas' own, with missing values."""
    people = pd.Series(pd.array(["a", "b", "c", "d", "é"], dtype="str"), index=[10, 11, 12, 13, 14])
    wanted = pd.Series(pd.array(["c", "é", "zz"], dtype="str"))
    assert lists._isin_text(people, wanted).tolist() == people.isin(wanted).tolist()
    assert lists._isin_text(people, wanted.iloc[:0]).tolist() == [False] * 5
    reasons = pd.Series(["r1", np.nan, "r3"], index=pd.Index(["b", "c", "x"], dtype="str"))
    got, expected = lists._mapped(people, reasons).astype("str"), people.map(reasons).astype("str")
    assert got.index.tolist() == expected.index.tolist()
    assert got.isna().tolist() == expected.isna().tolist()
    assert got.dropna().tolist() == expected.dropna().tolist()
    before = pd.Series(pd.array(["low", None, "high", "high", "low"], dtype="str"))
    after = pd.Series(pd.Categorical(["low", "high", None, "very high", "high"]))
    text = after.astype("str")
    changed = (before.notna() & text.notna() & (before != text)).to_numpy()
    joined = before.fillna("").astype(object) + " → " + text.fillna("").astype(object)
    reference = np.where(changed, joined.to_numpy(), None)
    assert lists._tier_change(before, after).tolist() == pd.Series(reference, dtype="str").tolist()


# ----------------------------------------------------------------------------- every number true of the files


def _page_text(html: str) -> str:
    import html as html_lib

    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", body)))


def _about_lines(path) -> list[str]:
    import openpyxl

    return [str(r[0]) for r in openpyxl.load_workbook(path)["About this list"].iter_rows(values_only=True)]


def two_written_months(tmp_path, features, model):
    """October (the first month) and November (compared with October), as the batch job writes them."""
    rule = lists.holdout_rule(fraction=0.1, seed=42)
    manifest = {"models": {"emergency_admission": {"version": "3"}}, "holdout": rule,
                "outcome": {"name": "emergency_admission", "words": "an emergency admission"}}
    october = score_month(features, model, month="2026-10")
    first = write(tmp_path / "2026-10", october, manifest={**manifest, "as_of": "2026-10-01", "month": "2026-10",
                                                           "data_end": "2026-09-30", "previous_month": None})
    later = features.copy()
    later["emergency_admissions_0_3m"] += np.where(later["practice_id"] == "P001", 2, 0)
    november = score_month(later, model, previous=october)
    second = write(tmp_path / "2026-11", november, previous=october,
                   manifest={**manifest, "as_of": "2026-11-01", "month": "2026-11", "data_end": "2026-10-31",
                             "previous_month": "2026-10"})
    return first, second


def _check_claims(folder, text: str, population: pd.DataFrame, pid: str) -> int:
    """Every sentence of ``text`` (a page or an About sheet) that names a column or a count, checked
    against the list's files and the month's population; returns how many claims were checked."""
    table = pd.read_csv(folder / "list.csv", dtype={"Person ID": str}, keep_default_na=False, encoding="utf-8-sig")
    mine = population[population["practice_id"].astype(str) == pid]
    checked = 0
    # "X, Y and Z are in their own columns": each is a column of list.csv.
    for named in re.findall(r"([A-Z][\w ,]*?) (?:is|are) in (?:its|their) own columns?", text):
        for item in re.split(r", | and ", named):
            assert item.strip().capitalize() in table.columns, (item, list(table.columns))
            checked += 1
    # A column named in the notes is a column of the list.
    for column in ("Risk (%)", "New this month", "Priority groups", "Top reasons"):
        if f"{column} " in text:
            assert column in table.columns
            checked += 1
    m = re.search(r"The (\d+) people of ([\d,]+) registered adults", text)
    assert m and int(m[1]) == len(table) and int(m[2].replace(",", "")) == len(mine)
    m = re.search(r"about (\d+) in 100 people on this list", text)
    assert m and int(m[1]) == round(table["Risk (%)"].mean())
    m = re.search(r"shown to (\d) decimal places?", text)
    assert m
    decimals = int(m[1])
    assert (table["Risk (%)"].round(decimals) == table["Risk (%)"]).all()
    shown = (table["Risk (%)"] * 10**decimals).round().astype(int).tolist()
    pairs = [(a, b) for a, b in zip(table.itertuples(), table.iloc[1:].itertuples()) if a[5] == b[5]]
    assert all(a.Tier == b.Tier for a, b in pairs)  # the same risk shown: the same tier
    assert len(set(shown)) == len(shown) or "Tied: ranks" in text
    new = int((table["New this month"] == "yes").sum())
    if "first month" in text:
        assert new == 0 and "marks people who were not on last month" not in text
    else:
        m = re.search(r"(\d+) (?:people are|person is) new this month", text)
        assert m and int(m[1]) == new
    held = int(mine["holdout"].sum())
    m = re.search(r"(\d+) (?:people|person) who would be on this list (?:are|is) not shown", text)
    assert (int(m[1]) if m else 0) == held
    for on_list, registered, tier in re.findall(r"(\d+) of (\d+) (very high|high|moderate|low)\b", text):
        assert int(on_list) == int((table["Tier"] == tier).sum())
        assert int(registered) == int((mine["tier"].astype(str) == tier).sum())
        checked += 1
    share = population["tier"].astype(str).value_counts(normalize=True)
    for tier, top in re.findall(r"(very high|high|moderate) the top ([\d.]+)%", text):
        order = ["very high", "high", "moderate"]
        assert float(top) == round(100 * share.reindex(order[:order.index(tier) + 1]).sum(), 1)
        checked += 1
    return checked + 6


def test_every_claim_that_names_a_column_or_a_count_is_true_of_the_files(tmp_path, features, model):
    first, second = two_written_months(tmp_path, features, model)
    for month in (first, second):
        population = pd.read_parquet(month / "population.parquet")
        for folder in sorted((month / "practices").iterdir()):
            page = _page_text((folder / "list.html").read_text(encoding="utf-8"))
            about = " ".join(_about_lines(folder / "list.xlsx"))
            assert _check_claims(folder, page, population, folder.name) >= 12
            assert _check_claims(folder, about, population, folder.name) >= 8
        # summary.csv's headers: each says what it covers, in summary.json.
        summary = pd.read_csv(month / "summary.csv", dtype=str, encoding="utf-8-sig")
        about_summary = json.loads((month / "summary.json").read_text(encoding="utf-8"))
        assert list(about_summary["columns"]) == list(summary.columns)
        assert all(about_summary["columns"].values())


def test_the_first_month_marks_nobody_new_and_says_so(tmp_path, features, model):
    first, second = two_written_months(tmp_path, features, model)
    october = (first / "practices" / "P001" / "list.html").read_text(encoding="utf-8")
    table = pd.read_csv(first / "practices" / "P001" / "list.csv", keep_default_na=False, encoding="utf-8-sig")
    assert 'class="new"' not in october and not (table["New this month"] == "yes").any()
    top = _page_text(october[:october.index("<table")])
    assert "This is the first month of these lists, so nobody is marked new." in top
    assert "not on last month's list" not in _page_text(october)
    assert "first month" in " ".join(_about_lines(first / "practices" / "P001" / "list.xlsx"))
    # November has a month before it: new people are marked, and counted at the top.
    november = (second / "practices" / "P001" / "list.html").read_text(encoding="utf-8")
    marked = november.count('class="new"')
    new = pd.read_csv(second / "practices" / "P001" / "list.csv", keep_default_na=False, encoding="utf-8-sig")
    assert marked == int((new["New this month"] == "yes").sum()) > 0 and "first month" not in november
    assert f"{marked} people are new this month" in _page_text(november[:november.index("<table")])


def test_risks_shown_to_the_decimals_that_separate_people(tmp_path, features, model):
    pop = score_month(features, model)
    # Two people of P001 whose risks differ only in the second decimal, and two tied exactly.
    mine = pop.index[(pop["practice_id"] == "P001") & pop["listed"] & ~pop["holdout"]]
    pop = pop.copy()
    pop.loc[mine[3:5], "risk"] = [0.90612, 0.90598]  # 90.61% and 90.60%: 90.6% for both at 1 decimal
    pop.loc[mine[5:7], "risk"] = [0.5, 0.5]
    pop = pop.sort_values("risk", ascending=False, kind="stable")
    pop["tier"] = lists.tiers_by_rank(pd.Series(np.arange(1, len(pop) + 1), index=pop.index),
                                      risk=lists.risk_percent(pop["risk"]))
    assert lists.risk_decimals(pop, list_size=LIST_SIZE) == 2
    pop["practice_rank"] = pop.groupby("practice_id").cumcount() + 1
    out = write(tmp_path / "m", pop)
    table = pd.read_csv(out / "practices" / "P001" / "list.csv", encoding="utf-8-sig")
    assert {90.61, 90.6} <= set(table["Risk (%)"])
    page = (out / "practices" / "P001" / "list.html").read_text(encoding="utf-8")
    texts = re.findall(r'class="num risk" data-v="[^"]+">([^<]+)<', page)
    assert "90.61%" in texts and "90.60%" in texts and all(re.fullmatch(r"\d+\.\d\d%", t) for t in texts)
    tied = table.index[table["Risk (%)"] == 50.0]
    assert len(tied) == 2 and table.loc[tied, "Tier"].nunique() == 1
    ranks = table.loc[tied, "Rank"].tolist()
    assert f"Tied: ranks {ranks[0]}–{ranks[1]} (50.00%)" in _page_text(page)


def test_summary_says_its_month_data_date_outcome_and_rule(tmp_path, features, model):
    _, second = two_written_months(tmp_path, features, model)
    about = json.loads((second / "summary.json").read_text(encoding="utf-8"))
    assert about["month"] == "2026-11" and about["data_run_to"] == "2026-10-31"
    assert about["outcome"] == "an emergency admission in the next 12 months"
    assert about["small_numbers"]["suppress_below"] == 8 and about["small_numbers"]["round_counts_to"] == 5
    assert "<8" in about["small_numbers"]["rule"] and "nearest 5" in about["small_numbers"]["rule"]
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["files"]["summary.json"]
    summary = pd.read_csv(second / "summary.csv", dtype=str, encoding="utf-8-sig")
    assert "held back" in summary and not [c for c in summary if "held out" in c]
    expected = [c for c in summary if c.startswith("expected")]
    assert expected == ["expected people with the outcome (all people)", "expected % of listed people with the outcome"]
    # Expected people read as the counts do (whole, rounded to 5 or "<8"); the % is a percentage.
    assert all(v == "<8" or int(v) % 5 == 0 for v in summary["expected people with the outcome (all people)"])
    percent = summary["expected % of listed people with the outcome"].astype(float)
    assert percent.between(1, 100).all() and (percent.round(1) == percent).all()


def test_changes_csv_speaks_as_list_csv_with_month_rank_and_risk(tmp_path, features, model):
    first, second = two_written_months(tmp_path, features, model)
    for month, compared in ((first, "none: this is the first month"), (second, "2026-10")):
        folder = month / "practices" / "P001"
        changes = pd.read_csv(folder / "changes.csv", dtype={"Person ID": str}, keep_default_na=False,
                              encoding="utf-8-sig")
        table = pd.read_csv(folder / "list.csv", dtype={"Person ID": str}, keep_default_na=False, encoding="utf-8-sig")
        assert list(changes.columns) == list(lists.CHANGES_COLUMNS)
        assert (changes["Month"].astype(str) == month.name).all() and (changes["Compared with"] == compared).all()
        assert set(changes["New this month"]) <= {"yes", ""} and set(changes["Left the list"]) <= {"yes", ""}
        on_list = changes[changes["Left the list"] == ""].merge(table, on="Person ID", suffixes=("", " in list"))
        assert len(on_list) == len(table)
        assert (on_list["Rank"].astype(int) == on_list["Rank in list"]).all()
        assert (on_list["Risk (%)"].astype(float) == on_list["Risk (%) in list"]).all()
        assert (on_list["New this month"] == on_list["New this month in list"]).all()
        assert (changes.loc[changes["Left the list"] == "yes", ["Rank", "Risk (%)"]] == "").all().all()
    assert (changes["Left the list"] == "yes").any()


def test_page_and_workbook_say_how_many_in_100_listed_are_expected_to_have_the_outcome(tmp_path, features, model):
    pop = score_month(features, model)
    out = write(tmp_path / "m", pop)
    for pid in ("P001", "P002", "P003"):
        table = pd.read_csv(out / "practices" / pid / "list.csv", encoding="utf-8-sig")
        shown = pop[(pop["practice_id"] == pid) & pop["listed"] & ~pop["holdout"]]
        share = round(100 * shown["risk"].mean())
        assert share == round(table["Risk (%)"].mean())
        sentence = (f"about {share} in 100 people on this list are expected to have an emergency admission in the "
                    "next 12 months")
        page = (out / "practices" / pid / "list.html").read_text(encoding="utf-8")
        assert sentence in _page_text(page[:page.index("<table")])
        assert any(sentence in line for line in _about_lines(out / "practices" / pid / "list.xlsx"))


# ----------------------------------------------------------------------------- the page's layout, keyboard and print

_LAYOUT_PROBE = """<script>
window.addEventListener("load", function () {
  var cols = document.querySelectorAll("table.people tr.cols th");
  function heading(name) { return Array.from(cols).filter(function (th) { return th.textContent.trim() === name; })[0]; }
  function risks() { return Array.from(document.querySelectorAll("tr.person td.risk")).map(function (td) { return parseFloat(td.dataset.v); }); }
  var risk = heading("Risk"), rank = heading("Rank"), button = risk.querySelector("button");
  button.focus();
  var out = {width: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
             reasonsWidth: document.querySelector("tr.person td.reasons").getBoundingClientRect().width,
             pidBroken: Array.from(document.querySelectorAll("td.pid")).filter(function (td) {
               var r = document.createRange(); r.selectNodeContents(td.firstChild);
               return new Set(Array.from(r.getClientRects()).map(function (b) { return Math.round(b.top); })).size > 1; }).length,
             focusable: Array.from(cols).every(function (th) { var b = th.querySelector("button"); return b && b.tabIndex >= 0; }),
             focused: document.activeElement === button,
             focusOutline: getComputedStyle(button).outlineStyle + " " + getComputedStyle(button).outlineWidth,
             rankBefore: rank.getAttribute("aria-sort"), riskBefore: risk.getAttribute("aria-sort")};
  button.click();  // what Enter or Space does on a focused button
  out.riskFirst = risk.getAttribute("aria-sort"); out.rankAfter = rank.getAttribute("aria-sort");
  out.risksFirst = risks();
  button.click();
  out.riskSecond = risk.getAttribute("aria-sort"); out.risksSecond = risks();
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _month_of_91(tmp_path, features, model) -> tuple[Path, pd.DataFrame]:
    """A practice list of about 91 people (101 listed, 10% held back), as the issue's printed list."""
    people = make_features(1400, seed=3, practices=("P001",))
    population = lists.rank_population(people, model.predict_risk(people), predicted_cost=people["cost_total_12m"] * 1.1)
    ids = population.loc[lists.listed_mask(population, list_size=101), "person_id"]
    shap, _ = model.contributions(people.loc[ids])
    population = lists.mark_lists(population, list_size=101, month=MONTH, reasons=top_reasons(shap, people.loc[ids]),
                                  holdout_fraction=0.1, seed=42)
    out = lists.write_month(tmp_path / "m", population=population,
                            practice_lists=lists.practice_lists(population, list_size=101),
                            summary=lists.commissioner_summary(population, list_size=101),
                            manifest={"as_of": "2026-11-01", "month": MONTH, "data_end": "2026-10-31",
                                      "holdout": lists.holdout_rule(fraction=0.1, seed=42)})
    return out / "practices" / "P001" / "list.html", lists.practice_list(population, "P001", list_size=101)


def _chromium_or_skip():
    from riskstrat.scoring.listpage import find_chromium

    if find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")


@pytest.mark.parametrize("width,height", [(1280, 800), (768, 1024)])
def test_page_fits_the_screen_and_sorts_by_keyboard(tmp_path, features, model, width, height):
    """No sideways scrolling at 1280 and 768 px, the reasons keep a readable column, a pseudonym is
    never broken, every heading is a focusable button with a visible focus, the sorted heading
    carries aria-sort, and the first sort by Risk puts the highest first."""
    from riskstrat.scoring.listpage import chromium

    _chromium_or_skip()
    page, table = _month_of_91(tmp_path, features, model)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _LAYOUT_PROBE + "</body>"))
    found = re.search(r'<pre id="probe">(.*?)</pre>', chromium(probe, width=width, height=height), re.S)
    assert found
    import html as html_lib

    seen = json.loads(html_lib.unescape(found.group(1)))
    assert seen["scrollWidth"] <= seen["width"], seen
    assert seen["reasonsWidth"] >= 200, seen
    assert seen["pidBroken"] == 0
    assert seen["focusable"] and seen["focused"], seen
    assert seen["focusOutline"].startswith("solid") and not seen["focusOutline"].endswith(" 0px"), seen
    assert (seen["rankBefore"], seen["riskBefore"]) == ("ascending", None)
    assert (seen["riskFirst"], seen["rankAfter"]) == ("descending", None)
    assert seen["risksFirst"] == sorted(seen["risksFirst"], reverse=True) and seen["risksFirst"][0] == max(table["Risk (%)"])
    assert seen["riskSecond"] == "ascending" and seen["risksSecond"] == sorted(seen["risksSecond"])
    chromium(page, width=width, height=height, screenshot=tmp_path / f"page-{width}.png")  # to look at
    assert (tmp_path / f"page-{width}.png").stat().st_size > 10_000


def test_page_prints_91_people_on_a_few_a4_pages_without_screen_only_text(tmp_path, features, model):
    from riskstrat.scoring.listpage import print_pdf

    _chromium_or_skip()
    from _pdf import pdf_pages, pdf_text

    page, table = _month_of_91(tmp_path, features, model)
    assert 88 <= len(table) <= 94
    data = print_pdf(page, tmp_path / "list.pdf").read_bytes()
    text = unicodedata.normalize("NFKC", pdf_text(data))  # "ﬁ" ligatures back to letters
    flat = re.sub(r"\s+", "", text)
    assert "Whythisperson" in flat and "Risk" in flat  # the text is read
    assert "Clickacolumnheading" not in flat
    assert pdf_pages(data) <= 7, pdf_pages(data)
    assert flat.count("Case-findinglist:practiceP001") >= pdf_pages(data) - 1  # the heading on every page of the list
    runs = re.sub(r"(?<! ) (?! )", "", text)  # glyphs of one run come out one space apart; a line break leaves more
    assert all(pid in runs for pid in table["Person ID"])


def test_page_names_groups_in_a_clinicians_words_and_commissioners_keep_theirs(tmp_path, features, model):
    from riskstrat.modeling.config import ListsConfig
    from riskstrat.scoring.inputs import page_words
    from riskstrat.modeling.tiers import DEFAULT_GROUP_PAGE_NAMES

    pop = score_month(features, model)
    pop.loc[pop.index[:LIST_SIZE], "groups"] = "care provision 85+; frequent users"
    cfg = ListsConfig(page_group_names={**DEFAULT_GROUP_PAGE_NAMES, "frequent users": "frequent <emergency> care"})
    words = page_words(cfg, outcome={"words": "an emergency admission", "horizon_words": "in the next 12 months"},
                       groups=DEFAULT_GROUPS)
    out = lists.write_month(tmp_path / "m", population=pop, practice_lists=lists.practice_lists(pop, list_size=LIST_SIZE),
                            summary=lists.commissioner_summary(pop, list_size=LIST_SIZE, groups=DEFAULT_GROUPS),
                            manifest={"as_of": "2026-11-01", "month": MONTH}, words=words)
    page = (out / "practices" / "P001" / "list.html").read_text()
    rows = page[page.index("<tbody>"):page.index("</tbody>")]
    assert "aged 85 and over: care and support needs" in rows and "frequent &lt;emergency&gt; care" in rows
    assert "care provision 85+" not in rows and "frequent users" not in rows
    assert "<dt>aged 85 and over: care and support needs</dt>" in page and "care provision 85+." in page
    assert "group: care provision 85+" in (out / "summary.csv").read_text(encoding="utf-8-sig")
    assert "care provision 85+; frequent users" in (out / "practices" / "P001" / "list.csv").read_text(encoding="utf-8-sig")


def test_workbook_prints_one_page_wide_at_8_points_with_reasons_wrapped(tmp_path, features, model):
    import openpyxl
    from openpyxl.utils import get_column_letter
    from riskstrat.scoring.sheets import LINE_POINTS, _lines, print_scale

    out = write(tmp_path / "m", score_month(features, model))
    ws = openpyxl.load_workbook(out / "practices" / "P001" / "list.xlsx")["List"]
    widths = {}
    for dim in ws.column_dimensions.values():  # xlsxwriter writes runs of equal columns as one range
        for j in range(dim.min, dim.max + 1):
            widths[j] = dim.width - 5 / 7  # the stored width holds the 5 pixels of padding
    columns = [ws.cell(1, j).value for j in range(1, ws.max_column + 1)]
    shown = [widths.get(j, 8.43) for j in range(1, ws.max_column + 1)]
    assert 11 * print_scale(shown) >= 8, (dict(zip(columns, shown)), print_scale(shown))
    reasons = columns.index("Top reasons") + 1
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.paperSize == 9
    assert 30 <= widths[reasons] < 60 and ws.cell(2, reasons).alignment.wrap_text
    wrapped = [j for j in range(1, ws.max_column + 1) if ws.cell(2, j).alignment.wrap_text]
    for i in range(2, ws.max_row + 1):  # every row as tall as its wrapped cells' lines (15 pt a line)
        need = max(_lines(ws.cell(i, j).value, widths[j]) for j in wrapped)
        assert (ws.row_dimensions[i].height or 15) == LINE_POINTS * need, i
        text = ws.cell(i, reasons).value or ""
        # the lines the reasons take: no fewer than at 4 pixels a character (narrower than any Calibri
        # text), no more than at a digit's 7 pixels a character with a long word's room to spare
        fewest = math.ceil(len(text) / (widths[reasons] * 7 / 4))
        most = len(textwrap.wrap(text, round(widths[reasons]) - 8)) or 1
        assert fewest <= _lines(text, widths[reasons]) <= most, (i, text)
        assert {ws.cell(i, j).alignment.vertical for j in range(1, ws.max_column + 1)
                if ws.cell(i, j).value is not None} == {"top"}, i


def test_score_warns_while_contact_and_find_person_are_unset(tmp_path):
    from riskstrat.modeling.config import ListsConfig, ScoringConfig, load_config
    from riskstrat.pipelines.demo import DEMO_CONTACT, DEMO_FIND_PERSON
    from riskstrat.pipelines.score import run_scoring

    said = []
    cfg = ScoringConfig(data={"path": str(tmp_path / "nowhere")}, output_dir=tmp_path / "out")
    with pytest.raises(Exception):
        run_scoring(cfg, "2026-11-01", stage=said.append)
    warned = [s for s in said if s.startswith("WARNING")]
    assert any("lists.contact" in s for s in warned) and any("lists.find_person" in s for s in warned), said
    from riskstrat.scoring.inputs import unset_page_words

    assert unset_page_words(ListsConfig(contact="Jo Bloggs, jo@example.nhs.uk", find_person="Search the portal.")) == []
    shipped = load_config(Path(__file__).parents[1] / "configs" / "scoring.yaml", [], model=ScoringConfig).lists
    assert unset_page_words(shipped) == [] and "@" in shipped.contact and "Pseudonym" in shipped.find_person
    assert "@" in DEMO_CONTACT and "Person ID" in DEMO_FIND_PERSON
