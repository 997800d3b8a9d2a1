"""Drift at every scoring run: population stability index (PSI) of the score and of each input
feature against the reference profile stored with the model when it was trained
(:func:`riskstrat.modeling.profile.reference_profile`: aggregates only, no person's row).

PSI is computed as :func:`riskstrat.evaluation.metrics.psi` on the reference sample, with one more
bin for missing values. Rule of thumb (and the thresholds here): below 0.1 stable, 0.1-0.25 warn,
above 0.25 alert.

Empty reference bins (:func:`riskstrat.evaluation.metrics.psi_of_shares`): a bin the reference leaves
empty is merged before the sum, not floored at a tiny share (a floor of 1e-6 made 2% newly missing
values a "warn" of 0.2 on its own). An empty value bin joins its neighbour; an empty missing-value
bin (a feature that was never missing in training) joins the reference's largest bin, so newly
missing values count as a shift of their share into the commonest values: 2% newly missing gives a
PSI near 0.005 (stable), 30% newly missing a PSI above 0.25 (alert). The share missing is reported
beside the PSI (``missing``) so that the change is still seen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrat.evaluation.metrics import psi_of_shares

WARN, ALERT = 0.1, 0.25


def psi_against(profile: dict, values) -> float:
    """PSI of ``values`` against a :func:`~riskstrat.modeling.profile.variable_profile` (missing values are one
    more bin)."""
    return psi_of_counts(profile, bin_counts(profile, values))


def bin_counts(profile: dict, values) -> np.ndarray:
    """How many of ``values`` fall in each bin of a :func:`~riskstrat.modeling.profile.variable_profile`, then
    how many are missing.

    Counts of parts of the data add up to the counts of the whole (an engine can count per partition).

    >>> bin_counts({"edges": [2.5], "shares": [0.5, 0.5], "missing": 0.0}, [1.0, 3.0, 4.0, np.nan]).tolist()
    [1, 2, 1]
    """
    x = np.asarray(values, dtype=float)
    edges = np.asarray(profile["edges"], dtype=float)
    missing = int(np.count_nonzero(np.isnan(x)))
    if len(edges) > _FEW_EDGES:
        counts = np.bincount(np.searchsorted(edges, x[~np.isnan(x)], side="right"), minlength=len(edges) + 1)
        return np.append(counts, missing).astype(np.int64)
    # A value's bin is the number of edges at or below it (searchsorted's side="right"), so the values
    # from bin j up are those at or above edge j (never a missing one): one comparison per edge, a
    # few times faster than a binary search per value for the few edges a profile has.
    from_bin = [x.size - missing, *(int(np.count_nonzero(x >= edge)) for edge in edges), 0]
    return np.append(np.subtract(from_bin[:-1], from_bin[1:]), missing).astype(np.int64)


# Up to this many edges, bin_counts compares every value with each edge; beyond, a binary search per value.
_FEW_EDGES = 16


def psi_of_counts(profile: dict, counts) -> float:
    """PSI against a :func:`~riskstrat.modeling.profile.variable_profile` of values counted by
    :func:`bin_counts`."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("cannot compute PSI of an empty variable")
    new = counts / n
    ref = np.append(np.asarray(profile["shares"], dtype=float), profile["missing"])
    if ref[-1] == 0 and new[-1] == 0:  # no missing values on either side: the plain PSI
        ref, new = ref[:-1], new[:-1]
    # An empty reference cell is merged (see the module's docstring): value bins with a neighbour,
    # the missing cell with the largest value bin.
    into = [None] * (len(ref) - 1) + [int(np.argmax(ref[:-1]))] if len(new) == len(counts) else None
    return psi_of_shares(ref, new, into=into)


def status(value: float) -> str:
    """``stable`` / ``warn`` / ``alert`` for a PSI value."""
    return "alert" if value > ALERT else "warn" if value > WARN else "stable"


def drift_report(profile: dict, X: pd.DataFrame, score) -> dict:
    """PSI of the score and of every profiled feature in ``X``; which warn and which alert.

    Keys: ``reference`` (what the profile describes), ``score_psi``, ``score_status``,
    ``features`` ({name: psi}), ``missing`` ({name: {"reference": share, "now": share}} for features
    missing anywhere), ``warn`` and ``alert`` (feature names, largest PSI first).
    """
    counts = {name: bin_counts(p, X[name].to_numpy(dtype=float, na_value=np.nan))
              for name, p in profile["features"].items() if name in X}
    return drift_report_of_counts(profile, counts, score)


def drift_report_of_counts(profile: dict, counts: dict, score) -> dict:
    """:func:`drift_report` from each feature's :func:`bin_counts` (``{name: counts}``, summed over
    the parts of the data) instead of the feature values."""
    features = {name: psi_of_counts(profile["features"][name], c) for name, c in counts.items()}
    # The share missing now against the reference's, for features where either has any missing.
    missing = {name: {"reference": round(float(profile["features"][name]["missing"]), 6),
                      "now": round(float(c[-1]) / max(int(np.sum(c)), 1), 6)}
               for name, c in counts.items() if c[-1] or profile["features"][name]["missing"]}
    ranked = sorted(features, key=features.get, reverse=True)
    score_psi = psi_against(profile["score"], score)
    return {"reference": profile.get("described", ""), "reference_n": profile.get("n"),
            "score_psi": round(score_psi, 6), "score_status": status(score_psi),
            "features": {k: round(v, 6) for k, v in features.items()},
            "missing": missing,
            "warn": [k for k in ranked if status(features[k]) == "warn"],
            "alert": [k for k in ranked if status(features[k]) == "alert"],
            "thresholds": {"warn": WARN, "alert": ALERT}}
