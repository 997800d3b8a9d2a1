"""The month's outputs: the ranked population, per-practice case-finding lists, the commissioners'
summary, and writing them all at once.

The steps are pure functions on DataFrames; :func:`write_month` is the only one that touches disk.
The batch job joins them like this::

    features, n_opted_out = apply_opt_outs(build_features(records, as_of), opt_out_ids)
    risk, raw = risk_model.risk_and_raw_score(features)  # one pass of the model
    population = rank_population(features, risk, rank_score=raw,
                                 high_cost_risk=cost_model.predict_risk(features),
                                 predicted_cost=cost_model.predict_cost(features))
    ids = population.loc[listed_mask(population, list_size=200), "person_id"]
    shap, base = risk_model.contributions(features.loc[ids])
    check_additivity(shap, base, pd.Series(raw, index=features.index).loc[ids])
    population = mark_lists(population, list_size=200, month="2026-11", previous=last_month,
                            reasons=top_reasons(shap, features.loc[ids]), holdout_fraction=0.1, seed=42)
    write_month(out, population=population, practice_lists=practice_lists(population, list_size=200),
                summary=commissioner_summary(population, list_size=200), manifest=manifest,
                changes=changes_since(last_month, population, list_size=200))

A practice's list is its people ranked by risk, the top ``list_size`` of them ("listed"), minus a
seeded random hold-out that is not shown this month so that outcomes can be compared later (never
from the very high tier by default: :func:`holdout_flags`).

The files: CSV and workbooks through :mod:`riskstrat.scoring.sheets` (formulas neutralised, same input same
bytes); the page from the Jinja2 template ``templates/list.html.j2`` (autoescaped, one
self-contained file); ``summary.csv`` with small numbers suppressed (:func:`suppress_small_numbers`).

People without a registered practice (``practice_id`` missing) are scored, ranked and counted
like everyone else, but they are not a practice: their top ``list_size`` form one list of their
own, keyed :data:`NO_PRACTICE` and written to ``no-registered-practice/`` (not under
``practices/``), for whoever the area asks to reach unregistered people (an inclusion-health or
care-coordination team). They often are the people at highest risk; leaving them off every list
would hide them. Their ``practice_id`` stays missing in ``population.parquet``, and the
commissioners' summary shows them as a row of their own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import itertools
import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from riskstrat.scoring import publish, published
from riskstrat.scoring.facts import FLAG_WORDS, SEPARATOR as FACT_SEPARATOR
from riskstrat.errors import InvalidInputError
from riskstrat.data.io import CURRENCY_SYMBOLS, file_sha256, write_bytes, write_parquet, write_text
from riskstrat.data.schema import NO_PRACTICE, NO_PRACTICE_NAME, SAFE_PRACTICE_ID
from riskstrat.features.reasons import REASON_SEPARATOR
from riskstrat.scoring.sheets import csv_bytes, csv_bytes_many, python_values, python_values_many, xlsx_bytes
from riskstrat.modeling.tiers import (DEFAULT_GROUP_PAGE_NAMES, DEFAULT_GROUPS, GROUP_SEPARATOR, GroupRule, IdOrder, cost_band, joined_groups,
                             past_year, rank_by_score, tiers_by_rank)
from riskstrat.templates import environment, render

__all__ = [
    "NO_PRACTICE",
    "NO_PRACTICE_NOTE",
    "MonthOptions",
    "PageWords",
    "MAX_RISK_DECIMALS",
    "PRACTICE_LIST_COLUMNS",
    "WORKBOOK_RECIPE",
    "HoldoutApprovalError",
    "WorkbookUnavailableError",
    "apply_opt_outs",
    "changes_since",
    "check_holdout_approval",
    "commissioner_summary",
    "describe_group",
    "holdout_flags",
    "holdout_rule",
    "listed_mask",
    "mark_lists",
    "practice_list",
    "practice_lists",
    "published_workbook",
    "rank_population",
    "recipe_workbook",
    "risk_decimals",
    "risk_percent",
    "suppress_small_numbers",
    "write_month",
    "writer_processes",
]

# Columns of a coordinator's list; "Predicted cost" and "High-cost risk (%)" appear only when the
# run predicted them, and "Local ID" only after re-identification by the practice.
PRACTICE_LIST_COLUMNS = ("Rank", "Person ID", "Age", "Sex", "Risk (%)", "Tier", "Priority groups", "Predicted cost",
                         "High-cost risk (%)", "Emergency admissions (12m)", "A&E visits (12m)", "Bed days (12m)",
                         "Top reasons", "New this month")
NO_PRACTICE_NOTE = ("People with no registered practice are scored and counted, and their highest-risk people "
                    "(the same list size as a practice) form one separate list in no-registered-practice/, "
                    "for the team that reaches unregistered people; they are never a practice's patients. "
                    "In population.parquet their practice_id is blank; in summary.csv they are one row.")


def _check_practice_names(frame: pd.DataFrame) -> None:
    """The check :func:`list_key` makes, alone."""
    if (frame["practice_id"].astype("str") == NO_PRACTICE).any():
        raise InvalidInputError(f"a practice may not be called {NO_PRACTICE!r}: that name lists people without a practice")


def list_key(frame: pd.DataFrame) -> pd.Series:
    """The list each person belongs to: their practice_id, or :data:`NO_PRACTICE` when it is missing."""
    practice = frame["practice_id"].astype("str")
    if (practice == NO_PRACTICE).any():
        raise InvalidInputError(f"a practice may not be called {NO_PRACTICE!r}: that name lists people without a practice")
    blank = practice.isna() | (practice.str.strip() == "")
    return practice.where(~blank, NO_PRACTICE).astype("str")


# ----------------------------------------------------------------------------- ranking


def _aligned(values, index: pd.Index, name: str) -> np.ndarray:
    if values is None:
        return np.full(len(index), np.nan)
    if isinstance(values, pd.Series):
        if not values.index.isin(index).all() or len(values) != len(index):
            raise ValueError(f"{name} must have one value per person of the features frame")
        return values.reindex(index).to_numpy(dtype="float64")
    array = np.asarray(values, dtype="float64").reshape(-1)
    if len(array) != len(index):
        raise ValueError(f"{name} has {len(array)} values for {len(index)} people")
    return array


def rank_population(features: pd.DataFrame, risk, *, high_cost_risk=None, predicted_cost=None,
                    tier_cutoffs: Mapping[str, float] | None = None,
                    groups: Sequence[GroupRule] = DEFAULT_GROUPS, rank_score=None,
                    currency: str = "GBP") -> pd.DataFrame:
    """One row per person, ranked by ``risk`` (rank 1 = highest, population-wide), sorted by rank.

    ``features`` is :func:`riskstrat.features.reference.build_features` output (index ``person_id``; columns
    ``practice_id``, ``sex``, ``age`` and the features); ``risk`` the calibrated emergency-admission
    risk per row. ``high_cost_risk`` (chance of being in next year's top 5% by cost) and
    ``predicted_cost`` (pounds) are optional. Columns: person_id, practice_id, rank, practice_rank,
    risk, tier, groups, high_cost_risk, predicted_cost, predicted_cost_band, age, sex and the past
    year's emergency_admissions_12m, ae_attendances_12m, emergency_bed_days_12m, cost_total_12m.

    ``rank_score`` (optional) orders people instead of ``risk``; pass the model's raw score so that
    people on a plateau of an isotonic calibration are still ranked by the model, not by id.

    People whose ``practice_id`` is missing (or blank) keep it missing; ``practice_rank`` then ranks
    them among themselves (:data:`NO_PRACTICE`). ``currency`` (ISO code) labels the cost bands.
    """
    ids = features.index
    if "practice_id" not in features:
        raise ValueError("the features frame has no practice_id column")
    risk_values = _aligned(risk, ids, "risk")
    by_id = IdOrder(ids)  # the ids checked unique once, and sorted at most once for every tie-break below
    order_by = pd.Series(_aligned(rank_score, ids, "rank_score") if rank_score is not None else risk_values,
                         index=ids)
    rank = rank_by_score(order_by, ids=by_id).to_numpy()
    by_rank = np.empty(len(ids), dtype=np.int64)  # positions from rank 1 down
    by_rank[rank - 1] = np.arange(len(ids))
    high_cost = _aligned(high_cost_risk, ids, "high_cost_risk")
    cost = _aligned(predicted_cost, ids, "predicted_cost")
    group_input = features.assign(high_cost_risk=high_cost, predicted_cost=cost)
    groups_joined = joined_groups(group_input, groups=groups, ids=by_id)

    # The frame is made in rank order, each column taken once (a take of millions of strings costs).
    def ranked(values) -> np.ndarray | pd.Series:
        if isinstance(values, pd.Series):  # its dtype kept
            return values.take(by_rank).reset_index(drop=True)
        return np.asarray(values)[by_rank]

    pop = pd.DataFrame(index=pd.RangeIndex(len(ids)))
    pop["person_id"] = pd.array(ids.take(by_rank).astype(str), dtype="str")
    practice = ranked(features["practice_id"]).astype("str")
    pop["practice_id"] = practice.where(practice.str.strip() != "", None).astype("str")
    pop["rank"] = np.arange(1, len(ids) + 1, dtype=np.int64)
    # Rank within the practice: the count so far of the practice's people, in rank order.
    practice_codes = pd.factorize(list_key(pop))[0]
    pop["practice_rank"] = pd.Series(practice_codes).groupby(practice_codes).cumcount().to_numpy() + 1
    pop["risk"] = ranked(risk_values)
    # The same order (not ranked again); people whose risks the lists show as one share a tier.
    pop["tier"] = tiers_by_rank(pop["rank"], cutoffs=tier_cutoffs, risk=risk_percent(pop["risk"]))
    pop["groups"] = pd.array(groups_joined[by_rank], dtype="str")
    pop["high_cost_risk"] = ranked(high_cost)
    pop["predicted_cost"] = ranked(cost)
    pop["predicted_cost_band"] = cost_band(pop["predicted_cost"], currency=currency)
    pop["age"] = ranked(features["age"].astype("float64"))
    pop["sex"] = ranked(features["sex"]).astype("str") if "sex" in features else pd.array([None] * len(ids), dtype="str")
    pop["emergency_admissions_12m"] = ranked(past_year(features, "emergency_admissions"))
    pop["ae_attendances_12m"] = ranked(past_year(features, "ae_attendances"))
    for column in ("emergency_bed_days_12m", "cost_total_12m"):
        pop[column] = ranked(features[column]) if column in features else np.nan
    order = ["person_id", "practice_id", "rank", "practice_rank", "risk", "tier", "groups", "high_cost_risk",
             "predicted_cost", "predicted_cost_band", "age", "sex", "emergency_admissions_12m",
             "ae_attendances_12m", "emergency_bed_days_12m", "cost_total_12m"]
    return pop[order]


# The most decimals a list shows of a risk in percent; risks equal to this many decimals are the same
# risk (one tier, one text on the page).
MAX_RISK_DECIMALS = 3


def risk_percent(risk) -> np.ndarray:
    """Risks (fractions) in percent to :data:`MAX_RISK_DECIMALS` decimals: the risk as the lists know it.

    >>> risk_percent([0.90612345, 0.1]).tolist()
    [90.612, 10.0]
    """
    return np.round(np.asarray(risk, dtype="float64") * 100, MAX_RISK_DECIMALS)


def risk_decimals(population: pd.DataFrame, *, list_size: int) -> int:
    """How many decimals (1 to :data:`MAX_RISK_DECIMALS`) the month's lists show of a risk in percent:
    the fewest that tell apart any two people on the same list whose risks differ (to
    :data:`MAX_RISK_DECIMALS` decimals; people the same at that are tied, and share a tier).
    """
    shown = _shown(population, list_size).to_numpy()
    if not shown.any():
        return 1
    keys = pd.factorize(list_key(population.loc[shown]))[0]
    risk = population["risk"].to_numpy(dtype="float64")[shown]
    order = np.lexsort((risk, keys))  # by list, then risk: a text shared by two risks is shared by those between
    keys, risk = keys[order], risk[order]
    same_list = keys[1:] == keys[:-1]
    known, raw = risk_percent(risk), risk * 100  # as the tiers and the lists' tables make them
    differ = same_list & (known[1:] != known[:-1])
    for decimals in range(1, MAX_RISK_DECIMALS):
        shown_as = np.round(raw, decimals)
        if not (differ & (shown_as[1:] == shown_as[:-1])).any():
            return decimals
    return MAX_RISK_DECIMALS


def _rerank(population: pd.DataFrame) -> pd.DataFrame:
    pop = population.sort_values("rank").reset_index(drop=True)
    pop["rank"] = np.arange(1, len(pop) + 1, dtype="int64")
    pop["practice_rank"] = pop.groupby(list_key(pop))["rank"].rank(method="first").astype("int64")
    return pop


def apply_opt_outs(frame: pd.DataFrame, opt_out_ids) -> tuple[pd.DataFrame, int]:
    """Remove people who opted out; returns ``(frame without them, number removed)``.

    Works on the features (index ``person_id``) or a population (column ``person_id``). Apply it to
    the features, before scoring, so that nothing about these people is ranked or written. On a
    population the ranks are renumbered; tiers keep their population-wide assignment.
    """
    ids = frame["person_id"] if "person_id" in frame.columns else frame.index.to_series()
    drop = ids.astype(str).isin({str(i) for i in opt_out_ids}).to_numpy()
    kept = frame.loc[~drop].copy()
    if "rank" in kept.columns and "practice_rank" in kept.columns:
        kept = _rerank(kept)
    return kept, int(drop.sum())


# ----------------------------------------------------------------------------- lists, hold-out, changes


def _check_list_size(list_size: int) -> int:
    if int(list_size) != list_size or list_size < 1:
        raise ValueError(f"list_size must be a positive whole number, got {list_size}")
    return int(list_size)


def listed_mask(population: pd.DataFrame, *, list_size: int) -> pd.Series:
    """True for each practice's top ``list_size`` people by risk (before any hold-out)."""
    return population["practice_rank"] <= _check_list_size(list_size)


def _uniform_hash(person_ids: pd.Series, *, seed: int, month: str) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per person from (seed, month, person_id)."""
    prefix, sha256 = f"{seed}|{month}|".encode(), hashlib.sha256
    # The first 8 bytes of each digest as a big-endian whole number: int.from_bytes(digest[:8], "big")
    # for all people at once (a whole number below 2**64 becomes the same float either way).
    first = b"".join(sha256(prefix + str(pid).encode()).digest()[:8] for pid in person_ids.astype(str))
    return np.frombuffer(first, dtype=">u8").astype("float64") / 2.0**64


DEFAULT_HOLDOUT_EXEMPT_TIERS = ("very high",)


def holdout_rule(*, fraction: float, seed: int, exempt_tiers: Sequence[str] = DEFAULT_HOLDOUT_EXEMPT_TIERS,
                 approval: str | None = None) -> dict:
    """The hold-out rule as the manifest records it (and the pages explain it); ``approval`` (who
    approved it, with their reference: ``lists.holdout_approval``) is recorded when given."""
    return {"fraction": fraction, "seed": seed, "exempt_tiers": list(exempt_tiers),
            **({"approval": approval} if approval else {}),
            "rule": (f"In each practice, round({fraction:g} x the listed people"
                     + (f" outside the {' and '.join(exempt_tiers)} tier{'s' if len(exempt_tiers) > 1 else ''}"
                        if exempt_tiers else "")
                     + ") are held back at random, chosen by the lowest SHA-256 of (seed, month, person_id)"
                     + ("; people in an exempt tier are always shown." if exempt_tiers else "."))}


class HoldoutApprovalError(InvalidInputError):
    """A hold-out asked for without a stated approval."""


def check_holdout_approval(*, fraction: float, approval: str | None) -> None:
    """Refuse a hold-out (``fraction`` > 0) without ``approval`` (who approved it and their reference)."""
    if fraction > 0 and not (approval or "").strip():
        raise HoldoutApprovalError(
            f"lists.holdout_fraction is {fraction:g} but lists.holdout_approval is not set: holding people back from "
            f"a clinical list needs an approval; name the approving body and its reference (lists.holdout_approval: "
            f"'North ICB research governance, ref RG-2026-014'), or set lists.holdout_fraction: 0. Nothing was published")


def holdout_flags(population: pd.DataFrame, *, list_size: int, fraction: float, seed: int, month: str,
                  exempt_tiers: Sequence[str] = DEFAULT_HOLDOUT_EXEMPT_TIERS) -> pd.Series:
    """Listed people held out (not shown) this month: ``round(fraction * eligible)`` per practice.

    Only listed people outside ``exempt_tiers`` can be held out (default: the very high tier is
    always shown - clinicians will not accept holding back the people most at risk), and the
    fraction applies to them. The choice is random but reproducible: each eligible person gets a
    number from a hash of ``(seed, month, person_id)`` and, in each practice, the lowest numbers are
    held out. Same inputs give the same hold-out whatever the row order. Record it (``mark_lists``
    stores it in the population) so that outcomes of shown and held-out people can be compared once
    they mature; :func:`holdout_rule` states the rule for the manifest.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"hold-out fraction must be in [0, 1), got {fraction}")
    flags = pd.Series(False, index=population.index, name="holdout")
    eligible = listed_mask(population, list_size=list_size)
    if exempt_tiers:
        eligible &= ~_text_in(population["tier"], {str(t) for t in exempt_tiers})
    if fraction == 0 or not eligible.any():
        return flags
    people = population.loc[eligible, ["person_id", "practice_id"]]
    people = people[["person_id"]].assign(practice_id=list_key(people))
    people["u"] = _uniform_hash(people["person_id"], seed=seed, month=month)
    people = people.sort_values(["practice_id", "u", "person_id"])
    position = people.groupby("practice_id").cumcount()
    size = people.groupby("practice_id")["person_id"].transform("size")
    held = position < np.floor(fraction * size + 0.5)
    flags.loc[held[held].index] = True
    return flags


