"""Tiers (the Kaiser pyramid), priority groups and cost bands for a scored population.

Tiers are by rank in the whole population: the top 0.5% by risk are "very high" (intensive case
management), the rest of the top 5% "high", the rest of the top 20% "moderate" and everyone else
"low". People with the same risk are never split between tiers: a tie across a cut-off takes the
higher tier (so a tier can hold a few more people than its fraction). Priority groups are the
cohorts commissioners name (:data:`DEFAULT_GROUPS`).

>>> risk = pd.Series([0.9, 0.1, 0.5, 0.3], index=["a", "b", "c", "d"])
>>> assign_tiers(risk, cutoffs={"very high": 0.25, "high": 0.5, "moderate": 0.75}).tolist()
['very high', 'low', 'high', 'moderate']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskstrat.data.io import CURRENCY_SYMBOLS

__all__ = [
    "COST_BANDS",
    "DEFAULT_GROUPS",
    "DEFAULT_GROUP_PAGE_NAMES",
    "DEFAULT_TIER_CUTOFFS",
    "GROUP_SEPARATOR",
    "GroupRule",
    "IdOrder",
    "LOWEST_TIER",
    "assign_groups",
    "assign_tiers",
    "check_tier_cutoffs",
    "cost_band",
    "group_flags",
    "joined_groups",
    "past_year",
    "rank_by_score",
    "tiers_by_rank",
    "top_fraction_mask",
]

# Cumulative population fractions: the top 0.5% are very high, the top 5% at least high, ...
DEFAULT_TIER_CUTOFFS: Mapping[str, float] = {"very high": 0.005, "high": 0.05, "moderate": 0.20}
LOWEST_TIER = "low"
GROUP_SEPARATOR = "; "
# Float noise must not add a person: 0.07 * 100 = 7.000000000000001.
_EPS = 1e-9


class IdOrder:
    """The people's ids (an index), checked unique once, and their ascending order, sorted once.

    Ranks break ties in score by id (:func:`rank_by_score`, :func:`top_fraction_mask`). One month ranks
    the same people several times (by risk, then the top fractions of the priority groups), and a check
    or a sort of millions of string ids takes seconds each time: made once and passed to each ranking,
    the check is done once, and the ids are sorted at most once, when ties first need it (a few tied
    people are sorted alone). Raises ValueError when an id repeats.

    >>> ids = IdOrder(pd.Index(["c", "a", "b"]))
    >>> ids.sorted(np.array([0, 1, 2])).tolist()
    [1, 2, 0]
    """

    def __init__(self, index: pd.Index):
        self.index = index
        _check_unique(index)
        self._order: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def order(self) -> np.ndarray:
        """Every position, in ascending order of its id."""
        if self._order is None:
            # Ids already in order (a sorted extract) need no sort: unique, so strictly increasing.
            self._order = (np.arange(len(self.index)) if self.index.is_monotonic_increasing
                           else np.asarray(self.index.argsort(), dtype=np.int64))
        return self._order

    def sorted(self, positions: np.ndarray) -> np.ndarray:
        """``positions`` (distinct) in ascending order of their ids."""
        positions = np.asarray(positions, dtype=np.int64)
        if self._order is None and len(positions) * 8 < len(self.index):  # a few: sort them alone
            return positions[np.asarray(self.index.take(positions).argsort())]
        order = self.order()
        wanted = np.zeros(len(order), dtype=bool)
        wanted[positions] = True
        return order[wanted[order]]


def _id_order(index: pd.Index, ids: IdOrder | None) -> IdOrder:
    if ids is None:
        return IdOrder(index)
    if len(ids) != len(index) or not (ids.index is index or ids.index.equals(index)):
        raise ValueError("ids must be the IdOrder of the same people, in the same order")
    return ids


def rank_by_score(score: pd.Series, *, ids: IdOrder | None = None) -> pd.Series:
    """Rank 1 = highest score; ties broken by the index (ascending), so ranks are unique and stable.

    ``ids`` (the :class:`IdOrder` of ``score.index``, optional) saves checking and sorting the ids
    again when the same people are ranked several times.

    >>> rank_by_score(pd.Series([0.2, 0.9, 0.2], index=["z", "a", "b"])).tolist()
    [3, 1, 2]
    """
    values = score.to_numpy(dtype=float)
    if np.isnan(values).any():
        raise ValueError(f"{score.name or 'score'} contains NaN; every person needs a score to be ranked")
    ids = _id_order(score.index, ids)
    rank = np.empty(len(score), dtype=np.int64)
    rank[_rank_order(values, ids)] = np.arange(1, len(score) + 1)
    return pd.Series(rank, index=score.index, name="rank")


def _check_unique(index: pd.Index) -> None:
    # Index.is_unique hashes string ids as Python objects (seconds at millions); ids in order prove
    # it without hashing, and pd.unique hashes Arrow strings natively. NaN repeats count as repeats.
    unique = index.is_unique if index.is_monotonic_increasing else len(pd.unique(index.array)) == len(index)
    if not unique:
        raise ValueError("the index (person_id) has duplicates; ranks need one row per person")


def _rank_order(values: np.ndarray, ids: IdOrder) -> np.ndarray:
    """Positions from rank 1 down: by value descending, ties by id ascending.

    Only the people inside a run of equal values have their ids compared (an argsort of a
    million string ids takes about a second; scores rarely tie). When many tie (a population
    copied region by region, every score shared), the ids are sorted once and a stable sort of
    the values in id order keeps each run in id order.
    """
    order = np.argsort(-values, kind="stable")
    ordered = values[order]
    tie = ordered[1:] == ordered[:-1]
    if not tie.any():
        return order
    in_run = np.zeros(len(order), dtype=bool)
    in_run[1:] |= tie
    in_run[:-1] |= tie
    at = np.flatnonzero(in_run)  # sorted positions inside a tie, runs contiguous
    if ids._order is not None or len(at) * 8 >= len(order):
        by_id = ids.order()
        return by_id[np.argsort(-values[by_id], kind="stable")]
    run = np.cumsum(np.r_[True, ordered[at[1:]] != ordered[at[:-1]]])
    members = order[at]
    slot = np.empty(len(order), dtype=np.int64)
    slot[members] = np.arange(len(members))
    by_index = np.empty(len(members), dtype=np.int64)
    by_index[slot[ids.sorted(members)]] = np.arange(len(members))
    order[at] = members[np.lexsort((by_index, run))]
    return order


def _n_top(fraction: float, n: int) -> int:
    return min(n, math.ceil(fraction * n - _EPS))


def top_fraction_mask(score: pd.Series, fraction: float, *, ids: IdOrder | None = None) -> pd.Series:
    """True for the ``ceil(fraction * n)`` highest positive scores (missing and zero never qualify).

    ``n`` counts everyone, so "top 5%" means 5% of the whole population. Ties are broken by index
    (``ids``, its :class:`IdOrder`, optional, saves checking and sorting it again).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    values = score.astype("float64").fillna(-np.inf).to_numpy()
    ids = _id_order(score.index, ids)
    k = _n_top(fraction, len(values))
    chosen = values > 0
    if 0 < k < len(values):
        # Those above the k-th highest value are in; of those equal to it, the first by index.
        kth = np.partition(values, len(values) - k)[len(values) - k]
        chosen &= values >= kth
        tied = np.flatnonzero(values == kth)
        spare = k - int(np.count_nonzero(values > kth))
        if kth > 0 and spare < len(tied):
            chosen[ids.sorted(tied)[spare:]] = False
    elif k == 0:
        chosen[:] = False
    return pd.Series(chosen, index=score.index)


