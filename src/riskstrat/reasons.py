"""Plain-English reasons from per-person SHAP values: what raises this person's risk most.

The contributions are exact TreeSHAP values on the model's log-odds scale
(:meth:`riskstrat.models.RiskModel.contributions`). Only features that *raise* the person's risk
count. Related features speak as one reason (:data:`riskstrat.features.REASON_GROUPS`: the window
counts, recency and bed days of emergency admissions are one reason), whose SHAP value is the sum
of theirs. A reason's share is that value over the sum of the person's positive reason values, so
the shares never add up to more than 100%; they order and filter the reasons (``share_1..``) but are
not printed in the words, which a coordinator reads without a model's vocabulary. The words come
from :func:`riskstrat.features.describe_reason` and the person's own values ("3 emergency
admissions in the last 12 months, the last 1 month ago (9 days in hospital)").

Age, sex and deprivation are columns of every list, so by default they are not reasons
(``demographic_reasons=False``): the next reason is taken instead, and they are said only for a
person for whom nothing else raises the estimate enough. Costs are said as use of services unless
``money_reasons`` (the high-cost list).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrat.features import CONTEXT_COLUMNS, DEMOGRAPHIC_FEATURES, FEATURE_NAMES, describe_reason, reason_group

__all__ = ["REASON_SEPARATOR", "check_additivity", "top_reasons"]

REASON_SEPARATOR = "; "
# Extra columns describe_reason reads for wording ("diagnosed 4 years ago", "started 2 months ago").
_CONTEXT = tuple(CONTEXT_COLUMNS) + ("days_since_social_care_start",)


def top_reasons(contributions: pd.DataFrame, features: pd.DataFrame, *, n: int = 3,
                min_share: float = 0.05, currency: str = "GBP", demographic_reasons: bool = False,
                money_reasons: bool = False) -> pd.DataFrame:
    """The ``n`` features that raise each person's risk most, in words.

    ``contributions``: SHAP values (rows = people, columns = feature names); ``features``: the same
    people's feature values (and context columns), matched on the index. A feature is shown only
    when its SHAP value is positive, its share is at least ``min_share`` and it can be put into
    words (``describe_value`` is not None; e.g. sex never is) - otherwise the next one is taken.
    Money is written in ``currency`` (the data set's ISO code) and only with ``money_reasons``;
    otherwise costs are said as use of services. Age, sex and deprivation are skipped unless
    ``demographic_reasons``, except for a person with no other reason (then they are the reasons).

    Returns, on the contributions' index, ``reason_1..reason_n`` (text or missing),
    ``share_1..share_n`` (fractions) and ``reasons`` (the texts joined by ``"; "``, ``""`` if none).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= min_share < 1:
        raise ValueError(f"min_share must be in [0, 1), got {min_share}")
    names = list(contributions.columns)
    missing = [c for c in names if c not in features.columns]
    if missing:
        raise ValueError(f"the features frame lacks {len(missing)} column(s) that have SHAP values: {missing[:8]}")
    absent = ~contributions.index.isin(features.index)
    if absent.any():
        raise ValueError(f"{int(absent.sum())} people with SHAP values are not in the features frame")
    rows = features.reindex(contributions.index)

    # Related features speak as one reason: sum their SHAP values (still additive).
    groups = list(dict.fromkeys(reason_group(c) for c in names))
    membership = np.zeros((len(names), len(groups)))
    for j, c in enumerate(names):
        membership[j, groups.index(reason_group(c))] = 1.0
    shap = contributions.to_numpy(dtype="float64") @ membership
    # Every feature the frame holds, not only the model's: the words name the parts of a reason
    # (which frailty deficits, which use of services) from the person's other values.
    value_names = list(dict.fromkeys(names + [c for c in _CONTEXT + FEATURE_NAMES if c in rows.columns]))
    values = rows[value_names].to_numpy(dtype="float64", copy=True)  # copy-on-write: may be read-only
    if "age" in value_names:
        # Say ages in completed years, as the lists show them (95.9 is "aged 95", not 96).
        values[:, value_names.index("age")] = np.floor(values[:, value_names.index("age")])
    positive_total = np.where(shap > 0, shap, 0.0).sum(axis=1)
    # Rank every person's reasons at once; the loop below only walks the first few of each row.
    order = np.argsort(-shap, axis=1, kind="stable")

    texts = np.full((len(shap), n), None, dtype=object)
    shares = np.full((len(shap), n), np.nan)
    for i in range(len(shap)):
        found = 0
        person = None
        skipped: list[tuple[str, float]] = []  # demographic reasons, said only when nothing else is
        for j in order[i]:
            share = shap[i, j] / positive_total[i] if shap[i, j] > 0 else 0.0
            if share <= 0 or share < min_share:
                break  # sorted descending: nothing further qualifies
            if person is None:
                person = dict(zip(value_names, values[i]))
                # The groups that qualify, so that "much use of services" does not repeat a reason beside it.
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


def check_additivity(contributions: pd.DataFrame | np.ndarray, base, raw_score, *, atol: float = 1e-6) -> float:
    """Check that SHAP values plus the base value give the model's raw score for every person.

    Returns the largest absolute error; raises ValueError when it exceeds ``atol`` (the reasons
    would then not explain the score they sit next to).
    """
    shap = np.asarray(contributions, dtype="float64")
    raw = np.asarray(raw_score, dtype="float64").reshape(-1)
    if shap.ndim != 2 or shap.shape[0] != raw.shape[0]:
        raise ValueError(f"contributions {shap.shape} and raw_score {raw.shape} do not match")
    if not len(raw):
        return 0.0
    error = float(np.max(np.abs(shap.sum(axis=1) + np.asarray(base, dtype="float64") - raw)))
    if not error <= atol:
        raise ValueError(f"SHAP values plus base differ from the raw score by up to {error:.3g} (tolerance {atol:g}); "
                         "the explanations do not belong to this model or data")
    return error
