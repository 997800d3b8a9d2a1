"""The reference profile a model carries for drift: its score's and inputs' distribution at training.

Aggregates only (decile edges of each variable, the share of rows in each bin, the share missing), so
the profile travels inside the model's metadata without any person's row. Training and the refit
record it; :mod:`riskstrat.evaluation.drift` measures each scoring run's population against it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


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


def reference_profile(X: pd.DataFrame, score, *, described: str = "", n_bins: int = 10) -> dict:
    """The profile of the score and of every column of ``X`` (what the model saw at training time)."""
    return {"described": described, "n": int(len(X)), "score": variable_profile(score, n_bins=n_bins),
            "features": {c: variable_profile(X[c].to_numpy(dtype=float, na_value=np.nan), n_bins=n_bins)
                         for c in X.columns}}
