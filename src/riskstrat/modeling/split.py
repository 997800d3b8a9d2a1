"""Where the data are cut: the person split and the index dates.

People are split once, by a seeded hash of their pseudonym, into a training, a calibration and a
test group (:func:`person_groups`); a model records the rule (:data:`SPLIT_RULE`) so an evaluation
can recompute anyone's group (:func:`training_groups`). :func:`suggest_index_dates` chooses index
dates that fit an extract. Nothing here imports the rest of riskstrat, so the config, training, the
search and the import report can all use it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

__all__ = ["SPLIT_RULE", "person_groups", "suggest_index_dates", "training_groups"]

# The person split, named: recorded with every model (``training_design``) so that an evaluation can
# tell, from a person's pseudonym alone, whether the model was trained or calibrated on them. Change the
# rule in person_groups and this name together.
SPLIT_RULE = "blake2b-64 of 'seed:person_id' / 2**64: test below test_fraction, calibration below " \
             "test_fraction + calibration_fraction, train above"


def person_groups(person_ids, *, test_fraction: float, calibration_fraction: float, seed: int) -> pd.Series:
    """'train' / 'calibration' / 'test' for each person, from a seeded hash of the id (stable across runs)."""
    ids = pd.Index(pd.unique(np.asarray(person_ids, dtype=object)))
    u = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{p}".encode(), digest_size=8).digest(), "big")
                  for p in ids], dtype=np.float64) / 2.0**64
    group = np.where(u < test_fraction, "test",
                     np.where(u < test_fraction + calibration_fraction, "calibration", "train"))
    return pd.Series(group, index=ids, name="group")


def training_groups(person_ids, design: dict) -> pd.Series | None:
    """The group ('train', 'calibration', 'test') each person was in when the model of ``design``
    (:func:`riskstrat.modeling.train.training_design`) was trained: as :func:`riskstrat.modeling.train.assemble` split them (with ``temporal_only`` the
    test group trained). None when the design records no split rule, or another rule than this code's."""
    split = design.get("split") or {}
    if split.get("rule") != SPLIT_RULE:
        return None
    groups = person_groups(person_ids, test_fraction=split["test_fraction"],
                           calibration_fraction=split["calibration_fraction"], seed=split["seed"])
    # A refit for deployment (riskstrat.modeling.refit) trains on the test people too.
    trained_on_test = split.get("mode") == "temporal_only" or bool(design.get("refit"))
    return groups.replace("test", "train") if trained_on_test else groups


def suggest_index_dates(extract_end, *, n_train: int = 5, step_months: int = 3,
                        horizon_days: int = 365) -> tuple[list[str], str]:
    """Index dates that fit an extract: the latest first-of-month test date with a full horizon,
    and ``n_train`` training dates every ``step_months`` whose horizons end by the test date.

    >>> suggest_index_dates("2026-10-31")
    (['2023-11-01', '2024-02-01', '2024-05-01', '2024-08-01', '2024-11-01'], '2025-11-01')
    """
    last_start = pd.Timestamp(extract_end) + pd.Timedelta(days=1) - pd.Timedelta(days=horizon_days)
    test = last_start.to_period("M").to_timestamp()  # the first of the month on or before it
    # The latest first of the month whose horizon ends by the test date (12 months for 365 days).
    first_train = (test - pd.Timedelta(days=horizon_days)).to_period("M").to_timestamp()
    train = [first_train - pd.DateOffset(months=step_months * k) for k in range(n_train)]
    return sorted(str(d.date()) for d in train), str(test.date())
