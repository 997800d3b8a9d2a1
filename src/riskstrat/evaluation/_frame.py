"""Metrics overall and by group, in the shape of fairlearn's ``MetricFrame``.

Each metric is a plain ``fn(y_true, y_score)`` (bind options with ``functools.partial``); its value
for a group is exactly the metric computed on that group's rows alone. A group with fewer than
``min_events`` events is kept but flagged ``small``: its numbers are shown, not ranked or gated on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrat.evaluation.metrics import _check_inputs

Metric = Callable[[np.ndarray, np.ndarray], float]


def _safe(metric: Metric, y: np.ndarray, score: np.ndarray) -> float:
    """The metric, or NaN where it is undefined on these rows (one outcome class, no events)."""
    try:
        return float(metric(y, score))
    except (ValueError, ZeroDivisionError):
        return float("nan")


@dataclass(frozen=True)
class MetricFrame:
    """Results of :func:`metric_frame`.

    ``overall``: one value per metric (and ``n``, ``n_events``). ``by_group``: indexed by
    (``attribute``, ``group``), columns ``n``, ``n_events``, ``small`` and one per metric.
    """

    overall: pd.Series
    by_group: pd.DataFrame
    min_events: int

    def reliable(self) -> pd.DataFrame:
        """The groups with at least ``min_events`` events."""
        return self.by_group[~self.by_group["small"]]

    def gaps(self, metric: str) -> pd.DataFrame:
        """Per attribute, the lowest and highest value of ``metric`` among reliable groups and the
        difference, largest difference first."""
        rows = []
        for attribute, part in self.reliable().groupby(level="attribute", sort=False):
            values = part[metric].droplevel("attribute").dropna()
            if len(values) < 2:
                continue
            rows.append({"attribute": attribute, "metric": metric, "lowest_group": values.idxmin(),
                         "lowest": values.min(), "highest_group": values.idxmax(), "highest": values.max(),
                         "difference": values.max() - values.min()})
        columns = ["attribute", "metric", "lowest_group", "lowest", "highest_group", "highest", "difference"]
        return pd.DataFrame(rows, columns=columns).sort_values("difference", ascending=False, ignore_index=True)


def metric_frame(metrics: Mapping[str, Metric], y_true, y_score, *, sensitive_features, min_events: int = 20,
                 ) -> MetricFrame:
    """Every metric overall and within every group of every attribute.

    ``sensitive_features`` is a DataFrame (or a mapping of name to array) matched to the rows by
    position; missing values form their own group ("missing").

    >>> from riskstrat.evaluation.metrics import auroc
    >>> mf = metric_frame({"auroc": auroc}, [0, 1, 0, 1], [0.1, 0.9, 0.2, 0.3],
    ...                   sensitive_features={"sex": ["f", "f", "m", "m"]}, min_events=1)
    >>> mf.by_group["auroc"].tolist()
    [1.0, 1.0]
    """
    if min_events < 0:
        raise ValueError(f"min_events must be at least 0, got {min_events}")
    y, score = _check_inputs(y_true, y_score, both_classes=False)
    features = pd.DataFrame(sensitive_features).reset_index(drop=True)
    if len(features) != len(y):
        raise ValueError(f"sensitive_features has {len(features)} rows, y_true has {len(y)}")
    overall = {"n": float(len(y)), "n_events": float(y.sum())}
    overall.update({name: _safe(fn, y, score) for name, fn in metrics.items()})
    rows, index = [], []
    for attribute in features.columns:
        keys = features[attribute].astype(object).where(features[attribute].notna(), "missing").astype(str)
        for group, members in keys.groupby(keys, sort=True).indices.items():
            y_g, s_g = y[members], score[members]
            row = {"n": len(y_g), "n_events": int(y_g.sum()), "small": bool(y_g.sum() < min_events)}
            row.update({name: _safe(fn, y_g, s_g) for name, fn in metrics.items()})
            rows.append(row)
            index.append((attribute, group))
    by_group = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["attribute", "group"]),
                            columns=["n", "n_events", "small", *metrics])
    return MetricFrame(pd.Series(overall), by_group, min_events)
