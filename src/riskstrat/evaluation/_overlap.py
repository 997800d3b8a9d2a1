"""Whether an evaluation is in-sample: its date against the model's training label windows, its people
against the model's training and calibration people (recomputed from the recorded split rule, never
from stored person ids). Pure: the model's training design (:func:`riskstrat.modeling.train.training_design`)
and the records in, counts and sentences out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from riskstrat.features.clinical import eligible_persons
from riskstrat.modeling.split import training_groups

IN_SAMPLE = "in-sample"                   # the evaluation date is one of the training dates
IN_SAMPLE_IN_TIME = "in-sample in time"   # its outcome window overlaps the training labels
OUT_OF_SAMPLE = "out of sample in time"   # on or after the end of the last training label window
UNKNOWN = "unknown"

UNKNOWN_PEOPLE = ("unknown for models trained before this version of riskstrat (the model records no "
                  "person-split rule)")


def labels_end(design: dict) -> pd.Timestamp | None:
    """The first day after the model's last training label window (last training date + horizon), or None."""
    dates, horizon = design.get("index_dates"), design.get("horizon_days")
    if not dates or horizon is None:
        return None
    return max(pd.Timestamp(d) for d in dates) + pd.Timedelta(days=int(horizon))


def time_status(as_of, design: dict) -> str:
    """:data:`IN_SAMPLE`, :data:`IN_SAMPLE_IN_TIME`, :data:`OUT_OF_SAMPLE` or :data:`UNKNOWN` (no dates recorded).

    Labels count events in ``[T, T + horizon)``, so an evaluation at the end of the last window's
    horizon shares no outcome day with training.
    """
    end = labels_end(design)
    if end is None:
        return UNKNOWN
    t = pd.Timestamp(as_of).normalize()
    if any(t == pd.Timestamp(d) for d in design["index_dates"]):
        return IN_SAMPLE
    return IN_SAMPLE_IN_TIME if t < end else OUT_OF_SAMPLE


def _dates_words(by_date: dict[str, int]) -> str:
    return ", ".join(f"{d} ({n:,})" for d, n in by_date.items() if n) or "no date"


@dataclass
class TrainingOverlap:
    """How one evaluation's date and people relate to the model's training (what the report says)."""

    as_of: str
    time: str                                   # time_status
    training_dates: list[str] = field(default_factory=list)
    horizon_days: int | None = None
    labels_end: str | None = None               # first day after the last training label window
    people: str = "unseen"                      # whom the headline figures are on: 'unseen' or 'all'
    known: bool = False                         # whether membership could be told
    n_labelled: int = 0                         # labelled people at as_of (before any exclusion)
    n_seen: int = 0                             # of them, people with rows in training or calibration
    seen_by_date: dict[str, int] = field(default_factory=dict)   # training date: seen people with a row then
    seen_by_group: dict[str, int] = field(default_factory=dict)  # 'train' / 'calibration': seen people
    note: str | None = None                     # why membership is unknown, or why nobody can be seen

    @property
    def n_unseen(self) -> int:
        return self.n_labelled - self.n_seen

    def time_sentence(self) -> str:
        last = self.training_dates[-1] if self.training_dates else None
        if self.time == IN_SAMPLE:
            return (f"In-sample: {self.as_of} is one of the model's training dates ({', '.join(self.training_dates)}): "
                    f"the model learnt from outcomes in this same period, so these figures do not test it on a later "
                    f"year. Evaluate on or after {self.labels_end}.")
        if self.time == IN_SAMPLE_IN_TIME:
            return (f"In-sample in time: the outcome window from {self.as_of} overlaps the model's training labels, "
                    f"which run to the day before {self.labels_end} (last training date {last} + "
                    f"{self.horizon_days} days). Evaluate on or after {self.labels_end}.")
        if self.time == OUT_OF_SAMPLE:
            return (f"Out of sample in time: {self.as_of} is on or after {self.labels_end}, the end of the model's "
                    f"last training label window (last training date {last} + {self.horizon_days} days).")
        return ("Whether the evaluation date is in-sample in time is unknown: the model records no training dates.")

    def people_sentence(self) -> str:
        if not self.known:
            return (f"Whether these people were used in training is {self.note or UNKNOWN_PEOPLE}: tested on all "
                    f"{self.n_labelled:,} people, some of whom may have had rows in its training or calibration sets.")
        groups = ", ".join(f"{n:,} {g}" for g, n in self.seen_by_group.items() if n)
        who = (f"{self.n_seen:,} people who were (at {_dates_words(self.seen_by_date)}; {groups})"
               if self.n_seen else "no person who was")
        if self.people == "unseen":
            return (f"Tested on {self.n_unseen:,} people not used in training; {who} "
                    f"{'are' if self.n_seen != 1 else 'is'} excluded." + (f" {self.note}" if self.note else ""))
        return (f"Tested on all {self.n_labelled:,} people, including {who} used in training or calibration; "
                f"{self.n_unseen:,} were not (their figures are shown apart)." + (f" {self.note}" if self.note else ""))

    def sentences(self) -> list[str]:
        return [self.time_sentence(), self.people_sentence()]

    def to_dict(self) -> dict:
        return {**asdict(self), "n_unseen": self.n_unseen, "sentences": self.sentences()}


