"""Plain-English reasons from per-person SHAP values: what raises this person's risk most.

The contributions are exact TreeSHAP values on the model's log-odds scale
(:meth:`riskstrat.modeling.models.RiskModel.contributions`). Only features that *raise* the person's risk
count. Related features speak as one reason (:data:`riskstrat.features.words.REASON_GROUPS`: the window
counts, recency and bed days of emergency admissions are one reason), whose SHAP value is the sum
of theirs. A reason's share is that value over the sum of the person's positive reason values, so
the shares never add up to more than 100%; they order and filter the reasons (``share_1..``) but are
not printed in the words, which a coordinator reads without a model's vocabulary. The words come
from :func:`riskstrat.features.words.describe_reason` and the person's own values ("3 emergency
admissions in the last 12 months, the last 1 month ago (9 days in hospital)"). For many people at
once they are said once per distinct combination of what a group's words depend on
(:func:`riskstrat.features.words.reason_key`) and shared, which gives every person exactly the words
:func:`~riskstrat.features.words.describe_reason` gives them alone.

Age, sex and deprivation are not reasons by default (``demographic_reasons=False``; age and sex are
columns of every list, deprivation of none): the next reason is taken instead, and they are said
only for a person for whom nothing else raises the estimate enough. Costs are said as use of services unless
``money_reasons`` (the high-cost list).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrat.features.clinical import CONTEXT_COLUMNS, FEATURE_NAMES
from riskstrat.features.words import (DEMOGRAPHIC_FEATURES, ReasonThresholds, describe_reason, reason_group,
                                      reason_inputs, reason_key)

__all__ = ["REASON_CONTEXT", "REASON_SEPARATOR", "check_additivity", "top_reasons"]

REASON_SEPARATOR = "; "
# Extra columns describe_reason reads for wording ("diagnosed 4 years ago", "started 2 months ago"),
# when given; never required (the served model passes on those it is sent).
REASON_CONTEXT = tuple(CONTEXT_COLUMNS) + ("days_since_social_care_start",)


def top_reasons(contributions: pd.DataFrame, features: pd.DataFrame, *, n: int = 3,
                min_share: float = 0.05, currency: str = "GBP", demographic_reasons: bool = False,
                money_reasons: bool = False, thresholds: ReasonThresholds | None = None) -> pd.DataFrame:
    """The ``n`` features that raise each person's risk most, in words.

    ``contributions``: SHAP values (rows = people, columns = feature names); ``features``: the same
    people's feature values (and context columns), matched on the index. A feature is shown only
    when its SHAP value is positive, its share is at least ``min_share`` and it can be put into
    words (``describe_value`` is not None; e.g. sex never is) - otherwise the next one is taken.
    Money is written in ``currency`` (the data set's ISO code) and only with ``money_reasons``;
    otherwise costs are said as use of services. Age, sex and deprivation are skipped unless
    ``demographic_reasons``, except for a person with no other reason (then they are the reasons).
    ``thresholds``: the scored population's (:func:`riskstrat.features.words.reason_thresholds`),
    above which a use is said with a word of degree ("much use of services"); None: never.

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
    if not contributions.index.equals(features.index):  # the usual case: the same rows (no lookup)
        # get_indexer: Index.isin of a million string ids goes through a Python list.
        absent = (features.index.get_indexer(contributions.index) < 0 if features.index.is_unique
                  else ~contributions.index.isin(features.index))
        if absent.any():
            raise ValueError(f"{int(absent.sum())} people with SHAP values are not in the features frame")
    rows = features.reindex(contributions.index)

    # Related features speak as one reason: sum their SHAP values (still additive).
    groups = list(dict.fromkeys(reason_group(c) for c in names))
    membership = np.zeros((len(names), len(groups)))
    for j, c in enumerate(names):
        membership[j, groups.index(reason_group(c))] = 1.0
    shap = contributions.to_numpy(dtype="float64") @ membership
    positive_total = np.where(shap > 0, shap, 0.0).sum(axis=1)
    # Each person's reasons from the largest SHAP value down. A reason's share is its value over the
    # person's positive total; sorted descending, once a share is too small nothing further qualifies.
    order = np.argsort(-shap, axis=1, kind="stable")

    def shares_at(who: np.ndarray, place: int) -> np.ndarray:
        value = shap[who, order[who, place]]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(value > 0, value / positive_total[who], 0.0)

    # The groups that qualify among the first n + 2, so that "much use of services" does not repeat
    # a reason beside it.
    said = np.zeros(shap.shape, dtype=bool)
    everyone = np.arange(len(shap))
    for place in range(min(n + 2, shap.shape[1])):
        share = shares_at(everyone, place)
        with np.errstate(invalid="ignore"):
            named = everyone[share >= max(min_share, 1e-12)]  # a positive share: a positive value
        said[named, order[named, place]] = True

    # Every feature the frame holds, not only the model's, can be read: the words name the parts of
    # a reason (which frailty deficits, which use of services) from the person's other values.
    value_names = list(dict.fromkeys(names + [c for c in REASON_CONTEXT + FEATURE_NAMES if c in rows.columns]))
    words = _Words(rows, value_names, groups, currency=currency, money=money_reasons, thresholds=thresholds)
    demographic = [g in DEMOGRAPHIC_FEATURES for g in groups]
    texts = np.full((len(shap), n), None, dtype=object)
    shares = np.full((len(shap), n), np.nan)
    found = np.zeros(len(shap), dtype=np.int64)
    # Demographic reasons, said only for a person with no other reason (the first n of them).
    skipped_texts = np.full((len(shap), n), None, dtype=object)
    skipped_shares = np.full((len(shap), n), np.nan)
    skipped = np.zeros(len(shap), dtype=np.int64)
    # Walk the people's ranked reasons one place at a time, all people at once: at each place, those
    # who still need a reason and whose reasons so far all qualified take this one if it qualifies
    # and can be put into words.
    active = everyone
    for place in range(shap.shape[1]):
        share = shares_at(active, place)
        keep = ~((share <= 0) | (share < min_share))
        active, share = active[keep], share[keep]
        if not len(active):
            break
        group_at = order[active, place]
        for g in np.unique(group_at):
            here = group_at == g
            who, share_here = active[here], share[here]
            text = words.texts(g, who, said[who])
            spoken = np.not_equal(text, None)
            who, text, share_here = who[spoken], text[spoken], share_here[spoken]
            if demographic[g] and not demographic_reasons:
                room = skipped[who] < n
                skipped_texts[who[room], skipped[who[room]]] = text[room]
                skipped_shares[who[room], skipped[who[room]]] = share_here[room]
                skipped[who] += 1
                continue
            texts[who, found[who]] = text
            shares[who, found[who]] = share_here
            found[who] += 1
        active = active[found[active] < n]
    instead = (found == 0) & (skipped > 0)
    texts[instead], shares[instead] = skipped_texts[instead], skipped_shares[instead]

    out = pd.DataFrame(index=contributions.index)
    for k in range(n):
        out[f"reason_{k + 1}"] = _strings(texts[:, k])
    for k in range(n):
        out[f"share_{k + 1}"] = shares[:, k]
    # A person's reasons fill the first places: join them place by place.
    joined = np.where(np.equal(texts[:, 0], None), "", texts[:, 0])
    for k in range(1, n):
        more = np.flatnonzero(np.not_equal(texts[:, k], None))
        joined[more] = joined[more] + REASON_SEPARATOR + texts[more, k]
    out["reasons"] = _strings(joined)
    return out


def _strings(texts: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``pd.array(texts, dtype="str")`` (None missing), through Arrow: twice as fast for a million."""
    import pyarrow as pa

    return pd.array(pa.array(texts, type=pa.large_string(), from_pandas=True), dtype="str")


class _Words:
    """:func:`describe_reason` for the many people of one :func:`top_reasons` call: said once per
    distinct key of the group's words (:func:`riskstrat.features.words.reason_key`, and the ``said``
    names the group asks about), then shared by everyone with that key.

    Keys are compared bit for bit (0.0 and -0.0, and NaNs of different payloads, differ), and the
    words of a key come from :func:`describe_reason` itself on one of its people, so a text is
    exactly what :func:`describe_reason` gives each person. Reading a value or a ``said`` name
    that :func:`riskstrat.features.words.reason_inputs` does not declare raises.
    """

    def __init__(self, rows: pd.DataFrame, value_names: list[str], groups: list[str], *, currency: str, money: bool,
                 thresholds: ReasonThresholds | None = None):
        self.rows, self.groups, self.currency, self.money = rows, groups, currency, money
        self.thresholds = thresholds
        self.present = frozenset(value_names)
        self._columns: dict[str, np.ndarray] = {}
        self._known: dict[str, dict[bytes, str | None]] = {}

    def column(self, name: str) -> np.ndarray:
        """A value column of every person, float64 (read when first needed)."""
        if name not in self._columns:
            column = self.rows[name].to_numpy(dtype="float64", copy=True)  # copy-on-write: may be read-only
            if name == "age":
                # Say ages in completed years, as the lists show them (95.9 is "aged 95", not 96).
                column = np.floor(column)
            self._columns[name] = column
        return self._columns[name]

    def texts(self, g: int, who: np.ndarray, said: np.ndarray) -> np.ndarray:
        """The words of group ``groups[g]`` for the people at rows ``who`` (``said``: their rows of
        the groups that qualify), as an object array (None where the group has no words)."""
        group = self.groups[g]
        inputs = reason_inputs(group, money=self.money)
        said_at = [self.groups.index(name) for name in inputs.said if name in self.groups and name != group]

        def get(name: str) -> np.ndarray:
            if name not in inputs.values:
                raise RuntimeError(f"reason_key read {name!r} for {group!r}, which reason_inputs does not declare")
            return self.column(name)[who] if name in self.present else np.full(len(who), np.nan)

        parts = reason_key(group, get, money=self.money, thresholds=self.thresholds)
        key = np.column_stack([np.asarray(k, dtype="float64") for k in parts]
                              + [said[:, k].astype("float64") for k in said_at] + [np.zeros(len(who))])
        bits = np.ascontiguousarray(key).view(np.int64)
        code = np.zeros(len(who), dtype=np.int64)
        for j in range(bits.shape[1] - 1):  # one code per distinct key, kept small by factorizing each step
            column, distinct = pd.factorize(bits[:, j])
            code = pd.factorize(code * len(distinct) + column)[0]
        first = np.zeros(int(code.max()) + 1 if len(code) else 0, dtype=np.int64)
        first[code] = np.arange(len(code))  # any person of a key stands for it
        known = self._known.setdefault(group, {})
        out = np.empty(len(first), dtype=object)
        readable = [name for name in inputs.values if name in self.present]
        people = np.column_stack([self.column(name)[who[first]] for name in readable] + [np.zeros(len(first))])
        for c, key_bytes in enumerate(bits[first].view(np.dtype((np.void, bits.shape[1] * 8))).ravel().tolist()):
            if key_bytes not in known:
                i = first[c]
                person = _Reads(zip(readable, people[c]), inputs.values, group)
                named = _Said({self.groups[k] for k in said_at if said[i, k]}, inputs.said, group)
                known[key_bytes] = describe_reason(group, person, currency=self.currency, money=self.money, said=named,
                                                   thresholds=self.thresholds)
            out[c] = known[key_bytes]
        return out[code]


class _Reads(dict):
    """A person's values for one group's words that refuses a read its inputs do not declare."""

    def __init__(self, values, declared: tuple[str, ...], group: str):
        super().__init__(values)
        self.declared, self.group = frozenset(declared), group

    def _check(self, name) -> None:
        if name not in self.declared:
            raise RuntimeError(f"describe_reason read {name!r} for {self.group!r}, which "
                               "riskstrat.features.words.reason_inputs does not declare; add it there")

    def get(self, name, default=None):
        self._check(name)
        return super().get(name, default)

    def __getitem__(self, name):
        self._check(name)
        return super().__getitem__(name)

    def __contains__(self, name) -> bool:
        self._check(name)
        return super().__contains__(name)


class _Said(frozenset):
    """The other groups shown beside a reason, restricted to the names its words ask about; asking
    about another name raises (see :class:`_Reads`)."""

    def __new__(cls, names, declared: tuple[str, ...], group: str):
        said = super().__new__(cls, names)
        said.declared, said.group = frozenset(declared), group
        return said

    def __contains__(self, name) -> bool:
        if name not in self.declared:
            raise RuntimeError(f"describe_reason asked whether {name!r} is said beside {self.group!r}, which "
                               "riskstrat.features.words.reason_inputs does not declare; add it there")
        return super().__contains__(name)


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
