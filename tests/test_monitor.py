"""`riskstrat monitor` on hand-made cases: labels with the scoring model's outcome, observed/expected
overall and by group, maturity, the hold-out difference and its interval against hand computations,
and the earlier extract cut from a later one.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from riskstrat.evaluation import metrics
from riskstrat.modeling.config import ScoringConfig, load_config
from riskstrat.evaluation.monitor import (ScoredMonth, holdout_effect, label_population, monitor_month,
                                          split_by_maturity)
from riskstrat.pipelines.monitor import NothingToMonitorError, run_monitoring, scored_months
from riskstrat.data.io import file_sha256
from riskstrat.outcomes import parse_outcome
from riskstrat.data.synth.cut import cut_tables

T = pd.Timestamp("2025-11-01")
END = "2026-10-31"  # the later extract: the whole 365-day horizon after T


# ----------------------------------------------------------------------------- labels and O/E by hand


@pytest.fixture
def hand_made(make_records):
    """Seven scored people; what happened to each after T is written beside them."""
    records = make_records(
        persons=[
            {"person_id": "a", "birth_date": "1950-01-01", "registration_start": "2015-01-01"},
            {"person_id": "b", "birth_date": "1950-01-01", "registration_start": "2015-01-01"},
            {"person_id": "c", "birth_date": "1940-01-01", "registration_start": "2015-01-01",
             "death_date": "2026-02-09"},
            {"person_id": "d", "birth_date": "1960-01-01", "registration_start": "2015-01-01", "practice_id": "P00002"},
            {"person_id": "e", "birth_date": "1960-01-01", "registration_start": "2015-01-01",
             "registration_end": "2025-12-21", "practice_id": "P00002"},
            {"person_id": "g", "birth_date": "1970-01-01", "registration_start": "2015-01-01", "practice_id": "P00002"},
        ],
        inpatient_spells=[
            {"person_id": "a", "admission_date": "2025-12-01", "discharge_date": "2025-12-03",
             "admission_method": "emergency"},                       # a: emergency admission in the horizon
            {"person_id": "b", "admission_date": "2026-01-05", "discharge_date": "2026-01-06",
             "admission_method": "elective"},                        # b: planned only: no event
            {"person_id": "d", "admission_date": "2026-11-02", "discharge_date": "2026-11-03",
             "admission_method": "emergency"},                       # d: after the horizon: no event
            {"person_id": "g", "admission_date": "2025-10-01", "discharge_date": "2025-10-02",
             "admission_method": "emergency"},                       # g: before T: no event
        ])
    # c dies in the horizon (composite: an event); e leaves before it ends (censored: no label);
    # f was scored but is not in the later data (no label).
    population = pd.DataFrame({
        "person_id": ["a", "b", "c", "d", "e", "f", "g"],
        "practice_id": ["P00001", "P00001", "P00001", "P00002", "P00002", "P00002", "P00002"],
        "risk": [0.5, 0.2, 0.3, 0.1, 0.4, 0.6, 0.2],
        "tier": ["very high", "high", "high", "low", "high", "very high", "high"],
        "listed": [True] * 7, "holdout": [False] * 7})
    return records, population


def test_labels_use_the_scoring_models_outcome(hand_made):
    records, population = hand_made
    composite = parse_outcome({"name": "emergency_admission", "death": "composite"})
    y = label_population(population, records, composite, index_date=T, extract_end=END)
    assert y.tolist()[:4] == [1.0, 0.0, 1.0, 0.0] and np.isnan(y[4]) and np.isnan(y[5]) and y[6] == 0.0
    # The same people under another model's outcome: death no longer counts.
    admissions_only = parse_outcome({"name": "emergency_admission", "death": "negative"})
    assert label_population(population, records, admissions_only, index_date=T, extract_end=END)[2] == 0.0


def test_observed_expected_overall_by_tier_and_by_practice_by_hand(hand_made):
    records, population = hand_made
    outcome = parse_outcome({"name": "emergency_admission"})
    y = label_population(population, records, outcome, index_date=T, extract_end=END)
    result = monitor_month(population, y, month="2025-11", tier_order=["very high", "high", "moderate", "low"],
                           n_boot=50, min_group_events=2)
    h = result.headline
    # Labelled: a, b, c, d, g. Observed 2 (a, c); expected 0.5 + 0.2 + 0.3 + 0.1 + 0.2 = 1.3.
    assert (h["n"], h["events"]) == (5, 2)
    assert h["expected"] == pytest.approx(1.3) and h["o_e_ratio"] == pytest.approx(2 / 1.3)
    assert h["o_e_ci_low"] == pytest.approx(stats.chi2.ppf(0.025, 4) / 2 / 1.3)
    assert h["o_e_ci_high"] == pytest.approx(stats.chi2.ppf(0.975, 6) / 2 / 1.3)
    # AUROC: events a (0.5), c (0.3) against b, d, g (0.2, 0.1, 0.2): every pair ordered right.
    assert h["auroc"] == 1.0
    tier = result.by("tier").set_index("tier")
    assert list(tier.index) == ["very high", "high", "low"]
    assert tier.loc["very high", ["n", "n_events", "expected"]].tolist() == [1, 1, pytest.approx(0.5)]
    assert tier.loc["high", "o_e_ratio"] == pytest.approx(1 / (0.2 + 0.3 + 0.2))
    practice = result.by("GP practice").set_index("GP practice")
    assert practice.loc["P00001", "o_e_ratio"] == pytest.approx(2 / 1.0)
    assert practice.loc["P00002", ["n", "n_events", "small"]].tolist() == [2, 0, True]  # flagged, not over-read
    assert not practice.loc["P00001", "small"]


# ----------------------------------------------------------------------------- maturity


def _month(as_of: str, horizon: int = 365) -> ScoredMonth:
    return ScoredMonth(pd.Timestamp(as_of).strftime("%Y-%m"), pd.Timestamp(as_of), "m", "1", horizon, "x", {})


def test_a_month_is_assessed_only_once_its_whole_horizon_is_in_the_data():
    early, late = _month("2025-10-01"), _month("2025-11-01")
    matured, pending = split_by_maturity([early, late], "2026-10-31")
    assert [m.month for m in matured] == ["2025-10", "2025-11"] and pending == []
    matured, pending = split_by_maturity([early, late], "2026-10-30")  # one day short for November
    assert [m.month for m in matured] == ["2025-10"] and [m.month for m in pending] == ["2025-11"]
    assert late.matures_on == pd.Timestamp("2026-11-01")
    assert split_by_maturity([_month("2026-05-01", horizon=180)], "2026-10-27")[0] != []


def _publish(root, as_of: str, population: pd.DataFrame) -> None:
    folder = root / pd.Timestamp(as_of).strftime("%Y-%m")
    folder.mkdir(parents=True)
    population.to_parquet(folder / "population.parquet")
    manifest = {"month": folder.name, "as_of": as_of, "config": {"models": {"risk": "m"}},
                "models": {"m": {"version": "1", "run_id": "0" * 32}},
                "outcome": {"name": "emergency_admission", "words": "an emergency admission or death",
                            "horizon_days": 365},
                "files": {"population.parquet": file_sha256(folder / "population.parquet")}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_monitor_refuses_when_no_month_has_matured_and_says_when_they_will(hand_made, tmp_path):
    _, population = hand_made
    lists, data = tmp_path / "lists", tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"extract_end": "2026-06-30"}))
    _publish(lists, "2025-11-01", population)
    _publish(lists, "2025-12-01", population)
    cfg = load_config(None, [f"data.path={data}", f"output_dir={lists}"], model=ScoringConfig)
    assert [m.month for m in scored_months(lists, before="2026-07-01")] == ["2025-11", "2025-12"]
    with pytest.raises(NothingToMonitorError, match=r"2025-11 \(scored 2025-11-01, matures when the data reach "
                                                    r"2026-10-31\); 2025-12 .*2026-11-30"):
        run_monitoring(cfg, "2026-07-01", log=False)
    # Data that run past the monitoring date are used only up to the day before it.
    (data / "dataset.json").write_text(json.dumps({"extract_end": "2027-01-31"}))
    with pytest.raises(NothingToMonitorError, match="the data run to 2026-10-30"):
        run_monitoring(cfg, "2026-10-31", log=False)
    with pytest.raises(NothingToMonitorError, match="no month scored before 2025-11-01"):
        run_monitoring(cfg, "2025-11-01", log=False)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(as_of=5), r"as_of: Input should be a valid string"),
    (lambda m: m.update(as_of="2025-11-31"), r"day is out of range for month"),
    (lambda m: m.update(models={}), r"models: Dictionary should have at least 1 item"),
    (lambda m: m["models"]["m"].update(version=1), r"models.m.version: Input should be a valid string"),
    (lambda m: m["files"].update({"population.parquet": "xyz"}), r"files.population.parquet: String should match"),
    (lambda m: m["config"]["models"].update(risk="other"), r"config.models.risk 'other' is not among models \['m'\]"),
    (lambda m: m.pop("outcome"), r"outcome: Field required"),
], ids=["as_of a number", "no such day", "no models", "version a number", "not a hash", "risk model not listed",
        "no outcome"])
def test_a_manifest_with_missing_or_mistyped_fields_is_refused_naming_it(hand_made, tmp_path, edit, match):
    from riskstrat.scoring.published import ManifestError

    _, population = hand_made
    lists = tmp_path / "lists"
    _publish(lists, "2025-11-01", population)
    path = lists / "2025-11" / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"2025-11/manifest.json lacks what a published month's manifest holds "
                                            r"\(.*" + match):
        scored_months(lists, before="2026-07-01")


# ----------------------------------------------------------------------------- the hold-out effect


@pytest.mark.parametrize("a, n_a, b, n_b, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10.
    (56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090), (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926)])
def test_newcombe_interval_matches_the_published_examples(a, n_a, b, n_b, low, high):
    d, lo, hi = metrics.newcombe_difference(a, n_a, b, n_b)
    assert d == pytest.approx(a / n_a - b / n_b)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def _wilson_by_hand(x: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = x / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_holdout_effect_against_a_hand_computation():
    # Eligible: listed, outside the exempt very high tier, with a label. Shown: 400 (60 events);
    # held out: 100 (20 events). Not eligible: the very high tier, people not listed, no label.
    n_shown, n_held = 400, 100
    population = pd.DataFrame({
        "listed": [True] * (n_shown + n_held) + [True] * 30 + [False] * 50 + [True] * 10,
        "holdout": [False] * n_shown + [True] * n_held + [False] * 30 + [False] * 50 + [True] * 10,
        "tier": ["high"] * (n_shown + n_held) + ["very high"] * 30 + ["low"] * 50 + ["high"] * 10,
        "risk": [0.15] * (n_shown + n_held + 90)})
    y = np.r_[np.ones(60), np.zeros(340), np.ones(20), np.zeros(80), np.ones(30), np.ones(50), np.full(10, np.nan)]
    effect = holdout_effect(population, y, exempt_tiers=["very high"], outcome_words="an emergency admission")
    assert (effect["n_shown"], effect["events_shown"], effect["n_held_out"], effect["events_held_out"]) == (400, 60,
                                                                                                           100, 20)
    assert effect["per_1000_shown"] == 150 and effect["per_1000_held_out"] == 200
    (l1, u1), (l2, u2) = _wilson_by_hand(60, 400), _wilson_by_hand(20, 100)
    d = 0.15 - 0.20
    assert effect["difference_per_1000"] == pytest.approx(1000 * d)
    assert effect["ci_low_per_1000"] == pytest.approx(1000 * (d - math.sqrt((0.15 - l1) ** 2 + (u2 - 0.2) ** 2)))
    assert effect["ci_high_per_1000"] == pytest.approx(1000 * (d + math.sqrt((u1 - 0.15) ** 2 + (0.2 - l2) ** 2)))
    low = -effect["ci_low_per_1000"]
    assert "Consistent with no effect" in effect["statement"]
    assert f"cannot rule out a reduction of up to {low:.0f} per 1,000" in effect["statement"]
    assert "Of 400 people shown" in effect["statement"] and not effect["too_few"]


def test_holdout_statement_says_a_reduction_when_the_interval_excludes_zero_and_warns_when_small():
    population = pd.DataFrame({"listed": True, "holdout": [False] * 2000 + [True] * 500, "tier": "high",
                               "risk": 0.2})
    y = np.r_[np.ones(200), np.zeros(1800), np.ones(100), np.zeros(400)]  # 100 vs 200 per 1,000
    effect = holdout_effect(population, y)
    assert effect["ci_high_per_1000"] < 0 and "reduction of at least" in effect["statement"]
    few = holdout_effect(population.iloc[1980:2030].reset_index(drop=True), np.r_[np.zeros(45), np.ones(5)])
    assert few["too_few"] and "Too few people to say anything useful" in few["statement"]


def test_observed_expected_interval_is_the_exact_poisson_interval():
    low, high = metrics.observed_expected_interval([1] * 10 + [0] * 90, [0.08] * 100)
    assert (low * 8, high * 8) == (pytest.approx(4.7954, abs=1e-4), pytest.approx(18.3904, abs=1e-4))
    assert metrics.observed_expected_interval([0, 0], [0.1, 0.1])[0] == 0.0


# ----------------------------------------------------------------------------- an earlier extract


def test_cut_keeps_what_was_known_on_the_date(make_records):
    later = make_records(
        persons=[{"person_id": "a", "birth_date": "1950-01-01", "registration_start": "2015-01-01",
                  "death_date": "2026-03-01"},
                 {"person_id": "b", "birth_date": "1950-01-01", "registration_start": "2015-01-01",
                  "registration_end": "2026-02-01"},
                 {"person_id": "n", "birth_date": "2026-01-10", "registration_start": "2026-01-10"}],
        inpatient_spells=[{"person_id": "a", "admission_date": "2025-12-30", "discharge_date": "2026-01-04",
                           "admission_method": "emergency"},
                          {"person_id": "a", "admission_date": "2026-02-01", "discharge_date": "2026-02-02",
                           "admission_method": "emergency"}],
        social_care=[{"person_id": "b", "service_type": "home_care", "start_date": "2025-06-01",
                      "end_date": "2026-01-15"}],
    ).tables
    earlier = cut_tables(later, extract_end="2025-12-31")
    persons = earlier["persons"].set_index("person_id")
    assert list(persons.index) == ["a", "b"]                       # n was born after the cut
    assert persons["death_date"].isna().all() and persons["registration_end"].isna().all()
    spells = earlier["inpatient_spells"]
    assert len(spells) == 1 and pd.isna(spells.loc[0, "discharge_date"])   # still in hospital on the cut
    assert pd.isna(earlier["social_care"].loc[0, "end_date"])
    assert earlier["persons"].dtypes.equals(later["persons"].dtypes)


def test_synth_extract_end_gives_the_later_extracts_records_up_to_the_date(tmp_path):
    from riskstrat.data.io import dataset_metadata, read_raw_tables
    from riskstrat.data.schema import TABLES
    from riskstrat.data.synth import write_population

    later = write_population(tmp_path / "later", 400, start="2021-11-01", years=3, seed=4, n_futures=2)
    earlier = write_population(tmp_path / "earlier", 400, start="2021-11-01", years=3, seed=4, n_futures=2,
                               extract_end="2023-10-31")
    assert (earlier["extract_end"], earlier["cut_from"], later["extract_end"]) == ("2023-10-31", "2024-10-31",
                                                                                   "2024-10-31")
    assert dataset_metadata(tmp_path / "earlier")["extract_end"] == "2023-10-31"
    old, new = read_raw_tables(tmp_path / "earlier")[0], read_raw_tables(tmp_path / "later")[0]
    end = pd.Timestamp("2023-10-31")
    for name, table in TABLES.items():
        if table.event_date is None or name not in new:
            continue
        # Every event up to the cut is in both, the same apart from ends still open on the cut.
        keep = new[name].loc[new[name][table.event_date] <= end].reset_index(drop=True)
        ends = [c for c in table.date_columns if c != table.event_date]
        pd.testing.assert_frame_equal(old[name].drop(columns=ends), keep.drop(columns=ends), check_categorical=False)
        for c in ends:
            assert (old[name][c].isna() | (old[name][c] == keep[c])).all()
            assert (old[name][c].isna() == (keep[c].isna() | (keep[c] > end))).all()
    with pytest.raises(ValueError, match="must fall within"):
        write_population(tmp_path / "bad", 100, start="2021-11-01", years=3, seed=4, extract_end="2024-10-31")
