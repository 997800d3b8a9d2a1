"""Ranks, tiers and priority groups against the straightforward definitions, on random data with ties.

The fast versions in :mod:`riskstrat.modeling.tiers` compare ids only inside runs of equal scores and join
group names once per pattern of flags; these references rank everyone by (score descending, index
ascending) with one lexsort and join person by person, as the month's files were made before.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from riskstrat.scoring.lists import list_key, rank_population
from riskstrat.modeling.tiers import (DEFAULT_GROUPS, GROUP_SEPARATOR, GroupRule, IdOrder, assign_groups, assign_tiers,
                             group_flags, rank_by_score, tiers_by_rank, top_fraction_mask)


def reference_rank(score: pd.Series) -> pd.Series:
    values = score.to_numpy(dtype=float)
    index_order = np.empty(len(score), dtype=np.int64)
    index_order[score.index.argsort()] = np.arange(len(score))
    order = np.lexsort((index_order, -values))
    rank = np.empty(len(score), dtype=np.int64)
    rank[order] = np.arange(1, len(score) + 1)
    return pd.Series(rank, index=score.index, name="rank")


def reference_top_fraction(score: pd.Series, fraction: float) -> pd.Series:
    values = score.astype("float64").fillna(-np.inf)
    rank = reference_rank(values)
    n_top = min(len(score), math.ceil(fraction * len(score) - 1e-9))
    return pd.Series(((rank <= n_top) & (values > 0)).to_numpy(), index=score.index)


def reference_groups(frame: pd.DataFrame, groups) -> pd.Series:
    flags = group_flags(frame, groups=groups)
    names = np.array(flags.columns, dtype=object)
    joined = [GROUP_SEPARATOR.join(names[row]) for row in flags.to_numpy(dtype=bool)]
    return pd.Series(joined, index=frame.index, name="groups", dtype="str")


def scores_with_ties(rng: np.random.Generator, n: int, *, ids: str = "str") -> pd.Series:
    """Scores on few distinct values (plateaus), with 0.0, -0.0, infinities and shuffled ids."""
    palette = np.array([0.0, -0.0, 0.1, 0.25, 0.25 + 1e-12, 0.5, 0.9, 1.0, np.inf, -np.inf, -0.3, 7.0])
    values = rng.choice(palette, size=n)
    continuous = rng.random(n) < 0.3
    values[continuous] = rng.normal(size=int(continuous.sum()))
    if ids == "str":
        index = pd.Index([f"p{int(i):06x}" for i in rng.permutation(10 * n)[:n]], dtype="str")
    else:
        index = pd.Index(rng.permutation(10 * n)[:n].astype("int64"))
    return pd.Series(values, index=index, name="score")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ids", ["str", "int"])
def test_rank_by_score_equals_the_lexsort_of_score_and_index(seed, ids):
    rng = np.random.default_rng(seed)
    score = scores_with_ties(rng, int(rng.integers(1, 3000)), ids=ids)
    pd.testing.assert_series_equal(rank_by_score(score), reference_rank(score))


def test_rank_by_score_without_ties_and_with_one_tie_run_only():
    score = pd.Series([0.3, 0.1, 0.2], index=["b", "c", "a"])
    assert rank_by_score(score).tolist() == [1, 3, 2]
    same = pd.Series([0.5] * 4, index=["d", "b", "c", "a"])
    assert rank_by_score(same).tolist() == [4, 2, 3, 1]
    assert rank_by_score(pd.Series([], dtype="float64")).tolist() == []


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fraction", [0.001, 0.05, 0.2, 0.5, 0.97])
def test_top_fraction_mask_equals_the_ranked_definition(seed, fraction):
    rng = np.random.default_rng(seed)
    score = scores_with_ties(rng, int(rng.integers(1, 2000)), ids="str" if seed % 2 else "int")
    score[rng.random(len(score)) < 0.1] = np.nan
    pd.testing.assert_series_equal(top_fraction_mask(score, fraction), reference_top_fraction(score, fraction))


def test_top_fraction_mask_breaks_a_tie_at_the_cut_by_index():
    score = pd.Series([5.0, 3.0, 3.0, 3.0, 1.0, 0.0], index=["f", "e", "b", "d", "a", "c"])
    # Top 50% = 3 people: f, then two of the three 3.0s by id (b, d; not e).
    assert top_fraction_mask(score, 0.5).tolist() == [True, False, True, True, False, False]
    # A cut inside the zeros takes no one at zero.
    assert top_fraction_mask(score, 0.99).tolist() == [True, True, True, True, True, False]


def test_top_fraction_mask_refuses_duplicate_ids():
    with pytest.raises(ValueError, match="duplicates"):
        top_fraction_mask(pd.Series([1.0, 2.0], index=["a", "a"]), 0.5)


def reference_tiers(ranks: np.ndarray, cutoffs, risk=None) -> list[str]:
    """Tiers by rank; with ``risk``, each person then takes the highest tier of anyone with the same risk."""
    n = len(ranks)
    n_top = {t: min(n, math.ceil(f * n - 1e-9)) for t, f in cutoffs.items()}
    names = list(cutoffs) + ["low"]
    tiers = [next((i for i, t in enumerate(cutoffs) if r <= n_top[t]), len(cutoffs)) for r in ranks]
    if risk is not None:
        best: dict[float, int] = {}
        for value, tier in zip(risk, tiers):  # (0.0 and -0.0 are one key: the same risk)
            best[value] = min(best.get(value, tier), tier)
        tiers = [best[value] for value in risk]
    return [names[t] for t in tiers]


@pytest.mark.parametrize("seed", range(4))
def test_tiers_by_rank_equals_assign_tiers(seed):
    rng = np.random.default_rng(seed)
    score = scores_with_ties(rng, 1500)
    cutoffs = {"very high": 0.01, "high": 0.07, "moderate": 0.3}
    expected = assign_tiers(score, cutoffs=cutoffs)
    pd.testing.assert_series_equal(tiers_by_rank(reference_rank(score), cutoffs=cutoffs, risk=score), expected)
    ranks = reference_rank(score).to_numpy()
    assert expected.astype(str).tolist() == reference_tiers(ranks, cutoffs, score.tolist())
    # Ranks alone (no risk) know no ties: each tier holds exactly its fraction.
    assert tiers_by_rank(reference_rank(score), cutoffs=cutoffs).astype(str).tolist() == reference_tiers(ranks, cutoffs)


def test_tied_risks_are_never_split_between_tiers():
    """Ranks 2-4 share a risk: the cut after rank 2 would split them, so all three take the higher tier,
    whether the ranks come from the risk itself or from a raw score that orders the tied people."""
    risk = pd.Series([0.9, 0.5, 0.5, 0.5, 0.1], index=list("abcde"))
    cutoffs = {"very high": 0.2, "high": 0.4}
    assert assign_tiers(risk, cutoffs=cutoffs).tolist() == ["very high", "high", "high", "high", "low"]
    raw = pd.Series([3.0, 1.2, 1.1, 1.0, -2.0], index=risk.index)  # the model's margin separates b, c and d
    tiers = tiers_by_rank(rank_by_score(raw), cutoffs=cutoffs, risk=risk)
    assert tiers.tolist() == ["very high", "high", "high", "high", "low"]
    # A tie at the top takes the top tier: nobody equal to a very high person is less than very high.
    top = pd.Series([0.9, 0.9, 0.9, 0.2, 0.1])
    assert assign_tiers(top, cutoffs=cutoffs).astype(str).tolist() == ["very high"] * 3 + ["low"] * 2
    with pytest.raises(ValueError, match="3 values for 5 ranks"):
        tiers_by_rank(rank_by_score(raw), cutoffs=cutoffs, risk=[0.1, 0.2, 0.3])


def test_rank_population_puts_people_the_lists_show_as_one_risk_in_one_tier():
    """Risks equal to the lists' precision (3 decimals of a percent) are one risk: one tier, although the
    raw score ranks them apart and the cut falls between them."""
    rng = np.random.default_rng(5)
    people = random_people(rng, 200).assign(practice_id="P1", sex="female")
    risk = pd.Series(np.linspace(0.01, 0.5, 200), index=people.index)
    top = risk.nlargest(4).index
    risk[top] = [0.9061234, 0.9061231, 0.9061229, 0.95]  # three that read 90.612%, and one above them
    raw = np.log(risk / (1 - risk)).to_numpy() + rng.normal(size=200) * 1e-9
    pop = rank_population(people.drop(columns=["high_cost_risk", "predicted_cost"]), risk, rank_score=raw,
                          tier_cutoffs={"very high": 0.01, "high": 0.05})  # very high: the top 2 by rank
    tiers = pop.set_index("person_id")["tier"].astype(str)
    assert tiers[top].tolist() == ["very high"] * 4
    assert (tiers == "very high").sum() == 4 and (tiers == "high").sum() == 10 - 4  # the top 5%: ranks 5-10


def random_people(rng: np.random.Generator, n: int) -> pd.DataFrame:
    index = pd.Index([f"id{int(i):05d}" for i in rng.permutation(4 * n)[:n]], dtype="str")
    cost = rng.choice([0.0, 0.0, 100.0, 2500.0, 2500.0, 90_000.0], size=n) * rng.choice([1, 1, 1.5], size=n)
    return pd.DataFrame({
        "age": rng.choice([18.0, 39.99, 40.0, 55.5, 55.99, 56.0, 84.9, 85.0, 101.2], size=n),
        "emergency_admissions_0_3m": rng.integers(0, 3, n).astype(float),
        "emergency_admissions_3_12m": rng.choice([0.0, 1.0, 2.0, np.nan], size=n),
        "ae_attendances_0_3m": rng.integers(0, 4, n).astype(float),
        "ae_attendances_3_12m": rng.integers(0, 4, n).astype(float),
        "cost_total_12m": cost,
        "high_cost_risk": rng.choice([0.0, 0.01, 0.2, 0.2, 0.6, np.nan], size=n),
        "predicted_cost": np.nan,
    }, index=index)


@pytest.mark.parametrize("seed", range(4))
def test_assign_groups_equals_joining_person_by_person(seed):
    rng = np.random.default_rng(seed)
    people = random_people(rng, int(rng.integers(1, 2500)))
    groups = DEFAULT_GROUPS + (GroupRule(name="young frequent", max_age=30, min_ae_attendances_12m=2, match="all"),)
    pd.testing.assert_series_equal(assign_groups(people, groups=groups), reference_groups(people, groups))


def test_assign_groups_with_more_groups_than_bits_in_a_pattern():
    rng = np.random.default_rng(7)
    people = random_people(rng, 200)
    groups = [GroupRule(name=f"age {a}+", min_age=a) for a in range(18, 18 + 64)]
    pd.testing.assert_series_equal(assign_groups(people, groups=groups), reference_groups(people, groups))
    assert assign_groups(people.iloc[:0], groups=DEFAULT_GROUPS).tolist() == []


def test_rank_population_with_ties_ranks_and_tiers_as_the_references():
    rng = np.random.default_rng(3)
    people = random_people(rng, 3000)
    people["practice_id"] = rng.choice(["P1", "P2", " ", "P3"], size=len(people))
    people["sex"] = rng.choice(["female", "male"], size=len(people))
    risk = pd.Series(rng.choice([0.05, 0.1, 0.1, 0.3, 0.8], size=len(people)), index=people.index)
    pop = rank_population(people.drop(columns=["high_cost_risk", "predicted_cost"]), risk,
                          high_cost_risk=people["high_cost_risk"], tier_cutoffs={"high": 0.05, "moderate": 0.2})
    by_person = pop.set_index("person_id")
    expected_rank = reference_rank(risk)
    assert by_person["rank"].reindex(people.index).tolist() == expected_rank.tolist()
    assert pop["rank"].tolist() == list(range(1, len(people) + 1))
    expected_tier = reference_tiers(expected_rank.to_numpy(), {"high": 0.05, "moderate": 0.2}, risk.tolist())
    assert by_person["tier"].reindex(people.index).astype(str).tolist() == expected_tier
    reference_practice_rank = pop.groupby(list_key(pop))["rank"].rank(method="first").astype("int64").rename("practice_rank")
    pd.testing.assert_series_equal(pop["practice_rank"], reference_practice_rank)
    assert pop.loc[pop["practice_id"].isna(), "practice_rank"].tolist() == list(range(1, 1 + pop["practice_id"].isna().sum()))
    group_input = people.drop(columns=["predicted_cost"]).assign(predicted_cost=np.nan)
    assert by_person["groups"].reindex(people.index).tolist() == reference_groups(group_input, DEFAULT_GROUPS).tolist()


# ----------------------------------------------------------------------------- ids checked and sorted once


HOSTILE_IDS = ["9", "10", "a", "a0", "A", "", " b", "b ", "é", "e\u0301", "\U0001f600", "z" * 40, "0x1F", "-1",
               "NaN", "None", "ａ", "b\tc", "1e3", "01"]


def twins(rng: np.random.Generator, n: int, copies: int, *, ids: str) -> pd.Series:
    """A population copied region by region (replicate_data.py): every score shared by ``copies`` people."""
    base = scores_with_ties(rng, n)
    values = np.tile(base.to_numpy(), copies)
    if ids == "hostile":
        pool = list(dict.fromkeys(f"{h}{i}" if i else h for i in range(2 * n * copies // len(HOSTILE_IDS) + 1)
                                  for h in HOSTILE_IDS))  # distinct ("a" + "0" and "a0" + "" are one)
        index = pd.Index(rng.permutation(np.array(pool, dtype=object))[:n * copies], dtype="str")
    elif ids == "regions":  # 'r<k>' and the id's last characters, as replicate_data.py makes them
        index = pd.Index([s if k == 0 else f"r{k}{s[2:]}" for k in range(copies) for s in base.index], dtype="str")
    elif ids == "sorted":
        index = pd.Index(sorted(f"id{i:07d}" for i in rng.permutation(10 * n * copies)[:n * copies]), dtype="str")
    else:
        index = pd.Index(rng.permutation(10 * n * copies)[:n * copies].astype("int64"))
    return pd.Series(values, index=index, name="score")


@pytest.mark.parametrize("ids", ["hostile", "regions", "sorted", "int"])
@pytest.mark.parametrize("seed", range(3))
def test_rank_by_score_with_every_score_shared_equals_the_reference(seed, ids):
    rng = np.random.default_rng(seed)
    score = twins(rng, int(rng.integers(50, 400)), int(rng.integers(2, 6)), ids=ids)
    expected = reference_rank(score)
    pd.testing.assert_series_equal(rank_by_score(score), expected)
    shared = IdOrder(score.index)
    pd.testing.assert_series_equal(rank_by_score(score, ids=shared), expected)
    assert shared._order is not None  # so many ties sort all the ids, once
    pd.testing.assert_series_equal(rank_by_score(score, ids=shared), expected)  # and reuse them
    for fraction in (0.01, 0.3):
        pd.testing.assert_series_equal(top_fraction_mask(score, fraction, ids=shared),
                                       reference_top_fraction(score, fraction))


def test_a_few_ties_sort_only_the_tied_ids():
    score = pd.Series([0.5, 0.1, 0.9, 0.5, 0.2, 0.3, 0.7, 0.8, 0.6, 0.4, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65,
                       0.75], index=[f"x{i}" for i in "qwertyuiopasdfghjk"])
    shared = IdOrder(score.index)
    pd.testing.assert_series_equal(rank_by_score(score, ids=shared), reference_rank(score))
    assert shared._order is None
    assert rank_by_score(score, ids=shared)[["xq", "xr"]].tolist() == [8, 9]  # 0.5 twice: xq before xr


@pytest.mark.parametrize("seed", range(4))
def test_id_order_sorts_subsets_both_ways_as_argsort(seed):
    rng = np.random.default_rng(seed)
    index = twins(rng, 300, 3, ids="hostile" if seed % 2 else "int").index
    ids = IdOrder(index)
    few, many = rng.permutation(len(index))[:20], rng.permutation(len(index))[:700]
    assert ids.sorted(few).tolist() == few[np.argsort(index.take(few).to_numpy())].tolist()  # alone
    assert ids.sorted(many).tolist() == many[np.argsort(index.take(many).to_numpy())].tolist()  # via the order
    assert ids.sorted(few).tolist() == few[np.argsort(index.take(few).to_numpy())].tolist()  # order known now
    assert ids.order().tolist() == np.argsort(index.to_numpy()).tolist()


@pytest.mark.parametrize("index", [pd.Index(["b", "a", "b"], dtype="str"), pd.Index(["a", "b", "b"], dtype="str"),
                                   pd.Index([3, 1, 3]), pd.Index(["a", None, None], dtype="str"),
                                   pd.Index(["a", "b", "a"], dtype=object)])
def test_repeated_ids_are_refused_once_for_every_ranking(index):
    with pytest.raises(ValueError, match="duplicates"):
        IdOrder(index)
    score = pd.Series([0.3, 0.2, 0.1], index=index)
    with pytest.raises(ValueError, match="duplicates"):
        rank_by_score(score)
    with pytest.raises(ValueError, match="duplicates"):
        rank_population(pd.DataFrame({"practice_id": ["P1"] * 3, "age": [50.0] * 3}, index=index), score.to_numpy())


def test_an_id_order_of_other_people_is_refused():
    score = pd.Series([0.3, 0.3, 0.1], index=["a", "b", "c"])
    with pytest.raises(ValueError, match="same people"):
        rank_by_score(score, ids=IdOrder(pd.Index(["a", "c", "b"])))
    with pytest.raises(ValueError, match="same people"):
        top_fraction_mask(score, 0.5, ids=IdOrder(pd.Index(["a", "b"])))
    # An equal index (not the same object) is accepted.
    assert rank_by_score(score, ids=IdOrder(pd.Index(["a", "b", "c"]))).tolist() == [1, 2, 3]


def test_rank_population_of_copied_regions_equals_the_references():
    rng = np.random.default_rng(11)
    base = random_people(rng, 800)
    base["practice_id"] = rng.choice(["P1", "P2", "", "P3"], size=len(base))
    base["sex"] = rng.choice(["female", "male"], size=len(base))
    copies = [base] + [base.set_axis(pd.Index([f"r{k}{s[2:]}" for s in base.index], dtype="str"))
                       .assign(practice_id=lambda f, k=k: np.where(f["practice_id"] == "", "", f"R{k}-" + f["practice_id"]))
                       for k in (1, 2, 3)]
    people = pd.concat(copies)
    risk = pd.Series(np.tile(rng.choice([0.05, 0.1, 0.1, 0.3, 0.8], size=len(base)), 4), index=people.index)
    raw = np.log(risk / (1 - risk)).to_numpy() + np.tile(rng.normal(size=len(base)) * 1e-3, 4)  # twins tie still
    pop = rank_population(people.drop(columns=["high_cost_risk", "predicted_cost"]), risk,
                          high_cost_risk=people["high_cost_risk"], rank_score=raw,
                          tier_cutoffs={"high": 0.05, "moderate": 0.2})
    by_person = pop.set_index("person_id")
    expected_rank = reference_rank(pd.Series(raw, index=people.index))
    assert by_person["rank"].reindex(people.index).tolist() == expected_rank.tolist()
    group_input = people.drop(columns=["predicted_cost"]).assign(predicted_cost=np.nan)
    assert by_person["groups"].reindex(people.index).tolist() == reference_groups(group_input, DEFAULT_GROUPS).tolist()
    reference_practice_rank = pop.groupby(list_key(pop))["rank"].rank(method="first").astype("int64")
    assert pop["practice_rank"].tolist() == reference_practice_rank.tolist()
