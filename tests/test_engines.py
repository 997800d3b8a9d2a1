"""Feature engines equal the reference: DuckDB's features against ``build_features`` on the same files.

Every case writes Parquet, then compares ``folder_engine(folder).features(T)`` with
``build_features(load_records(folder), T)``: same index, columns and dtypes, values to 1e-9.
Dates are ``at(n)``: n days after T (negative = before T). ``folder_engine`` is the DuckDB engine
here; ``test_engine_spark.py`` runs the same cases with the Spark engine by overriding it.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskstrat.features.engine import PandasEngine, open_engine
from riskstrat.features import duckdb as duckdb_engine
from riskstrat.features.duckdb import DuckDBEngine, EngineDataError, EngineMemoryError, default_memory_limit
from riskstrat.features.generic import generic_spec
from riskstrat.features.spec import AGGREGATES, aggregate, compact, derive, spec_hash
from riskstrat.features.clinical import FEATURE_NAMES
from riskstrat.features.reference import build_features
from riskstrat.modeling.config import DataConfig
from riskstrat.data.io import write_records_tables
from riskstrat.data.schema import ADMISSION_METHODS, AE_DEPARTMENT_TYPES, EVENT_TABLES, LONG_TERM_CONDITIONS, SOCIAL_CARE_TYPES
from riskstrat.data.validate import ValidationError, load_records, validate_data_dir

T = pd.Timestamp("2024-01-01")


def at(days: int) -> pd.Timestamp:
    return T + pd.Timedelta(days=days)


def person(pid: str, birth="1950-06-15", **kw) -> dict:
    return {"person_id": pid, "birth_date": birth, **kw}


def write(folder: Path, make_table, **tables: list[dict]) -> Path:
    return write_records_tables({name: make_table(name, rows) for name, rows in tables.items()}, folder)


@pytest.fixture(scope="module")
def folder_engine():
    """The engine under test, called as ``folder_engine(folder, **options)``."""
    return DuckDBEngine


def assert_engines_agree(folder: Path, index_date=T, *, engine, **options) -> pd.DataFrame:
    reference = build_features(load_records(folder), index_date, **options)
    got = engine(folder).features(index_date, **options)
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    return got


# ----------------------------------------------------------------------------- the definitions


def test_every_model_feature_is_an_aggregate_or_derived():
    aggregated = {a.name for a in AGGREGATES}
    derived = {"age", "sex_female", "deprivation_decile", "ltc_count", "years_since_first_ltc", "cost_hospital_12m",
               "cost_primary_12m", "cost_social_care_12m", "cost_total_12m", "frailty_deficits"}
    derived |= {f"ltc_{c}" for c in LONG_TERM_CONDITIONS}
    assert set(FEATURE_NAMES) == (aggregated - {a.name for a in AGGREGATES if a.name.startswith("_")}) | derived
    assert aggregate("days_since_emergency_admission").window == (1, 730)
    assert len(spec_hash()) == 16


def test_derive_without_event_tables_leaves_their_features_missing():
    people = pd.DataFrame({"age": [90.123, 40.0], "sex": ["female", "male"], "deprivation_decile": [3, None]},
                          index=pd.Index(["a", "b"], name="person_id"))
    f = derive(people, {}, set())
    assert f.loc["a", "age"] == 90.12 and f.loc["a", "frailty_deficits"] == 1.0  # age 85+
    assert np.isnan(f.loc["b", "deprivation_decile"]) and f["ltc_count"].isna().all()
    assert f["cost_total_12m"].isna().all()


# ----------------------------------------------------------------------------- synthetic population


@pytest.fixture(scope="module")
def synthetic(synthetic_2000) -> Path:
    """2,000 synthetic people (conftest's session-wide folder; read only)."""
    return synthetic_2000


@pytest.mark.parametrize(("index_date", "options"), [
    ("2024-11-01", {}), ("2025-10-01", {}), ("2023-02-14", {"min_age": 65, "max_age": 90})])
def test_equal_to_the_reference_on_a_synthetic_population(folder_engine, synthetic, index_date, options):
    got = assert_engines_agree(synthetic, pd.Timestamp(index_date), engine=folder_engine, **options)
    assert len(got) > 300 and (got["emergency_admissions_0_3m"] > 0).any()


def test_the_months_aggregates_kept_compact_give_every_block_of_the_frame_bit_for_bit(folder_engine, synthetic,
                                                                                       monkeypatch):
    # Scoring keeps the aggregates (each in the smallest exact type, taken from the engine's result a part
    # at a time) and derives the frame a block of people at a time.
    whole = folder_engine(synthetic).features("2025-10-01")
    parts = []

    def in_parts(self, plan, t, aggregates):
        frame, _ = self._aggregate_frame(plan, t, aggregates)
        for i in range(0, len(frame), 300):
            parts.append(plan.table.name)
            yield frame.iloc[i:i + 300], int(frame["_read"].iloc[i:i + 300].sum())

    monkeypatch.setattr(folder_engine, "_aggregate_parts", in_parts)
    kept = folder_engine(synthetic).person_aggregates("2025-10-01", compact=True)
    assert parts.count("prescriptions") > 2
    stored = sum(v.nbytes for v in kept.values.values())
    assert len(kept) == len(whole) and stored < 0.4 * 8 * len(kept) * len(kept.values)
    assert kept.columns == list(whole.columns)
    blocks = pd.concat([kept.frame(slice(i, i + 300)) for i in range(0, len(kept), 300)])
    pd.testing.assert_frame_equal(blocks, whole, check_exact=True)
    some = np.random.default_rng(7).permutation(len(kept))[:250]
    pd.testing.assert_frame_equal(kept.frame(some), whole.iloc[some], check_exact=True)


@pytest.mark.parametrize(("values", "dtype"), [
    ([0.0, 3.0, 255.0], "uint8"), ([-1.0, 7.0], "int8"), ([0.0, 70_000.0], "uint32"), ([731.0, 12.0, np.nan], "float16"),
    ([9_000.0, np.nan], "float32"), ([1.25, 0.5], "float32"), ([12.34, 0.0], "float64"), ([0.0, -0.0], "float64"),
    ([np.inf, 1.0], "float32"), ([], "float64")])
def test_compact_keeps_each_value_bit_for_bit_in_the_smallest_type(values, dtype):
    x = np.array(values, dtype="float64")
    small = compact(x)
    assert small.dtype == dtype
    assert np.array_equal(small.astype("float64").view("int64"), x.view("int64"))


def test_the_engine_knows_its_sources_and_dates(folder_engine, synthetic):
    reference = PandasEngine(load_records(synthetic))
    engine = folder_engine(synthetic)
    assert engine.sources == reference.sources and engine.has("social_care")
    assert engine.date_range() == reference.date_range()
    pd.testing.assert_frame_equal(engine.event_months(), reference.event_months())
    without = folder_engine(synthetic, exclude_sources=["social_care"])
    assert not without.has("social_care")
    assert without.features("2024-11-01")["home_care_at_index"].isna().all()


def test_open_engine_by_name(synthetic):
    cfg = DataConfig(path=synthetic)
    assert isinstance(open_engine("duckdb", cfg), DuckDBEngine)
    assert isinstance(open_engine("pandas", cfg), PandasEngine)
    with pytest.raises(ValueError, match="unknown engine 'polars'; choose from pandas, duckdb, spark"):
        open_engine("polars", cfg)


def test_the_duckdb_memory_limit_comes_from_the_data_config(synthetic):
    from pydantic import ValidationError

    engine = open_engine("duckdb", DataConfig(path=synthetic, duckdb_memory_limit="512MB"))
    assert engine.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "488.2 MiB"
    unlimited = open_engine("duckdb", DataConfig(path=synthetic))
    assert unlimited.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != "488.2 MiB"
    with pytest.raises(ValidationError, match="duckdb_memory_limit"):
        DataConfig(path=synthetic, duckdb_memory_limit="lots")


def test_duckdb_without_a_limit_gets_half_the_available_memory_not_duckdbs_80_percent(synthetic, monkeypatch):
    assert default_memory_limit(available_bytes=8 << 30) == "4096MiB"
    assert default_memory_limit(available_bytes=3 << 30) == "1536MiB"
    assert default_memory_limit(available_bytes=1 << 29) == "1024MiB"  # at least 1 GiB, however little is free
    # A container's limit counts where it leaves less than the host's MemAvailable (which does not show it).
    assert default_memory_limit(available_bytes=16 << 30, cgroup_bytes=4 << 30) == "2048MiB"
    assert default_memory_limit(available_bytes=4 << 30, cgroup_bytes=16 << 30) == "2048MiB"
    monkeypatch.setattr(duckdb_engine, "default_memory_limit", lambda: "1536MiB")
    engine = open_engine("duckdb", DataConfig(path=synthetic))
    assert engine.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "1.5 GiB"
    monkeypatch.setattr(duckdb_engine, "default_memory_limit", lambda: "1MiB")  # the refusal says it was chosen
    with pytest.raises(EngineMemoryError, match=r"data.duckdb_memory_limit is unset: half the memory available when "
                                                r"the engine opened, 1MiB\).*--set data.duckdb_memory_limit="):
        open_engine("duckdb", DataConfig(path=synthetic)).features("2024-11-01")


def test_duckdb_spills_into_a_private_temporary_folder_not_the_current_one(synthetic, tmp_path, monkeypatch):
    import gc
    import tempfile



    monkeypatch.chdir(tmp_path)
    engine = open_engine("duckdb", DataConfig(path=synthetic, duckdb_memory_limit="512MB"))
    spill = Path(engine.con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
    assert spill.is_dir() and spill.parent == Path(tempfile.gettempdir()) and spill.name.startswith("riskstrat-duckdb-")
    engine.features("2024-11-01")
    assert not (tmp_path / ".tmp").exists()
    del engine
    gc.collect()
    assert not spill.exists()  # removed with the engine


def test_duckdb_out_of_memory_is_a_refusal_naming_the_setting(synthetic):
    from riskstrat.features.duckdb import EngineMemoryError
    from riskstrat.errors import RiskstratError

    with pytest.raises(EngineMemoryError, match=r"ran out of memory \(data.duckdb_memory_limit is 1MB\).*--set "
                                                r"data.duckdb_memory_limit=") as raised:
        open_engine("duckdb", DataConfig(path=synthetic, duckdb_memory_limit="1MB")).features("2024-11-01")
    assert isinstance(raised.value, RiskstratError)  # the CLI prints it and exits 2, no traceback


def test_duckdb_on_a_truncated_parquet_file_names_it(synthetic, tmp_path):
    import shutil


    from riskstrat.features.duckdb import EngineDataError

    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    path = data / "gp_contacts.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EngineDataError, match=r"cannot read the data: .*gp_contacts.parquet"):
        open_engine("duckdb", DataConfig(path=data)).features("2024-11-01")


# ----------------------------------------------------------------------------- hand-made edge cases


def spell(pid, admitted, discharged=None, method="emergency", cost=None, diagnosis=None, **kw) -> dict:
    return {"person_id": pid, "admission_date": admitted, "discharge_date": discharged, "admission_method": method,
            "cost": cost, "primary_diagnosis": diagnosis, **kw}


def test_empty_event_tables(folder_engine, tmp_path, make_table):
    folder = write(tmp_path / "d", make_table, persons=[person("a"), person("b")],
                   **{name: [] for name in EVENT_TABLES})
    f = assert_engines_agree(folder, engine=folder_engine)
    assert (f["emergency_admissions_0_3m"] == 0).all() and (f["days_since_ae"] == 731).all()


def test_absent_optional_tables(folder_engine, tmp_path, make_table):
    folder = write(tmp_path / "d", make_table, persons=[person("a")],
                   gp_contacts=[{"person_id": "a", "contact_date": at(-5), "cost": 40.0}])
    f = assert_engines_agree(folder, engine=folder_engine)
    assert f.loc["a", "gp_contacts_0_3m"] == 1 and np.isnan(f.loc["a", "emergency_admissions_0_3m"])


def test_only_persons(folder_engine, tmp_path, make_table):
    assert_engines_agree(write(tmp_path / "d", make_table, persons=[person("a"), person("young", birth="2010-01-01")]),
                         engine=folder_engine)


def windows_case() -> dict[str, list[dict]]:
    """Person "a" with events on every window's edges, and "nobody" without events."""
    days = (0, -1, -91, -92, -365, -366, -730, -731, 3)
    return {
        "persons": [person("a"), person("nobody")],
        "inpatient_spells": [spell("a", at(d), at(d + 5), method=m, cost=2.0 ** i, diagnosis=dx)
                             for i, (d, m, dx) in enumerate(itertools.product(days, ("emergency", "elective"),
                                                                              (None, "S72.1", "W01", "I21")))],
        # Every department type and a blank one on each day: only ED, single-specialty and unknown (blank) count.
        "ae_attendances": [{"person_id": "a", "arrival_date": at(d), "cost": 150.0, "department_type": kind}
                           for d in days for kind in (None, *AE_DEPARTMENT_TYPES)],
        "outpatient_appointments": [{"person_id": "a", "appointment_date": at(d), "attended": d % 2 == 0,
                                     "cost": 120.0} for d in days],
        "gp_contacts": [{"person_id": "a", "contact_date": at(d), "cost": None} for d in days],
        "prescriptions": [{"person_id": "a", "issue_date": at(d), "bnf_chapter": ch, "cost": 1.5}
                          for d in days for ch in ("02", "04", "unknown")],
        "ltc_register": [{"person_id": "a", "condition": c, "diagnosis_date": at(d)}
                         for c, d in zip(LONG_TERM_CONDITIONS, (-4000, -1461, -183, 0, 1, -1, -730, -731))],
        "social_care": [{"person_id": "a", "service_type": s, "start_date": at(start), "end_date": end,
                         "weekly_cost": 100.0}
                        for s, start, end in [("home_care", -50, None), ("residential", -500, at(0)),
                                              ("nursing", -10, at(-1)), ("reablement", -365, at(-300)),
                                              ("reablement", -366, None), ("day_care", 0, None)]],
    }


def test_windows_events_on_T_and_people_without_events(folder_engine, tmp_path, make_table):
    folder = write(tmp_path / "d", make_table, **windows_case())
    f = assert_engines_agree(folder, engine=folder_engine)
    assert f.loc["a", "emergency_admissions_0_3m"] == 8 and f.loc["a", "days_since_emergency_admission"] == 1
    # Days -1 and -91, three counted kinds each: ED, single specialty, unknown (a blank type is unknown, so
    # that row repeats the unknown one exactly and validation keeps one).
    assert f.loc["a", "ae_attendances_0_3m"] == 6 and f.loc["a", "days_since_ae"] == 1
    assert f.loc["nobody", "rx_chapters_12m"] == 0 and f.loc["nobody", "days_since_social_care_start"] == 731


def out_of_life_case() -> dict[str, list[dict]]:
    """Events before birth and after death, exact repeats and visits told apart by record_id."""
    return {
        "persons": [person("died", death_date=at(-30)), person("dies_later", death_date=at(40)),
                    person("young", birth="2005-06-01")],
        # An LTC before birth counts in no look-back: validation drops it, so must the engine.
        "ltc_register": [{"person_id": "young", "condition": "asthma", "diagnosis_date": "2001-01-01"},
                         {"person_id": "young", "condition": "epilepsy", "diagnosis_date": "2010-01-01"}],
        "inpatient_spells": [spell("died", at(-100), at(-90)), spell("dies_later", at(-5), at(60), cost=10.0),
                             spell("young", "2004-01-01", "2004-01-02"),
                             spell("dies_later", at(-20), at(-18), cost=7.0),
                             spell("dies_later", at(-20), at(-18), cost=7.0),                 # an exact repeat
                             spell("dies_later", at(-20), at(-18), cost=7.0, record_id="x"),  # another visit
                             spell("dies_later", at(-20), at(-18), cost=7.0, record_id="y")],
        "social_care": [{"person_id": "dies_later", "service_type": "home_care", "start_date": at(-100),
                         "end_date": at(100), "weekly_cost": 70.0}],
        "gp_contacts": [{"person_id": "dies_later", "contact_date": at(-3)}] * 3,
    }


def test_out_of_life_events_repeats_and_record_ids(folder_engine, tmp_path, make_table):
    folder = write(tmp_path / "d", make_table, **out_of_life_case())
    f = assert_engines_agree(folder, engine=folder_engine)
    assert f.loc["dies_later", "emergency_admissions_0_3m"] == 4  # the repeat removed, the two visits kept
    assert f.loc["dies_later", "gp_contacts_0_3m"] == 1
    assert f.loc["young", "ltc_asthma"] == 0 and f.loc["young", "ltc_epilepsy"] == 1
    assert "died" not in f.index
    assert_engines_agree(folder, engine=folder_engine, min_age=0)


def _raw_parquet(folder: Path, name: str, columns: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / f"{name}.parquet")


def test_duckdb_aggregates_in_blocks_of_people_equal_the_whole_pass(synthetic, tmp_path, make_table, monkeypatch):
    # A table too big for DuckDB's memory is aggregated in blocks of people (each rescanning the file), so that
    # the repeats it removes fit: the same features bit for bit, and the same findings.
    from riskstrat.features.duckdb import DuckDBEngine

    repeats = write(tmp_path / "d", make_table, **out_of_life_case())
    for folder, date, limit in ((synthetic, "2025-10-01", 20_000), (repeats, T, 100)):
        whole_engine = DuckDBEngine(folder)
        whole = whole_engine.features(date)
        assert whole_engine._person_blocks(whole_engine.plans["prescriptions" if folder == synthetic else "gp_contacts"],
                                           pd.Timestamp(date), None) == 1
        blocked = DuckDBEngine(folder)
        monkeypatch.setattr(blocked, "_memory_limit_bytes", lambda: limit)  # a few hundred rows a block (one, tiny)
        queries = []
        execute = blocked.con.execute
        monkeypatch.setattr(blocked.con, "execute", lambda sql, *a: queries.append(sql) or execute(sql, *a))
        pd.testing.assert_frame_equal(blocked.features(date), whole, check_exact=True)
        assert sum("hash(person_id) % " in q for q in queries) > (10 if folder == synthetic else 1)
        assert blocked.report.to_dict() == whole_engine.report.to_dict()
        monkeypatch.undo()


def test_codes_written_loosely_are_read_as_validation_reads_them(folder_engine, tmp_path):
    folder = tmp_path / "d"
    _raw_parquet(folder, "persons", {"person_id": [" a", "b"], "birth_date": pa.array([pd.Timestamp("1950-01-01").date()] * 2),
                                     "sex": ["Female", "MALE"], "practice_id": ["P1", "P2"],
                                     "notes": ["x", "y"]})
    _raw_parquet(folder, "inpatient_spells", {
        "person_id": ["a", "b ", "a"], "admission_date": pa.array([at(-10).date(), at(-400).date(), at(-10).date()]),
        "discharge_date": pa.array([at(-9).date(), None, at(-9).date()], type=pa.date32()),
        "Admission_Method": ["Emergency ", "elective", "emergency"], "cost": [1.0, float("nan"), 1.0]})
    _raw_parquet(folder, "prescriptions", {
        "person_id": ["a", "a", "b"], "issue_date": pa.array([at(-10).date()] * 3),
        "bnf_chapter": ["2", "02 ", "4.0"], "ward": ["w1", "w2", "w1"]})
    f = assert_engines_agree(folder, engine=folder_engine)
    assert f.loc["a", "emergency_admissions_0_3m"] == 1  # "Emergency " and "emergency" are one repeated row
    assert f.loc["a", "rx_bnf02_items_12m"] == 2  # distinct by the extra column "ward"


@pytest.mark.parametrize(("table", "columns", "rule"), [
    ("gp_contacts", {"person_id": ["nobody"], "contact_date": [at(-3).date()]}, "unknown_person"),
    ("inpatient_spells", {"person_id": ["a"], "admission_date": [at(-3).date()], "discharge_date": [at(-5).date()],
                          "admission_method": ["emergency"]}, "end_before_start"),
    ("inpatient_spells", {"person_id": ["a"], "admission_date": [at(-3).date()], "discharge_date": [None],
                          "admission_method": ["by ambulance"]}, "unknown_code"),
    ("gp_contacts", {"person_id": ["a"], "contact_date": [at(-3).date()], "cost": [-5.0]}, "negative_cost"),
    ("gp_contacts", {"person_id": ["a", None], "contact_date": [at(-3).date()] * 2}, "missing_value"),
    ("gp_contacts", {"person_id": ["a"]}, "missing_column"),
    ("persons", {"person_id": ["a", "a"], "birth_date": [pd.Timestamp("1950-01-01").date()] * 2,
                 "sex": ["female"] * 2, "practice_id": ["P", "Q"]}, "duplicate_person"),
    ("persons", {"person_id": ["a", "b"], "birth_date": [pd.Timestamp("1950-01-01").date()] * 2,
                 "sex": ["female"] * 2, "practice_id": ["P001", "p001"]}, "practice_id_case_collision"),
])
def test_data_that_validation_refuses_the_engine_refuses(folder_engine, tmp_path, table, columns, rule):
    folder = tmp_path / "d"
    _raw_parquet(folder, "persons", {"person_id": ["a"], "birth_date": [pd.Timestamp("1950-01-01").date()],
                                     "sex": ["female"], "practice_id": ["P"]})
    _raw_parquet(folder, table, columns)
    with pytest.raises(ValidationError) as reference:
        load_records(folder)
    with pytest.raises(ValidationError) as got:
        folder_engine(folder).features(T)
    rules = {i.rule for i in got.value.report.errors}
    assert rule in rules and rules == {i.rule for i in reference.value.report.errors}


def _persons_issues(report) -> list[tuple]:
    return [(i.table, i.column, i.rule, i.severity, i.n_rows, i.examples, i.message) for i in report.issues
            if i.table == "persons"]


def test_practice_ids_one_apart_by_case_or_white_space_are_reported_as_validation_reports_them(folder_engine,
                                                                                                tmp_path):
    # P001/p001 would share a folder on a case-insensitive file system; "Q1\n" is read as Q1 (said).
    persons = {"person_id": ["a", "b", "c", "d"], "birth_date": [pd.Timestamp("1950-01-01").date()] * 4,
               "sex": ["female"] * 4, "practice_id": ["P001", "p001", "Q1\n", "Q1"]}
    _raw_parquet(tmp_path / "refused", "persons", persons)
    with pytest.raises(ValidationError) as reference:
        load_records(tmp_path / "refused")
    with pytest.raises(ValidationError) as got:
        folder_engine(tmp_path / "refused")
    assert _persons_issues(got.value.report) == _persons_issues(reference.value.report)
    assert [i[2:5] for i in _persons_issues(got.value.report)] == [
        ("practice_id_case_collision", "error", 2), ("practice_id_trimmed", "warning", 2)]

    _raw_parquet(tmp_path / "kept", "persons", {**persons, "practice_id": ["P001", "P001", "Q1\n", "Q1"]})
    records, reference = validate_data_dir(tmp_path / "kept")
    engine = folder_engine(tmp_path / "kept")
    assert _persons_issues(engine.report) == _persons_issues(reference)
    assert [i[2] for i in _persons_issues(reference)] == ["practice_id_trimmed"]
    assert engine.persons["practice_id"].tolist() == records.persons["practice_id"].tolist() == ["P001"] * 2 + ["Q1"] * 2


def test_unknown_codes_dropped_as_validation_drops_them(folder_engine, tmp_path):
    _raw_parquet(tmp_path, "persons", {"person_id": ["a"], "birth_date": [pd.Timestamp("1950-01-01").date()],
                                       "sex": ["female"], "practice_id": ["P"]})
    _raw_parquet(tmp_path, "social_care", {"person_id": ["a"] * 3, "start_date": [at(-9).date()] * 3,
                                           "service_type": ["home_care", "meals", "Residential"],
                                           "end_date": pa.array([None] * 3, type=pa.date32())})
    reference = build_features(load_records(tmp_path, unknown_codes="drop"), T)
    got = folder_engine(tmp_path, unknown_codes="drop").features(T)
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    assert got.loc["a", ["home_care_at_index", "care_home_at_index"]].tolist() == [1, 1]


def test_a_csv_folder_is_refused_with_what_to_do(folder_engine, tmp_path):
    (tmp_path / "persons.csv").write_text("person_id,birth_date,sex,practice_id\na,1950-01-01,female,P\n")
    with pytest.raises(EngineDataError, match="Parquet only.*--engine pandas"):
        folder_engine(tmp_path)


def test_text_dates_are_refused_with_what_to_do(folder_engine, tmp_path):
    _raw_parquet(tmp_path, "persons", {"person_id": ["a"], "birth_date": ["1950-01-01"], "sex": ["female"],
                                       "practice_id": ["P"]})
    _raw_parquet(tmp_path, "gp_contacts", {"person_id": ["a"], "contact_date": ["2023-12-01"]})
    with pytest.raises(EngineDataError, match=r"contact_date: stored as (VARCHAR|string), .* reads it as date only.*"
                                              r"riskstrat import"):
        folder_engine(tmp_path)


# ----------------------------------------------------------------------------- random linked records

_PEOPLE = ("a", "b", "c", "d")
# Days drawn near the window edges (T, 3, 12 and 24 months before) as often as anywhere else.
_day = st.one_of(st.sampled_from([0, -1, -91, -92, -365, -366, -730, -731, 1]), st.integers(-900, 60))
_money = st.one_of(st.none(), st.sampled_from([0.0, 12.5, 99.99, 1234.0]))


def _row(table: str):
    pid = st.sampled_from(_PEOPLE)
    if table == "inpatient_spells":
        return st.builds(lambda p, d, k, m, dx, c: spell(p, at(d), None if k is None else at(d + k), m, c, dx),
                         pid, _day, st.one_of(st.none(), st.integers(0, 40)), st.sampled_from(ADMISSION_METHODS),
                         st.sampled_from([None, "S72.0", "W10", "J44"]), _money)
    if table == "ae_attendances":
        return st.builds(lambda p, d, c, k: {"person_id": p, "arrival_date": at(d), "cost": c, "department_type": k},
                         pid, _day, _money, st.sampled_from([None, *AE_DEPARTMENT_TYPES]))
    if table == "outpatient_appointments":
        return st.builds(lambda p, d, a, c: {"person_id": p, "appointment_date": at(d), "attended": a, "cost": c},
                         pid, _day, st.booleans(), _money)
    if table == "gp_contacts":
        return st.builds(lambda p, d, c: {"person_id": p, "contact_date": at(d), "cost": c}, pid, _day, _money)
    if table == "ltc_register":
        return st.builds(lambda p, d, c: {"person_id": p, "condition": c, "diagnosis_date": at(d)}, pid,
                         st.integers(-30000, 30), st.sampled_from(list(LONG_TERM_CONDITIONS)))
    if table == "prescriptions":
        return st.builds(lambda p, d, ch, c: {"person_id": p, "issue_date": at(d), "bnf_chapter": ch, "cost": c},
                         pid, _day, st.sampled_from(["01", "02", "03", "06", "09", "unknown"]), _money)
    return st.builds(_service, pid, st.sampled_from(SOCIAL_CARE_TYPES), st.integers(-900, 30),
                     st.one_of(st.none(), st.integers(0, 500)), _money)


def _service(pid, service, start, length, cost) -> dict:
    return {"person_id": pid, "service_type": service, "start_date": at(start),
            "end_date": None if length is None else at(start + length), "weekly_cost": cost}


@st.composite
def _linked(draw):
    persons = [person(pid, birth=at(-draw(st.integers(365 * 17, 365 * 95))),
                      death_date=draw(st.one_of(st.none(), st.integers(-400, 200).map(at))),
                      sex=draw(st.sampled_from(["female", "male"]))) for pid in _PEOPLE]
    tables = {"persons": persons}
    for name in draw(st.sets(st.sampled_from(EVENT_TABLES))):
        rows = draw(st.lists(_row(name), max_size=8))
        tables[name] = rows + draw(st.lists(st.sampled_from(rows), max_size=2)) if rows else rows  # repeats
    return tables


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=_linked())
def test_random_linked_records_give_the_same_features(folder_engine, make_table, tables):
    with tempfile.TemporaryDirectory() as tmp:
        assert_engines_agree(write(Path(tmp) / "d", make_table, **tables), engine=folder_engine, min_age=0)


def test_both_engines_find_the_data_end_without_dataset_json_and_ignore_future_dates(folder_engine, tmp_path,
                                                                                    make_table):
    # A canonical folder of the user's own (no dataset.json): scoring reads the data end from the
    # events, ignoring a date in the future (a typo like 2099 must not move it). This crashed
    # through an engine, whose date_range did not take ``until``.

    from riskstrat.data.data_end import DataEnd, data_end_of

    folder = write(tmp_path / "own", make_table, persons=[person("a")],
                   gp_contacts=[{"person_id": "a", "contact_date": "2024-03-05"},
                                {"person_id": "a", "contact_date": "2099-01-01"}])
    cfg = DataConfig(path=folder, out_of_life_events="keep")
    engines = {"pandas": PandasEngine(load_records(folder, out_of_life_events="keep")),
               "folder": folder_engine(folder, out_of_life_events="keep")}
    for name, engine in engines.items():
        assert data_end_of(cfg.path, engine) == DataEnd(pd.Timestamp("2024-03-05"), "event volume"), name


def steady_then_stray(folder: Path, make_table) -> Path:
    """Six people with 30 GP contacts a month from 2023-01 to 2024-06 (and an exact repeat, an event
    before a birth), then one stray contact dated 2025-02-14 (a mistyped year): no dataset.json."""
    contacts = [{"person_id": "abcdef"[k % 6], "contact_date": str((month + pd.Timedelta(days=k)).date())}
                for month in pd.date_range("2023-01-01", "2024-06-01", freq="MS") for k in range(28)]
    contacts += [{"person_id": "a", "contact_date": "2024-06-30"}, {"person_id": "b", "contact_date": "2024-06-30"},
                 {"person_id": "a", "contact_date": "2024-06-30"},  # an exact repeat: one event
                 {"person_id": "f", "contact_date": "1999-05-01"},  # before f was born: dropped
                 {"person_id": "c", "contact_date": "2025-02-14"}]
    return write(folder, make_table, persons=[person(p) for p in "abcde"] + [person("f", birth="2001-01-01")],
                 gp_contacts=contacts)


def test_every_engine_reads_the_data_end_from_the_event_volume_not_a_stray_date(folder_engine, tmp_path,
                                                                                make_table):
    # The red team's case: no dataset.json, steady volume to 2024-06 and one event dated 2025-02. The
    # latest event made 2025-02-14 the data end, so a month scored in 2025-03 passed the staleness check.
    from riskstrat.data.data_end import DataEnd, data_end_of
    from riskstrat.modeling.guards import StaleDataError, check_data_currency

    folder = steady_then_stray(tmp_path / "own", make_table)
    reference = PandasEngine(load_records(folder))
    engine = folder_engine(folder)
    pd.testing.assert_frame_equal(engine.event_months(), reference.event_months())
    assert reference.event_months()["events"].tolist() == [28] * 17 + [30, 1]
    for name, source in [("pandas", reference), ("folder", engine)]:
        found = data_end_of(folder, source)
        assert found == DataEnd(pd.Timestamp("2024-06-30"), "event volume", 1, pd.Timestamp("2025-02-14")), name
        assert "1 event after the data end (2024-06-30; latest 2025-02-14)" in found.warning
        with pytest.raises(StaleDataError, match="data run to 2024-06-30"):
            check_data_currency("2025-03-01", found.end, max_lag_days=62)


def _persons_ab(folder: Path) -> None:
    _raw_parquet(folder, "persons", {"person_id": ["a", "b"], "birth_date": [pd.Timestamp("1950-01-01").date()] * 2,
                                     "sex": ["female", "male"], "practice_id": ["P", "Q"]})


@pytest.mark.parametrize("statistics", [True, False])
@pytest.mark.parametrize("first", ["a", " a"])
def test_ids_and_text_with_white_space_are_cleaned_with_or_without_parquet_statistics(folder_engine, tmp_path,
                                                                                     statistics, first):
    # Ids that only end in white space are found by the join with persons (the file's statistics, or
    # a test of every first character, show that none starts with white space).
    folder = tmp_path / "d"
    _persons_ab(folder)
    pq.write_table(pa.table({
        "person_id": ["a ", "b", "b\t", first], "contact_date": pa.array([at(-3).date(), at(-800).date(),
                                                                          at(-3).date(), at(-3).date()]),
        "contact_type": ["phone", "phone ", "phone", "phone"]}), folder / "gp_contacts.parquet",
        write_statistics=statistics)
    f = assert_engines_agree(folder, engine=folder_engine)
    assert f.loc["a", "gp_contacts_0_3m"] == 1 and f.loc["b", "gp_contacts_0_3m"] == 1  # one repeats "a "
    engine = folder_engine(folder)  # its first query: the date range
    assert engine.date_range() == PandasEngine(load_records(folder)).date_range() == (at(-800), at(-3))
    assert "person_id" not in engine.plans["gp_contacts"].clean


def test_blank_cost_columns_are_reported_as_validation_reports_them(folder_engine, tmp_path, make_table):
    # GP contacts' costs all blank, A&E's column absent, prescriptions partly costed: unknown, not zero.
    from riskstrat.data.validate import validate_data_dir

    folder = write(tmp_path / "d", make_table, persons=[person("a"), person("b")],
                   gp_contacts=[{"person_id": "a", "contact_date": at(-3)}, {"person_id": "b", "contact_date": at(-9)}],
                   prescriptions=[{"person_id": "a", "issue_date": at(-3), "bnf_chapter": "02", "cost": 4.5},
                                  {"person_id": "b", "issue_date": at(-3), "bnf_chapter": "02"}])
    _raw_parquet(folder, "ae_attendances", {"person_id": ["a"], "arrival_date": [at(-5).date()]})
    _, reference = validate_data_dir(folder)
    engine = folder_engine(folder)

    def blank(report):
        return [(i.table, i.column, i.n_rows, i.message) for i in report.issues if i.rule == "blank_cost"]

    assert blank(engine.report) == blank(reference) and len(blank(reference)) == 2
    assert sorted(engine.blank_costs) == sorted(PandasEngine(load_records(folder)).blank_costs) == [
        ("ae_attendances", "cost"), ("gp_contacts", "cost")]


@pytest.mark.parametrize(("columns", "rules"), [
    ({"person_id": ["a", "  "], "contact_date": [at(-3).date()] * 2}, {("missing_value", 1)}),
    ({"person_id": ["a", ""], "contact_date": [at(-3).date()] * 2}, {("missing_value", 1)}),
    ({"person_id": ["a", None, "b"], "contact_date": [at(-3).date(), at(-3).date(), None],
      "cost": [float("nan"), float("inf"), -1.0]}, {("missing_value", 1), ("wrong_type", 1), ("negative_cost", 1)}),
])
def test_check_counts_equal_validation(folder_engine, tmp_path, columns, rules):
    folder = tmp_path / "d"
    _persons_ab(folder)
    _raw_parquet(folder, "gp_contacts", columns)
    with pytest.raises(ValidationError) as reference:
        load_records(folder)
    with pytest.raises(ValidationError) as got:
        folder_engine(folder).features(T)
    counts = {(i.rule, i.n_rows) for i in got.value.report.errors}
    assert counts == rules == {(i.rule, i.n_rows) for i in reference.value.report.errors}


def test_blank_and_unknown_codes_counted_from_one_pass(folder_engine, tmp_path):
    _persons_ab(tmp_path)
    _raw_parquet(tmp_path, "inpatient_spells", {
        "person_id": ["a"] * 5, "admission_date": [at(-3).date()] * 5,
        "discharge_date": pa.array([None] * 5, type=pa.date32()), "admission_method": [" ", None, "Emergency", "by ambulance", "by ambulance"]})
    with pytest.raises(ValidationError) as reference:
        load_records(tmp_path)
    with pytest.raises(ValidationError) as got:
        folder_engine(tmp_path)
    assert {(i.rule, i.n_rows) for i in got.value.report.errors} == {("missing_value", 2), ("unknown_code", 2)} \
        == {(i.rule, i.n_rows) for i in reference.value.report.errors}


# derive's output on a fixed input, per DERIVE_VERSION (a digest of every value to 9 decimals). When
# derive changes what it computes, bump spec.DERIVE_VERSION (models trained before are then refused at
# scoring, as they must be) and add the new version's digest here.
DERIVE_REFERENCE = {1: "9db7adac64fe3e10059ac7c897ac0fcdefa25d9a3b24f6789ec6e9b16169e66a",
                    2: "62d219a6d4bf4a1bb716a03e97d16bc951c2b69d76913e57dbce9017fd26795a"}


def _derive_fixed_input(sources: set[str], aggregates=AGGREGATES) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    n = 36
    j = np.arange(n)
    ages = np.array([18.0, 39.994, 40.0, 54.5, 64.996, 65.0, 74.5, 84.99, 85.0, 85.01, 90.25, 101.0])  # around the bands
    people = pd.DataFrame({"age": ages[j % len(ages)] + 0.001 * (j // len(ages)),
                           "sex": np.where(j % 3 == 0, "female", "male"),
                           "deprivation_decile": pd.array([None if k % 7 == 0 else 1 + k % 10 for k in j], "Int64")},
                          index=pd.Index([f"p{k}" for k in j], name="person_id"))
    values = {}
    for i, a in enumerate(aggregates):
        if a.table not in sources:
            continue
        raw = ((i * 7 + j * 13) % 14).astype("float64")
        if a.kind in ("min_days", "max_days"):
            raw = ((i * 31 + j * 17) % 2000 + 1).astype("float64")
        elif a.kind == "sum":
            raw = ((i * 37 + j * 53) % 1000) * 1.25 + 0.333
        elif a.kind == "any":
            raw = (raw > 6).astype("float64")
        values[a.name] = np.where((i + j) % 4 == 0, a.fill, raw)
    return people, values


def _derive_digest() -> str:
    import hashlib

    every = {a.table for a in AGGREGATES}
    parts = []
    for sources in (every, every - {"social_care", "ltc_register"}, {"inpatient_spells"}):
        frame = derive(*_derive_fixed_input(sources), sources)
        parts.append(frame.round(9).to_csv(float_format="%.9f"))
    # The generic rules (trend, cost; a table without costs) on a generic spec with one group.
    generic = generic_spec({"windows": [90, 365, 730]}, {"gp_contacts": {"column": "contact_type",
                                                                         "values": {"phone": ["phone"]}}},
                           tables=every)
    frame = derive(*_derive_fixed_input(every, generic.aggregates), every, spec=generic, costless={"prescriptions"})
    parts.append(frame.round(9).to_csv(float_format="%.9f"))
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def test_derive_output_is_pinned_by_its_version():
    from riskstrat.features import spec

    digest = _derive_digest()
    assert spec.DERIVE_VERSION in DERIVE_REFERENCE, f"add DERIVE_REFERENCE[{spec.DERIVE_VERSION}] = {digest!r}"
    assert DERIVE_REFERENCE[spec.DERIVE_VERSION] == digest, (
        f"derive's output changed under DERIVE_VERSION {spec.DERIVE_VERSION}: bump spec.DERIVE_VERSION and add "
        f"DERIVE_REFERENCE[{spec.DERIVE_VERSION + 1}] = {digest!r}")


def test_derive_block_into_a_used_block_equals_derive_bit_for_bit():
    # Scoring derives each block of people into the first block's memory (derive_block's ``into``), from the
    # aggregates kept in their smallest exact types (compact): every value as derive's frame, bit for bit,
    # whatever the memory held before (here NaN and the previous values).
    from riskstrat.features.spec import compact, derive_block

    every = {a.table for a in AGGREGATES}
    for sources in (every, every - {"social_care", "ltc_register"}):
        people, values = _derive_fixed_input(sources)
        want = derive(people, values, sources)
        small = {name: compact(v) for name, v in values.items()}
        assert {v.dtype.name for v in small.values()} - {"float64"}  # some cast on the way into the block
        block, columns = derive_block(people, small, sources)
        assert columns == list(want.columns) and block.flags["C_CONTIGUOUS"]
        for dirty in (np.full_like(block, np.nan), block[::-1].copy()):
            again, _ = derive_block(people, small, sources, into=dirty)
            assert again is dirty
            np.testing.assert_array_equal(again.T.view("int64"), want.to_numpy().view("int64"))
    with pytest.raises(ValueError, match="C-ordered float64 array of shape"):
        derive_block(people, small, sources, into=np.empty((len(columns), 2)))


def test_spec_hash_covers_derive_version_and_feature_order(monkeypatch):
    from riskstrat.features import spec

    before = spec.spec_hash()
    monkeypatch.setattr(spec, "DERIVE_VERSION", spec.DERIVE_VERSION + 1)
    assert spec.spec_hash() != before
    monkeypatch.undo()
    monkeypatch.setattr(spec, "FEATURE_NAMES", tuple(reversed(spec.FEATURE_NAMES)))
    assert spec.spec_hash() != before


def test_ids_ending_in_white_space_pass_the_link_checks_and_the_outcome_tables(folder_engine, tmp_path):
    # Training's first queries on a fresh engine: the check of every row's person, then the tables an
    # outcome reads. An id that only ends in white space is the person's id, as validation strips it.
    folder = tmp_path / "d"
    _persons_ab(folder)
    _raw_parquet(folder, "gp_contacts", {"person_id": ["a ", "b"], "contact_date": [at(-3).date(), at(-30).date()]})
    reference = load_records(folder)
    folder_engine(folder).check_links()
    got = folder_engine(folder).tables(["gp_contacts"])
    pd.testing.assert_frame_equal(got.tables["gp_contacts"], reference.tables["gp_contacts"])


def _link_check(folder: Path, monkeypatch, *, batch: int = 4_000_000):
    """(whether the id dictionaries proved every id known, the rules and rows check_links refused or None)."""
    engine = DuckDBEngine(folder)
    monkeypatch.setattr(engine, "_id_batch", batch)
    monkeypatch.setattr(engine, "_id_batch_per_person", 0 if batch == 1 else 2)  # batch 1: a look-up per row group
    proved = engine._ids_all_known(engine.plans["gp_contacts"])
    try:
        engine.check_links()
    except ValidationError as refused:
        return proved, {(i.rule, i.n_rows) for i in refused.report.errors}
    return proved, None


@pytest.mark.parametrize("ids, proved", [
    (["a", "b", "a", "a"], True),                   # every id is a person's: no row is joined
    (["a", "nobody", "b", "nobody"], False),        # two rows of an unknown id: counted by the join
    (["a ", "b", "a", "\tb"], False),               # ids validation cleans: the join cleans them
    (["b", "a", "a", "A"], False),                  # an id in another case is not a person's
])
@pytest.mark.parametrize("batch", [1, 4_000_000])
def test_link_check_proves_ids_from_the_dictionaries_or_counts_the_rows(tmp_path, monkeypatch, ids, proved, batch):
    _persons_ab(tmp_path)
    pq.write_table(pa.table({"person_id": ids, "contact_date": pa.array([at(-d).date() for d in range(3, 7)])}),
                   tmp_path / "gp_contacts.parquet", row_group_size=1)  # one dictionary per row
    try:
        load_records(tmp_path)
        reference = None
    except ValidationError as refused:
        reference = {(i.rule, i.n_rows) for i in refused.report.errors}
    got_proved, got = _link_check(tmp_path, monkeypatch, batch=batch)
    assert got_proved is proved
    assert got == reference
    assert (reference is None) is (ids[1] != "nobody" and "A" not in ids)  # the cases refuse what they should


def test_link_check_never_trusts_ids_it_cannot_read_as_text_or_an_unused_dictionary_entry(tmp_path, monkeypatch):
    _persons_ab(tmp_path)
    # A dictionary holding an id no row uses: at worst the rows are counted, and none is unknown.
    ids = pa.DictionaryArray.from_arrays(pa.array([0, 0], pa.int32()), pa.array(["a", "nobody"]))
    pq.write_table(pa.table({"person_id": ids, "contact_date": pa.array([at(-3).date()] * 2)}),
                   tmp_path / "gp_contacts.parquet")
    assert _link_check(tmp_path, monkeypatch)[1] is None
    engine = DuckDBEngine(tmp_path)
    engine._link_counts = lambda *a, **k: pytest.fail("the rows were joined though every id is known")
    if engine._ids_all_known(engine.plans["gp_contacts"]):
        engine.check_links()
    # Ids stored as numbers are not read from the dictionaries: the join decides.
    _raw_parquet(tmp_path, "persons", {"person_id": ["1", "2"], "birth_date": [pd.Timestamp("1950-01-01").date()] * 2,
                                       "sex": ["female", "male"], "practice_id": ["P", "Q"]})
    pq.write_table(pa.table({"person_id": pa.array([1, 3], pa.int64()), "contact_date": pa.array([at(-3).date()] * 2)}),
                   tmp_path / "gp_contacts.parquet")
    try:
        load_records(tmp_path)
        reference = None
    except ValidationError as refused:
        reference = {(i.rule, i.n_rows) for i in refused.report.errors}
    assert reference == {("unknown_person", 1)}
    assert _link_check(tmp_path, monkeypatch) == (False, reference)


# ----------------------------------------------------------------------------- every index date in one pass


def assert_every_date_agrees(folder: Path, dates, *, spec=None, **options) -> list[pd.DataFrame]:
    """``DuckDBEngine.features_at(dates)`` (one pass over each table) equals ``features`` at each date on a
    fresh engine, frame by frame (to 1e-9), with the same validation findings."""
    one_at_a_time = DuckDBEngine(folder)
    expected = [one_at_a_time.features(d, spec=spec, **options) for d in dates]
    engine = DuckDBEngine(folder)
    got = list(engine.features_at(dates, spec=spec, **options))
    assert len(got) == len(dates)
    for frame, reference in zip(got, expected):
        pd.testing.assert_frame_equal(frame, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    assert [i.message for i in engine.report.issues] == [i.message for i in one_at_a_time.report.issues]
    return got


def test_every_index_date_from_one_pass_equals_each_date_alone(synthetic, monkeypatch):
    from riskstrat.modeling.config import load_config
    from riskstrat.features.generic import build_spec

    engine = DuckDBEngine(synthetic)
    spec = build_spec(load_config(None, [f"data.path={synthetic}"]).features.generic, engine, until="2024-11-01")
    dates = ["2023-08-01", "2023-11-01", "2024-11-01"]
    expected = [engine.features(d, spec=spec) for d in dates]
    # A spy: the per-date aggregate query is never run (each table is read once for every date).
    monkeypatch.setattr(DuckDBEngine, "_aggregate_frame", lambda *a, **k: pytest.fail("a query per date"))
    monkeypatch.setattr(DuckDBEngine, "_aggregate_parts", lambda *a, **k: pytest.fail("a query per date"))
    got = list(DuckDBEngine(synthetic).features_at(dates, spec=spec))
    for frame, reference in zip(got, expected):
        pd.testing.assert_frame_equal(frame, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    assert len(spec.aggregates) > len(AGGREGATES) and len(got[0]) > 300


def test_every_index_date_from_one_pass_with_repeats_lives_and_windows(tmp_path, make_table):
    # Repeats, rows outside a life, end dates after death, events on T and at the windows' edges, seen from
    # dates on either side of them: the joint window's one cleaning is exact for each date.
    dates = [at(-95), at(-30), T, at(2), at(400)]
    for case, tables in (("windows", windows_case()), ("lives", out_of_life_case())):
        folder = write(tmp_path / case, make_table, **tables)
        assert_every_date_agrees(folder, dates, min_age=0)


def test_tables_the_one_pass_cannot_read_are_built_a_date_at_a_time(tmp_path, make_table, monkeypatch):
    # An id that is no person's is refused with the report the per-date features give; under
    # out_of_life_events='error' every row is read and counted at each date, by the per-date queries.
    tables = out_of_life_case()
    tables["gp_contacts"] = tables["gp_contacts"] + [{"person_id": "stranger", "contact_date": at(-3)}]
    folder = write(tmp_path / "d", make_table, **tables)
    with pytest.raises(ValidationError) as per_date:
        per_date_engine = DuckDBEngine(folder)
        [per_date_engine.features(d) for d in (T, at(2))]
    with pytest.raises(ValidationError) as one_pass:
        list(DuckDBEngine(folder).features_at([T, at(2)]))
    assert one_pass.value.report.format() == per_date.value.report.format()
    assert [i.rule for i in one_pass.value.report.issues if i.severity == "error"] == ["unknown_person"]

    folder = write(tmp_path / "e", make_table, **windows_case())
    engine = DuckDBEngine(folder, out_of_life_events="error")
    queries, original = [], DuckDBEngine._aggregate_parts

    def spy(self, plan, t, aggregates):
        queries.append(t)
        return original(self, plan, t, aggregates)

    monkeypatch.setattr(DuckDBEngine, "_aggregate_parts", spy)
    got = list(engine.features_at([T, at(2)]))
    assert len(queries) == 2 * len(engine.plans)  # every table, a query per date
    monkeypatch.undo()
    for frame, d in zip(got, (T, at(2))):
        pd.testing.assert_frame_equal(frame, DuckDBEngine(folder, out_of_life_events="error").features(d),
                                      check_exact=False, rtol=1e-12, atol=1e-9)



def test_one_pass_in_blocks_of_people_equals_the_whole_slice_bit_for_bit(tmp_path, make_table, monkeypatch):
    # Each date's slice aggregated a block of people at a time (as at a million people) gives the very same
    # values as the slice at once: a person's aggregates read only their own rows, in the same order.
    folder = write(tmp_path / "d", make_table, **windows_case())
    dates = [at(-30), T, at(400)]
    whole = assert_every_date_agrees(folder, dates, min_age=0)
    monkeypatch.setattr(DuckDBEngine, "_block_rows", 2)
    blocks = list(DuckDBEngine(folder).features_at(dates, min_age=0))
    for frame, reference in zip(blocks, whole):
        pd.testing.assert_frame_equal(frame, reference, check_exact=True)