def _text_categories(values: pd.Series) -> list[str] | None:
    """A categorical's categories when they are text (each cell's text is then its category's),
    else None (pandas writes other categories as text its own way, e.g. 1 as "1.0" beside a gap)."""
    if isinstance(values.dtype, pd.CategoricalDtype) and all(type(c) is str for c in values.cat.categories):
        return list(values.cat.categories)
    return None


def _text_in(values: pd.Series, wanted: set[str]) -> np.ndarray:
    """``values.astype("str").isin(wanted)``; a categorical of text through its categories (not every cell as text)."""
    categories = _text_categories(values)
    if categories is not None:
        hit = np.array([c in wanted for c in categories] + [False])
        return hit[values.cat.codes.to_numpy()]  # code -1 (missing) picks the False at the end
    return values.astype("str").isin(list(wanted)).to_numpy()


def _on_list(frame: pd.DataFrame, list_size: int) -> pd.DataFrame:
    """(practice_id, person_id, tier) of the people a practice sees on its list."""
    shown = listed_mask(frame, list_size=list_size)
    if "holdout" in frame:
        shown &= ~frame["holdout"].fillna(False).astype(bool)
    if "left_off" in frame:  # left off for a flag (lists.exclude_flags)
        shown &= frame["left_off"].isna()
    return frame.loc[shown, ["person_id", "practice_rank"]].assign(practice_id=list_key(frame.loc[shown])).astype(
        {"practice_id": "str", "person_id": "str"})[["practice_id", "person_id", "practice_rank"]]


def _strings(values: pd.Series) -> np.ndarray:
    """``values`` as text in an object array, None for missing (a categorical through its few categories)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        names = np.array([str(c) for c in values.cat.categories] + [None], dtype=object)
        return names[values.cat.codes.to_numpy()]  # code -1 (missing) picks the None at the end
    import pyarrow as pa

    return pa.array(values.astype("str")).to_numpy(zero_copy_only=False)


def _positions(keys, value_set) -> np.ndarray:
    """Each of ``keys``' position in ``value_set`` (text, both), -1 where it is not there: one Arrow
    hash of the value set, not one Python look-up per key."""
    import pyarrow as pa
    import pyarrow.compute as pc

    where = pc.index_in(pa.array(keys, type=pa.large_string()), value_set=pa.array(value_set, type=pa.large_string()))
    return pc.fill_null(where, -1).to_numpy(zero_copy_only=False)


def _lookup(frame: pd.DataFrame, person_ids: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``person_ids``: found in ``frame``, their tier there and their list key there
    (one Arrow hash of ``frame``'s ids serves both; missing where not found)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(frame["person_id"].astype("str"), type=pa.large_string())
    if len(pc.unique(ids)) != len(ids):  # (a missing id twice counts too, as in pandas' duplicated)
        raise ValueError("a population lists someone twice: person_id must be unique")
    _check_practice_names(frame)
    where = _positions(person_ids.astype("str"), ids)
    found = where >= 0
    tiers, keys = np.full(len(where), None, dtype=object), np.full(len(where), None, dtype=object)
    if found.any():  # the tier and list key of the people found only (not of everyone in frame)
        at = where[found]
        tiers[found] = _strings(frame["tier"].take(at))
        keys[found] = _strings(list_key(frame[["practice_id"]].take(at)))
    return found, tiers, keys


def _previous_tiers(previous: pd.DataFrame | None, person_ids: pd.Series, practice_ids: pd.Series) -> pd.Series:
    """Each person's tier last month if they were with the same practice then, else missing: a
    practice that someone joined learns nothing from their old practice's list."""
    if previous is None:
        return pd.Series(None, index=person_ids.index, dtype="str")
    found, tiers, keys = _lookup(previous, person_ids)
    same = found.copy()
    same[found] = keys[found] == _strings(practice_ids.iloc[np.flatnonzero(found)])
    return pd.Series(np.where(same, tiers, None), index=person_ids.index, dtype="str")


def _tier_change(before: pd.Series, after: pd.Series) -> pd.Series:
    """"before → after" where both are known and differ (``after`` compared as text), else missing;
    only the people with both tiers are looked at."""
    out = np.full(len(before), None, dtype=object)
    both = np.flatnonzero((before.notna() & after.notna()).to_numpy())
    if len(both):
        was, now = before.iloc[both], after.iloc[both].astype("str")
        changed = (was != now).to_numpy()
        out[both[changed]] = (was[changed].astype(object) + " → " + now[changed].astype(object)).to_numpy()
    return pd.Series(out, index=before.index, dtype="str")


def changes_since(previous: pd.DataFrame | None, current: pd.DataFrame, *, list_size: int) -> pd.DataFrame:
    """Who is new on each practice's list, who left it and who moved tier, since ``previous``.

    "On the list" means what the practice sees: its top ``list_size`` minus anyone held out
    (``holdout`` column, when present). One row per (practice, person) on either month's list:
    practice_id, person_id, new_this_month, left, previous_tier, tier, tier_change ("high → very high").
    With no previous month (the first month) nobody can be new: ``new_this_month`` is missing
    (unknown) for everyone on a list.
    """
    now = _on_list(current, list_size)
    before = (_on_list(previous, list_size) if previous is not None
              else pd.DataFrame({"practice_id": pd.Series(dtype="str"), "person_id": pd.Series(dtype="str")}))
    both = now.merge(before[["practice_id", "person_id"]], on=["practice_id", "person_id"], how="outer",
                     indicator=True)
    out = pd.DataFrame({
        "practice_id": both["practice_id"].astype("str"),
        "person_id": both["person_id"].astype("str"),
        "new_this_month": (both["_merge"] == "left_only").to_numpy(),
        "left": (both["_merge"] == "right_only").to_numpy(),
    })
    if previous is None:  # the first month: no list to be new to
        out["new_this_month"] = pd.array([pd.NA] * len(out), dtype="boolean")
    out["previous_tier"] = _previous_tiers(previous, out["person_id"], out["practice_id"])
    # Someone who left for another practice: their old practice learns nothing new about them.
    found, tiers, keys = _lookup(current, out["person_id"])
    stayed = found & (keys == _strings(out["practice_id"]))
    out["tier"] = pd.Series(np.where(stayed, tiers, None), index=out.index, dtype="str")
    out["tier_change"] = _tier_change(out["previous_tier"], out["tier"])
    out["_rank"] = both["practice_rank"].to_numpy()
    out = out.sort_values(["practice_id", "left", "_rank", "person_id"], na_position="last")
    return out.drop(columns="_rank").reset_index(drop=True)


def _isin_text(values: pd.Series, wanted: pd.Series) -> np.ndarray:
    """``values.isin(wanted)`` for text, the value set made by Arrow in one call (pandas makes it
    one Arrow scalar at a time)."""
    to_arrow = getattr(values.array, "__arrow_array__", None)
    if to_arrow is None or not isinstance(wanted.dtype, pd.StringDtype):
        return values.isin(wanted).to_numpy()
    import pyarrow as pa
    import pyarrow.compute as pc

    column = to_arrow()
    value_set = pa.array(wanted.to_numpy(dtype=object, na_value=None), type=column.type)
    return np.asarray(pc.is_in(column, value_set=value_set).to_numpy(zero_copy_only=False), dtype=bool)


def _mapped(keys: pd.Series, mapping: pd.Series) -> pd.Series:
    """``keys.map(mapping)`` (missing where a key is not in ``mapping``'s index), looked up by Arrow
    for text keys and a unique text index without missing values."""
    index = mapping.index
    if (getattr(keys.array, "__arrow_array__", None) is None or not isinstance(index.dtype, pd.StringDtype)
            or not index.is_unique or index.hasnans or keys.hasnans):
        return keys.map(mapping)
    where = _positions(keys, index)
    found = where >= 0
    out = np.full(len(keys), None, dtype=object)
    out[found] = mapping.to_numpy(dtype=object)[where[found]]
    return pd.Series(out, index=keys.index)


