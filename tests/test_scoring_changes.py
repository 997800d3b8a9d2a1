"""Changes since last month are computed within a practice: someone who moved practice brings
nothing of their old practice's list with them."""

from __future__ import annotations

import pandas as pd

from riskstrat.scoring import lists


def toy_population(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["person_id", "practice_id", "practice_rank", "tier"])
    frame["tier"] = pd.Categorical(frame["tier"], categories=["very high", "high", "moderate", "low"], ordered=True)
    return frame


def test_a_person_who_moved_practice_shows_no_old_tier_in_the_new_practices_changes():
    before = toy_population([("a", "P1", 1, "high"), ("d", "P2", 1, "very high")])
    now = toy_population([("a", "P1", 1, "high"), ("d", "P1", 2, "moderate")])
    ch = lists.changes_since(before, now, list_size=2).set_index(["practice_id", "person_id"])
    assert ch.loc[("P1", "d"), "new_this_month"]
    # The defect: P1's changes.csv said d was "very high → moderate", a tier from P2's list.
    assert pd.isna(ch.loc[("P1", "d"), "previous_tier"]) and pd.isna(ch.loc[("P1", "d"), "tier_change"])
    assert ch.loc[("P1", "a"), "previous_tier"] == "high"
    # P2 learns only that d left.
    assert ch.loc[("P2", "d"), "left"] and pd.isna(ch.loc[("P2", "d"), "tier"])


def test_mark_lists_gives_no_tier_change_across_practices():
    before = toy_population([("d", "P2", 1, "very high")])
    now = toy_population([("d", "P1", 1, "moderate"), ("e", "P2", 1, "high")])
    marked = lists.mark_lists(now, list_size=1, month="2026-11", previous=before).set_index("person_id")
    assert pd.isna(marked.loc["d", "previous_tier"]) and pd.isna(marked.loc["d", "tier_change"])
