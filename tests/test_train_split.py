"""The training design: people split once by a seeded hash, training dates before the test date."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrat.modeling.config import ConfigError, load_config
from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import TABLES
from riskstrat.data.synth import generate_population
from riskstrat.features.engine import PandasEngine
from riskstrat.modeling.split import training_groups
from riskstrat.modeling.train import (assemble, labelled_rows, person_groups, selected_features, suggest_index_dates,
                                      training_design)

# generate_population(start="2021-11-01", years=4) ends on 2025-10-31: a test date of 2024-11-01 has
# its full year of follow-up, and training dates a year or more earlier have horizons that end by it.
TRAIN_DATES = ["2023-08-01", "2023-11-01"]
TEST_DATE = "2024-11-01"


def config(train=TRAIN_DATES, test=TEST_DATE, *more: str):
    return load_config(None, [f"index_dates.train=[{', '.join(train)}]", f"index_dates.test={test}", *more])


# ----------------------------------------------------------------------------- person groups


@pytest.fixture(scope="module")
def ids() -> list[str]:
    return [f"person-{i:05d}" for i in range(10_000)]


def test_person_groups_are_deterministic_with_the_requested_fractions(ids):
    groups = person_groups(ids, test_fraction=0.3, calibration_fraction=0.15, seed=42)
    pd.testing.assert_series_equal(groups, person_groups(ids, test_fraction=0.3, calibration_fraction=0.15, seed=42))
    assert list(groups.index) == ids  # one group per person
    shares = groups.value_counts(normalize=True)
    assert set(shares.index) == {"train", "calibration", "test"}
    assert shares["test"] == pytest.approx(0.30, abs=0.02)
    assert shares["calibration"] == pytest.approx(0.15, abs=0.02)
    assert shares["train"] == pytest.approx(0.55, abs=0.02)


def test_a_persons_group_does_not_depend_on_who_else_is_in_the_data(ids):
    full = person_groups(ids, test_fraction=0.3, calibration_fraction=0.15, seed=42)
    some = ids[::-7] + ids[:3]  # another order, a subset, and repeats
    part = person_groups(some, test_fraction=0.3, calibration_fraction=0.15, seed=42)
    assert part.index.is_unique
    pd.testing.assert_series_equal(part, full.reindex(part.index))


def test_another_seed_gives_another_split(ids):
    a = person_groups(ids, test_fraction=0.3, calibration_fraction=0.15, seed=42)
    b = person_groups(ids, test_fraction=0.3, calibration_fraction=0.15, seed=43)
    assert (a != b).mean() > 0.3


# ----------------------------------------------------------------------------- assembling rows


@pytest.fixture(scope="module")
def population():
    result = generate_population(3000, start="2021-11-01", years=4, seed=42, truth_dates=[])
    assert result.metadata["extract_end"] == "2025-10-31"
    return LinkedRecords(result.tables), result.metadata["extract_end"]


@pytest.fixture(scope="module")
def assembled(population):
    records, extract_end = population
    return assemble(records, config(), extract_end=extract_end)


def test_no_person_is_in_two_of_training_calibration_and_test(assembled):
    train, cal, test = (set(x.index) for x in (assembled.X_train, assembled.X_cal, assembled.X_test))
    assert train and cal and test
    assert not train & cal and not train & test and not cal & test


def test_training_rows_stack_people_over_the_training_dates(assembled):
    counts = assembled.counts
    assert counts["train_rows"] == len(assembled.X_train) == len(assembled.y_train)
    assert counts["train_people"] < counts["train_rows"] <= len(TRAIN_DATES) * counts["train_people"]
    assert set(np.unique(assembled.y_train)) == {0, 1}


def test_test_rows_are_one_per_person_at_the_test_date(assembled):
    assert assembled.X_test.index.is_unique
    assert (assembled.meta_test["index_date"] == pd.Timestamp(TEST_DATE)).all()
    assert len(assembled.meta_test) == len(assembled.X_test) == len(assembled.y_test)
    assert (assembled.meta_test["age"] >= 18).all()


def test_features_are_the_selected_ones(population, assembled):
    records, _ = population
    names = selected_features(config(), records.sources, assembled.spec)
    assert assembled.feature_names == names and names[:len(selected_features(config(), records.sources))] == \
        selected_features(config(), records.sources)  # the clinical features, then the generic covariates
    assert list(assembled.X_train.columns) == names == list(assembled.X_test.columns)
    dropped = selected_features(config(TRAIN_DATES, TEST_DATE, "data.exclude_sources=[social_care]",
                                       "features.exclude=[age,gp_contacts__count_90d]"), records.sources,
                                assembled.spec)
    assert "home_care_at_index" not in dropped and "age" not in dropped and "ltc_count" in dropped
    assert "gp_contacts__count_90d" not in dropped and "gp_contacts__count_365d" in dropped
    assert not any(n.startswith("social_care__") for n in dropped)


def test_each_part_is_its_dates_rows_in_one_row_major_matrix(population, assembled):
    """The parts are the labelled rows of each date's feature frame, stacked in date order; their features
    are one row-major float64 matrix that the frame holds without a copy (LightGBM's Dataset and the
    logistic solver take it as it is)."""

    records, extract_end = population
    cfg, engine = config(), PandasEngine(records)
    groups = training_groups(records.persons["person_id"], training_design(cfg))
    names = assembled.feature_names
    expected = {"train": [], "calibration": []}
    for d in cfg.index_dates.train:
        f = labelled_rows(engine, engine.tables(cfg.target.tables), cfg, d, extract_end=pd.Timestamp(extract_end),
                          spec=assembled.spec)
        f = f[f["label"].notna()]
        for part in expected:
            expected[part].append(f.loc[groups.reindex(f.index).to_numpy() == part])
    for part, X, y in (("train", assembled.X_train, assembled.y_train), ("calibration", assembled.X_cal, assembled.y_cal)):
        want = pd.concat(expected[part])
        pd.testing.assert_frame_equal(X, want[names])
        np.testing.assert_array_equal(y, want["label"].to_numpy(int))
        values = X.to_numpy()
        assert values.flags["C_CONTIGUOUS"] and values.dtype == np.float64
        # Two reads share memory: the frame hands out its one matrix, not a copy made per read (as a frame of
        # several blocks, or of a copy per column, would).
        assert np.shares_memory(values, X.to_numpy())


def test_training_label_windows_end_by_the_test_date(population, assembled):
    cfg = config()
    horizon = pd.Timedelta(days=cfg.target.horizon_days)
    assert all(pd.Timestamp(d) + horizon <= pd.Timestamp(cfg.index_dates.test) for d in cfg.index_dates.train)
    # Behaviour: deleting everything that happens to non-test people on or after the test date
    # (events and deaths) changes nothing in the training and calibration rows.
    records, extract_end = population
    after = _without_future_of_non_test_people(records, cfg)
    again = assemble(after, cfg, extract_end=extract_end)
    for part in ("X_train", "X_cal", "X_test"):
        pd.testing.assert_frame_equal(getattr(again, part), getattr(assembled, part))
    for part in ("y_train", "y_cal", "y_test"):
        np.testing.assert_array_equal(getattr(again, part), getattr(assembled, part))


@pytest.fixture(scope="module")
def temporal_only(population):
    records, extract_end = population
    return assemble(records, config(TRAIN_DATES, TEST_DATE, "split.mode=temporal_only"), extract_end=extract_end)


def test_temporal_only_tests_everyone_at_the_test_date(population, assembled, temporal_only):
    records, _ = population
    test = set(temporal_only.X_test.index)
    train, cal = set(temporal_only.X_train.index), set(temporal_only.X_cal.index)
    # Everyone eligible (and not censored) at the test date, the training and calibration people included.
    assert train & test and cal & test and set(assembled.X_test.index) < test
    assert len(test) > 3 * len(assembled.X_test)
    assert (temporal_only.meta_test["index_date"] == pd.Timestamp(TEST_DATE)).all()
    # Training and calibration people are still apart, and no test-date row is a training row.
    assert not train & cal
    assert len(temporal_only.X_train) == temporal_only.counts["train_rows"]
    train_dates = {pd.Timestamp(d) for d in TRAIN_DATES}
    assert temporal_only.counts["test_rows"] == len(temporal_only.y_test) == temporal_only.X_test.index.nunique()
    assert temporal_only.meta_test["index_date"].isin(train_dates).sum() == 0


def test_temporal_only_trains_on_the_same_split_of_the_non_test_people(assembled, temporal_only):
    # The same calibration people as the default; the default's test people join the training people.
    assert set(temporal_only.X_cal.index) == set(assembled.X_cal.index)
    cfg = config()
    groups = person_groups(list(temporal_only.X_train.index.unique()), test_fraction=cfg.split.test_fraction,
                           calibration_fraction=cfg.split.calibration_fraction, seed=cfg.split.seed)
    joined = set(temporal_only.X_train.index) - set(assembled.X_train.index)
    assert set(assembled.X_train.index) < set(temporal_only.X_train.index)
    assert joined and (groups.reindex(list(joined)) == "test").all()


def test_suggested_index_dates_fit_this_extract():
    assert suggest_index_dates("2025-10-31", n_train=2) == (TRAIN_DATES, TEST_DATE)


def test_training_dates_whose_horizon_passes_the_test_date_are_refused(population):
    records, extract_end = population
    try:
        cfg = config(["2023-11-01", "2024-02-01"], TEST_DATE)
    except ConfigError:
        return  # refused when the config is read: fine
    with pytest.raises(ValueError, match="test"):
        assemble(records, cfg, extract_end=extract_end)


def _without_future_of_non_test_people(records: LinkedRecords, cfg) -> LinkedRecords:
    test_date = pd.Timestamp(cfg.index_dates.test)
    groups = person_groups(records.persons["person_id"], test_fraction=cfg.split.test_fraction,
                           calibration_fraction=cfg.split.calibration_fraction, seed=cfg.split.seed)
    others = set(groups.index[groups != "test"])
    tables = {}
    for name, df in records.tables.items():
        mine = df["person_id"].isin(others)
        if name == "persons":
            df = df.copy()
            df.loc[mine & (df["death_date"] >= test_date), "death_date"] = pd.NaT
        else:
            df = df[~(mine & (df[TABLES[name].event_date] >= test_date))].reset_index(drop=True)
        tables[name] = df
    return LinkedRecords(tables)
