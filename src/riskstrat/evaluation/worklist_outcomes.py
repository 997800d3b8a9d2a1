"""Outcomes by worklist status: what happened a year on to the listed people a practice contacted or
enrolled, against those it listed but did not contact. Pure computation on a month's population, its
labels and the worklist's status history (read by :mod:`riskstrat.pipelines.worklist`).

Observational, not causal: a practice chooses whom to contact (the frailest, the reachable, those it
already knows), and a status may be recorded after the outcome (contacted after a discharge). The
effect of the lists is estimated only by the randomised hold-out (:func:`riskstrat.evaluation.monitor.holdout_effect`);
this comparison sits beside it to show what was done, and says so in its statement.
"""

from __future__ import annotations

import pandas as pd

from riskstrat.evaluation import metrics

__all__ = ["CONTACTED", "STATUS_GROUPS", "outcomes_by_status", "worklist_statement"]

# The worklist's statuses (riskstrat.serve.db.STATUSES) grouped for the comparison: a person counts as
# contacted or enrolled if any status in the horizon says so, else by their latest status.
CONTACTED = frozenset({"contacted", "enrolled"})
STATUS_GROUPS = {"contacted": "contacted_or_enrolled", "enrolled": "contacted_or_enrolled",
                 "to_review": "not_contacted", "reviewed_mdt": "not_contacted", "declined": "declined",
                 "not_appropriate": "not_appropriate"}
GROUP_WORDS = {"contacted_or_enrolled": "contacted or enrolled in case management",
               "not_contacted": "listed, not contacted (no status, to review, reviewed at MDT)",
               "declined": "declined", "not_appropriate": "not appropriate"}


def outcomes_by_status(population: pd.DataFrame, y, events: pd.DataFrame, *, as_of, horizon_days: int,
                       alpha: float = 0.05, outcome_words: str = "the outcome") -> dict:
    """Outcome rates of the month's listed people shown on the worklist (not held out, with a label), by
    the status the worklist recorded for them during the outcome horizon (``as_of`` to ``as_of + horizon_days``).

    ``events`` has one row per status change: ``practice_id``, ``pseudonym``, ``status``, ``at``; a person
    is matched by practice and pseudonym (the worklist keeps statuses per practice). Returns ``rows``
    (one per status group: people, events, per 1,000, predicted per 1,000, O/E), the difference
    contacted-or-enrolled minus not-contacted per 1,000 with Newcombe's interval, the number with any
    status, and a ``statement`` that says the comparison is observational.
    """
    y = pd.Series(y, dtype="float64").reset_index(drop=True)
    population = population.reset_index(drop=True)
    shown = population["listed"].fillna(False).astype(bool)
    if "holdout" in population:
        shown &= ~population["holdout"].fillna(False).astype(bool)
    shown &= y.notna()
    people = population.loc[shown, ["person_id", "practice_id", "risk"]].assign(y=y[shown].to_numpy())
    people["person_id"], people["practice_id"] = people["person_id"].astype(str), people["practice_id"].astype(str)

    start = pd.Timestamp(as_of)
    end = start + pd.Timedelta(days=int(horizon_days))
    window = events.loc[(pd.to_datetime(events["at"]) >= start) & (pd.to_datetime(events["at"]) < end)]
    window = window.sort_values("at", kind="stable")
    key = ["practice_id", "pseudonym"]
    contacted = window.loc[window["status"].isin(CONTACTED), key].drop_duplicates().assign(_c=True)
    latest = window.drop_duplicates(key, keep="last")[[*key, "status"]]
    people = (people.merge(latest, how="left", left_on=["practice_id", "person_id"], right_on=key)
              .merge(contacted, how="left", on=key))
    group = people["status"].map(STATUS_GROUPS).fillna("not_contacted")
    people["group"] = group.where(people["_c"].isna(), "contacted_or_enrolled")

    rows = []
    for name, words in GROUP_WORDS.items():
        part = people.loc[people["group"] == name]
        n, k = len(part), int(part["y"].sum())
        expected = float(part["risk"].sum())
        rows.append({"status": name, "words": words, "n": n, "events": k,
                     "per_1000": 1000 * k / n if n else float("nan"),
                     "expected_per_1000": 1000 * expected / n if n else float("nan"),
                     "o_e_ratio": k / expected if expected > 0 else float("nan")})
    out: dict = {"rows": rows, "n_shown": len(people), "n_with_status": int(people["status"].notna().sum()),
                 "window": [str(start.date()), str((end - pd.Timedelta(days=1)).date())], "alpha": alpha}
    a, b = rows[0], rows[1]
    if a["n"] and b["n"]:
        d, low, high = metrics.newcombe_difference(a["events"], a["n"], b["events"], b["n"], alpha=alpha)
        out.update(difference_per_1000=1000 * d, ci_low_per_1000=1000 * low, ci_high_per_1000=1000 * high)
    else:
        out.update(difference_per_1000=float("nan"), ci_low_per_1000=float("nan"), ci_high_per_1000=float("nan"))
    out["statement"] = worklist_statement(out, outcome_words=outcome_words)
    return out


def worklist_statement(result: dict, *, outcome_words: str = "the outcome") -> str:
    """The comparison in words, always labelled observational and pointed at the hold-out."""
    caution = ("Observational, not causal: practices choose whom to contact, and a status may be recorded after "
               "the outcome, so this does not measure what contacting people does; the randomised hold-out "
               "comparison does.")
    if not result["n_with_status"]:
        return (f"No status was recorded on the worklist between {result['window'][0]} and {result['window'][1]} "
                f"for the {result['n_shown']:,} listed people shown: the worklist was not used, or not for this "
                f"month. " + caution)
    a, b = result["rows"][0], result["rows"][1]
    if not a["n"] or not b["n"]:
        return (f"{a['n']:,} listed people were contacted or enrolled and {b['n']:,} were not: there is no "
                f"comparison to make. " + caution)
    level = f"{1 - result.get('alpha', 0.05):.0%}"
    return (f"Of {a['n']:,} listed people contacted or enrolled, {a['events']:,} ({a['per_1000']:.1f} per 1,000) "
            f"had {outcome_words} (predicted {a['expected_per_1000']:.1f}); of {b['n']:,} listed but not contacted, "
            f"{b['events']:,} ({b['per_1000']:.1f} per 1,000; predicted {b['expected_per_1000']:.1f}). Difference "
            f"{result['difference_per_1000']:+.1f} per 1,000 ({level} interval {result['ci_low_per_1000']:+.1f} to "
            f"{result['ci_high_per_1000']:+.1f}). " + caution)