def _mapped_text(keys: pd.Series, mapping: pd.Series) -> pd.Series:
    """``_mapped(keys, mapping).astype("str")``; for text values taken by Arrow straight into the
    text column (not made one Python string at a time: ~0.6 s a million people)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    index = mapping.index
    if (getattr(keys.array, "__arrow_array__", None) is None or not isinstance(index.dtype, pd.StringDtype)
            or not index.is_unique or index.hasnans or keys.hasnans):
        return _mapped(keys, mapping).astype("str")
    values = pa.array(mapping.to_numpy(dtype=object, na_value=None), from_pandas=True)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return _mapped(keys, mapping).astype("str")  # numbers and the like: pandas writes them as text its way
    where = _positions(keys, index)
    found = where >= 0
    taken = pc.take(values.cast(pa.large_string()), pa.array(np.where(found, where, 0), mask=~found))
    return pd.Series(pd.array(taken, dtype=pd.StringDtype("pyarrow", na_value=np.nan)), index=keys.index)


def mark_lists(population: pd.DataFrame, *, list_size: int, month: str, previous: pd.DataFrame | None = None,
               reasons: pd.DataFrame | pd.Series | None = None, holdout_fraction: float = 0.0,
               seed: int = 0, holdout_exempt_tiers: Sequence[str] = DEFAULT_HOLDOUT_EXEMPT_TIERS,
               facts: pd.DataFrame | None = None, exclude_flags: Sequence[str] = ()) -> pd.DataFrame:
    """The population with this month's list columns added, ready to write.

    Adds ``listed`` (top ``list_size`` of the practice), ``holdout`` (:func:`holdout_flags`, never
    in ``holdout_exempt_tiers``),
    ``new_this_month``, ``previous_tier`` and ``tier_change`` (from ``previous``, last month's
    population; without it, the first month, ``new_this_month`` is missing: nobody is new to a list
    that did not exist) and ``reasons`` (the ``reasons`` column of :func:`riskstrat.features.reasons.top_reasons`,
    indexed by person_id; missing for people not explained).

    With ``facts`` (:class:`riskstrat.scoring.facts.PersonFacts`' table, index person_id) it adds
    ``flags`` (their words, missing for people without facts) and ``left_off``: for listed people not
    held out who have a flag in ``exclude_flags``, those flags' words (else missing); they are left
    off the lists (not replaced) and counted on each page.
    """
    pop = population.copy(deep=False)  # columns are added, none changed in place
    pop["listed"] = listed_mask(pop, list_size=list_size)
    pop["holdout"] = holdout_flags(pop, list_size=list_size, fraction=holdout_fraction, seed=seed, month=month,
                                   exempt_tiers=holdout_exempt_tiers)
    if facts is not None:
        pop["flags"], pop["left_off"] = _flag_columns(pop, facts, exclude_flags)
    # New: on a list now and not on that practice's list last month (changes_since's new_this_month).
    now = _on_list(pop, list_size)
    if previous is not None:
        before = _on_list(previous, list_size)[["practice_id", "person_id"]]
        now = now.merge(before, on=["practice_id", "person_id"], how="left", indicator=True)
        now = now.loc[(now["_merge"] == "left_only").to_numpy()]
    pop["new_this_month"] = (_isin_text(pop["person_id"], now["person_id"]) if previous is not None
                             else pd.array([pd.NA] * len(pop), dtype="boolean"))
    pop["previous_tier"] = _previous_tiers(previous, pop["person_id"], list_key(pop))
    pop["tier_change"] = _tier_change(pop["previous_tier"], pop["tier"])
    if reasons is not None:
        text = reasons["reasons"] if isinstance(reasons, pd.DataFrame) else reasons
        text = pd.Series(text.to_numpy(), index=text.index.astype(str))
        pop["reasons"] = _mapped_text(pop["person_id"], text)
    elif "reasons" not in pop:
        pop["reasons"] = pd.array([None] * len(pop), dtype="str")
    return pop


def _flag_columns(pop: pd.DataFrame, facts: pd.DataFrame, exclude_flags: Sequence[str]) -> tuple[pd.Series, pd.Series]:
    """Each person's flags in words (missing without facts) and, for the listed people shown whose
    flags include one of ``exclude_flags``, those flags' words (else missing)."""
    unknown = sorted(set(exclude_flags) - set(FLAG_WORDS))
    if unknown:
        raise ValueError(f"exclude_flags names unknown flags {unknown}; the flags are {list(FLAG_WORDS)}")
    index = facts.index.astype(str)
    flags = _mapped(pop["person_id"], pd.Series(facts["flags"].to_numpy(dtype=object), index=index)).astype("str")
    left_off = pd.Series(None, index=pop.index, dtype=object)
    excluded = [f for f in FLAG_WORDS if f in set(exclude_flags)]
    if excluded:
        words = pd.Series("", index=index, dtype=object)
        for flag in excluded:
            hit = facts[flag].to_numpy(dtype=bool)
            words[hit] = np.where(words[hit] == "", FLAG_WORDS[flag], words[hit] + FACT_SEPARATOR + FLAG_WORDS[flag])
        words = words[words != ""]
        eligible = (pop["listed"] & ~pop["holdout"]).to_numpy(dtype=bool)
        mapped = _mapped(pop["person_id"], words)
        left_off = mapped.where(eligible & mapped.notna().to_numpy(), None)
    return flags, left_off.astype("str")


# ----------------------------------------------------------------------------- tables for people


def _whole(values: pd.Series) -> pd.Series:
    return values.round().astype("Int64")


def _has_any(population: pd.DataFrame, column: str) -> bool:
    return column in population and population[column].notna().any()


def _shown(population: pd.DataFrame, list_size: int) -> pd.Series:
    """The people the practices see: listed, not held out."""
    shown = listed_mask(population, list_size=list_size)
    if "holdout" in population:
        shown &= ~population["holdout"].fillna(False).astype(bool)
    if "left_off" in population:  # left off for a flag (lists.exclude_flags)
        shown &= population["left_off"].isna().to_numpy()
    return shown


def _list_table(population: pd.DataFrame, rows: pd.DataFrame, rank=None, facts: pd.DataFrame | None = None, *,
                decimals: int = 1) -> pd.DataFrame:
    """The coordinator's table for ``rows`` (shown people, in list order), ranked ``rank`` (default
    1, 2, ...), risks in percent to ``decimals`` (:func:`risk_decimals`); ``population`` decides
    which optional columns every list has, ``facts`` (index person_id:
    :class:`riskstrat.scoring.facts.PersonFacts`' table) adds :data:`FACT_COLUMNS`."""
    table = pd.DataFrame({
        "Rank": np.arange(1, len(rows) + 1, dtype="int64") if rank is None else np.asarray(rank, dtype="int64"),
        "Person ID": rows["person_id"].astype("str").to_numpy(),
        "Age": np.floor(rows["age"]).astype("Int64").to_numpy(),
        "Sex": rows["sex"].astype("str").to_numpy(),
        "Risk (%)": (rows["risk"] * 100).round(decimals).to_numpy(),
        "Tier": rows["tier"].astype("str").to_numpy(),
        "Priority groups": rows["groups"].fillna("").astype("str").to_numpy(),
    })
    if _has_any(population, "predicted_cost_band"):
        table["Predicted cost"] = rows["predicted_cost_band"].astype("str").fillna("").to_numpy()
    if _has_any(population, "high_cost_risk"):
        table["High-cost risk (%)"] = (rows["high_cost_risk"] * 100).round(1).to_numpy()
    table["Emergency admissions (12m)"] = _whole(rows["emergency_admissions_12m"]).to_numpy()
    table["A&E visits (12m)"] = _whole(rows["ae_attendances_12m"]).to_numpy()
    table["Bed days (12m)"] = _whole(rows["emergency_bed_days_12m"]).to_numpy()
    if facts is not None:
        _add_facts(table, rows["person_id"].astype("str"), facts)
    reasons = rows["reasons"] if "reasons" in rows else pd.Series("", index=rows.index)
    table["Top reasons"] = reasons.fillna("").astype("str").to_numpy()
    new = rows["new_this_month"] if "new_this_month" in rows else pd.Series(False, index=rows.index)
    table["New this month"] = np.where(new.fillna(False).astype(bool), "yes", "")
    return table


# The facts' columns of a list (after "Bed days (12m)"), each only where the data hold its source.
FACT_COLUMNS = {"flags": "Flags", "last_emergency_admission": "Last emergency admission",
                "last_emergency_diagnosis": "Last emergency admission: diagnosis chapter",
                "outpatient_specialties_12m": "Outpatient specialties (12m)",
                "long_term_conditions": "Long-term conditions"}


def _add_facts(table: pd.DataFrame, person_ids: pd.Series, facts: pd.DataFrame) -> None:
    """:data:`FACT_COLUMNS` of ``facts`` for ``person_ids`` added to ``table`` (dates as YYYY-MM-DD text)."""
    at = facts.index.astype(str).get_indexer(person_ids.to_numpy(dtype=object))
    if (at < 0).any():
        raise ValueError(f"{int((at < 0).sum())} listed people have no facts: compute them for every listed person")
    for name, heading in FACT_COLUMNS.items():
        if name not in facts:
            continue
        values = facts[name].iloc[at]
        if name == "last_emergency_admission":
            values = pd.Series(pd.to_datetime(values).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)).fillna("")
            table[heading] = values.astype("str").to_numpy()
        elif name == "outpatient_specialties_12m":
            table[heading] = values.astype("Int64").to_numpy()
        else:
            table[heading] = values.fillna("").astype("str").to_numpy()


def practice_list(population: pd.DataFrame, practice_id: str, *, list_size: int) -> pd.DataFrame:
    """A practice's case-finding list for coordinators: its top ``list_size`` people, minus the hold-out.

    Only that practice's people; ``Rank`` is the position on this list (1 = highest risk); ``Risk (%)``
    to the month's :func:`risk_decimals`.
    Columns: :data:`PRACTICE_LIST_COLUMNS` (the cost columns only when predicted).
    ``practice_id`` :data:`NO_PRACTICE` gives the list of the people without a registered practice.
    """
    practice_id = str(practice_id)
    in_practice = list_key(population) == practice_id
    if not in_practice.any():
        raise ValueError(f"practice {practice_id!r} has nobody in the scored population")
    return _list_table(population, population.loc[in_practice & _shown(population, list_size)].sort_values(
        "practice_rank"), decimals=risk_decimals(population, list_size=list_size))