def seen_in_training(ids: pd.Index, records, design: dict, *, key_fingerprint: str | None = None
                     ) -> tuple[np.ndarray | None, dict[str, int], dict[str, int], str | None]:
    """Which of ``ids`` (people labelled at the evaluation date) had rows in the model's training or
    calibration sets: in those groups by the recorded split rule, and eligible (alive, registered, in
    the cohort's ages) at a training date in ``records``. A person eligible but unlabelled at that date
    counts as seen too (the safe side).

    Returns ``(seen mask or None when unknown, seen people per training date, per group, note)``.
    """
    trained_key = design.get("pseudonym_key_fingerprint")
    if trained_key and key_fingerprint and trained_key != key_fingerprint:
        return (np.zeros(len(ids), dtype=bool), {}, {},
                f"The data were pseudonymised under another key (fingerprint {key_fingerprint}) than the training "
                f"data ({trained_key}): no id here is a training person's, so all count as unseen.")
    groups = training_groups(ids, design) if design else None
    if groups is None:
        return None, {}, {}, None
    group = groups.reindex(ids).to_numpy()
    in_group = np.isin(group, ["train", "calibration"])
    cohort = design.get("cohort") or {}
    seen = np.zeros(len(ids), dtype=bool)
    by_date: dict[str, int] = {}
    for d in design["index_dates"]:
        eligible = eligible_persons(records, d, min_age=cohort.get("min_age", 18), max_age=cohort.get("max_age", 120))
        had_row = in_group & ids.isin(pd.Index(eligible["person_id"]))
        by_date[str(d)] = int(had_row.sum())
        seen |= had_row
    by_group = {g: int((seen & (group == g)).sum()) for g in ("train", "calibration")}
    return seen, by_date, by_group, None


def training_overlap(ids: pd.Index, records, as_of, design: dict, *, include_seen: bool = False,
                     key_fingerprint: str | None = None) -> tuple[TrainingOverlap, np.ndarray | None]:
    """The overlap of an evaluation at ``as_of`` on the labelled people ``ids`` with the model's training
    (``design``: :func:`riskstrat.modeling.train.training_design`, ``{}`` when the model records none), and the
    mask of the people with rows in training or calibration (None: unknown). The headline figures are on
    the unseen people (``overlap.people == 'unseen'``) unless ``include_seen`` or membership is unknown."""
    seen, by_date, by_group, note = seen_in_training(ids, records, design, key_fingerprint=key_fingerprint)
    end = labels_end(design)
    overlap = TrainingOverlap(
        as_of=str(pd.Timestamp(as_of).date()), time=time_status(as_of, design),
        training_dates=[str(d) for d in design.get("index_dates") or []], horizon_days=design.get("horizon_days"),
        labels_end=str(end.date()) if end is not None else None,
        people="all" if include_seen or seen is None else "unseen", known=seen is not None, n_labelled=len(ids),
        n_seen=int(seen.sum()) if seen is not None else 0, seen_by_date=by_date, seen_by_group=by_group, note=note)
    return overlap, seen
