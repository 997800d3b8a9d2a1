"""Outcomes by worklist status (``riskstrat monitor --worklist-db``): the status history read from a
worklist database made by ``riskstrat serve``'s own schema, grouped and counted by hand."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

pytest.importorskip("sqlalchemy")
from sqlalchemy.orm import Session  # noqa: E402

from riskstrat.evaluation import metrics  # noqa: E402
from riskstrat.evaluation.worklist_outcomes import outcomes_by_status  # noqa: E402
from riskstrat.pipelines.worklist import WorklistDatabaseError, read_status_events  # noqa: E402
from riskstrat.serve.db import Status, StatusEvent, make_engine, upgrade  # noqa: E402

# person, practice, listed, held out, risk, outcome (NaN: no label)
PEOPLE = [("a1", "P1", True, False, 0.4, 1), ("a7", "P1", True, False, 0.2, 0), ("a2", "P1", True, False, 0.3, 1),
          ("a3", "P1", True, False, 0.5, 0), ("a4", "P1", True, False, 0.1, 0), ("a5", "P1", True, True, 0.3, 1),
          ("a6", "P1", False, False, 0.05, 1), ("b1", "P2", True, False, 0.2, 0), ("b2", "P2", True, False, 0.3, 1),
          ("b3", "P2", True, False, 0.3, float("nan"))]
# practice, person, status, when: the month was scored 2025-01-01 with a 365-day horizon
EVENTS = [("P1", "a1", "to_review", "2025-01-05"), ("P1", "a1", "contacted", "2025-02-01"),
          ("P1", "a1", "not_appropriate", "2025-06-01"),   # contacted once: counts as contacted
          ("P1", "a7", "enrolled", "2025-12-31"),          # the horizon's last day
          ("P1", "a2", "enrolled", "2024-12-01"),          # before the month: not this month's contact
          ("P1", "a3", "declined", "2025-03-01"), ("P1", "a4", "reviewed_mdt", "2025-03-01"),
          ("P1", "a5", "contacted", "2025-02-01"),         # held out: never in the comparison
          ("P1", "b1", "contacted", "2025-02-01"),         # at another practice than b1's list
          ("P2", "b2", "enrolled", "2026-01-01"),          # after the horizon
          ("P2", "b3", "contacted", "2025-02-01")]         # no label


@pytest.fixture
def worklist_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as db, db.begin():
        db.add_all(StatusEvent(practice_id=pid, pseudonym=p, month="2025-01", status=s, by="alice",
                               at=dt.datetime.fromisoformat(at + "T10:00")) for pid, p, s, at in EVENTS)
        db.add(Status(practice_id="P1", pseudonym="a1", status="contacted", note="a clinical note", updated_by="alice"))
    engine.dispose()
    return url


def test_outcomes_by_worklist_status_counted_by_hand(worklist_db):
    events = read_status_events(worklist_db)
    assert list(events.columns) == ["practice_id", "pseudonym", "status", "at"] and len(events) == len(EVENTS)
    population = pd.DataFrame(PEOPLE, columns=["person_id", "practice_id", "listed", "holdout", "risk", "y"])
    result = outcomes_by_status(population.drop(columns="y"), population["y"], events, as_of="2025-01-01",
                                horizon_days=365, outcome_words="an emergency admission")
    rows = {r["status"]: r for r in result["rows"]}
    assert [(s, rows[s]["n"], rows[s]["events"]) for s in rows] == [
        ("contacted_or_enrolled", 2, 1), ("not_contacted", 4, 2), ("declined", 1, 0), ("not_appropriate", 0, 0)]
    assert rows["contacted_or_enrolled"]["expected_per_1000"] == pytest.approx(1000 * (0.4 + 0.2) / 2)
    assert rows["not_contacted"]["o_e_ratio"] == pytest.approx(2 / (0.3 + 0.1 + 0.2 + 0.3))
    assert result["n_shown"] == 7 and result["n_with_status"] == 4  # a1, a7, a3, a4
    d, low, high = metrics.newcombe_difference(1, 2, 2, 4)
    assert (result["difference_per_1000"], result["ci_low_per_1000"], result["ci_high_per_1000"]) == \
        pytest.approx((1000 * d, 1000 * low, 1000 * high))
    assert "Observational, not causal" in result["statement"] and "hold-out" in result["statement"]
    assert result["window"] == ["2025-01-01", "2025-12-31"]


def test_no_status_in_the_horizon_says_the_worklist_was_not_used(worklist_db):
    population = pd.DataFrame(PEOPLE, columns=["person_id", "practice_id", "listed", "holdout", "risk", "y"])
    result = outcomes_by_status(population.drop(columns="y"), population["y"], read_status_events(worklist_db),
                                as_of="2020-01-01", horizon_days=365)
    assert result["n_with_status"] == 0 and "was not used" in result["statement"]
    assert "Observational, not causal" in result["statement"]


def test_a_missing_or_foreign_database_is_refused_not_read_as_nobody_contacted(tmp_path):
    with pytest.raises(WorklistDatabaseError, match="no such worklist database"):
        read_status_events(f"sqlite:///{tmp_path / 'typo.db'}")
    assert not (tmp_path / "typo.db").exists()
    other = tmp_path / "other.db"
    make_engine(f"sqlite:///{other}").connect().close()
    with pytest.raises(WorklistDatabaseError, match="not a worklist database"):
        read_status_events(f"sqlite:///{other}")
