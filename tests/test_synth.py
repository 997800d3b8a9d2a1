"""The synthetic population: determinism, documented aggregate rates, validity, and its ground truth.

The rate bounds are the calibration targets of issue 2 (English integrated-care-system orders of
magnitude), checked on every full calendar year of one moderate population generated once.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from riskstrat.outcomes.labels import build_labels
from riskstrat.evaluation.metrics import auroc
from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import EVENT_TABLES, TABLES
from riskstrat.data.synth import generate_population, write_population
from riskstrat.data.validate import load_records, validate_tables

START, YEARS, SEED = "2021-11-01", 4, 42   # extract 2021-11-01 .. 2025-10-31
FULL_YEARS = (2022, 2023, 2024)
TRUTH_DATE = "2023-11-01"
PROBABILITIES = ("p_emergency_admission", "p_death", "p_emergency_or_death", "p_high_cost")


@pytest.fixture(scope="module")
def population():
    return generate_population(12_000, start=START, years=YEARS, seed=SEED, truth_dates=[TRUTH_DATE])


def _in_year(df: pd.DataFrame, column: str, year: int) -> pd.DataFrame:
    return df[df[column].dt.year == year]


def _year_summary(tables: dict[str, pd.DataFrame], year: int) -> dict[str, float]:
    """Rates among the people alive on 1 January of ``year``, over that calendar year."""
    start, end = pd.Timestamp(f"{year}-01-01"), pd.Timestamp(f"{year + 1}-01-01")
    persons = tables["persons"].set_index("person_id")
    alive = persons[persons["death_date"].isna() | (persons["death_date"] >= start)]
    age = (start - alive["birth_date"]).dt.days / 365.25
    ids = alive.index

    spells = _in_year(tables["inpatient_spells"], "admission_date", year)
    admitted = ids.isin(spells.loc[spells["admission_method"] == "emergency", "person_id"])
    died = alive["death_date"].dt.year.eq(year).to_numpy()

    # Each person's cost in the year: events dated in it, and social care prorated over its days in it.
    cost = pd.Series(0.0, index=ids)
    for name in ("inpatient_spells", "ae_attendances", "outpatient_appointments", "gp_contacts", "prescriptions"):
        events = _in_year(tables[name], TABLES[name].event_date, year)
        cost = cost.add(events.groupby("person_id")["cost"].sum(), fill_value=0)
    care = tables["social_care"]
    first = care["start_date"].where(care["start_date"] > start, start)
    last = care["end_date"].fillna(end).where(lambda d: d < end, end)
    days = (last - first).dt.days.clip(lower=0)
    cost = cost.add((care["weekly_cost"].fillna(0) * days / 7).groupby(care["person_id"].to_numpy()).sum(),
                    fill_value=0).reindex(ids)
    ranked = np.sort(cost.to_numpy())[::-1]
    top = ranked[: int(np.ceil(0.05 * len(ranked)))]

    users = care.loc[days > 0, "person_id"].unique()
    user_age = age.reindex(users).dropna()
    return {
        "emergency_adults": admitted[(age >= 18).to_numpy()].mean(),
        "emergency_85_plus": admitted[(age >= 85).to_numpy()].mean(),
        "deaths": died.mean(),
        "top5_cost_share": top.sum() / ranked.sum(),
        "ae_per_person": len(_in_year(tables["ae_attendances"], "arrival_date", year)) / len(ids),
        "gp_per_person": len(_in_year(tables["gp_contacts"], "contact_date", year)) / len(ids),
        "social_care_users_65_plus": (user_age >= 65).mean(),
        "social_care_users": len(users),
    }


@pytest.fixture(scope="module")
def yearly(population) -> pd.DataFrame:
    return pd.DataFrame({year: _year_summary(population.tables, year) for year in FULL_YEARS}).T


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_tables_other_seed_other_tables():
    kw = dict(start="2021-11-01", years=3, truth_dates=[])
    a = generate_population(1500, seed=5, **kw)
    b = generate_population(1500, seed=5, **kw)
    c = generate_population(1500, seed=6, **kw)
    assert set(a.tables) == set(TABLES)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    assert a.metadata == b.metadata
    assert not a.tables["persons"]["birth_date"].equals(c.tables["persons"]["birth_date"])
    assert len(a.tables["gp_contacts"]) != len(c.tables["gp_contacts"])


# ----------------------------------------------------------------------------- documented rates


def check(yearly: pd.DataFrame, column: str, low: float, high: float = np.inf) -> None:
    values = yearly[column]
    assert values.between(low, high).all(), f"{column} per year outside [{low}, {high}]:\n{values}"


def test_emergency_admissions_among_adults(yearly):
    check(yearly, "emergency_adults", 0.07, 0.11)


def test_emergency_admissions_rise_steeply_with_age(yearly):
    check(yearly, "emergency_85_plus", 0.33)


def test_deaths_per_year(yearly):
    check(yearly, "deaths", 0.006, 0.016)


def test_cost_is_concentrated_in_the_top_5_percent(yearly):
    # Issue 2 says "roughly 40-50%" (seed 42: 0.40, 0.42, 0.43 for 2022-24; the first year is a
    # little lower because people enter the extract with no admission history to sustain).
    check(yearly, "top5_cost_share", 0.38, 0.55)


def test_ae_and_gp_volumes(yearly):
    check(yearly, "ae_per_person", 0.3, 1.2)
    check(yearly, "gp_per_person", 3, 10)


def test_social_care_is_mostly_for_people_65_and_over(yearly):
    assert (yearly["social_care_users"] >= 100).all()
    check(yearly, "social_care_users_65_plus", 0.60)


# ----------------------------------------------------------------------------- validity


def test_tables_pass_validation_with_no_errors(population):
    records, report = validate_tables(population.tables, out_of_life_events="error")
    assert report.ok, report.format(severity="error")
    # Only a handful of exact repeats (two missed appointments on one day, say) are dropped.
    assert {i.rule for i in report.warnings} <= {"duplicate_rows"}
    assert sum(report.dropped.values()) < 1e-4 * sum(report.row_counts.values())
    assert set(records.tables) == set(TABLES)


def test_no_event_after_death_and_no_stay_ending_before_it_starts(population):
    tables = population.tables
    death = tables["persons"].set_index("person_id")["death_date"]
    assert death.notna().any()
    for name in EVENT_TABLES:
        df = tables[name]
        died = df["person_id"].map(death)
        for col in TABLES[name].date_columns:
            assert not (df[col] > died).any(), f"{name}.{col} after death"
    spells = tables["inpatient_spells"]
    assert (spells["discharge_date"] >= spells["admission_date"]).all()
    care = tables["social_care"]
    assert (care["end_date"].isna() | (care["end_date"] >= care["start_date"])).all()


# ----------------------------------------------------------------------------- ground truth


def test_truth_is_kept_apart_from_the_tables(population):
    assert set(population.tables) <= set(TABLES)
    for name, df in population.tables.items():
        assert list(df.columns) == TABLES[name].column_names
    assert population.metadata["truth_dates"] == [TRUTH_DATE]


def test_truth_covers_exactly_the_people_alive_at_the_index_date(population):
    t = pd.Timestamp(TRUTH_DATE)
    truth = population.truth
    persons = population.tables["persons"]
    alive = persons.loc[persons["death_date"].isna() | (persons["death_date"] >= t), "person_id"]
    assert (truth["index_date"] == t).all()
    assert truth["person_id"].is_unique
    assert set(truth["person_id"]) == set(alive)
    assert len(truth) < len(persons)  # some died before the index date


def test_truth_probabilities_are_sane(population):
    truth = population.truth
    for column in PROBABILITIES:
        assert truth[column].between(0, 1).all(), column
    # An emergency admission before death is one way of "admission or death".
    assert (truth["p_emergency_admission"] <= truth["p_emergency_or_death"] + 1e-12).all()
    assert (truth["expected_cost"] >= 0).all()
    adults = _adults_at(population, TRUTH_DATE)
    assert 0.05 <= truth.loc[adults, "p_emergency_admission"].mean() <= 0.15


def test_oracle_discrimination_is_realistic(population):
    # The truth is the ceiling any model can reach: clearly informative, far from perfect.
    truth = population.truth
    adults = _adults_at(population, TRUTH_DATE)
    ids = pd.Index(truth.loc[adults, "person_id"])
    y = build_labels(LinkedRecords(population.tables), TRUTH_DATE, ids, target="emergency_admission",
                     death="composite", extract_end=population.metadata["extract_end"])
    assert y.notna().all()
    assert 0.72 <= auroc(y.to_numpy(), truth.loc[adults, "p_emergency_or_death"].to_numpy()) <= 0.92


def test_high_cost_probability_matches_brute_force_on_a_hand_made_future():
    # One future's path: cost without electives R, elective rate L. Brute force: draw the electives
    # (Poisson count, each cost lognormal 1500 x e^(0.9 Z)) many times; the formula's exact part
    # (none or one) plus its unbiased part (two or more) must agree with the share above t.
    from riskstrat.data.synth import high_cost_probability

    rng = np.random.default_rng(0)
    rest, rate, t, n = 6000.0, 0.6, 9000.0, 400_000
    count = rng.poisson(rate, n)
    sizes = 1500 * np.exp(0.9 * rng.standard_normal((n, count.max())))
    total = rest + (sizes * (np.arange(count.max()) < count[:, None])).sum(1)
    brute = np.mean(total > t)
    others = np.where(count >= 2, (sizes[:, 1:] * (np.arange(1, count.max()) < count[:, None])).sum(1), -1.0)
    p = high_cost_probability(t, cost_without_electives=np.full(n, rest), elective_rate=np.full(n, rate),
                              elective_others=others)
    assert p.mean() == pytest.approx(brute, abs=4 * np.sqrt(brute * (1 - brute) / n))
    # Already over the threshold without electives: certain. No electives possible: a step.
    assert high_cost_probability(t, cost_without_electives=np.array([t + 1]), elective_rate=np.array([0.5]),
                                 elective_others=np.array([-1.0]))[0] == 1.0
    assert high_cost_probability(t, cost_without_electives=np.array([t - 1]), elective_rate=np.array([0.0]),
                                 elective_others=np.array([-1.0]))[0] == 0.0


def test_high_cost_chance_agrees_with_brute_force_futures():
    # The chance from quiet and branch futures (costly emergency admissions integrated out) must
    # equal, person by person, the share of freely simulated futures whose cost passes t.
    from riskstrat.data.synth import high_cost_chance
    from riskstrat.data.synth.generator import _initial_state, _month_starts, _practices, _simulate_truth

    rng = np.random.default_rng(3)
    months = _month_starts(np.datetime64("2022-01-01", "D"), 12)
    state, *_ = _initial_state(400, int((months[0] - np.datetime64("1970-01-01", "D")).astype(int)),
                               _practices(400, 3, None), rng)
    age = (int((months[0] - np.datetime64("1970-01-01", "D")).astype(int)) - state.birth) / 365.25
    # A young adult, a middle-aged and an old person, none in care (whose cost is mostly social care).
    people = [int(np.flatnonzero((age > lo) & (age < hi) & (state.care == 0))[0]) for lo, hi in ((25, 35), (50, 60), (75, 85))]
    n_futures, t = 20_000, 6000.0
    sim = _simulate_truth(state.take(np.array(people)), months, 0, rng, n_futures)
    parts = {k: sim[k] for k in ("quiet_weight", "cost_without_electives", "elective_rate", "elective_others",
                                 "branch_weight", "branch_cost_without_first", "branch_first_emergency")}
    chance = high_cost_chance(t, **parts)
    brute = (sim["cost"] > t).mean(0)
    se = np.sqrt(brute * (1 - brute) / n_futures + chance.var(0) / n_futures)
    assert (brute > 0).all()
    assert (np.abs(chance.mean(0) - brute) <= 4 * se).all(), (chance.mean(0), brute, se)


def test_high_cost_truth_is_smooth_and_its_threshold_holds_five_percent(population):
    truth = population.truth
    adults = _adults_at(population, TRUTH_DATE)
    # 12 futures once gave 13 values; integrating costly admissions out gives nearly one per person.
    assert truth["p_high_cost"].nunique() > 0.9 * len(truth)
    assert truth.loc[adults, "p_high_cost"].mean() == pytest.approx(0.05, abs=1e-3)


def test_no_fitted_model_beats_the_high_cost_oracle_beyond_noise(population):
    # The oracle is the ceiling: trained a year earlier, LightGBM and logistic regression do not
    # beat it beyond the paired bootstrap's noise, and the oracle is calibrated on the outcome.
    from riskstrat.modeling.config import load_config
    from riskstrat.features.clinical import FEATURE_NAMES
    from riskstrat.features.reference import build_features
    from riskstrat.evaluation.metrics import calibration_slope, observed_expected_ratio, paired_auroc_difference
    from riskstrat.modeling.models import fit_lightgbm, fit_logistic
    from riskstrat.data.synth.truth import oracle_risk

    # A faster learning rate than the shipped one: the same kind of model in a few seconds.
    cfg = load_config(None, ["target.name=high_cost", "model.lightgbm.learning_rate=0.1",
                             "model.lightgbm.early_stopping_rounds=30"])
    records = LinkedRecords(population.tables)
    end = population.metadata["extract_end"]

    def rows(date):
        f = build_features(records, date)
        y = cfg.target.labels(records, date, f.index, extract_end=end)
        return f.loc[y.notna(), list(FEATURE_NAMES)], y[y.notna()].to_numpy(int)

    X, y = rows("2022-11-01")
    cal = np.arange(len(y)) % 4 == 0
    models = {"lightgbm": fit_lightgbm(X[~cal], y[~cal], X[cal], y[cal], params=cfg.model.lightgbm, seed=1),
              "logistic": fit_logistic(X, y)}
    X_test, y_test = rows(TRUTH_DATE)
    oracle = oracle_risk(population.truth, "p_high_cost", TRUTH_DATE, X_test.index)
    assert 0.8 <= calibration_slope(y_test, oracle) <= 1.25
    assert 0.85 <= observed_expected_ratio(y_test, oracle) <= 1.15
    for name, model in models.items():
        d, low, high = paired_auroc_difference(y_test, model.predict_risk(X_test), oracle, n_boot=200, seed=0)
        assert low < 0, f"{name} beats the oracle: AUROC difference {d:.3f} ({low:.3f} to {high:.3f})"


def _adults_at(population, date) -> np.ndarray:
    birth = population.tables["persons"].set_index("person_id")["birth_date"]
    age = (pd.Timestamp(date) - population.truth["person_id"].map(birth)).dt.days / 365.25
    return (age >= 18).to_numpy()


# ----------------------------------------------------------------------------- writing a data set


SMALL = dict(start="2021-11-01", years=3, seed=3, truth_dates=["2023-01-01"], n_futures=2)


def test_write_population_writes_tables_metadata_and_truth_apart(tmp_path):
    out = tmp_path / "synthetic"
    meta = write_population(out, 400, **SMALL)
    files = {p.name for p in out.iterdir()}
    assert files == {"dataset.json", "validated.json", "ground_truth", ".riskstrat-folder"} | {
        f"{name}.parquet" for name in TABLES}  # validated.json: validated as made (tests/test_stamp.py)
    assert [p.name for p in (out / "ground_truth").iterdir()] == ["truth.parquet"]
    assert json.loads((out / "dataset.json").read_text()) == meta
    assert meta["extract_end"] == "2024-10-31" and meta["truth_dates"] == ["2023-01-01"]
    # Written again (the README's tour after the demo): its own stamp is riskstrat's, not a stranger's file.
    twice = tmp_path / "twice"
    write_population(twice, 300, **SMALL)
    write_population(twice, 200, **SMALL)
    assert len(pd.read_parquet(twice / "persons.parquet")) == 200 and (twice / "validated.json").exists()

    # The loader reads the tables (and never the truth); they are the ones generated in memory.
    records = load_records(out, duplicate_rows="keep")
    expected = generate_population(400, **SMALL)
    assert set(records.tables) == set(expected.tables)
    for name, df in expected.tables.items():
        # Loaded event tables key people by a categorical over the persons' ids; same values.
        got = records.tables[name].astype({"person_id": df["person_id"].dtype})
        pd.testing.assert_frame_equal(got, df, obj=name)
        assert meta["row_counts"][name] == len(df)
    truth = pd.read_parquet(out / "ground_truth" / "truth.parquet")
    pd.testing.assert_frame_equal(truth, expected.truth)


def test_a_failed_write_leaves_no_folder_and_keeps_an_old_one(tmp_path, monkeypatch):
    import riskstrat.data.synth.generator as generator

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    # After every table has been written, before the metadata and truth.
    monkeypatch.setattr(generator, "finish_truth", fail)
    out = tmp_path / "synthetic"
    with pytest.raises(RuntimeError, match="disk full"):
        write_population(out, 100, **SMALL)
    assert list(tmp_path.iterdir()) == []

    out.mkdir()
    (out / "persons.parquet").write_text("the old data set")
    (out / "dataset.json").write_text("{}")  # an earlier version's data set (no marker), so replaceable
    with pytest.raises(RuntimeError, match="disk full"):
        write_population(out, 100, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "persons.parquet"]
    assert (out / "persons.parquet").read_text() == "the old data set"
