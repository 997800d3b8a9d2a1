"""Outcome labels for an index date T, with the rules that keep them honest.

Labels use only events on or after T and before T + horizon (``T <= date < T + horizon_days``);
features use events before T, so no day is in both. People who died before T are not eligible and
get no label. A person whose follow-up (the extract end, or the end of their registration) stops
before T + horizon without the outcome having happened is censored (NaN), never negative.

The outcomes themselves are defined in :mod:`riskstrat.outcomes`, with what they share (the horizon
check, :func:`future_cost`); this module labels by name and keeps those importable from here.

>>> TARGETS
('emergency_admission', 'unplanned_hospital_use', 'death', 'high_cost', 'social_care_entry')
"""

from __future__ import annotations

import pandas as pd

from riskstrat.errors import InvalidInputError
from riskstrat.outcomes import OUTCOMES, DeathHandling, Outcome, parse_outcome
# Defined with the outcomes that use them (so that outcomes never import labels); kept importable here.
from riskstrat.outcomes._base import CensoredIndexDateError, _positions_in, check_horizon  # noqa: F401
from riskstrat.outcomes._builtin import future_cost  # noqa: F401
from riskstrat.data.records import LinkedRecords

TARGETS = tuple(OUTCOMES)


def build_labels(records: LinkedRecords, index_date, ids: pd.Index, *, target: str | Outcome = "emergency_admission",
                 horizon_days: int = 365, extract_end, death: DeathHandling = "composite",
                 top_fraction: float = 0.05) -> pd.Series:
    """The label (1.0 / 0.0 / NaN = no label) of ``target`` for the people ``ids`` eligible at T.

    ``target`` is an outcome (:mod:`riskstrat.outcomes`) or the name of a built-in one, which then
    takes ``horizon_days`` and, where it has them, ``death`` (``composite`` counts death as an
    outcome, SPARRA v4; ``exclude`` drops people who died in the horizon without the event;
    ``negative`` counts them as negatives) and ``top_fraction`` (the high-cost threshold).
    """
    if isinstance(target, Outcome):
        outcome = target
    else:
        if target not in OUTCOMES:
            raise InvalidInputError(f"unknown target {target!r}; choose one of {', '.join(OUTCOMES)}")
        fields = OUTCOMES[target].model_fields
        settings = {"horizon_days": horizon_days, "death": death, "top_fraction": top_fraction}
        outcome = parse_outcome({"name": target, **{k: v for k, v in settings.items() if k in fields}})
    return outcome.labels(records, index_date, ids, extract_end=extract_end)
