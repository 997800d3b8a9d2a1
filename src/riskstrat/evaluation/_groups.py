"""The groups evaluation reports on: age band, sex, deprivation quintile, ethnicity group, GP practice."""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrat.features.clinical import AGE_BANDS, age_band  # noqa: F401 (re-exported: defined once, in features)

ATTRIBUTES = ("age band", "sex", "deprivation quintile", "ethnicity group", "GP practice")


def deprivation_quintile(decile) -> pd.Series:
    """Quintile from the index of multiple deprivation decile (deciles 1-2 -> "1 (most deprived)").

    >>> deprivation_quintile([1, 2, 3, 10, None]).tolist()
    ['1 (most deprived)', '1 (most deprived)', '2', '5 (least deprived)', 'unknown']
    """
    d = pd.Series(decile, dtype="float64").to_numpy()
    q = np.ceil(d / 2)
    labels = {1.0: "1 (most deprived)", 2.0: "2", 3.0: "3", 4.0: "4", 5.0: "5 (least deprived)"}
    return pd.Series([labels.get(v, "unknown") for v in q], name="deprivation quintile")


def subgroup_attributes(frame: pd.DataFrame) -> pd.DataFrame:
    """The attributes of each row of a feature frame (``build_features``), by position."""
    def text(col: str) -> pd.Series:
        if col not in frame:
            return pd.Series(["unknown"] * len(frame))
        return frame[col].astype(object).where(frame[col].notna(), "unknown").astype(str).reset_index(drop=True)

    return pd.DataFrame({
        "age band": age_band(frame["age"]) if "age" in frame else text("age"),
        "sex": text("sex"),
        "deprivation quintile": (deprivation_quintile(frame["deprivation_decile"]) if "deprivation_decile" in frame
                                 else text("deprivation_decile")),
        "ethnicity group": text("ethnicity_group"),
        "GP practice": text("practice_id"),
    })