MAX_LABEL_LENGTH = 40


def check_label(name: str, *, what: str) -> str:
    """A tier or priority-group name: shown on every list and recorded in MLflow as part of metric
    names, so it must be checked before anything is published. 1 to 40 characters, no surrounding
    space, no control or invisible characters, no ``/`` or ``\\`` and no ``..`` (MLflow reads them as
    paths in a metric's name).

    >>> check_label("very high", what="tier")
    'very high'
    """
    import unicodedata

    problems = []
    if not name or len(name) > MAX_LABEL_LENGTH:
        problems.append(f"it must have 1 to {MAX_LABEL_LENGTH} characters")
    if name != name.strip():
        problems.append("it starts or ends with a space")
    if any(unicodedata.category(c)[0] == "C" for c in name):
        problems.append("it holds a control or invisible character")
    if "/" in name or "\\" in name or ".." in name:
        problems.append("it holds '/', '\\' or '..'")
    if problems:
        raise ValueError(f"{what} name {name!r}: {'; '.join(problems)}")
    return name


def check_tier_cutoffs(cutoffs: Mapping[str, float]) -> dict[str, float]:
    """Validate tier cut-offs: names in order from the highest tier, cumulative fractions increasing in (0, 1)."""
    cutoffs = dict(cutoffs)
    if not cutoffs:
        raise ValueError("tier cut-offs are empty; give at least one, e.g. {'high': 0.05}")
    for name in cutoffs:
        check_label(name, what="tier")
    if LOWEST_TIER in cutoffs:
        raise ValueError(f"{LOWEST_TIER!r} is the rest of the population and takes no cut-off")
    values = list(cutoffs.values())
    bad = {k: v for k, v in cutoffs.items() if not 0 < v < 1}
    if bad:
        raise ValueError(f"tier cut-offs must be fractions in (0, 1), got {bad}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"tier cut-offs must increase from the highest tier down, got {cutoffs}")
    return cutoffs


def assign_tiers(risk: pd.Series, *, cutoffs: Mapping[str, float] | None = None) -> pd.Series:
    """Each person's tier by rank of ``risk`` in the population (an ordered categorical).

    ``cutoffs`` maps tier names, highest first, to cumulative fractions of the population
    (default :data:`DEFAULT_TIER_CUTOFFS`); everyone below the last is ``"low"``. With 1,000 people
    the defaults give 5 very high, 45 high, 150 moderate and 800 low. People with the same risk share
    a tier: a tie across a cut-off takes the higher tier.

    >>> assign_tiers(pd.Series([0.9, 0.5, 0.5, 0.1]), cutoffs={"high": 0.5}).tolist()
    ['high', 'high', 'high', 'low']
    """
    cutoffs = check_tier_cutoffs(DEFAULT_TIER_CUTOFFS if cutoffs is None else cutoffs)
    return tiers_by_rank(rank_by_score(risk), cutoffs=cutoffs, risk=risk)


def tiers_by_rank(rank: pd.Series, *, cutoffs: Mapping[str, float] | None = None, risk=None) -> pd.Series:
    """:func:`assign_tiers` from ranks already made by :func:`rank_by_score` (1 = highest, one
    rank per person of the population), so that a score ranked once is not ranked again.

    ``risk`` (one value per person, in the order of ``rank``) says who is tied: people with the
    same risk take the highest tier any of them reaches by rank, so a tie is never split (ranks
    may come from another score, such as the model's raw margin, that orders people whose risks
    are equal). Without it every rank is its own risk.

    >>> tiers_by_rank(pd.Series([1, 4, 2, 3]), cutoffs={"very high": 0.25, "high": 0.5}).tolist()
    ['very high', 'low', 'high', 'low']
    >>> tiers_by_rank(pd.Series([1, 4, 2, 3]), cutoffs={"very high": 0.25, "high": 0.5},
    ...               risk=[0.9, 0.1, 0.5, 0.5]).tolist()
    ['very high', 'low', 'high', 'high']
    """
    cutoffs = check_tier_cutoffs(DEFAULT_TIER_CUTOFFS if cutoffs is None else cutoffs)
    ranks = rank.to_numpy()
    n = len(ranks)
    tiers = list(cutoffs) + [LOWEST_TIER]
    codes = np.full(n, len(tiers) - 1, dtype=np.int8)
    # Fill from the widest tier inwards so that the top tiers overwrite.
    for code in range(len(cutoffs) - 1, -1, -1):
        codes[ranks <= _n_top(cutoffs[tiers[code]], n)] = code
    if risk is not None:
        codes = _ties_share_a_tier(codes, risk, n)
    values = pd.Categorical.from_codes(codes, categories=tiers, ordered=True)
    return pd.Series(values, index=rank.index, name="tier")


def _ties_share_a_tier(codes: np.ndarray, risk, n: int) -> np.ndarray:
    """Each person's tier code lowered to the lowest (highest tier) among those with the same risk."""
    values = np.asarray(risk, dtype="float64").reshape(-1)
    if len(values) != n:
        raise ValueError(f"risk has {len(values)} values for {n} ranks")
    # One hash of the risks (not a sort): each distinct risk's highest tier, given back to all who hold it.
    group, distinct = pd.factorize(values)
    best = np.full(len(distinct), np.iinfo(np.int8).max, dtype=np.int8)
    np.minimum.at(best, group[group >= 0], codes[group >= 0])  # (a missing risk, -1, ties with nobody)
    return np.where(group >= 0, best[group], codes).astype(np.int8)


class GroupRule(BaseModel):
    """A named priority group: an age band and/or thresholds on use and cost.

    Age bounds are in completed years and inclusive (40–55 takes people aged 40.0 to 55.99) and
    always restrict the group. The use and cost conditions (admissions, A&E visits, top fractions of
    predicted or past cost) are combined by ``match``: ``"any"`` (the default, "high cost *or*
    frequent user") or ``"all"``. Past-year counts add the 0–3 and 3–12 month windows.

    >>> GroupRule(name="frequent users", min_emergency_admissions_12m=3, min_ae_attendances_12m=5).match
    'any'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    min_age: float | None = Field(None, ge=0)
    max_age: float | None = Field(None, ge=0)
    min_emergency_admissions_12m: int | None = Field(None, ge=1)
    min_ae_attendances_12m: int | None = Field(None, ge=1)
    top_fraction_predicted_cost: float | None = Field(
        None, gt=0, lt=1, description="Predicted next-year cost (or, without it, high-cost risk) in the top fraction.")
    top_fraction_past_cost: float | None = Field(None, gt=0, lt=1,
                                                 description="Past-year cost (cost_total_12m) in the top fraction.")
    match: Literal["any", "all"] = "any"

    @model_validator(mode="after")
    def _sensible(self) -> "GroupRule":
        if ";" in self.name:
            raise ValueError(f"group name {self.name!r} must not contain ';' (it separates groups in lists)")
        check_label(self.name, what="group")
        if not any(v is not None for v in (self.min_age, self.max_age, *self._use_conditions().values())):
            raise ValueError(f"group {self.name!r} has no condition; give an age band or a use/cost threshold")
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError(f"group {self.name!r}: min_age ({self.min_age}) is above max_age ({self.max_age})")
        return self

    def _use_conditions(self) -> dict[str, float | None]:
        return {"min_emergency_admissions_12m": self.min_emergency_admissions_12m,
                "min_ae_attendances_12m": self.min_ae_attendances_12m,
                "top_fraction_predicted_cost": self.top_fraction_predicted_cost,
                "top_fraction_past_cost": self.top_fraction_past_cost}


DEFAULT_GROUPS: tuple[GroupRule, ...] = (
    GroupRule(name="prevention 40–55", min_age=40, max_age=55),
    GroupRule(name="care provision 85+", min_age=85),
    GroupRule(name="high-cost individuals", top_fraction_predicted_cost=0.05, top_fraction_past_cost=0.05),
    GroupRule(name="frequent users", min_emergency_admissions_12m=3, min_ae_attendances_12m=5),
)
# The default groups as a practice's page names them (a clinician's words); commissioners keep the
# names above (summary.csv, list.csv). ListsConfig.page_group_names replaces or extends these.
DEFAULT_GROUP_PAGE_NAMES: Mapping[str, str] = {
    "prevention 40–55": "aged 40 to 55: prevention",
    "care provision 85+": "aged 85 and over: care and support needs",
    "high-cost individuals": "highest use of health and care",
    "frequent users": "frequent emergency care",
}


def past_year(frame: pd.DataFrame, stem: str, *, required: bool = False) -> pd.Series:
    """The past 12 months' count of ``stem`` (``emergency_admissions``, ``ae_attendances``): its
    ``_0_3m`` and ``_3_12m`` columns summed, one defined count for the priority groups and the lists.

    A person with neither period recorded keeps a missing count (the source may be absent: not 0).
    Without the columns the count is missing for everyone, or, with ``required``, refused.

    >>> f = pd.DataFrame({"ae_attendances_0_3m": [1, None, None], "ae_attendances_3_12m": [2, 4, None]})
    >>> past_year(f, "ae_attendances").tolist()
    [3.0, 4.0, nan]
    """
    cols = [f"{stem}_0_3m", f"{stem}_3_12m"]
    if required and (missing := [c for c in cols if c not in frame]):
        raise ValueError(f"priority groups need the columns {missing}")
    cols = [c for c in cols if c in frame]
    if not cols:
        return pd.Series(np.nan, index=frame.index)
    return frame[cols].sum(axis=1, min_count=1)


def _rule_mask(frame: pd.DataFrame, rule: GroupRule, ids: IdOrder | None) -> pd.Series:
    everyone = pd.Series(True, index=frame.index)
    in_band = everyone.copy()
    if rule.min_age is not None or rule.max_age is not None:
        if "age" not in frame:
            raise ValueError(f"group {rule.name!r} needs the column 'age'")
        years = np.floor(frame["age"].astype("float64"))
        if rule.min_age is not None:
            in_band &= years >= rule.min_age
        if rule.max_age is not None:
            in_band &= years <= rule.max_age
    use: list[pd.Series] = []
    # A missing count is below every minimum (each at least 1), as no use recorded would be.
    if rule.min_emergency_admissions_12m is not None:
        use.append(past_year(frame, "emergency_admissions", required=True) >= rule.min_emergency_admissions_12m)
    if rule.min_ae_attendances_12m is not None:
        use.append(past_year(frame, "ae_attendances", required=True) >= rule.min_ae_attendances_12m)
    if rule.top_fraction_predicted_cost is not None:
        # A predicted cost in pounds when there is one, else the high-cost model's risk ranks people.
        column = next((c for c in ("predicted_cost", "high_cost_risk") if c in frame and frame[c].notna().any()), None)
        if column is not None:
            use.append(top_fraction_mask(frame[column], rule.top_fraction_predicted_cost, ids=ids))
        elif rule.top_fraction_past_cost is None:
            raise ValueError(f"group {rule.name!r} needs 'predicted_cost' or 'high_cost_risk'")
    if rule.top_fraction_past_cost is not None:
        if "cost_total_12m" not in frame:
            raise ValueError(f"group {rule.name!r} needs the column 'cost_total_12m'")
        use.append(top_fraction_mask(frame["cost_total_12m"], rule.top_fraction_past_cost, ids=ids))
    if not use:
        return in_band
    combined = use[0].copy()
    for m in use[1:]:
        combined = (combined | m) if rule.match == "any" else (combined & m)
    return in_band & combined


def group_flags(frame: pd.DataFrame, *, groups: Sequence[GroupRule] = DEFAULT_GROUPS,
                ids: IdOrder | None = None) -> pd.DataFrame:
    """One boolean column per priority group (in the order given), one row per person of ``frame``.

    ``frame`` holds ``age``, ``emergency_admissions_0_3m``/``_3_12m``, ``ae_attendances_0_3m``/``_3_12m``,
    ``cost_total_12m`` and optionally ``predicted_cost`` and/or ``high_cost_risk`` (whichever rules need).
    ``ids`` (the :class:`IdOrder` of ``frame.index``, optional) breaks ties in the top fractions.
    """
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"priority group names must be unique, got {names}")
    return pd.DataFrame({g.name: _rule_mask(frame, g, ids).to_numpy() for g in groups}, index=frame.index)


def assign_groups(frame: pd.DataFrame, *, groups: Sequence[GroupRule] = DEFAULT_GROUPS,
                  ids: IdOrder | None = None) -> pd.Series:
    """Each person's priority groups as one string joined by ``"; "`` (``""`` for none).

    >>> people = pd.DataFrame({"age": [45.5, 90.0], "emergency_admissions_0_3m": [0, 2],
    ...     "emergency_admissions_3_12m": [0, 1], "ae_attendances_0_3m": [0, 0],
    ...     "ae_attendances_3_12m": [0, 0], "cost_total_12m": [0.0, 0.0]})
    >>> assign_groups(people, groups=DEFAULT_GROUPS[:2] + DEFAULT_GROUPS[3:]).tolist()
    ['prevention 40–55', 'care provision 85+; frequent users']
    """
    return pd.Series(joined_groups(frame, groups=groups, ids=ids), index=frame.index, name="groups", dtype="str")


def joined_groups(frame: pd.DataFrame, *, groups: Sequence[GroupRule] = DEFAULT_GROUPS,
                  ids: IdOrder | None = None) -> np.ndarray:
    """:func:`assign_groups` as an object array of Python strings (cheap to reorder before they become
    a ``str`` column)."""
    flags = group_flags(frame, groups=groups, ids=ids)
    names = np.array(flags.columns, dtype=object)
    matrix = flags.to_numpy(dtype=bool)
    if matrix.shape[1] > 62:  # more groups than bits in a pattern number: join person by person
        return np.array([GROUP_SEPARATOR.join(names[row]) for row in matrix] or [], dtype=object)
    # People share a few patterns of flags: join the names once per pattern, then take.
    pattern = matrix.astype(np.int64) @ (np.int64(1) << np.arange(matrix.shape[1], dtype=np.int64))
    codes, distinct = pd.factorize(pattern)
    bits = (distinct[:, None] >> np.arange(matrix.shape[1])) & 1 == 1
    joined = np.array([GROUP_SEPARATOR.join(names[row]) for row in bits], dtype=object)
    return joined[codes]


COST_BANDS: tuple[tuple[float, str], ...] = (
    (1_000, "under £1k"), (5_000, "£1k–5k"), (20_000, "£5k–20k"), (math.inf, "£20k+"))


def cost_band(predicted_cost, *, currency: str = "GBP") -> pd.Series:
    """Predicted cost as a band label in ``currency`` (ordered categorical; missing stays missing).

    >>> cost_band([250, 1_000, 7_500, 60_000]).tolist()
    ['under £1k', '£1k–5k', '£5k–20k', '£20k+']
    >>> cost_band([250], currency="USD").tolist()
    ['under $1k']
    """
    cost = predicted_cost if isinstance(predicted_cost, pd.Series) else pd.Series(predicted_cost, dtype="float64")
    edges = [-math.inf] + [upper for upper, _ in COST_BANDS]
    code = currency.upper()
    symbol = CURRENCY_SYMBOLS.get(code)
    labels = [label if code == "GBP" else
              label.replace("£", symbol) if symbol else label.replace("£", "") + f" {code}" for _, label in COST_BANDS]
    bands = pd.cut(cost.astype("float64"), bins=edges, labels=labels, right=False, ordered=True)
    return bands.rename("predicted_cost_band")