def practice_lists(population: pd.DataFrame, *, list_size: int,
                   facts: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """:func:`practice_list` for every practice in the population, keyed by practice id (and
    :data:`NO_PRACTICE` for the people without one, when there are any), with the listed people's
    ``facts`` (:class:`riskstrat.scoring.facts.PersonFacts`' table) when given.

    The population is split once (not filtered again for each practice): the time grows with the
    population plus the listed people, not with practices times population.
    """
    keys = list_key(population)
    shown = _shown(population, list_size).to_numpy()
    rows = population.loc[shown].assign(_list=keys[shown].to_numpy()).sort_values(["_list", "practice_rank"])
    # Every list's table built at once, then cut at the list boundaries (rows are sorted by list).
    table = _list_table(population, rows, rank=rows.groupby("_list", sort=False).cumcount().to_numpy() + 1,
                        facts=facts, decimals=risk_decimals(population, list_size=list_size))
    names, starts, sizes = np.unique(rows["_list"].to_numpy(dtype=str), return_index=True, return_counts=True)
    where = {str(k): (int(a), int(n)) for k, a, n in zip(names, starts, sizes)}
    out = {}
    for pid in sorted(keys.unique()):
        start, size = where.get(pid, (0, 0))
        out[pid] = table.iloc[start:start + size].reset_index(drop=True)
    return out


def _text_codes(values: pd.Series, names: Sequence[str]) -> np.ndarray:
    """Each cell's position in ``names`` by its text (-1: missing or not there), as
    ``pd.Categorical(values.astype("str"), categories=names).codes``; a categorical of text through its categories."""
    categories = _text_categories(values)
    if categories is not None:
        where = {name: i for i, name in enumerate(names)}
        code_of = np.array([where.get(c, -1) for c in categories] + [-1], dtype=np.int64)
        return code_of[values.cat.codes.to_numpy()]  # code -1 (missing) picks the -1 at the end
    return pd.Categorical(values.astype("str"), categories=names).codes.astype(np.int64)


def commissioner_summary(population: pd.DataFrame, *, list_size: int,
                         groups: Sequence[GroupRule] | None = None, currency: str = "GBP") -> pd.DataFrame:
    """Aggregates per practice for commissioners (no person-level rows), plus an "all practices" row.

    Columns: people; counts per tier and per priority group; expected people with the outcome among
    all the row's people (sum of risk); listed, held back and shown counts; the expected % of the
    listed people with the outcome (their mean risk in percent, the list's expected PPV); expected
    high-cost people and predicted cost of all the row's people when those were predicted
    (``predicted cost (£, all people)``, in ``currency``). ``groups`` fixes the group columns
    (default: the groups present). People without a registered practice are one row, "no registered
    practice", after the practices. :data:`SUMMARY_COLUMN_MEANINGS` says what each column covers.
    """
    key_codes, key_names = pd.factorize(list_key(population))  # the few list keys, not a million strings
    cost_column = f"predicted cost ({CURRENCY_SYMBOLS.get(currency.upper(), currency.upper())}, all people)"
    listed_all = listed_mask(population, list_size=list_size).to_numpy(dtype=bool)
    held_all = (population["holdout"].fillna(False).astype(bool).to_numpy() if "holdout" in population
                else np.zeros(len(population), bool))
    tiers = (list(population["tier"].cat.categories) if isinstance(population["tier"].dtype, pd.CategoricalDtype)
             else sorted(population["tier"].astype("str").unique()))
    tier_codes = _text_codes(population["tier"], tiers)
    # The few distinct joined names, each person pointing at theirs.
    joined_codes, joined = pd.factorize(population["groups"].fillna("").astype("str"))
    group_names = [g.name for g in groups] if groups is not None else sorted(
        {g for names in joined for g in str(names).split(GROUP_SEPARATOR) if g})
    # One membership column per group, found for each distinct joined name (a whole item of it)
    # and taken for everyone.
    padded = [GROUP_SEPARATOR + str(names) + GROUP_SEPARATOR for names in joined]
    member = (np.array([[GROUP_SEPARATOR + name + GROUP_SEPARATOR in text for name in group_names] for text in padded],
                       dtype=bool).reshape(len(padded), len(group_names))[joined_codes]
              if group_names else np.zeros((len(population), 0), bool))
    risk_all = population["risk"].to_numpy(dtype="float64")
    left_off_all = population["left_off"].notna().to_numpy() if "left_off" in population else None
    left_off_all = left_off_all if left_off_all is not None and left_off_all.any() else None
    optional = {c: population[c].to_numpy(dtype="float64") for c in ("high_cost_risk", "predicted_cost")
                if c in population}

    def total(values: np.ndarray) -> float:
        return float(np.where(np.isnan(values), 0.0, values).sum())  # as pandas sums, skipping missing values

    def summarise(rows: np.ndarray) -> dict:
        """One summary row for the people at positions ``rows`` (in population order)."""
        risk, listed, held = risk_all[rows], listed_all[rows], held_all[rows]
        row = {"people": len(rows)}
        counts = np.bincount(tier_codes[rows][tier_codes[rows] >= 0], minlength=len(tiers))
        for t, tier in enumerate(tiers):
            row[f"tier: {tier}"] = int(counts[t])
        in_groups = member[rows].sum(axis=0)
        for k, name in enumerate(group_names):
            row[f"group: {name}"] = int(in_groups[k])
        row[EXPECTED_OUTCOME_COLUMN] = round(total(risk), 2)  # outcome: summary.json; rounded when published
        row["listed"] = int(listed.sum())
        row["held back"] = int((listed & held).sum())
        row["shown"] = row["listed"] - row["held back"]
        if left_off_all is not None:  # only when lists.exclude_flags left someone off
            row["left off (flags)"] = int(left_off_all[rows].sum())
            row["shown"] -= row["left off (flags)"]
        # No sum of the listed people's risks: with their mean (the PPV) it would give back the
        # listed count that suppression hides.
        row[EXPECTED_PERCENT_COLUMN] = (round(100 * total(risk[listed]) / int(listed.sum()), 1) if listed.any()
                                        else math.nan)
        if "high_cost_risk" in optional and not np.isnan(optional["high_cost_risk"][rows]).all():
            row[EXPECTED_HIGH_COST_COLUMN] = round(total(optional["high_cost_risk"][rows]), 2)
        if "predicted_cost" in optional and not np.isnan(optional["predicted_cost"][rows]).all():
            row[cost_column] = round(total(optional["predicted_cost"][rows]), 0)
        return row

    # Each practice's people found once: positions sorted by practice name, population order kept within.
    names = sorted(str(k) for k in key_names)
    ranked = pd.Index(names).get_indexer([str(k) for k in key_names])[key_codes]
    order = np.argsort(ranked, kind="stable")
    sizes = np.bincount(ranked, minlength=len(names))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    rows, unregistered = [], None
    for pid, start, size in zip(names, starts, sizes):
        if pid == NO_PRACTICE:
            unregistered = order[start:start + size]
        else:
            rows.append({"practice_id": str(pid), **summarise(order[start:start + size])})
    if unregistered is not None:
        rows.append({"practice_id": NO_PRACTICE_NAME, **summarise(unregistered)})
    rows.append({"practice_id": "all practices", **summarise(np.arange(len(population)))})
    return pd.DataFrame(rows)


SUMMARY_COUNT_COLUMNS = ("people", "listed", "held back", "shown", "left off (flags)")
EXPECTED_OUTCOME_COLUMN = "expected people with the outcome (all people)"
EXPECTED_HIGH_COST_COLUMN = "expected high-cost people (all people)"
EXPECTED_PERCENT_COLUMN = "expected % of listed people with the outcome"
# What each column of summary.csv covers, as summary.json says it ("tier: " and "group: " columns by prefix).
SUMMARY_COLUMN_MEANINGS = {
    "practice_id": "The practice's code; 'no registered practice' for people without one; 'all practices' for "
                   "everyone.",
    "people": "People scored in the row (registered adults of the practice).",
    "tier: ": "People of the row in this tier (tiers rank everyone in the area).",
    "group: ": "People of the row in this priority group (a person can be in several).",
    EXPECTED_OUTCOME_COLUMN: "The sum of the estimated risks of all the row's people: how many of them are expected "
                             "to have the outcome. Rounded as the counts are.",
    "listed": "The row's top people by risk (the list size per practice), before the hold-out.",
    "held back": "Listed people held back at random this month (not shown), to compare their outcomes later.",
    "shown": "Listed people shown on the practice's list: listed minus held back (and minus those left off for "
             "flags, when lists.exclude_flags left anyone off).",
    "left off (flags)": "Listed people left off the list for a clinical flag (lists.exclude_flags): not replaced.",
    EXPECTED_PERCENT_COLUMN: "The mean estimated risk of the listed people, in %: how many in 100 listed people are "
                             "expected to have the outcome (the list's expected positive predictive value).",
    EXPECTED_HIGH_COST_COLUMN: "The sum of all the row's people's chances of being in next year's top 5% by cost. "
                               "Rounded as the counts are.",
    "predicted cost": "The sum of all the row's people's predicted costs next year, in whole units of the currency.",
}
_ROUNDED_ESTIMATES = (EXPECTED_OUTCOME_COLUMN, EXPECTED_HIGH_COST_COLUMN)


def _is_count_column(name: str) -> bool:
    return name in SUMMARY_COUNT_COLUMNS or name.startswith(("tier: ", "group: "))


def summary_column_meaning(name: str) -> str:
    """What a column of the commissioners' summary covers (:data:`SUMMARY_COLUMN_MEANINGS`)."""
    if name in SUMMARY_COLUMN_MEANINGS:
        return SUMMARY_COLUMN_MEANINGS[name]
    prefix = next((p for p in ("tier: ", "group: ", "predicted cost") if name.startswith(p)), None)
    return SUMMARY_COLUMN_MEANINGS[prefix] if prefix else ""


def suppress_small_numbers(summary: pd.DataFrame, *, threshold: int = 8, round_to: int = 5) -> pd.DataFrame:
    """The commissioners' summary with counts of people made safe to publish.

    NHS-style small-number rules: in every count column (people, tiers, groups, listed, held back,
    shown) a count from 1 to ``threshold - 1`` is shown as ``"<threshold"`` (default ``"<8"``),
    0 stays 0 (nobody to single out), and every other count is rounded to the nearest
    ``round_to`` (default 5; halves round up), so that a suppressed cell cannot be recovered by
    subtracting from a total. Rounded rows therefore need not add up exactly. Expected numbers of
    people (sums of model risks over everyone) are estimates, not counts, but are shown as the counts
    beside them are (to the nearest person, then the same rule), so that they read alike; the
    expected % of the listed (their mean risk, to 1 decimal place) is left as it is. The summary
    publishes no sum over the listed people, which with that % would give back their count.
    ``threshold=1`` and ``round_to=1`` turn it off. Cells already made safe are left alone, so
    applying it twice changes nothing.

    >>> suppress_small_numbers(pd.DataFrame({"people": [0, 3, 8, 12, 1234]}))["people"].tolist()
    ['0', '<8', '10', '10', '1235']
    """
    if threshold < 1 or round_to < 1:
        raise ValueError(f"threshold and round_to must be at least 1, got {threshold} and {round_to}")
    out = summary.copy()

    def safe(value):
        if isinstance(value, str) or value is None or (isinstance(value, float) and math.isnan(value)):
            return value
        count = int(value)
        if 0 < count < threshold:
            return f"<{threshold}"
        return str(int(math.floor(count / round_to + 0.5)) * round_to)

    def rounded(value):  # an expected number of people: to the nearest whole person, then shown as a count
        if isinstance(value, str) or value is None or (isinstance(value, float) and math.isnan(value)):
            return value
        return safe(math.floor(float(value) + 0.5))

    for column in out.columns:
        if _is_count_column(str(column)):
            out[column] = pd.array([safe(v) for v in out[column].astype(object)], dtype="str")
        elif str(column) in _ROUNDED_ESTIMATES:
            out[column] = pd.array([rounded(v) for v in out[column].astype(object)], dtype="str")
    return out


# ----------------------------------------------------------------------------- writing


def _tier_shares(population: pd.DataFrame) -> tuple[list[str], pd.Series]:
    tier = population["tier"]
    if _text_categories(tier) is not None:
        order = list(tier.cat.categories)
        codes, names = _tier_text_codes(tier)  # counted by code, not as a million texts
        counts = pd.Series(np.bincount(codes[codes >= 0], minlength=len(names)), index=names)
    else:
        tiers = tier.astype("str")
        order = list(tier.cat.categories) if isinstance(tier.dtype, pd.CategoricalDtype) else sorted(tiers.unique())
        counts = tiers.value_counts()
    return order, counts.reindex(order, fill_value=0).cumsum() / max(len(tier), 1)


def _percent(share: float) -> str:
    return f"{share * 100:.1f}".removesuffix(".0") + "%"


def _no_previous_words(unverified_previous: str | None) -> str:
    """Why nobody is marked new: the first month, or last month's list could not be verified (its month)."""
    if unverified_previous:
        return (f"Last month's list ({unverified_previous}) could not be verified, so it is not compared with: "
                "nobody is marked new this month.")
    return "This is the first month of these lists: there is no earlier list to compare with, so nobody is marked new."


def _first_month(population: pd.DataFrame) -> bool:
    """Whether the month had no previous month to compare with (:func:`mark_lists` left ``new_this_month`` unknown)."""
    return "new_this_month" in population and len(population) > 0 and bool(population["new_this_month"].isna().all())


def _how_to_read(population: pd.DataFrame, *, outcome_words: str = "an emergency admission",
                 horizon_words: str = "in the next 12 months", decimals: int = 1,
                 unverified_previous: str | None = None) -> list[str]:
    """The note on every list; tier shares, the risks' decimals (``decimals``), the first month and the
    hold-out sentence come from the data, so they stay true."""
    order, shares = _tier_shares(population)
    tops = [f"{t} the top {_percent(shares[t])}" for t in order[:-1]]
    places = f"{decimals} decimal place{'s' if decimals > 1 else ''}"
    notes = [
        f"Risk (%) is the model's estimate of the chance of {outcome_words} {horizon_words}, shown to {places}: "
        "enough to tell apart any two people on a list whose estimates differ. People shown with the same risk "
        "are tied: the same estimate, always in the same tier, and their order among themselves means nothing.",
        f"Tiers rank everyone registered in the area: {', '.join(tops)}, {order[-1]} the rest." if tops else "",
        "The reasons are the recorded facts that raise this person's estimate most, strongest first, in the "
        "person's own numbers (the last 12 months unless said). Age and sex are in their own columns (the lists "
        "have no deprivation column). They are associations in the data, not causes, and do not replace clinical "
        "judgement.",
        (_no_previous_words(unverified_previous) if _first_month(population)
         else "New this month marks people who were not on last month's list."),
        "A list alone does not reduce admissions: in the PRISMATIC trial, giving practices a risk tool was followed "
        "by more emergency admissions, not fewer. What helps is what is done for the people on it.",
    ]
    if "holdout" in population and population["holdout"].fillna(False).astype(bool).any():
        notes.append("To find out what works, a few people who would be on this list are held back at random "
                     "this month; their outcomes will be compared with those of the people shown.")
    return [n for n in notes if n]


def _provenance(manifest: Mapping) -> list[str]:
    lines = []
    if manifest.get("as_of"):
        lines.append(f"Scored as of {manifest['as_of']}.")
    if manifest.get("data_end"):
        lines.append(f"Data run to {manifest['data_end']}.")
    models = manifest.get("models")
    if isinstance(models, Mapping):
        for name, info in models.items():
            if isinstance(info, Mapping):
                detail = ", ".join(f"{k} {info[k]}" for k in ("name", "version", "run_id") if info.get(k))
                lines.append(f"Model {name}: {detail}." if detail else f"Model {name}.")
            else:
                lines.append(f"Model {name}: {info}.")
    if manifest.get("package_version"):
        lines.append(f"riskstrat {manifest['package_version']}.")
    return lines


def _write_bytes(data: bytes, path: Path) -> str:
    """Write ``data`` to ``path`` (inside the month's run folder) through the atomic writer (a link
    planted at ``path`` is replaced, not followed); its SHA-256 for the manifest, from the bytes in
    hand rather than read back."""
    write_bytes(data, path)
    return hashlib.sha256(data).hexdigest()


def _write_csv(table: pd.DataFrame, path: Path) -> str:
    return _write_bytes(csv_bytes(table), path)  # formulas neutralised; same input, same bytes


def _write_xlsx(table: pd.DataFrame, path: Path, *, title: str, notes: Sequence[str], created=None,
                cells: Sequence[list] | None = None, print_cells: Mapping[str, list] | None = None) -> str:
    """A coordinator's workbook: formatted, frozen header, filters, print set-up, the Print sheet
    (``print_cells``: :func:`_print_cells`) and an About sheet (``cells``: the table's columns as
    Python values, when already made)."""
    return _write_bytes(xlsx_bytes(table, title=title, notes=notes, wide_columns=("Top reasons",), created=created,
                                   cells=cells, print_cells=print_cells), path)


# The workbook's Print sheet: the columns a clinician reads at a meeting, in this order, each where
# the list has it (the last emergency admission with its diagnosis chapter beside the date, as on
# the page; the reasons one to a line; priority groups in the page's words).
PRINT_COLUMNS = ("Rank", "Local ID", "Person ID", "Risk (%)", "Tier", "Priority groups", "Flags",
                 "Last emergency admission", "Top reasons", "Long-term conditions")


def _print_cells(cells: Mapping[str, list], group_names: Mapping[str, str] | None = None) -> dict[str, list]:
    """A list's Print sheet (:data:`PRINT_COLUMNS`) from its columns as Python values (``cells``)."""
    out = {}
    for name in PRINT_COLUMNS:
        if name not in cells:
            continue
        values = list(cells[name])
        if name == "Priority groups" and group_names:
            values = [v if not v else GROUP_SEPARATOR.join(group_names.get(g, g) for g in str(v).split(GROUP_SEPARATOR))
                      for v in values]
        elif name == "Last emergency admission":
            chapters = cells.get("Last emergency admission: diagnosis chapter") or [None] * len(values)
            values = [f"{date} ({chapter})" if date and chapter else date for date, chapter in zip(values, chapters)]
        elif name == "Top reasons":
            values = [v if not v else "\n".join(str(v).split(REASON_SEPARATOR)) for v in values]
        out[name] = values
    return out


def _cells_and_rows_many(tables: Sequence[pd.DataFrame], tier_order: Mapping[str, int],
                         group_names: Mapping[str, str] | None = None, *,
                         decimals: int = 1) -> tuple[list[dict], list[str]]:
    """Each table's columns as Python values (:func:`riskstrat.scoring.sheets.python_values_many`) and its
    page rows (:func:`_people_rows`, as text): the rows of all tables of one kind made in one pass
    and cut apart, as a row depends only on its own cells."""
    cells = python_values_many(tables)
    rows: list[str | None] = [None] * len(tables)
    kinds: dict[tuple, list[int]] = {}
    for k, table in enumerate(tables):
        kinds.setdefault(tuple(cells[k]), []).append(k)  # the same columns (tables with a Local ID apart)
    for names, members in kinds.items():
        joined = {name: list(itertools.chain.from_iterable(cells[k][name] for k in members)) for name in names}
        every = _people_row_list(joined, sum(len(tables[k]) for k in members), tier_order, group_names,
                                 decimals=decimals)
        start = 0
        for k in members:
            stop = start + len(tables[k])
            rows[k] = "".join(every[start:stop])
            start = stop
    return cells, rows


def _write_html(path: Path, **context) -> str:
    """The practice page from ``templates/list.html.j2`` (autoescaped, self-contained)."""
    return _write_bytes(render("list.html.j2", **context).encode("utf-8"), path)


def _write_list(folder: Path, relative: str, job: Mapping) -> dict[str, str]:
    """One list's files (list.csv, list.xlsx when asked, list.html, changes.csv) in ``folder``;
    returns their SHA-256 by path relative to the month (``relative``/name).

    ``job`` holds everything the files say (plain data, so that a worker process can write it),
    the CSVs as their bytes (made for all lists at once: :func:`riskstrat.scoring.sheets.csv_bytes_many`).
    """
    folder.mkdir(parents=True)
    table = job["table"]
    files = {"list.csv": _write_bytes(job["csv"], folder / "list.csv")}
    cells = [python_values(v) for _, v in table.items()] if table.columns.has_duplicates else \
        [job["cells"][c] for c in table.columns]
    if job["workbook"]:
        files["list.xlsx"] = _write_xlsx(table, folder / "list.xlsx", title=job["title"], notes=job["about"],
                                         created=job["created"], cells=cells,
                                         print_cells=_print_cells(job["cells"], job["group_names"]))
    else:  # what the workbook would say, to build it when asked (published_workbook): the same bytes
        files[WORKBOOK_RECIPE] = _write_bytes(_recipe_bytes(table, cells, job), folder / WORKBOOK_RECIPE)
    files["list.html"] = _write_html(folder / "list.html", **job["page"], people=Markup(job["people_rows"]))
    if job["changes_csv"] is not None:
        files["changes.csv"] = _write_bytes(job["changes_csv"], folder / "changes.csv")
    return {f"{relative}/{name}": digest for name, digest in files.items()}


# A list published without its workbook holds this instead: everything the workbook says (title,
# About notes, creation date, the page's group names, every cell as written), so that the workbook can
# be built later from the published month, byte for byte as the run would have written it.
WORKBOOK_RECIPE = "workbook.json"
RECIPE_VERSION = 1


def _recipe_bytes(table: pd.DataFrame, cells: Sequence[list], job: Mapping) -> bytes:
    """The :data:`WORKBOOK_RECIPE` of a list: JSON holding the workbook's inputs (the cells as the
    workbook writes them: text, whole and decimal numbers, true/false and null round-trip exactly)."""
    created = job["created"]
    recipe = {"recipe_version": RECIPE_VERSION, "title": job["title"], "notes": list(job["about"]),
              "created": created.isoformat() if created is not None else None,
              "group_names": job["group_names"], "columns": [str(c) for c in table.columns], "cells": list(cells)}
    return (json.dumps(recipe, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class WorkbookUnavailableError(InvalidInputError):
    """A practice's workbook cannot be given from a published month: the message says why and what to do
    (naming the folders); ``reason``, the same without them, for a coordinator's page."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


def _list_folder(practice_id: str) -> str:
    return NO_PRACTICE if str(practice_id) == NO_PRACTICE else f"practices/{practice_id}"


def published_workbook(month_dir: str | Path, practice_id: str, *, people: set[str] | None = None,
                       refuse_columns: Collection[str] = (), manifest: dict | None = None) -> bytes:
    """The workbook (``list.xlsx`` bytes) of ``practice_id``'s list in the published month at
    ``month_dir``: the month's own ``list.xlsx`` when it was written, else built from the list's
    :data:`WORKBOOK_RECIPE` (written instead of the workbook when ``lists.workbooks`` left it out),
    byte for byte what the run would have written. Every file read is verified against the
    month's manifest first (:class:`riskstrat.scoring.published.TamperedFileError` otherwise).

    ``people`` (optional: Person IDs): only these people's rows (the worklist server passes the
    people it still shows, without anyone who opted out since publishing); the bytes are the run's
    when nobody is left out. ``refuse_columns``: a list holding any of these columns is not given (the
    server refuses lists re-identified at publishing: it holds pseudonyms only). Raises
    :class:`WorkbookUnavailableError` when the month has no list for the practice, or neither file.
    """
    month_dir = Path(month_dir)
    manifest = manifest if manifest is not None else published.read_manifest(month_dir / published.MANIFEST,
                                                                               month=month_dir.name)
    folder = _list_folder(practice_id)
    files = manifest["files"]
    if f"{folder}/list.csv" not in files:
        raise WorkbookUnavailableError(f"{month_dir} has no list for practice {practice_id!r}: check the practice "
                                       f"id (the month's lists are under {month_dir / 'practices'})",
                                       reason="the month has no list for this practice.")
    if f"{folder}/list.xlsx" in files:
        data = published.read_verified(month_dir, f"{folder}/list.xlsx", manifest)
        if people is not None or refuse_columns:
            listed = pd.read_csv(io.BytesIO(published.read_verified(month_dir, f"{folder}/list.csv", manifest)),
                                 dtype=str, keep_default_na=False, encoding="utf-8-sig")
            _refuse_columns(listed.columns, refuse_columns, month_dir / folder)
            if people is not None and set(listed["Person ID"]) - set(people):
                raise WorkbookUnavailableError(
                    f"{month_dir / folder / 'list.xlsx'} holds people who are no longer shown (opted out since the "
                    f"month was published): it is not given out; rescore the month to publish it without them",
                    reason="it holds people who opted out since the month was published; ask the data team to "
                           "rescore the month.")
        return data
    if f"{folder}/{WORKBOOK_RECIPE}" not in files:
        raise WorkbookUnavailableError(
            f"{month_dir / folder} has neither list.xlsx nor {WORKBOOK_RECIPE} (published by an older riskstrat): "
            f"rescore the month (`riskstrat score --as-of {manifest.get('as_of')}`) to make its workbook",
            reason="the month was published without one by an older riskstrat; ask the data team to rescore it.")
    recipe = json.loads(published.read_verified(month_dir, f"{folder}/{WORKBOOK_RECIPE}", manifest))
    _refuse_columns(recipe.get("columns", []), refuse_columns, month_dir / folder)
    return recipe_workbook(recipe, people=people, where=month_dir / folder / WORKBOOK_RECIPE)


def _refuse_columns(columns, refused: Collection[str], where: Path) -> None:
    found = sorted(set(map(str, columns)) & set(refused))
    if found:
        raise WorkbookUnavailableError(f"the list in {where} holds {', '.join(found)} (re-identified when it was "
                                       f"published): its workbook is not given out here",
                                       reason="its list was re-identified when it was published; ask the data team "
                                              "for it.")


def recipe_workbook(recipe: Mapping, *, people: set[str] | None = None, where: Path | None = None) -> bytes:
    """The workbook bytes a :data:`WORKBOOK_RECIPE` (parsed) describes; ``people``: as
    :func:`published_workbook`; ``where``: the recipe's file, for the messages."""
    if recipe.get("recipe_version") != RECIPE_VERSION:
        raise WorkbookUnavailableError(f"{where or 'a workbook recipe'} is of version {recipe.get('recipe_version')!r}, "
                                       f"which this riskstrat cannot read (it reads version {RECIPE_VERSION}): "
                                       f"rescore the month",
                                       reason="it was published by another riskstrat version; ask the data team to "
                                              "rescore the month.")
    columns, cells = list(recipe["columns"]), [list(c) for c in recipe["cells"]]
    if people is not None and "Person ID" in columns:
        ids = cells[columns.index("Person ID")]
        keep = [k for k, pid in enumerate(ids) if pid in people]
        if len(keep) < len(ids):
            cells = [[column[k] for k in keep] for column in cells]
    table = pd.DataFrame(index=pd.RangeIndex(len(cells[0]) if cells else 0),
                         columns=pd.Index(columns, dtype=object))  # the workbook reads its headings and length only
    by_name = dict(zip(columns, cells))
    created = dt.datetime.fromisoformat(recipe["created"]) if recipe.get("created") else None
    return xlsx_bytes(table, title=recipe["title"], notes=recipe["notes"], wide_columns=("Top reasons",),
                      created=created, cells=cells, print_cells=_print_cells(by_name, recipe.get("group_names")))


# ``workers="auto"``: worker processes only for a month of this many workbooks or more (a worker's
# start, about a second of imports, costs more than a few dozen workbooks take), or of this many
# lists without them (a list's page and CSVs take about a quarter of its workbook's time), and at
# most this many of them.
AUTO_WRITERS_MIN_WORKBOOKS = 150
AUTO_WRITERS_MIN_LISTS = 400
AUTO_WRITERS_MAX = 4


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def writer_processes(workers: int | str, *, workbooks: int, lists: int = 0) -> int:
    """How many processes write a month of ``lists`` lists and ``workbooks`` workbooks at once (1:
    the run's own; more: that many worker processes while the run writes the month's other files):
    ``workers`` when a number; for ``"auto"`` the CPUs this process may use (at most
    :data:`AUTO_WRITERS_MAX`) when there are :data:`AUTO_WRITERS_MIN_WORKBOOKS` workbooks or more,
    or :data:`AUTO_WRITERS_MIN_LISTS` lists or more, else 1."""
    if workers == "auto":
        many = workbooks >= AUTO_WRITERS_MIN_WORKBOOKS or lists >= AUTO_WRITERS_MIN_LISTS
        return max(1, min(_usable_cpus(), AUTO_WRITERS_MAX)) if many else 1
    return int(workers)


def _writer_ready() -> int:
    """Run in a worker started ahead (:func:`start_writers`): what writing a list needs, imported and
    compiled (unpickling this function imported this module); the worker's process id."""
    import xlsxwriter  # noqa: F401  (imported where a workbook is built)

    environment().get_template("list.html.j2")
    return os.getpid()


class StartedWriters:
    """Worker processes started ahead of :func:`write_month` (:func:`start_writers`): hand it to
    ``write_month(writers=...)``, which waits for their start and then writes with them. Dropped
    unused (the run failed first), it waits for their start too, rather than kill them half-started
    (which makes loky print a traceback beside the run's own error): they are then left idle, as
    joblib leaves its workers after every month written, and end with the run."""

    def __init__(self, starting=None):
        self._starting = starting

    def wait(self) -> None:
        """Wait until every worker has started (they stay, idle, for the lists)."""
        if self._starting is not None:
            starting, self._starting = self._starting, None
            for _ in starting:
                pass

    def __del__(self):
        with contextlib.suppress(Exception):  # a worker that could not start: the run is failing already
            self.wait()


def start_writers(practice_ids: pd.Series, *, options: MonthOptions) -> StartedWriters:
    """Start the worker processes :func:`write_month` will write a month with (one list per practice
    in ``practice_ids``, everyone's practice, missing for none; ``options`` as it will be given),
    without waiting: their start (about a second of imports each) then runs beside the run's own
    work on the lists (marking them, the summary, the changes). None are started where the month
    will be written in this process alone (:func:`writer_processes`)."""
    n_lists = int(practice_ids.nunique()) + bool(practice_ids.isna().any())
    workbooks = (n_lists if options.workbooks == "all" else 0) if isinstance(options.workbooks, str) \
        else len(options.workbooks)
    workers = options.workers
    if workers != "auto" and (isinstance(workers, (str, bool)) or int(workers) != workers or workers < 1):
        return StartedWriters()  # write_month refuses it, saying why
    processes = writer_processes(workers, workbooks=workbooks, lists=n_lists)
    if processes <= 1:
        return StartedWriters()
    # The same joblib settings as _write_lists, so that it finds these workers and reuses them.
    return StartedWriters(joblib.Parallel(n_jobs=processes, backend="loky", batch_size=1, max_nbytes=None,
                                          return_as="generator_unordered")(
        joblib.delayed(_writer_ready)() for _ in range(processes)))


def _write_chunk(tmp: Path, chunk: Sequence[tuple[str, dict]]) -> dict[str, str]:
    """The files of a chunk of lists (:func:`_list_jobs`): their contents made together
    (:func:`_ready_jobs`), then written list by list."""
    hashes: dict[str, str] = {}
    for (relative, _), job in zip(chunk, _ready_jobs([job for _, job in chunk])):
        hashes.update(_write_list(tmp / relative, relative, job))
    return hashes


def _write_lists(tmp: Path, jobs: Sequence[tuple[str, dict]], *, workers: int | str,
                 meanwhile: Callable[[], dict[str, str]] | None = None) -> dict[str, str]:
    """Every list's files (:func:`_list_jobs`): in this process, or in chunks of lists across
    :func:`writer_processes` worker processes (joblib's loky backend), each making its lists'
    pages, CSVs and workbooks from their rows (:func:`_write_chunk`): the run hands out the lists
    and does ``meanwhile`` (the month's other files; their hashes by path) while the workers write,
    rather than making every list's contents first while the workers wait.

    Every file depends only on its own job, so the bytes are the same whichever process writes
    it, and in whatever order; the manifest sorts the paths. A list that fails raises its own error
    here (joblib re-raises the worker's exception) after joblib has killed and waited for every
    worker, and so does a failure of ``meanwhile`` (the workers are stopped first), so nothing is
    written into the run folder after :func:`riskstrat.scoring.publish.month_folder` removes it.
    """
    processes = writer_processes(workers, workbooks=sum(bool(job["workbook"]) for _, job in jobs), lists=len(jobs))
    if processes <= 1 or len(jobs) < 2:
        return {**(meanwhile() if meanwhile else {}), **_write_chunk(tmp, jobs)}
    size = max(1, min(8, len(jobs) // (4 * processes)))
    chunks = [jobs[k:k + size] for k in range(0, len(jobs), size)]
    # loky: fresh worker processes (no fork of the run's DuckDB/LightGBM/MLflow threads, no rerun
    # of the caller's script, so no __main__ guard). batch_size=1: a chunk is the unit handed out;
    # max_nbytes=None: no arrays memory-mapped through a temporary folder. A generator: the chunks
    # are handed out now, and the run goes on with ``meanwhile`` while they are written.
    written = joblib.Parallel(n_jobs=min(processes, len(chunks)), backend="loky", batch_size=1, max_nbytes=None,
                              return_as="generator_unordered")(
        joblib.delayed(_write_chunk)(tmp, chunk) for chunk in chunks)
    try:
        hashes = meanwhile() if meanwhile else {}
        for part in written:
            hashes.update(part)
    finally:
        with warnings.catch_warnings():  # joblib's word that the lists left were cancelled: the error says why
            warnings.simplefilter("ignore", UserWarning)
            written.close()  # after a failure: every worker killed and waited for before the error goes on
    return hashes


def _month_words(manifest: Mapping) -> str:
    month = manifest.get("month") or (str(manifest["as_of"])[:7] if manifest.get("as_of") else None)
    try:
        return pd.Timestamp(f"{month}-01").strftime("%B %Y") if month else ""
    except ValueError:
        return str(month)


def _created(manifest: Mapping):
    """The workbook's creation date: the scoring date, so that a rerun writes the same bytes."""
    try:
        return pd.Timestamp(manifest["as_of"]).to_pydatetime() if manifest.get("as_of") else None
    except (ValueError, TypeError):
        return None


def describe_group(rule: GroupRule) -> str:
    """A priority group's rule in words.

    >>> describe_group(DEFAULT_GROUPS[3])
    '3 or more emergency admissions, or 5 or more A&E visits, in the last 12 months.'
    """
    parts = []
    if rule.min_age is not None and rule.max_age is not None:
        band = f"aged {rule.min_age:g} to {rule.max_age:g}"
    elif rule.min_age is not None:
        band = f"aged {rule.min_age:g} or over"
    elif rule.max_age is not None:
        band = f"aged {rule.max_age:g} or under"
    else:
        band = ""
    if rule.min_emergency_admissions_12m is not None:
        parts.append(f"{rule.min_emergency_admissions_12m} or more emergency admissions")
    if rule.min_ae_attendances_12m is not None:
        parts.append(f"{rule.min_ae_attendances_12m} or more A&E visits")
    costs = []
    if rule.top_fraction_predicted_cost is not None:
        costs.append(f"in the area's top {_percent(rule.top_fraction_predicted_cost)} by predicted cost next year")
    if rule.top_fraction_past_cost is not None:
        costs.append(f"in the area's top {_percent(rule.top_fraction_past_cost)} by health and care cost in the "
                     "last 12 months")
    joiner = ", or " if rule.match == "any" else ", and "
    use = joiner.join(parts)
    if parts:
        use += ", in the last 12 months"
    use = joiner.join([u for u in (use, *costs) if u])
    text = f"{band}, with {use}" if band and use else (band or use)
    return text[0].upper() + text[1:] + "."


def _tier_definitions(population: pd.DataFrame) -> dict[str, str]:
    order, shares = _tier_shares(population)
    care = {"very high": "intensive case management", "high": "care management", "moderate": "disease management",
            "low": "support for self-care"}
    out, above = {}, 0.0
    for tier in order:
        share = float(shares[tier])
        where = (f"The area's top {_percent(share)} by risk" if above == 0 else
                 f"The area's next {_percent(share - above)} by risk (from the top {_percent(above)} to the top "
                 f"{_percent(share)})" if tier != order[-1] else f"Everyone below the top {_percent(above)}")
        out[tier] = where + (f", usually offered {care[tier]}." if tier in care else ".")
        above = share
    return out


def _holdout_notice(held: int, rule: Mapping | None) -> dict | None:
    """What a list says about its ``held`` people held back this month (None when nobody is)."""
    if not held:
        return None
    rule = rule or {}
    exempt = list(rule.get("exempt_tiers") or [])
    fraction = rule.get("fraction")
    share = f" ({_percent(fraction)} of the listed people{' outside the ' + ' and '.join(exempt) + ' tier' if exempt else ''})" \
        if fraction else ""
    people = "person" if held == 1 else "people"
    return {"headline": f"{held} {people} who would be on this list {'is' if held == 1 else 'are'} not shown this "
                        "month:",
            "why": f"held back at random{share} so that their outcomes can be compared with those of the people "
                   "shown, to learn whether the service helps"
                   + (f"; everyone in the {' and '.join(exempt)} tier is always shown." if exempt else ".")
                   + " Their ranks are not shown: the list is numbered 1, 2, 3, … without them."
                   + (f" Approved by {rule['approval']}." if rule.get("approval") else "")}


def _left_off_notice(reasons: Mapping[str, int], people: int) -> dict | None:
    """What a list says about its ``people`` left off for a flag (``reasons``: people per flag's words)."""
    if not people:
        return None
    why = "; ".join(f"{n} {words}" for words, n in reasons.items())
    return {"headline": f"{people} {'person' if people == 1 else 'people'} who would be on this list "
                        f"{'is' if people == 1 else 'are'} left off for a flag:",
            "why": f"{why} (the lists leave people with these flags off, as lists.exclude_flags asks; they are not "
                   "replaced)."}


def _flag_notes(flags: Mapping | None) -> list[str]:
    """The page's words on the flags (``manifest["flags"]``: which were checked, from what, and why not)."""
    if not flags:
        return []
    checked = [f"{FLAG_WORDS[f]} ({source})" for f, source in flags.get("checked", {}).items()]
    missing = [f"{FLAG_WORDS[f]} ({why})" for f, why in flags.get("not_checked", {}).items()]
    notes = ["Flags under the Person ID are what to check before a call. " + (
        "Checked this month: " + "; ".join(checked) + "." if checked else "No flag could be checked this month.")]
    if missing:
        notes.append("Not checked this month: " + "; ".join(missing) + ".")
    notes.append("Behind \"more\": the last emergency admission (date and diagnosis chapter where the data have it), "
                 "the outpatient specialties seen in 12 months and every long-term condition; list.csv has them in "
                 "full.")
    return notes


def _list_facts(cells: Mapping[str, list], *, month: _MonthContext, outcome_words: str,
                horizon_words: str) -> list[str]:
    """What a list says about its own people, from its cells: how many in 100 are expected to have
    the outcome (their mean risk), who is new (or that this is the first month) and which ranks are tied."""
    risks = [float(v) for v in cells.get("Risk (%)", []) if v is not None]
    facts = []
    if risks:
        mean = sum(risks) / len(risks)
        share = ("fewer than 1 in 100 people" if mean < 0.5 else f"about {mean:.0f} in 100 people")
        facts.append(f"On average {share} on this list are expected to have {outcome_words} {horizon_words} "
                     "(the mean of their risks): the list is a place to start looking, not a diagnosis.")
    if month.first_month:
        facts.append(_no_previous_words(month.unverified_previous) if month.unverified_previous
                     else "This is the first month of these lists, so nobody is marked new.")
    else:
        new = sum(v == "yes" for v in cells.get("New this month", []))
        facts.append(f"{new} {'person is' if new == 1 else 'people are'} new this month (marked new: not on "
                     "last month's list).")
    runs = _tied_runs(cells.get("Rank", []), risks, decimals=month.decimals)
    if runs:
        said = [f"ranks {a}–{b} ({risk:.{month.decimals}f}%)" for a, b, risk in runs[:3]]
        more = f" and {len(runs) - 3} more group{'s' if len(runs) > 4 else ''}" if len(runs) > 3 else ""
        facts.append(f"Tied: {', '.join(said)}{more} share one risk; their order among themselves means nothing.")
    return facts


def _tied_runs(ranks: Sequence, risks: Sequence[float], *, decimals: int) -> list[tuple[int, int, float]]:
    """(first rank, last rank, risk) of each run of neighbours on a list shown with the same risk."""
    runs, start = [], 0
    for i in range(1, len(risks) + 1):
        if i == len(risks) or round(risks[i], decimals) != round(risks[start], decimals):
            if i - start > 1:
                runs.append((int(ranks[start]), int(ranks[i - 1]), risks[start]))
            start = i
    return runs


def _changes_table(changes: pd.DataFrame | None, table: pd.DataFrame, *, month: _MonthContext) -> pd.DataFrame | None:
    """A list's changes (:func:`changes_since`, without practice_id) in the words of its list.csv:
    the month, the month compared with, and each person's Rank and Risk (%) as the list shows them
    (blank for someone who left the list), "yes" for new and left."""
    if changes is None:
        return None
    person = changes["person_id"].astype("str")
    rank, risk = _places(table, person)
    compared = ("none: this is the first month" if month.first_month
                else month.previous_month or "last month")
    new = changes["new_this_month"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    left = changes["left"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    return pd.DataFrame({
        "Month": pd.array([month.month_label] * len(changes), dtype="str"),
        "Compared with": pd.array([compared] * len(changes), dtype="str"),
        "Rank": rank,
        "Person ID": pd.array(person.to_numpy(), dtype="str"),
        "Risk (%)": risk,
        "Tier": pd.array(changes["tier"].to_numpy(), dtype="str"),
        "New this month": pd.array(np.where(new, "yes", ""), dtype="str"),
        "Left the list": pd.array(np.where(left, "yes", ""), dtype="str"),
        "Previous tier": pd.array(changes["previous_tier"].to_numpy(), dtype="str"),
        "Tier change": pd.array(changes["tier_change"].to_numpy(), dtype="str"),
    })


def _places(table: pd.DataFrame, person: pd.Series) -> tuple[pd.api.extensions.ExtensionArray, np.ndarray]:
    """Each of ``person``'s (text) Rank and Risk (%) on the list ``table`` (missing for someone not
    on it): looked up all at once, or person by person where the list repeats a Person ID (the last
    row of it counts, as a dictionary of the rows would say)."""
    shown = table["Person ID"].astype("str")
    if not shown.is_unique:
        places = dict(zip(shown, zip(table["Rank"], table["Risk (%)"])))
        place = [places.get(p, (None, None)) for p in person]
        return (pd.array([r for r, _ in place], dtype="Int64"),
                np.array([np.nan if v is None else float(v) for _, v in place], dtype="float64"))
    at = pd.Index(shown.to_numpy()).get_indexer(person.to_numpy())
    found = at >= 0
    rank = pd.array(table["Rank"], dtype="Int64").take(at, allow_fill=True)
    risk = np.full(len(at), np.nan)
    risk[found] = table["Risk (%)"].to_numpy(dtype="float64", na_value=np.nan)[at[found]]
    return rank, risk


CHANGES_COLUMNS = ("Month", "Compared with", "Rank", "Person ID", "Risk (%)", "Tier", "New this month",
                   "Left the list", "Previous tier", "Tier change")


def _about_summary(summary: pd.DataFrame, manifest: Mapping, words: PageWords, options: MonthOptions) -> dict:
    """summary.json: what summary.csv is of (month, data date, outcome), its small-number rule and
    what each column covers."""
    threshold, round_to = options.suppress_below, options.round_counts_to
    outcome = manifest.get("outcome")
    return {
        "file": "summary.csv",
        "month": _month_label(manifest) or None,
        "data_run_to": manifest.get("data_end"),
        "scored_as_of": manifest.get("as_of"),
        "outcome": f"{words.outcome_words} {words.horizon_words}",
        **({"outcome_definition": dict(outcome)} if isinstance(outcome, Mapping) else {}),
        "small_numbers": {
            "rule": (f"Counts of people from 1 to {threshold - 1} are shown as <{threshold}, 0 stays 0, and every "
                     f"other count is rounded to the nearest {round_to} (halves up), so rows need not add up. "
                     f"Expected numbers of people are estimates, shown the same way (to the nearest person, then "
                     f"this rule) so that they read as the counts do; the expected % of listed people is their "
                     "mean risk, to 1 decimal place.")
            if threshold > 1 or round_to > 1 else "Off: counts are exact.",
            "suppress_below": threshold, "round_counts_to": round_to,
            "count_columns": [str(c) for c in summary.columns if _is_count_column(str(c))],
            "rounded_estimates": [str(c) for c in summary.columns if str(c) in _ROUNDED_ESTIMATES]},
        "columns": {str(c): summary_column_meaning(str(c)) for c in summary.columns},
    }


def _table_cells(table: pd.DataFrame) -> dict[str, list]:
    """A table's columns as Python values (None for missing), by column name."""
    return {name: python_values(values) for name, values in table.items()}


def _escaped(values) -> list[str]:
    """``[str(escape(v)) for v in values]``, escaped in one call when every value is plain text
    (escaping works character by character, so the joined text escapes to the joined escapes)."""
    values = list(values)
    if values and all(type(v) is str for v in values):
        joined = "\x00".join(values)
        if joined.count("\x00") == len(values) - 1:
            return str(escape(joined)).split("\x00")
    return [str(escape(v)) for v in values]


def _escaped_items(values, separator: str, rename: Mapping[str, str] | None = None) -> list[list[str]]:
    """Each value's text (missing: empty) cut at ``separator``, then every piece escaped (all
    pieces in one call; cut first, as an escape such as ``&#39;`` can make a separator); a piece
    named in ``rename`` is replaced by its new name before escaping."""
    items = [str(v or "").split(separator) for v in values]
    if rename:
        items = [[rename.get(piece, piece) for piece in pieces] for pieces in items]
    flat = iter(_escaped(itertools.chain.from_iterable(items)))
    return [[next(flat) for _ in pieces] for pieces in items]


def _people_rows(table: pd.DataFrame, tier_order: Mapping[str, int],
                 group_names: Mapping[str, str] | None = None, *, decimals: int = 1) -> Markup:
    """The page's table rows (``<tr class="person">`` ... for each person), escaped as the template would.

    Built here rather than in a Jinja loop: the per-cell calls of a template loop were most of the
    time spent on a page. Every value is escaped with markupsafe, as the autoescaping template
    would (a column's values in one call: :func:`_escaped`); the markup is the template's row, one
    line per cell. :func:`write_month` makes every list's rows at once (:func:`_people_row_list`).
    """
    return Markup("".join(_people_row_list(_table_cells(table), len(table), tier_order, group_names,
                                           decimals=decimals)))


def _people_row_list(cells: Mapping[str, list], n: int, tier_order: Mapping[str, int],
                     group_names: Mapping[str, str] | None = None, *, decimals: int = 1) -> list[str]:
    """:func:`_people_rows` as one string per person, from the table's columns as Python values
    (``cells``, by column name; ``n`` rows; risks shown to ``decimals``; priority groups named as
    ``group_names`` say). Each row depends only on that person's cells, so the rows of many lists
    put together are the rows of each list, one after the other."""
    def column(name: str, default=None) -> list:
        """A column's cells, or ``default`` for every row without it."""
        values = cells.get(name)
        return [default] * n if values is None else values

    def number(values, missing: str) -> tuple[list[str], list[str]]:
        whole = [None if v is None else int(v) for v in values]
        return [str(-1 if v is None else v) for v in whole], [missing if v is None else str(v) for v in whole]

    ranks = [str(int(v)) for v in column("Rank")]
    new = ["<br><span class=\"new\" title=\"Not on last month's list\">new</span>" if v == "yes" else ""
           for v in column("New this month")]
    local = (['<td class="local">' + v + "</td>" for v in _escaped(v or "" for v in column("Local ID"))]
             if "Local ID" in cells else [""] * n)
    person = _escaped(column("Person ID"))
    costs = column("Predicted cost")
    cost_shown = _escaped("" if cost is None else cost for cost in costs)
    high_cost = column("High-cost risk (%)")
    chance_shown = _escaped("" if chance is None else f"{chance:.1f}%" for chance in high_cost)
    flags, facts = _fact_cells(cells, n)
    more = []
    for cost, cost_text, chance, chance_text, fact_lines in zip(costs, cost_shown, high_cost, chance_shown, facts):
        lines = list(fact_lines)
        if cost not in (None, ""):
            lines.append("Predicted cost next year: " + cost_text)
        if chance is not None:
            lines.append("Chance of being in the area&#39;s top 5% by cost: " + chance_text)
        more.append('<details class="more"><summary>more</summary>' + "<br>".join(lines) + "</details>"
                    if lines else "")
    risks = [float(v) for v in column("Risk (%)")]
    tiers = [str(v) for v in column("Tier")]
    tier_cells = {t: (f'<td class="tiername" data-v="{tier_order.get(t, 99)}"><span class="tier t-'
                      f'{escape(t.replace(" ", "-"))}">{escape(t)}</span></td>') for t in set(tiers)}
    ages, age_shown = number(column("Age"), "")
    sexes = _escaped(v or "" for v in column("Sex"))
    # One group a line on screen; in print the spans run on (list.css), so each has its own element.
    groups = ["<br>".join(f'<span class="g">{g}</span>' for g in items if g)
              for items in _escaped_items(column("Priority groups"), GROUP_SEPARATOR, group_names)]
    admissions, admissions_shown = number(column("Emergency admissions (12m)"), "–")
    ae, ae_shown = number(column("A&E visits (12m)"), "–")
    beds, beds_shown = number(column("Bed days (12m)"), "–")
    reasons = []
    for items in _escaped_items(column("Top reasons"), REASON_SEPARATOR):
        items = [r for r in items if r.strip()]  # escaping neither adds nor removes white space
        reasons.append("<li>" + "</li><li>".join(items) + "</li>" if items
                       else '<li class="none">no single recorded fact stands out</li>')
    rows = [
        f'<tr class="person">\n<td class="num" data-v="{ranks[i]}">{ranks[i]}{new[i]}</td>\n{local[i]}\n'
        f'<td class="pid">{person[i]}{flags[i]}{more[i]}</td>\n'
        f'<td class="num risk" data-v="{risks[i]}">{risks[i]:.{decimals}f}%</td>\n{tier_cells[tiers[i]]}\n'
        f'<td class="num" data-v="{ages[i]}">{age_shown[i]}</td>\n<td>{sexes[i]}</td>\n'
        f'<td class="groups">{groups[i]}</td>\n'
        f'<td class="num" data-v="{admissions[i]}">{admissions_shown[i]}</td>\n'
        f'<td class="num" data-v="{ae[i]}">{ae_shown[i]}</td>\n'
        f'<td class="num" data-v="{beds[i]}">{beds_shown[i]}</td>\n'
        f'<td class="reasons"><ul>{reasons[i]}</ul></td>\n</tr>\n'
        for i in range(n)]
    return rows


def _fact_cells(cells: Mapping[str, list], n: int) -> tuple[list[str], list[list[str]]]:
    """Each person's flags as badges for the Person ID cell, and their facts as lines (escaped) for
    the "more" behind it: the last emergency admission, outpatient specialties and every long-term
    condition (the reasons name three at most). Empty for lists without facts."""
    if "Flags" not in cells:
        return [""] * n, [[] for _ in range(n)]
    badges = ["".join(f'<br><span class="flag">{w}</span>' for w in items if w.strip())
              for items in _escaped_items(cells["Flags"], FACT_SEPARATOR)]
    lines: list[list[str]] = [[] for _ in range(n)]
    if "Last emergency admission" in cells:
        chapters = cells.get("Last emergency admission: diagnosis chapter") or [None] * n
        for i, (date, chapter) in enumerate(zip(_escaped(v or "" for v in cells["Last emergency admission"]),
                                                _escaped(v or "" for v in chapters))):
            lines[i].append("Last emergency admission: " + (f"{date}{f' ({chapter})' if chapter else ''}" if date
                                                            else "none recorded"))
    if "Outpatient specialties (12m)" in cells:
        for i, count in enumerate(cells["Outpatient specialties (12m)"]):
            if count is not None:
                lines[i].append(f"Outpatient specialties in the last 12 months: {int(count)}")
    if "Long-term conditions" in cells:
        for i, items in enumerate(_escaped_items(cells["Long-term conditions"], FACT_SEPARATOR)):
            named = [c for c in items if c.strip()]
            lines[i].append("Long-term conditions: " + (", ".join(named) if named else "none recorded"))
    return badges, lines


def _cell(value):
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _with_local_ids(table: pd.DataFrame, lookup: pd.DataFrame, practice_id: str) -> pd.DataFrame:
    key = next((c for c in ("person_id", "pseudonym") if c in lookup.columns), None)
    if key is None or "local_id" not in lookup.columns:
        raise ValueError(f"re-identification lookup for practice {practice_id!r} needs columns "
                         f"'person_id' (or 'pseudonym') and 'local_id', got {list(lookup.columns)}")
    if lookup[key].duplicated().any():
        raise ValueError(f"re-identification lookup for practice {practice_id!r} has duplicate pseudonyms")
    mapping = pd.Series(lookup["local_id"].astype("str").to_numpy(), index=lookup[key].astype("str").to_numpy())
    out = table.copy()
    # The practice's own ID comes first: it is what a coordinator searches for in the clinical system.
    out.insert(out.columns.get_loc("Person ID"), "Local ID",
               out["Person ID"].astype("str").map(mapping).fillna("").astype("str"))
    return out


def _check_practice_lists(population: pd.DataFrame, practice_lists: Mapping[str, pd.DataFrame]) -> None:
    for pid in practice_lists:
        if not re.match(SAFE_PRACTICE_ID, str(pid)):
            raise InvalidInputError(f"practice id {pid!r} cannot be used as a folder name")
    if not practice_lists:
        return
    # Every listed person looked up once (not the whole population once per practice), in a table
    # of the listed people's home practices only (not an index of the whole population).
    ids = [table["Person ID"].astype("str").to_numpy(dtype=object) for table in practice_lists.values()]
    listed = np.concatenate(ids)
    on_list = np.repeat(np.array([str(pid) for pid in practice_lists], dtype=object), [len(a) for a in ids])
    person = population["person_id"].astype("str")
    to_arrow = getattr(person.array, "__arrow_array__", None)
    if to_arrow is not None:  # Arrow's own look-up (pandas' isin on Arrow text loops in Python)
        import pyarrow as pa
        import pyarrow.compute as pc

        column = to_arrow()
        wanted = pa.array([v for v in listed if isinstance(v, str)], type=column.type)
        mine = pc.is_in(column, value_set=wanted).to_numpy(zero_copy_only=False)
    else:
        mine = person.isin(listed).to_numpy()
    at = np.flatnonzero(mine)  # the listed people's rows only
    home = pd.Series(list_key(population[["practice_id"]].take(at)).to_numpy(),
                     index=person.take(at).to_numpy(dtype=object))
    foreign = on_list[pd.Series(listed, dtype=object).map(home).to_numpy(dtype=object) != on_list]
    if len(foreign):
        pid = foreign[0]
        raise ValueError(f"the list for practice {pid!r} holds {int((foreign == pid).sum())} people who are not its "
                         f"patients")


def _registered_by_tier(population: pd.DataFrame, keys: pd.Series) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The tiers in order, and each list's people per tier (one pass over the population)."""
    tiers = (list(population["tier"].cat.categories) if isinstance(population["tier"].dtype, pd.CategoricalDtype)
             else sorted(population["tier"].astype("str").unique()))
    # Counted by codes (list key x tier as text; missing tiers not counted), not a million pairs of text.
    key_codes, key_names = pd.factorize(keys)
    tier_codes, tier_names = _tier_text_codes(population["tier"])
    known = tier_codes >= 0
    counts = np.bincount(key_codes[known] * len(tier_names) + tier_codes[known],
                         minlength=len(key_names) * len(tier_names)).reshape(len(key_names), len(tier_names))
    by_key: dict[str, dict[str, int]] = {}
    for k, t in zip(*np.nonzero(counts)):
        by_key.setdefault(str(key_names[k]), {})[str(tier_names[t])] = int(counts[k, t])
    return tiers, by_key


def _tier_text_codes(tier: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each person's tier as a code into the tiers' distinct texts (-1: missing), and those texts;
    a categorical of text through its categories."""
    categories = _text_categories(tier)
    if categories is not None:
        names = list(dict.fromkeys(categories))
        return _text_codes(tier, names), names
    codes, uniques = pd.factorize(tier.astype("str"))
    return codes.astype(np.int64), [str(u) for u in uniques]


def _tier_counts(tiers: Sequence[str], registered: Mapping[str, int],
                 list_tiers: Sequence) -> list[tuple[str, int, int]]:
    """(tier, registered, on the list) for each tier, in order; ``list_tiers``: the list's Tier cells."""
    on_list = Counter(str(t) for t in list_tiers if t is not None)
    return [(t, int(registered.get(t, 0)), int(on_list.get(t, 0))) for t in tiers]


DEFAULT_FIND_PERSON = ("The Person ID is a pseudonym: ask the team named under 'Who to ask' for your practice's "
                       "re-identified copy (with your own patient IDs), or search the pseudonym in the system they "
                       "tell you holds it.")
DEFAULT_NEXT_STEPS = ("Look at each person's record and decide together (GP, nurse, coordinator) whether a review "
                      "would help: for example a multidisciplinary review, a medicines review or a care plan.",
                      "If someone is already well looked after, or the list is wrong about them, note it and move on.")
# Said to the coordinator; the analyst names the team with lists.contact (configs/scoring.yaml).
DEFAULT_CONTACT = "the data team that produced this list"


@dataclass(frozen=True)
class PageWords:
    """What a month's pages and workbooks say beyond the numbers.

    ``outcome_words`` names the outcome the risk is of ("an emergency admission or death", from the
    model's metadata) and ``horizon_words`` its window; a page is titled with the practice's name
    from ``practice_names`` (else its code); without a re-identification lookup it says how to find
    a person (``find_person``); ``contact`` and ``next_steps`` say who to ask and what to do;
    ``groups`` (the priority group rules) are defined on the page, each named as ``group_names``
    says (a clinician's words; commissioners' files keep the groups' own names).
    """

    outcome_words: str = "an emergency admission"
    horizon_words: str = "in the next 12 months"
    practice_names: Mapping[str, str] = field(default_factory=dict)
    groups: Sequence[GroupRule] = DEFAULT_GROUPS
    find_person: str = DEFAULT_FIND_PERSON
    contact: str | None = DEFAULT_CONTACT
    next_steps: Sequence[str] = DEFAULT_NEXT_STEPS
    group_names: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GROUP_PAGE_NAMES))


@dataclass(frozen=True)
class MonthOptions:
    """How a month is written.

    ``suppress_below`` and ``round_counts_to``: the summary's small-number suppression
    (:func:`suppress_small_numbers`). ``workbooks`` says whose lists also get ``list.xlsx``:
    ``"all"``, ``"none"``, or the practice ids that asked for one (the workbooks are most of the
    writing time). ``workers``: how many processes write the lists' files at once: 1, this one;
    more, that many joblib (loky) worker processes while this one writes the month's other files
    (the same bytes whichever writes them); ``"auto"`` (the default) uses the CPUs this process may
    use, at most :data:`AUTO_WRITERS_MAX`, for a month of :data:`AUTO_WRITERS_MIN_WORKBOOKS`
    workbooks or :data:`AUTO_WRITERS_MIN_LISTS` lists or more, and this process alone for fewer
    (:func:`writer_processes`; ``benchmarks/README.md``).
    ``replace``: replace a month already published in the folder.
    """

    suppress_below: int = 8
    round_counts_to: int = 5
    workbooks: str | Sequence[str] = "all"
    workers: int | str = "auto"
    replace: bool = False


def write_month(out_dir: str | Path, *, population: pd.DataFrame, practice_lists: Mapping[str, pd.DataFrame],
                summary: pd.DataFrame, manifest: Mapping, reidentify: Mapping[str, pd.DataFrame] | None = None,
                changes: pd.DataFrame | None = None, words: PageWords = PageWords(),
                options: MonthOptions = MonthOptions(), writers: StartedWriters | None = None) -> Path:
    """Write the month's outputs into ``out_dir`` all at once (a failure leaves no partial month).

    Writes ``population.parquet`` (everyone scored, sorted by rank, for analysts),
    ``practices/<practice_id>/list.csv``, ``list.xlsx`` and ``list.html`` (and ``changes.csv`` with
    that practice's rows of ``changes`` in list.csv's words: :data:`CHANGES_COLUMNS`), ``summary.csv``
    (commissioners, with small numbers suppressed as ``options`` say), ``summary.json`` (the month,
    data date, outcome and small-number rule of summary.csv, and what each column covers) and
    ``manifest.json`` (``manifest`` plus the SHA-256 of every file written). ``reidentify`` maps a
    practice id to its own lookup (``person_id``/``pseudonym`` -> ``local_id``), applied to that
    practice's files only. Every file is byte-identical for identical inputs; text that looks like a
    spreadsheet formula is neutralised in every CSV and workbook (:mod:`riskstrat.scoring.sheets`).

    The page (``list.html``, from ``templates/list.html.j2``) says what ``words`` say
    (:class:`PageWords`), the month, the date the data run to (``manifest["data_end"]``) and the
    date scored (``manifest["as_of"]``), and explains the hold-out (``manifest["holdout"]``,
    :func:`holdout_rule`) with this practice's count.

    The list of people without a registered practice (key :data:`NO_PRACTICE`) goes to
    ``no-registered-practice/`` (list.csv, list.xlsx, list.html, changes.csv), never under
    ``practices/``; it is never re-identified. Who gets a workbook, how many processes write and
    whether a month already published is replaced: ``options`` (:class:`MonthOptions`).

    The month is published through :func:`riskstrat.scoring.publish.month_folder`: a month already
    published in the folder is replaced only with ``options.replace`` (else
    :class:`riskstrat.scoring.publish.AlreadyPublishedError`, naming both runs' models).
    ``writers``: worker processes started ahead for this month (:func:`start_writers`).
    """
    with_workbook = _check_month(population, practice_lists, summary, reidentify=reidentify, options=options)
    summary = suppress_small_numbers(summary, threshold=options.suppress_below, round_to=options.round_counts_to)
    population = _in_rank_order(population)
    month = _month_context(population, manifest, words, decimals=_decimals_shown(practice_lists.values()))
    counts = _list_counts(population)
    tables = {pid: (_with_local_ids(practice_lists[pid], reidentify[pid], pid) if reidentify and pid in reidentify
                    else practice_lists[pid]) for pid in sorted(practice_lists)}
    jobs = _list_jobs(tables, month=month, counts=counts, changes=changes, identified=set(reidentify or {}),
                      with_workbook=with_workbook)
    if writers is not None:
        writers.wait()
    return _publish_month(Path(out_dir), population=population, jobs=jobs, summary=summary, manifest=manifest,
                          options=options, about_summary=_about_summary(summary, manifest, words, options))


def _check_month(population: pd.DataFrame, practice_lists: Mapping[str, pd.DataFrame], summary: pd.DataFrame, *,
                 reidentify: Mapping | None, options: MonthOptions) -> set[str]:
    """Refuse a month :func:`write_month` cannot write; the practices whose lists get a workbook."""
    workers = options.workers
    if workers != "auto" and (isinstance(workers, (str, bool)) or int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be a positive whole number or 'auto', got {workers!r}")
    _check_practice_lists(population, practice_lists)
    with_workbook = _workbook_practices(options.workbooks, practice_lists)
    unknown = sorted(set(reidentify or {}) - (set(practice_lists) - {NO_PRACTICE}))
    if unknown:
        raise ValueError(f"re-identification lookups given for practices without a list: {unknown}")
    person_columns = {"person_id", "Person ID", "Local ID", "local_id"} & set(summary.columns)
    if person_columns:
        raise ValueError(f"the commissioners' summary must not hold person identifiers: {sorted(person_columns)}")
    return with_workbook


def _workbook_practices(workbooks: str | Sequence[str], practice_lists: Mapping) -> set[str]:
    """The lists that get a workbook: ``"all"``, ``"none"`` or the practice ids that asked."""
    if isinstance(workbooks, str):
        if workbooks not in ("all", "none"):
            raise ValueError(f"workbooks must be 'all', 'none' or a list of practice ids, got {workbooks!r}")
        return set(practice_lists) if workbooks == "all" else set()
    with_workbook = {str(p) for p in workbooks}
    missing = sorted(with_workbook - set(practice_lists))
    if missing:
        raise ValueError(f"workbooks asked for practices without a list this month: {missing}")
    return with_workbook


def _in_rank_order(population: pd.DataFrame) -> pd.DataFrame:
    """The population sorted by rank (kept as it is when already ranked without ties), index 0..n-1."""
    rank = population["rank"].to_numpy()
    if not (len(rank) < 2 or (np.diff(rank) > 0).all()):
        population = population.sort_values("rank")
    return population.reset_index(drop=True)


@dataclass(frozen=True)
class _MonthContext:
    """What every list of the month shares: its words, the page's common fields, the tiers' order."""

    words: PageWords
    practice_names: dict[str, str]
    page: dict
    how_to_read: list[str]
    provenance: list[str]
    tier_words: dict[str, str]
    tier_order: dict[str, int]
    month_words: str
    data_end: str
    created: dt.datetime | None
    holdout: Mapping | None
    decimals: int = 1
    first_month: bool = False
    month_label: str = ""
    previous_month: str | None = None
    unverified_previous: str | None = None  # last month, when it could not be verified


def _decimals_shown(tables) -> int:
    """The decimals the lists' ``Risk (%)`` hold (:func:`risk_decimals` made them; at least 1)."""
    values = np.concatenate([np.asarray(t["Risk (%)"], dtype="float64") for t in tables if "Risk (%)" in t] or [[]])
    values = values[~np.isnan(values)]
    return next((d for d in range(1, MAX_RISK_DECIMALS) if (np.round(values, d) == values).all()), MAX_RISK_DECIMALS)


def _unverified_previous(manifest: Mapping) -> str | None:
    """The month of last month's list when it could not be verified (treated as absent), else None."""
    unverified = manifest.get("previous_month_unverified")
    return str(unverified.get("month")) if isinstance(unverified, Mapping) and unverified.get("month") else None


def _month_label(manifest: Mapping) -> str:
    return str(manifest.get("month") or (str(manifest["as_of"])[:7] if manifest.get("as_of") else ""))


def _month_context(population: pd.DataFrame, manifest: Mapping, words: PageWords, *,
                   decimals: int = 1) -> _MonthContext:
    how_to_read = _how_to_read(population, outcome_words=words.outcome_words, horizon_words=words.horizon_words,
                               decimals=decimals,
                               unverified_previous=_unverified_previous(manifest)) + _flag_notes(manifest.get("flags"))
    provenance = _provenance(manifest)
    page = {"data_end": manifest.get("data_end"), "as_of": manifest.get("as_of"), "contact": words.contact,
            "next_steps": list(words.next_steps), "notes": how_to_read,
            "groups": [{"name": g.name, "page_name": (words.group_names or {}).get(g.name, g.name),
                        "definition": describe_group(g)} for g in words.groups],
            "provenance": provenance, "outcome_words": words.outcome_words, "horizon_words": words.horizon_words}
    tier = population["tier"]
    return _MonthContext(
        words=words, practice_names={str(k): str(v) for k, v in (words.practice_names or {}).items()}, page=page,
        how_to_read=how_to_read, provenance=provenance,
        tier_words=_tier_definitions(population),
        tier_order=({str(t): i for i, t in enumerate(tier.cat.categories)}
                    if isinstance(tier.dtype, pd.CategoricalDtype) else {}),
        month_words=_month_words(manifest), created=_created(manifest),
        data_end=f" Data run to {manifest['data_end']}." if manifest.get("data_end") else "",
        holdout=manifest.get("holdout"), decimals=decimals, first_month=_first_month(population),
        unverified_previous=_unverified_previous(manifest),
        month_label=_month_label(manifest),
        previous_month=str(manifest["previous_month"]) if manifest.get("previous_month") else None)


@dataclass(frozen=True)
class _ListCounts:
    """Each list's people, people per tier and people held out, found in one pass over the
    population (not by filtering everyone per practice)."""

    people: dict
    tiers: list[str]
    registered: dict[str, dict[str, int]]
    held: dict
    left_off: dict = field(default_factory=dict)  # list key -> (people left off, {flag words: people})


def _list_counts(population: pd.DataFrame) -> _ListCounts:
    keys = list_key(population)
    tiers, registered = _registered_by_tier(population, keys)
    held = (keys[population["holdout"].fillna(False).astype(bool).to_numpy()].value_counts().to_dict()
            if "holdout" in population else {})
    left_off = {}
    if "left_off" in population:
        off = population["left_off"].notna().to_numpy()
        for key, words in zip(keys[off], population.loc[off, "left_off"].astype(str)):
            people, reasons = left_off.get(key, (0, Counter()))
            reasons.update(words.split(FACT_SEPARATOR))
            left_off[key] = (people + 1, reasons)
        order = list(FLAG_WORDS.values())
        left_off = {k: (n, {w: reasons[w] for w in order if reasons[w]}) for k, (n, reasons) in left_off.items()}
    return _ListCounts(people=keys.value_counts().to_dict(), tiers=tiers, registered=registered, held=held,
                       left_off=left_off)


def _changes_by_list(changes: pd.DataFrame | None, keys: Sequence[str]) -> dict[str, pd.DataFrame | None]:
    """Each list's rows of ``changes`` (practice_id dropped; no rows: an empty table), None without changes."""
    if changes is None:
        return dict.fromkeys(keys)
    # practice_id dropped once, not from each practice's part; their index does not reach the CSV
    parts = dict(tuple(changes.drop(columns="practice_id").groupby(changes["practice_id"].astype("str").to_numpy(),
                                                                    sort=False)))
    empty = changes.iloc[:0].drop(columns="practice_id")
    return {key: parts.get(str(key), empty) for key in keys}


def _list_jobs(tables: Mapping[str, pd.DataFrame], *, month: _MonthContext, counts: _ListCounts,
               changes: pd.DataFrame | None, identified: set, with_workbook: set[str]) -> list[tuple[str, dict]]:
    """(folder relative to the month, job) for each list, in order of key: what :func:`_ready_jobs`
    turns into its files' contents (in the process that writes them: :func:`_write_lists`), as
    plain data: the list, its rows of ``changes``, the month and the list's own counts."""
    order = list(tables)
    mine = _changes_by_list(changes, order)
    return [(_list_folder(pid),
             {"pid": pid, "table": tables[pid], "changes": mine[pid], "month": month,
              "counts": _counts_of(counts, str(pid)), "identified": pid in identified,
              "workbook": str(pid) in with_workbook})
            for pid in order]


def _counts_of(counts: _ListCounts, key: str) -> _ListCounts:
    """``counts`` of the list ``key`` alone (what its job carries to the process that writes it)."""
    return _ListCounts(people={key: counts.people[key]} if key in counts.people else {}, tiers=counts.tiers,
                       registered={key: counts.registered[key]} if key in counts.registered else {},
                       held={key: counts.held[key]} if key in counts.held else {},
                       left_off={key: counts.left_off[key]} if key in counts.left_off else {})


def _ready_jobs(jobs: Sequence[dict]) -> list[dict]:
    """Each list's files' contents (:func:`_list_job`, with its CSVs as bytes) from its job
    (:func:`_list_jobs`, all of one month): the cells and page rows of all ``jobs`` made in one pass
    and cut apart, and their CSVs from one pandas to_csv per kind of table
    (:func:`riskstrat.scoring.sheets.csv_bytes_many`); every list's files depend on its job alone."""
    if not jobs:
        return []
    month = jobs[0]["month"]
    cells_of, rows_of = _cells_and_rows_many([job["table"] for job in jobs], month.tier_order,
                                             month.words.group_names, decimals=month.decimals)
    ready = [_list_job(job["pid"], job["table"], cells=cells, people_rows=people_rows, month=month,
                       counts=job["counts"], changes=_changes_table(job["changes"], job["table"], month=month),
                       identified=job["identified"], workbook=job["workbook"])
             for job, cells, people_rows in zip(jobs, cells_of, rows_of)]
    _add_csv_bytes(ready)
    return ready


def _list_job(pid: str, table: pd.DataFrame, *, cells: dict, people_rows: str, month: _MonthContext,
              counts: _ListCounts, changes: pd.DataFrame | None, identified: bool, workbook: bool) -> dict:
    """Everything one list's files say, as plain data (a worker process can write it)."""
    words = month.words
    unregistered = pid == NO_PRACTICE
    names = month.practice_names
    label = ("people with no registered practice" if unregistered else
             f"{names[str(pid)]} ({pid})" if str(pid) in names else f"practice {pid}")
    title = f"Case-finding list: {label}" + (f", {month.month_words}" if month.month_words else "")
    people = int(counts.people.get(str(pid), 0))
    whom = "adults with no registered practice" if unregistered else "registered adults"
    intro = (f"The {len(table)} people of {people:,} {whom} with the highest estimated risk of {words.outcome_words} "
             f"{words.horizon_words}, highest first.")
    tier_counts = _tier_counts(counts.tiers, counts.registered.get(str(pid), {}), cells["Tier"])
    held_back = _holdout_notice(int(counts.held.get(str(pid), 0)), month.holdout)
    n_off, off_reasons = counts.left_off.get(str(pid), (0, {}))
    left_off = _left_off_notice(off_reasons, n_off)
    facts = _list_facts(cells, month=month, outcome_words=words.outcome_words, horizon_words=words.horizon_words)
    about = [intro + month.data_end, *facts, *([] if identified else [f"Finding each person: {words.find_person}"]),
             *([f"Who to ask: {words.contact}"] if words.contact else []),
             *([f"{held_back['headline']} {held_back['why']}"] if held_back else []),
             *([f"{left_off['headline']} {left_off['why']}"] if left_off else []),
             *words.next_steps, *month.how_to_read, *month.provenance]
    local_ids = "Local ID" in table.columns
    return {
        "table": table, "changes": changes, "workbook": workbook, "title": title, "about": about,
        "group_names": dict(words.group_names or {}),
        "created": month.created, "cells": cells, "people_rows": people_rows,
        "page": {**month.page, "heading": title, "intro": intro, "find_person": None if identified else words.find_person,
                 "has_local_ids": local_ids,
                 "whom_short": "people without a practice" if unregistered else "practice's people",
                 "whose": "the" if unregistered else "the practice's",
                 "whose_suffix": " without a practice" if unregistered else "",
                 "tiers": [{"name": t, "css": t.replace(" ", "-"), "on_list": on_list, "registered": people_in_tier,
                            "definition": month.tier_words.get(t, "")} for t, people_in_tier, on_list in tier_counts],
                 "holdout": held_back, "left_off": left_off, "facts": facts, "n_columns": 12 + local_ids}}


def _add_csv_bytes(jobs: Sequence[dict]) -> None:
    """Every list's CSV, and every practice's changes, from one pandas to_csv per kind of table."""
    for job, data in zip(jobs, csv_bytes_many([job["table"] for job in jobs])):
        job["csv"] = data
    with_changes = [job for job in jobs if job["changes"] is not None]
    for job, data in zip(with_changes, csv_bytes_many([job["changes"] for job in with_changes])):
        job["changes_csv"] = data
    for job in jobs:
        job.setdefault("changes_csv", None)
        del job["changes"]


def _publish_month(out_dir: Path, *, population: pd.DataFrame, jobs: Sequence[tuple[str, dict]],
                   summary: pd.DataFrame, manifest: Mapping, options: MonthOptions, about_summary: Mapping) -> Path:
    """Write every file into a temporary folder, the manifest with their hashes last, and publish it."""
    with publish.month_folder(out_dir, replace=options.replace, models=manifest.get("models")) as tmp:
        def meanwhile() -> dict[str, str]:  # the month's other files, while the lists are written
            write_parquet(population, tmp / "population.parquet")
            return {"population.parquet": file_sha256(tmp / "population.parquet"),
                    "summary.csv": _write_csv(summary, tmp / "summary.csv"),
                    "summary.json": _write_bytes((json.dumps(about_summary, indent=2, ensure_ascii=False, default=str)
                                                  + "\n").encode("utf-8"), tmp / "summary.json")}

        files = _write_lists(tmp, jobs, workers=options.workers, meanwhile=meanwhile)
        record = {**dict(manifest), "files": dict(sorted(files.items()))}
        write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", tmp / "manifest.json")
    return out_dir
