"""Drift at every scoring run: population stability index (PSI) of the score and of each input
feature against a reference profile stored with the model when it was trained.

The profile holds aggregates only (decile edges of each variable and the share of people in each
bin, plus the share missing), so it can travel inside the model artifact without any person's row.
PSI is computed exactly as :func:`riskstrat.metrics.psi` on the reference sample, with one more
bin for missing values. Rule of thumb (and the thresholds here): below 0.1 stable, 0.1-0.25 warn,
above 0.25 alert.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WARN, ALERT = 0.1, 0.25
_FLOOR = 1e-6


def variable_profile(values, *, n_bins: int = 10) -> dict:
    """Decile edges (duplicates merged) and the share of rows in each bin, plus the share missing.

    >>> variable_profile([1.0, 2.0, 3.0, 4.0, np.nan], n_bins=2)
    {'edges': [2.5], 'shares': [0.4, 0.4], 'missing': 0.2}
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("cannot profile an empty variable")
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    present = x[~np.isnan(x)]
    if present.size == 0:
        return {"edges": [], "shares": [0.0], "missing": 1.0}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, n_bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "shares": [float(c / x.size) for c in counts],
            "missing": float((x.size - present.size) / x.size)}


def psi_against(profile: dict, values) -> float:
    """PSI of ``values`` against a :func:`variable_profile` (missing values are one more bin)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("cannot compute PSI of an empty variable")
    edges = np.asarray(profile["edges"], dtype=float)
    present = x[~np.isnan(x)]
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    new = np.append(counts / x.size, (x.size - present.size) / x.size)
    ref = np.append(np.asarray(profile["shares"], dtype=float), profile["missing"])
    if ref[-1] == 0 and new[-1] == 0:  # no missing values on either side: the plain PSI
        ref, new = ref[:-1], new[:-1]
    ref, new = np.clip(ref, _FLOOR, None), np.clip(new, _FLOOR, None)
    return float(np.sum((new - ref) * np.log(new / ref)))


def reference_profile(X: pd.DataFrame, score, *, described: str = "", n_bins: int = 10) -> dict:
    """The profile of the score and of every column of ``X`` (what the model saw at training time)."""
    return {"described": described, "n": int(len(X)), "score": variable_profile(score, n_bins=n_bins),
            "features": {c: variable_profile(X[c].to_numpy(dtype=float, na_value=np.nan), n_bins=n_bins)
                         for c in X.columns}}


def status(value: float) -> str:
    """``stable`` / ``warn`` / ``alert`` for a PSI value."""
    return "alert" if value > ALERT else "warn" if value > WARN else "stable"


def drift_report(profile: dict, X: pd.DataFrame, score) -> dict:
    """PSI of the score and of every profiled feature in ``X``; which warn and which alert.

    Keys: ``reference`` (what the profile describes), ``score_psi``, ``score_status``,
    ``features`` ({name: psi}), ``warn`` and ``alert`` (feature names, largest PSI first).
    """
    features = {name: psi_against(p, X[name].to_numpy(dtype=float, na_value=np.nan))
                for name, p in profile["features"].items() if name in X}
    ranked = sorted(features, key=features.get, reverse=True)
    score_psi = psi_against(profile["score"], score)
    return {"reference": profile.get("described", ""), "reference_n": profile.get("n"),
            "score_psi": round(score_psi, 6), "score_status": status(score_psi),
            "features": {k: round(v, 6) for k, v in features.items()},
            "warn": [k for k in ranked if status(features[k]) == "warn"],
            "alert": [k for k in ranked if status(features[k]) == "alert"],
            "thresholds": {"warn": WARN, "alert": ALERT}}
