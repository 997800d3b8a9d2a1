"""Reading a synthetic data set's ground truth: the oracle's risk for the people being evaluated.

Training (``train.truth_scores``) and ``riskstrat evaluate`` both read it here, so they compare
models with the same oracle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TRUTH_FILE = Path("ground_truth") / "truth.parquet"


def read_truth(data_dir) -> pd.DataFrame | None:
    """``<data_dir>/ground_truth/truth.parquet``, or None when the data set has no ground truth."""
    path = Path(data_dir) / TRUTH_FILE
    return pd.read_parquet(path) if path.exists() else None


def oracle_risk(truth: pd.DataFrame | None, column: str | None, index_date, index: pd.Index) -> np.ndarray | None:
    """The generator's true risk ``column`` at ``index_date`` for the people in ``index`` (in order),
    or None when the truth lacks that column, that date or any of those people.

    Ties (a probability of exactly 1 for the people whose cost is over the threshold in every
    simulated future; many more in data sets written before the smooth estimator) are ordered by
    the true expected cost, moving no probability by more than 1e-6.
    """
    if truth is None or column is None or column not in truth:
        return None
    at = truth[truth["index_date"] == pd.Timestamp(index_date)].set_index("person_id")
    if at.empty:
        return None
    score = at[column]
    if column == "p_high_cost" and "expected_cost" in at:
        score = score * (1 - 1e-6) + 1e-6 * at["expected_cost"].rank(pct=True)
    values = score.reindex(index)
    return None if values.isna().any() else values.to_numpy(dtype=float)
