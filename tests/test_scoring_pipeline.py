"""The monthly scoring run end to end: champions from a real MLflow registry, a small synthetic
population, and the month's files on disk.

Once per module: 3,000 people (4 years from 2021-11-01, so the extract ends 2025-10-31), an
emergency-admission and a high-cost model trained small, registered and promoted to champion in a
temporary SQLite store, and a baseline pair of months (2025-10 then 2025-11) in one output folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.scoring import lists

from riskstrat.scoring import publish

from riskstrat.registry import tracking
from riskstrat.modeling.config import ScoringConfig, load_config
from riskstrat.data.io import data_fingerprint
from riskstrat.errors import RiskstratError
from riskstrat.data.load import load_data
from riskstrat.pipelines.score import PublishedButNotTrackedError, run_scoring
from riskstrat.pipelines.train import run_training
from riskstrat.scoring.checks import ModelDataMismatchError
from riskstrat.scoring.month import BlockedFeatures, InMemoryFeatures
from riskstrat.data.privacy import OptOutError
from riskstrat.scoring.publish import AlreadyPublishedError, PublishRefusedError

AS_OF = "2025-11-01"
MONTH = "2025-11"
LIST_SIZE = 100
TRAIN_SMALL = ["model.refit=none",  # one version per run: these tests count versions (tests/test_refit.py: the refit)
               "index_dates.train=[2023-08-01, 2023-11-01]", "index_dates.test=2024-11-01",
               "evaluation.n_bootstrap=10", "evaluation.figures=false", "model.lightgbm.n_estimators=60",
               "model.baselines=[prior_use]",  # scoring uses neither the logistic baseline nor the figures
               # 3,000 people have fewer test events than the guards' defaults ask; tests/test_guards.py tests those.
               "guards.min_events_train=20", "guards.min_events_calibration=20", "guards.min_events_test=20"]
RISK_MODEL, COST_MODEL = "test-emergency", "test-high-cost"
PERSON_ID = re.compile(r"\b[0-9a-f]{16}\b")  # the synthetic pseudonyms' shape


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data_dir(synthetic_3000) -> Path:
    """3,000 synthetic people (conftest's session-wide folder, shared with test_tracking.py; read only)."""
    return synthetic_3000


@pytest.fixture(scope="module")
def home_practice(data_dir) -> pd.Series:
    """Each person's practice according to the data: the reference for isolation checks."""
    persons = pd.read_parquet(data_dir / "persons.parquet", columns=["person_id", "practice_id"])
    return pd.Series(persons["practice_id"].astype(str).to_numpy(), index=persons["person_id"].astype(str))


@pytest.fixture(scope="module")
def registry(data_dir, tmp_path_factory, new_mlflow_store) -> dict:
    """Both models trained, registered and promoted to champion; returns the store and their runs."""
    store = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(store)
    runs = {}
    for target, name in [("emergency_admission", RISK_MODEL), ("high_cost", COST_MODEL)]:
        cfg = load_config(None, [f"data.path={data_dir}", f"tracking.uri={uri}", f"target.name={target}",
                                 f"tracking.registered_model={name}", *TRAIN_SMALL])
        logged = run_training(cfg).logged
        tracking.promote(name, logged.model_version, alias="champion", uri=uri)
        runs[name] = logged
    return {"uri": uri, "store": store, "runs": runs}


@pytest.fixture(scope="module")
def records(data_dir):
    return load_data(load_config(None, [f"data.path={data_dir}"], model=ScoringConfig).data)


def scoring_config(registry, data_dir, output_dir, *overrides: str) -> ScoringConfig:
    return load_config(None, [f"data.path={data_dir}", f"tracking.uri={registry['uri']}",
                              f"models.risk={RISK_MODEL}", f"models.high_cost={COST_MODEL}",
                              f"lists.list_size={LIST_SIZE}", f"output_dir={output_dir}", *overrides],
                       model=ScoringConfig)


@pytest.fixture(scope="module")
def score(registry, data_dir, records):
    """``score(output_dir, *overrides, as_of=..., reload=False)`` -> manifest; reuses the loaded records."""
    def run(output_dir, *overrides: str, as_of: str = AS_OF, reload: bool = False) -> dict:
        cfg = scoring_config(registry, data_dir, output_dir, *overrides)
        return run_scoring(cfg, as_of, records=None if reload else records)

    return run


@pytest.fixture(scope="module")
def two_months(score, tmp_path_factory) -> dict:
    """2025-10 then 2025-11 scored into the same output folder (no opt-outs, no hold-out)."""
    out = tmp_path_factory.mktemp("lists")
    october = score(out, as_of="2025-10-01")
    november = score(out)
    return {"out": out, "october": october, "november": november}


# ----------------------------------------------------------------------------- reading the month back


def practice_folders(month_dir: Path) -> list[Path]:
    return sorted(p for p in (month_dir / "practices").iterdir() if p.is_dir())


def xlsx_text(path: Path) -> str:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        return "\n".join(str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row
                         if v is not None)
    finally:
        wb.close()


def file_text(path: Path) -> str:
    """Everything a reader of the file could see, as text (cells of a workbook, rows of a Parquet file)."""
    if path.suffix == ".xlsx":
        return xlsx_text(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv(index=False)
    return path.read_text(encoding="utf-8-sig")


def ids_in(path: Path) -> set[str]:
    return set(PERSON_ID.findall(file_text(path)))


def list_ids(folder: Path) -> list[str]:
    return pd.read_csv(folder / "list.csv", dtype=str, encoding="utf-8-sig")["Person ID"].tolist()


def person_files(month: Path) -> dict[str, bytes]:
    """Every file of a month, workbooks included (their creation date is the scoring date, so a
    rerun writes the same bytes), but the manifest and the run folder's marker (it names the run)."""
    return {p.relative_to(month).as_posix(): p.read_bytes() for p in month.rglob("*")
            if p.is_file() and p.name not in ("manifest.json", publish.MARKER)}


def visible(root: Path) -> list[str]:
    """What a person browsing the output folder sees: months (not .runs, .lock or the audit log)."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and p.name != "audit.jsonl")


def no_temp_left(root: Path) -> bool:
    return not [p.name for p in root.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


# ----------------------------------------------------------------------------- isolation


def test_every_practice_file_holds_only_that_practices_people(two_months, home_practice):
    month = two_months["out"] / MONTH
    folders = practice_folders(month)
    assert [f.name for f in folders] == sorted(home_practice.unique())
    for folder in folders:
        listed = list_ids(folder)
        assert len(listed) == LIST_SIZE
        for name in ("list.csv", "list.html", "list.xlsx", "changes.csv"):
            found = ids_in(folder / name)
            if name.startswith("list."):
                assert set(listed) <= found, (folder.name, name)
            foreign = {pid: home_practice.get(pid) for pid in found if home_practice.get(pid) != folder.name}
            assert not foreign, f"{folder.name}/{name} holds other practices' people: {list(foreign.items())[:3]}"
    assert ids_in(month / "summary.csv") == set()
    summary = pd.read_csv(month / "summary.csv", encoding="utf-8-sig")
    assert not {"person_id", "Person ID"} & set(summary.columns)


# ----------------------------------------------------------------------------- opt-outs


@pytest.fixture(scope="module")
def listed_both_months(two_months) -> list[str]:
    """Five people on a list in October and November (so November would list them again)."""
    oct_pop = pd.read_parquet(two_months["out"] / "2025-10" / "population.parquet")
    nov_pop = pd.read_parquet(two_months["out"] / MONTH / "population.parquet")
    both = nov_pop.loc[nov_pop["listed"] & nov_pop["person_id"].isin(oct_pop.loc[oct_pop["listed"], "person_id"])]
    return both.groupby("practice_id").head(2)["person_id"].head(5).tolist()


@pytest.mark.parametrize("form", ["one id per line", "csv with a person_id column"])
def test_opted_out_people_appear_in_no_file_and_are_counted(score, two_months, listed_both_months, tmp_path, form):
    ids = listed_both_months
    assert len(ids) == 5
    opt_out = tmp_path / "opt_out.txt"
    if form == "one id per line":
        opt_out.write_text("\n".join(ids) + "\n")
    else:
        opt_out.write_text("\ufeffperson_id,date_received\n" + "".join(f" {i} ,2025-10-20\n" for i in ids))
    # Last month (written before they opted out) listed them: they must not come back as "left".
    out = tmp_path / "lists"
    shutil.copytree(two_months["out"] / "2025-10", out / "2025-10")

    manifest = score(out, f"opt_out_file={opt_out}")

    assert manifest["counts"]["opted_out_removed"] == 5
    assert manifest["counts"]["scored"] == manifest["counts"]["eligible"] - 5
    assert manifest["previous_month"] == "2025-10"
    month = out / MONTH
    files = sorted(p for p in month.rglob("*") if p.is_file())
    assert month / "population.parquet" in files and len(files) > 10
    leaks = {p.relative_to(month).as_posix(): sorted(ids_in(p) & set(ids)) for p in files}
    assert not {k: v for k, v in leaks.items() if v}
    assert json.loads((month / "manifest.json").read_text())["counts"]["opted_out_removed"] == 5


def test_an_opt_out_file_matching_no_one_is_refused_unless_allowed(score, tmp_path):
    opt_out = tmp_path / "opt_out.txt"
    opt_out.write_text("0000000000000000\nffffffffffffffff\n")
    with pytest.raises(OptOutError, match="none of the 2 ids in the opt-out file .* matches anyone"):
        score(tmp_path / "lists", f"opt_out_file={opt_out}")
    assert not (tmp_path / "lists").exists()
    counts = score(tmp_path / "lists", f"opt_out_file={opt_out}", "allow_unmatched_opt_outs=true")["counts"]
    assert (counts["opted_out_removed"], counts["opt_out_ids"], counts["opt_out_ids_matching_no_one"]) == (0, 2, 2)


def test_opt_out_ids_in_upper_case_with_spaces_still_remove_the_people(score, two_months, listed_both_months,
                                                                        tmp_path):
    # The defect: 300 valid ids in upper case removed nobody, and 29 of them were on shown lists.
    opt_out = tmp_path / "opt_out.txt"
    opt_out.write_text("\ufeff" + "".join(f"  {i.upper()} \r\n" for i in listed_both_months) + "0000000000000000\n")
    manifest = score(tmp_path / "lists", f"opt_out_file={opt_out}")
    assert manifest["counts"]["opted_out_removed"] == 5
    assert manifest["counts"]["opt_out_ids_matching_no_one"] == 1
    month = Path(manifest["output_dir"])
    assert not ids_in(month / "population.parquet") & set(listed_both_months)
    log = [json.loads(line) for line in (tmp_path / "lists" / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in log] == ["started", "published", "tracked"]
    assert log[1]["opted_out_removed"] == 5


def test_opt_out_ids_pasted_from_a_web_page_remove_the_people_and_the_rest_are_shown_masked(
        registry, data_dir, records, listed_both_months, tmp_path):
    # The defect: ids ending in a zero-width space matched no one, and opted-out people stayed on shown lists.
    fullwidth = {ord(c): ord(c) + 0xFEE0 for c in "0123456789abcdef"}
    pasted = [f"{i}\u200b" if n % 2 else f"\u00a0{i.translate(fullwidth)}\u2060" for n, i in enumerate(listed_both_months)]
    gone = "9a9b9c9d9e9f9091"
    opt_out = tmp_path / "opt_out.txt"
    opt_out.write_text("\n".join(pasted + [gone]) + "\n")
    said = []
    manifest = run_scoring(scoring_config(registry, data_dir, tmp_path / "lists", f"opt_out_file={opt_out}"), AS_OF,
                           records=records, stage=said.append)
    assert manifest["counts"]["opted_out_removed"] == 5 and manifest["counts"]["opt_out_ids_matching_no_one"] == 1
    assert not ids_in(Path(manifest["output_dir"]) / "population.parquet") & set(listed_both_months)
    warning = next(line for line in said if line.startswith("warning:") and "opt-out" in line)
    assert "1 of 6 opt-out ids" in warning and "9a…91 (16 chars)" in warning and gone not in " ".join(said)


def test_the_red_team_opt_out_file_is_refused_and_when_allowed_removes_everyone_it_names_readably(
        registry, data_dir, records, listed_both_months, tmp_path):
    # The defect: of idA, "idB,idC", "idD.", idE + U+FE0F and U+2800 + idF only idA was removed; the run
    # warned that 4 of 5 were "people who have left" and published the other five people on the lists.
    a, b, c, d, e = listed_both_months
    nhs_number = "9434765919"
    opt_out = tmp_path / "opt_out.txt"
    opt_out.write_text(f"{a}\n{b},{c}\n{d}.\n{e}\ufe0f\n\u2800{c}\n{nhs_number}\n")
    with pytest.raises(OptOutError) as refused:
        run_scoring(scoring_config(registry, data_dir, tmp_path / "lists", f"opt_out_file={opt_out}"), AS_OF,
                    records=records)
    said = str(refused.value)
    assert f"3 of the 6 ids in the opt-out file {opt_out} match no one" in said and "Correct lines 2, 3, 6 " in said
    assert "looks like a source id" in said and "pseudonymised with the key" in said
    assert not [i for i in (a, b, c, d, e, nhs_number) if i in said] and not (tmp_path / "lists").exists()

    said = []
    manifest = run_scoring(scoring_config(registry, data_dir, tmp_path / "lists", f"opt_out_file={opt_out}",
                                          "allow_unmatched_opt_outs=true"), AS_OF, records=records, stage=said.append)
    assert manifest["counts"]["opted_out_removed"] == 3  # a, e and c: the invisible characters are not the id
    assert not ids_in(Path(manifest["output_dir"]) / "population.parquet") & {a, e, c}
    warning = next(line for line in said if line.startswith("warning:") and "opt-out" in line)
    assert "3 of 6 opt-out ids" in warning and "3 of them look mis-pasted or are not pseudonyms" in warning


def test_an_empty_opt_out_file_is_refused_unless_allowed(score, tmp_path):
    # The defect: a 0-byte opt-out file was accepted without a word.
    opt_out = tmp_path / "opt_out.txt"
    opt_out.write_bytes(b"")
    with pytest.raises(OptOutError, match=rf"{opt_out}: the opt-out file holds no ids"):
        score(tmp_path / "lists", f"opt_out_file={opt_out}")
    assert not (tmp_path / "lists").exists()
    counts = score(tmp_path / "lists", f"opt_out_file={opt_out}", "allow_empty_opt_out=true")["counts"]
    assert (counts["opted_out_removed"], counts["opt_out_ids"]) == (0, 0)


# ----------------------------------------------------------------------------- reruns and months


def test_each_model_passes_over_each_person_once(score, tmp_path, monkeypatch):
    import lightgbm

    seen = []
    predict = lightgbm.Booster.predict

    def counted(self, data, *args, **kwargs):
        seen.append((id(self), len(data), bool(kwargs.get("pred_contrib"))))
        return predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lightgbm.Booster, "predict", counted)
    counts = score(tmp_path / "lists")["counts"]
    rows_by_model = {}
    for booster, rows, contributions in seen:
        if not contributions:
            rows_by_model[booster] = rows_by_model.get(booster, 0) + rows
    # The risk model (raw score -> calibrated risk), the high-cost classifier and its cost regressor.
    assert sorted(rows_by_model.values()) == [counts["scored"]] * 3
    assert sum(rows for _, rows, contributions in seen if contributions) == counts["explained"] == counts["listed"]


def test_risks_equal_the_calibrated_path_and_ranks_the_raw_score(score, registry, records, tmp_path):
    from riskstrat.features.reference import build_features
    from riskstrat.modeling.tiers import rank_by_score

    population = pd.read_parquet(Path(score(tmp_path / "lists")["output_dir"]) / "population.parquet")
    model = tracking.load_model(RISK_MODEL, alias="champion", uri=registry["uri"]).risk_model
    from riskstrat.features.spec import FeatureSpec

    spec = FeatureSpec.from_dict(model.metadata["feature_spec"])  # the features it was trained on, as stored
    features = build_features(records, AS_OF, spec=spec).loc[population["person_id"].to_numpy()]
    np.testing.assert_allclose(population["risk"], model.predict_risk(features), rtol=0, atol=1e-12)
    reference = rank_by_score(pd.Series(model.raw_score(features), index=features.index))
    assert population["rank"].tolist() == reference.tolist()


def test_explain_all_gives_everyone_reasons_and_the_same_lists(score, tmp_path):
    listed = Path(score(tmp_path / "listed")["output_dir"])
    manifest = score(tmp_path / "all", "lists.explain=all")
    everyone = Path(manifest["output_dir"])
    assert manifest["counts"]["explained"] == manifest["counts"]["scored"] > manifest["counts"]["listed"]
    assert manifest["shap_additivity_max_error"] < 1e-6
    pop, pop_all = pd.read_parquet(listed / "population.parquet"), pd.read_parquet(everyone / "population.parquet")
    assert pop_all["reasons"].notna().all() and pop["reasons"].notna().sum() == pop["listed"].sum()
    assert pop_all.loc[pop["listed"], "reasons"].tolist() == pop.loc[pop["listed"], "reasons"].tolist()
    files = sorted(listed.glob("practices/*/*"))
    assert files and all(p.read_bytes() == (everyone / p.relative_to(listed)).read_bytes() for p in files)


def test_rerun_of_the_same_month_gives_identical_person_level_files(score, tmp_path):
    first = score(tmp_path / "a", reload=True)  # loads the data itself, as the batch job does
    second = score(tmp_path / "b")
    a, b = Path(first["output_dir"]), Path(second["output_dir"])
    names = ["population.parquet", "summary.csv"] + [
        p.relative_to(a).as_posix() for p in sorted(a.glob("practices/*/*.*"))]
    assert len(names) == 2 + 4 * 3  # list.csv, list.xlsx, list.html and changes.csv of 3 practices
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    files_a = json.loads((a / "manifest.json").read_text())["files"]
    files_b = json.loads((b / "manifest.json").read_text())["files"]
    assert {n: files_a[n] for n in names} == {n: files_b[n] for n in names}


def _same_month_files(a: Path, b: Path) -> list[str]:
    """The files two months wrote (all but the manifest, which records the chunk size, and the run marker),
    asserted the same names and the same bytes; returns the names."""
    def written(month: Path) -> list[str]:
        return sorted(p.relative_to(month).as_posix() for p in month.rglob("*")
                      if p.is_file() and p.name != "manifest.json" and not p.name.startswith("."))

    names = written(a)
    assert names == written(b)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


def test_a_tiny_chunk_size_writes_the_files_of_one_chunk_and_the_features_go_before_the_lists(score, tmp_path,
                                                                                               monkeypatch):
    said, release, write = [], InMemoryFeatures.release, lists.write_month
    monkeypatch.setattr(InMemoryFeatures, "release", lambda self: said.append("release") or release(self))
    monkeypatch.setattr(lists, "write_month", lambda *a, **k: said.append("write") or write(*a, **k))
    one = score(tmp_path / "one", "chunk_size=1000000")
    assert said[:2] == ["release", "write"]  # no feature frame held while the lists are written
    tiny = score(tmp_path / "tiny", "chunk_size=1000")
    assert tiny["counts"]["scored"] > 2 * 1000  # three chunks
    names = _same_month_files(Path(one["output_dir"]), Path(tiny["output_dir"]))
    assert "population.parquet" in names and any(n.endswith("list.xlsx") for n in names)


def test_duckdb_blocks_of_people_write_the_files_of_the_whole_frame(score, listed_both_months, tmp_path, monkeypatch):
    # The folder engines keep the month's aggregates and derive the feature frame a block of people at a
    # time (BlockedFeatures): blocks of 1,000 (three, with opt-outs and the drift and reasons counted per
    # block) must write what the whole frame in memory (InMemoryFeatures) writes, byte for byte.
    from riskstrat.features.duckdb import DuckDBEngine
    from riskstrat.features.spec import PersonAggregates
    from riskstrat.pipelines import score as pipeline

    opt_out = tmp_path / "opt_out.txt"
    opt_out.write_text("\n".join(listed_both_months) + "\n")
    options = ["engine=duckdb", f"opt_out_file={opt_out}"]
    whole = pipeline.month_features

    def unblocked(engine, index_date, *, costs=None, **kw):
        frame = engine.features(index_date, **kw)
        return InMemoryFeatures(costs.apply(frame) if costs is not None and costs.changes_features else frame)

    monkeypatch.setattr(pipeline, "month_features", unblocked)
    one = score(tmp_path / "one", *options, "chunk_size=1000000", reload=True)
    monkeypatch.setattr(pipeline, "month_features", whole)
    monkeypatch.setattr(DuckDBEngine, "_part_vectors", 1)  # the aggregates from DuckDB 2,048 people at a time
    fetched, parts = [], DuckDBEngine._aggregate_parts

    def counted(self, plan, *a):
        for part in parts(self, plan, *a):
            fetched.append(plan.table.name)
            yield part

    monkeypatch.setattr(DuckDBEngine, "_aggregate_parts", counted)
    said, derived, frame, block = [], [], PersonAggregates.frame, PersonAggregates.block
    release, write = BlockedFeatures.release, lists.write_month
    monkeypatch.setattr(PersonAggregates, "frame", lambda self, rows=None: derived.append(rows) or frame(self, rows))
    monkeypatch.setattr(PersonAggregates, "block",
                        lambda self, rows=None, **kw: derived.append(rows) or block(self, rows, **kw))
    monkeypatch.setattr(BlockedFeatures, "release", lambda self: said.append("release") or release(self))
    monkeypatch.setattr(lists, "write_month", lambda *a, **k: said.append("write") or write(*a, **k))
    blocks = score(tmp_path / "blocks", *options, "chunk_size=1000", reload=True)
    assert said[:2] == ["release", "write"]  # no aggregates held while the lists are written
    assert max(fetched.count(name) for name in set(fetched)) >= 2
    scored = blocks["counts"]["scored"]
    assert blocks["counts"]["opted_out_removed"] == 5 and 2 * 1000 < scored < 3 * 1000
    assert all(rows is not None for rows in derived)  # never everyone at once: blocks of people
    # Three blocks scored (the drift and the reasons' thresholds counted on the way), then the explained again.
    assert [len(rows) for rows in derived if not isinstance(rows, slice)] == [1000, 1000, scored - 2000,
                                                                              blocks["counts"]["explained"]]
    assert blocks["counts"] == one["counts"] and blocks["drift"] == one["drift"]
    names = _same_month_files(Path(one["output_dir"]), Path(blocks["output_dir"]))
    assert "population.parquet" in names and any(n.endswith("list.html") for n in names)


def test_blocked_features_score_count_and_explain_as_the_whole_frame(registry, data_dir):
    # BlockedFeatures against InMemoryFeatures on the same DuckDB month, asked in either order: drift and
    # thresholds before scoring (passes of their own) and after (counted in the scoring pass); everyone explained.
    from riskstrat.features.duckdb import DuckDBEngine
    from riskstrat.features.spec import FeatureSpec

    risk, cost = (tracking.load_model(name, alias="champion", uri=registry["uri"]).risk_model
                  for name in (RISK_MODEL, COST_MODEL))
    spec = FeatureSpec.union([FeatureSpec.from_dict(m.metadata["feature_spec"]) for m in (risk, cost)])
    whole = InMemoryFeatures(DuckDBEngine(data_dir).features(AS_OF, spec=spec))
    blocked = BlockedFeatures(DuckDBEngine(data_dir).person_aggregates(AS_OF, spec=spec, compact=True))
    profile = risk.metadata["reference_profile"]
    assert blocked.columns == whole.columns and len(blocked) == len(whole) > 2000
    pd.testing.assert_frame_equal(blocked.frame, whole.frame, check_exact=True)  # derived at once when asked
    a = whole.score(risk, cost, chunk_size=100_000)
    before = blocked.drift_report(profile, a.risk), blocked.reason_thresholds()
    b = blocked.score(risk, cost, chunk_size=700)
    for name in ("risk", "raw", "high_cost_risk", "predicted_cost"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    assert b.people.index.equals(a.people.index)
    pd.testing.assert_frame_equal(b.people, a.people[list(b.people.columns)])
    assert before[0] == blocked.drift_report(profile, b.risk) == whole.drift_report(profile, a.risk)
    assert before[1] == blocked.reason_thresholds() == whole.reason_thresholds()
    options = {"n": 3, "currency": "GBP", "demographic_reasons": False, "money_reasons": False, "chunk_size": 500,
               "thresholds": before[1]}
    for who in (a.people.index[::-7], None):  # some people out of order, then everyone
        want, want_error, want_n = whole.explain(risk, a, who, **options)
        got, error, n = blocked.explain(risk, b, who, **options)
        assert n == want_n and error == want_error
        pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=[pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None, reason="the spark extra is not installed")])])
def test_cli_score_with_a_folder_engine_writes_the_same_month(score, registry, data_dir, tmp_path, engine):
    from riskstrat.cli import app

    a = Path(score(tmp_path / "pandas")["output_dir"])
    out = tmp_path / engine
    args = ["score", "--as-of", AS_OF, "--data", str(data_dir), "--out", str(out), "--quiet", "--engine", engine,
            "--explain", "listed",
            "--set", f"tracking.uri={registry['uri']}", "--set", f"models.risk={RISK_MODEL}",
            "--set", f"models.high_cost={COST_MODEL}", "--set", f"lists.list_size={LIST_SIZE}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    b = out / MONTH
    config = json.loads((b / "manifest.json").read_text())["config"]
    assert config["engine"] == engine and config["lists"]["explain"] == "listed"
    reference, got = pd.read_parquet(a / "population.parquet"), pd.read_parquet(b / "population.parquet")
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=1e-9, atol=1e-9)  # risks, ranks, tiers
    names = ["summary.csv"] + [p.relative_to(a).as_posix() for p in sorted(a.glob("practices/*/*.csv"))]
    for name in names:  # lists, reasons and changes, as the practices read them
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_score_on_a_stamped_folder_verifies_the_stamp_instead_of_checking_rows(score, registry, data_dir, tmp_path,
                                                                              monkeypatch):
    from riskstrat.data import validate as validation
    from riskstrat.features.duckdb import DuckDBEngine

    calls = []
    for owner, hook in ((validation, "_check_range"), (validation, "_check_safe_text"), (DuckDBEngine, "_link_counts"),
                        (DuckDBEngine, "_ids_all_known")):
        original = getattr(owner, hook)
        monkeypatch.setattr(owner, hook, lambda *a, _hook=hook, _original=original, **k: calls.append(_hook)
                            or _original(*a, **k))
    messages = []
    for engine in ("pandas", "duckdb"):
        cfg = scoring_config(registry, data_dir, tmp_path / engine, f"engine={engine}")
        run_scoring(cfg, AS_OF, stage=messages.append)
    assert calls == []  # no refusal-only row check ran: the stamp's hashes stood for them
    assert sum(m.startswith("validation stamp verified (hashes) for persons") for m in messages) == 2, messages
    a, b = tmp_path / "pandas" / MONTH, tmp_path / "duckdb" / MONTH
    pd.testing.assert_frame_equal(pd.read_parquet(b / "population.parquet"), pd.read_parquet(a / "population.parquet"),
                                  check_exact=False, rtol=1e-9, atol=1e-9)


def test_every_second_of_a_score_run_is_in_a_named_stage(registry, data_dir, tmp_path):
    from riskstrat import process_started
    from riskstrat.pipelines.score import stage_report

    timings = {}
    started = time.time()
    run_scoring(scoring_config(registry, data_dir, tmp_path, "engine=duckdb"), AS_OF, timings=timings, started=started)
    wall = time.time() - started
    assert {"startup", "load", "features", "lock", "audit", "prediction", "drift", "shap", "facts", "writing",
            "mlflow"} <= set(timings)
    assert abs(sum(timings.values()) - wall) <= 0.02 * wall + 0.05, (sum(timings.values()), wall)
    report = stage_report(timings, wall=wall)
    assert report.startswith("seconds: startup ") and ", drift " in report and f"(wall {wall:,.2f})" in report
    # This process's start, read from /proc: before now, and before this test began.
    assert process_started() <= started


def test_second_month_reports_changes_since_the_first(two_months):
    october, november = two_months["october"], two_months["november"]
    assert october["previous_month"] is None
    assert october["counts"]["new_this_month"] == 0  # first month: no last month's list to be new to
    assert november["previous_month"] == "2025-10"
    new = november["counts"]["new_this_month"]
    assert 0 < new < november["counts"]["listed"]
    month = two_months["out"] / MONTH
    total_new = 0
    for folder in practice_folders(month):
        changes = pd.read_csv(folder / "changes.csv", dtype={"Person ID": str}, keep_default_na=False,
                              encoding="utf-8-sig")
        shown = pd.read_csv(folder / "list.csv", dtype={"Person ID": str}, keep_default_na=False,
                            encoding="utf-8-sig")
        flagged = set(shown.loc[shown["New this month"] == "yes", "Person ID"])
        assert set(changes.loc[changes["New this month"] == "yes", "Person ID"]) == flagged
        assert (changes["Month"] == MONTH).all() and (changes["Compared with"] == "2025-10").all()
        # Everyone who left was on October's list of this practice and is not on November's.
        left = set(changes.loc[changes["Left the list"] == "yes", "Person ID"])
        assert not left & set(shown["Person ID"])
        assert len(left) == len(flagged)  # lists keep their size, so as many leave as arrive
        total_new += len(flagged)
    assert total_new == new
    population = pd.read_parquet(month / "population.parquet")
    assert int(population["new_this_month"].sum()) == new


# ----------------------------------------------------------------------------- last month, verified


def _with_october(two_months, tmp_path) -> Path:
    """A fresh output folder holding a copy of the published October."""
    out = tmp_path / "lists"
    shutil.copytree(two_months["out"] / "2025-10", out / "2025-10")
    return out


def test_last_month_edited_after_publishing_refuses_this_month_by_default(score, two_months, tmp_path):
    from riskstrat.data.io import write_parquet
    from riskstrat.scoring.published import TamperedFileError

    out = _with_october(two_months, tmp_path)
    path = out / "2025-10" / "population.parquet"
    population = pd.read_parquet(path)
    write_parquet(population.assign(risk=population["risk"] / 2), path)
    with pytest.raises(TamperedFileError, match=r"last month \(2025-10\) cannot be verified.*2025-10/population.parquet "
                                                r"is not the file that was published: its SHA-256 begins [0-9a-f]{12}, "
                                                r".*Nothing was published.*allow_unverified_previous_month=true"):
        score(out)
    assert not (out / MONTH).exists()


def test_an_unverifiable_last_month_is_treated_as_absent_when_allowed_and_the_manifest_says_so(score, two_months,
                                                                                               tmp_path):
    out = _with_october(two_months, tmp_path)
    manifest_path = out / "2025-10" / "manifest.json"
    manifest_path.write_text(manifest_path.read_text()[:200])  # truncated
    manifest = score(out, "allow_unverified_previous_month=true")
    assert manifest["previous_month"] is None
    unverified = manifest["previous_month_unverified"]
    assert unverified["month"] == "2025-10" and "manifest.json is not valid JSON" in unverified["problem"]
    assert json.loads((out / MONTH / "manifest.json").read_text())["previous_month_unverified"] == unverified
    # As with no previous month, nobody is marked new; the page says why (not "the first month").
    assert manifest["counts"]["new_this_month"] == 0
    page = next((out / MONTH / "practices").glob("*/list.html")).read_text(encoding="utf-8")
    assert "Last month&#39;s list (2025-10) could not be verified" in page or \
        "Last month's list (2025-10) could not be verified" in page
    assert "first month of these lists" not in page
    # Verified months record no problem.
    assert two_months["november"]["previous_month_unverified"] is None


def test_last_month_from_an_older_version_without_tiers_is_a_clear_refusal(score, two_months, tmp_path):
    from riskstrat.data.io import file_sha256, write_parquet
    from riskstrat.scoring.published import MissingColumnsError

    out = _with_october(two_months, tmp_path)
    month = out / "2025-10"
    write_parquet(pd.read_parquet(month / "population.parquet").drop(columns="tier"), month / "population.parquet")
    # A consistent month, as an older riskstrat wrote it: the manifest's hash is the file's.
    manifest = json.loads((month / "manifest.json").read_text())
    manifest["files"]["population.parquet"] = file_sha256(month / "population.parquet")
    (month / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MissingColumnsError, match=r"2025-10/population.parquet has no column 'tier' \(it has "
                                                  r"person_id, .*written by an older riskstrat.*Rescore that month"):
        score(out)


def _with_both_months(two_months, tmp_path) -> Path:
    """A fresh output folder holding a copy of the published October and November as published: month
    links to marked run folders under .runs."""
    out = tmp_path / "lists"
    shutil.copytree(two_months["out"], out, symlinks=True, ignore=shutil.ignore_patterns(".lock", "audit.jsonl"))
    assert (out / "2025-10").is_symlink() and (out / MONTH).is_symlink()
    return out


def test_last_month_with_its_population_deleted_is_refused_not_skipped(score, two_months, tmp_path):
    """The red team's case: it was treated as absent, silently (everyone new, no shrink check, exit 0)."""
    from riskstrat.scoring.published import TamperedFileError

    out = _with_both_months(two_months, tmp_path)
    october = publish.month_run(out, "2025-10")
    (october / "population.parquet").unlink()
    (out / MONTH).unlink()
    with pytest.raises(TamperedFileError, match=r"last month \(2025-10\) cannot be verified.*/\.runs/2025-10-"
                                                r"[0-9a-f]{12}/population.parquet is missing, though .*records it"
                                                r".*Nothing was published.*allow_unverified_previous_month=true"):
        score(out)
    assert not (out / MONTH).exists()
    manifest = score(out, "allow_unverified_previous_month=true")
    assert manifest["previous_month"] is None and manifest["previous_month_unverified"]["month"] == "2025-10"
    assert "population.parquet is missing" in manifest["previous_month_unverified"]["problem"]


def test_a_month_whose_published_manifest_cannot_be_believed_is_not_compared_silently(score, two_months, tmp_path):
    """A rerun compares its population with the month as published; a manifest that does not parse
    was taken as no month at all (no shrink check)."""
    from riskstrat.scoring.published import ManifestError

    out = _with_both_months(two_months, tmp_path)
    (out / "2025-10").unlink()  # no earlier month: the rerun is compared with November as published
    manifest = publish.month_run(out, MONTH) / "manifest.json"
    manifest.write_text(manifest.read_text()[:300])  # truncated
    with pytest.raises(ManifestError, match=r"2025-11 as published cannot be verified, so this run's population "
                                            r"cannot be compared with it: .*manifest.json \(month 2025-11\) is not "
                                            r"valid JSON.*Nothing was published.*allow_unverified_previous_month=true"):
        score(out, "cohort.min_age=70", "replace_existing=true")
    assert manifest.read_text().startswith("{") and len(manifest.read_text()) == 300  # untouched
    score(out, "cohort.min_age=70", "replace_existing=true", "allow_unverified_previous_month=true")
    forced = json.loads((out / MONTH / "manifest.json").read_text())
    assert forced["counts"]["excluded_by_cohort"]["younger_than_min_age"] > 0


@pytest.mark.parametrize("planted", ["manifest FIFO", "population FIFO", "manifest link", "population link"])
def test_last_month_with_a_fifo_or_link_in_place_of_a_file_is_refused_without_hanging(two_months, tmp_path, planted,
                                                                                    without_hanging):
    """A FIFO in place of the manifest hung `score` for ever, holding the output folder's lock; a
    link to a copy elsewhere was followed (its bytes have the right hash)."""
    import os

    from riskstrat.scoring.inputs import previous_month
    from riskstrat.scoring.published import PublishedMonthError

    out = tmp_path / "lists"
    month = out / "2025-09"  # a month folder as an earlier riskstrat wrote it (a real folder)
    shutil.copytree(two_months["out"] / "2025-10", month)
    manifest = json.loads((month / "manifest.json").read_text())
    manifest.update(month="2025-09", as_of="2025-09-01")
    (month / "manifest.json").write_text(json.dumps(manifest))
    name = "manifest.json" if planted.startswith("manifest") else "population.parquet"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(month / name, elsewhere / name)
    if planted.endswith("FIFO"):
        os.mkfifo(month / name)
    else:
        (month / name).symlink_to(elsewhere / name)
    kind = r"a FIFO \(named pipe\)" if planted.endswith("FIFO") else r"a symbolic link \(to .*elsewhere/"
    with pytest.raises(PublishedMonthError, match=rf"last month \(2025-09\) cannot be verified.*2025-09/{name} "
                                                  rf"is {kind}.*not a regular file"):
        without_hanging(lambda: previous_month(out, MONTH), fifos=[month / name])


def test_last_month_is_read_from_the_run_folder_its_link_was_checked_at(two_months, tmp_path, monkeypatch):
    """A month link swapped between the check and the read (here: just after month_run) must not be
    followed: the month read is the one checked."""
    import os

    from riskstrat.data.io import file_sha256, write_parquet
    from riskstrat.scoring.inputs import previous_month

    out = _with_both_months(two_months, tmp_path)
    genuine = pd.read_parquet(publish.month_run(out, "2025-10") / "population.parquet")
    lookalike = tmp_path / "elsewhere" / "2025-10"  # a consistent month of someone else's making
    shutil.copytree(publish.month_run(out, "2025-10"), lookalike)
    write_parquet(pd.read_parquet(lookalike / "population.parquet").iloc[:10], lookalike / "population.parquet")
    manifest = json.loads((lookalike / "manifest.json").read_text())
    manifest["files"]["population.parquet"] = file_sha256(lookalike / "population.parquet")
    (lookalike / "manifest.json").write_text(json.dumps(manifest))
    checked = publish.month_run

    def then_swapped(root, month):
        folder = checked(root, month)
        if month == "2025-10":
            swap = Path(root) / ".swap"
            swap.symlink_to(lookalike, target_is_directory=True)
            os.replace(swap, Path(root) / month)
        return folder

    monkeypatch.setattr(publish, "month_run", then_swapped)
    name, population, _ = previous_month(out, MONTH)
    assert name == "2025-10" and len(population) == len(genuine) > 10


def test_with_allow_stale_data_only_stale_data_is_a_warning_not_any_fault(score, tmp_path, monkeypatch):
    from riskstrat.modeling import guards

    def broken(*args, **kwargs):
        raise TypeError("a bug in the currency check")

    monkeypatch.setattr(guards, "check_data_currency", broken)
    with pytest.raises(TypeError, match="a bug in the currency check"):
        score(tmp_path / "lists", "allow_stale_data=true")
    assert not (tmp_path / "lists" / MONTH).exists()


# ----------------------------------------------------------------------------- hold-out


def test_held_out_people_are_recorded_but_not_shown(score, tmp_path):
    manifest = score(tmp_path, "lists.holdout_fraction=0.2", "lists.holdout_seed=7",
                     "lists.holdout_approval=Test ICB governance, ref T-1")
    month = Path(manifest["output_dir"])
    population = pd.read_parquet(month / "population.parquet")
    held = population.loc[population["holdout"]]
    assert held["listed"].all()
    per_practice = population.loc[population["listed"]].groupby("practice_id")["holdout"].agg(["size", "sum"])
    # The very high tier is never held back; the fraction applies to the other listed people.
    assert not held["tier"].astype(str).eq("very high").any()
    eligible = population.loc[population["listed"] & population["tier"].astype(str).ne("very high")]
    per_eligible = eligible.groupby("practice_id").size().reindex(per_practice.index, fill_value=0)
    assert (per_practice["sum"] == np.floor(0.2 * per_eligible + 0.5)).all()
    assert manifest["holdout"]["exempt_tiers"] == ["very high"] and manifest["holdout"]["fraction"] == 0.2
    held_ids = set(held["person_id"])
    for folder in practice_folders(month):
        shown = list_ids(folder)
        assert len(shown) == per_practice.loc[folder.name, "size"] - per_practice.loc[folder.name, "sum"]
        for name in ("list.csv", "list.html", "list.xlsx", "changes.csv"):
            assert not ids_in(folder / name) & held_ids, (folder.name, name)
    counts = manifest["counts"]
    assert counts["held_out"] == len(held) == int(per_practice["sum"].sum()) > 0
    assert counts["listed"] == int(population["listed"].sum())
    summary = pd.read_csv(month / "summary.csv", encoding="utf-8-sig", dtype=str).set_index("practice_id")
    safe = lists.suppress_small_numbers(pd.DataFrame({"held back": [counts["held_out"]],
                                                      "shown": [counts["listed"] - counts["held_out"]]}))
    assert summary.loc["all practices", "held back"] == safe.loc[0, "held back"]  # small numbers suppressed
    assert summary.loc["all practices", "shown"] == safe.loc[0, "shown"]


# ----------------------------------------------------------------------------- flags


def test_flags_from_the_data_are_shown_or_left_off_and_counted(score, data_dir, tmp_path):
    """A case-managed file and a later extract flag listed people; lists.exclude_flags leaves the people
    who died off the lists, and every file and count says so."""
    first = score(tmp_path / "plain")
    population = pd.read_parquet(Path(first["output_dir"]) / "population.parquet")
    listed = population.loc[population["listed"], "person_id"].astype(str).tolist()
    case_managed, died = listed[:3], listed[3:5]
    (tmp_path / "case_managed.txt").write_text("\n".join(i.upper() for i in case_managed) + "\n")  # canonical match
    later = tmp_path / "next"
    later.mkdir()
    persons = pd.read_parquet(data_dir / "persons.parquet")
    persons["death_date"] = persons["death_date"].astype("datetime64[s]")
    persons.loc[persons["person_id"].astype(str).isin(died), "death_date"] = pd.Timestamp("2025-11-20")
    persons.to_parquet(later / "persons.parquet")
    manifest = score(tmp_path / "flags", path_override_item("case_managed_file", tmp_path / "case_managed.txt"),
                     path_override_item("next_extract", later), "lists.exclude_flags=[died]")
    flags = manifest["flags"]
    assert flags["flagged"]["case_managed"] == 3 and flags["flagged"]["died"] == 2 and flags["excluded"] == ["died"]
    assert manifest["counts"]["left_off_for_flags"] == 2
    month = Path(manifest["output_dir"])
    shown = {pid: folder for folder in practice_folders(month) for pid in list_ids(folder)}
    assert not set(died) & set(shown) and set(case_managed) <= set(shown)
    table = pd.read_csv(shown[case_managed[0]] / "list.csv", dtype=str, keep_default_na=False)
    row = table.set_index("Person ID").loc[case_managed[0]]
    assert "case-managed" in row["Flags"]
    assert {"Last emergency admission", "Outpatient specialties (12m)", "Long-term conditions"} <= set(table.columns)
    dead_home = population.set_index("person_id").loc[died[0], "practice_id"]
    page = (month / "practices" / dead_home / "list.html").read_text()
    assert "left off for a flag" in page and "died since the data end" in page
    # Without the settings, nobody is left off and the page says which flags were not checked.
    plain = (Path(first["output_dir"]) / "practices" / dead_home / "list.html").read_text()
    assert 'id="left-off"' not in plain and "Not checked this month: case-managed" in plain
    assert first["counts"]["left_off_for_flags"] == 0


def path_override_item(key: str, path) -> str:
    from riskstrat.modeling.config import path_override

    return path_override(key, path)


# ----------------------------------------------------------------------------- all or nothing


def test_a_failure_while_writing_leaves_no_partial_month(score, tmp_path, monkeypatch):
    out = tmp_path / "lists"

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as m:
        m.setattr(lists, "_write_html", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            score(out)
    assert not (out / MONTH).exists()
    assert visible(out) == [] and list((out / ".runs").iterdir()) == []

    # A failed rerun leaves the month written before untouched.
    score(out)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / MONTH).rglob("*") if p.is_file()}
    with monkeypatch.context() as m:
        m.setattr(lists, "_write_html", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            score(out, "lists.list_size=10")
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / MONTH).rglob("*") if p.is_file()}
    assert after == before
    assert visible(out) == [MONTH] and len(list((out / ".runs").iterdir())) == 1
    events = [json.loads(line)["event"] for line in (out / "audit.jsonl").read_text().splitlines()]
    assert events == ["started", "failed", "started", "published", "tracked", "started", "failed"]


def test_an_mlflow_failure_after_writing_keeps_the_complete_month(score, tmp_path, monkeypatch):
    """Decision, recorded here: the run is recorded in the audit log, the month published, then MLflow
    told. If MLflow fails the files (complete and consistent) stay, the audit log says so, and the
    error is riskstrat's own (a message, not a traceback); a rerun writes the same bytes and records it."""
    import sqlite3

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    with monkeypatch.context() as m:
        m.setattr(tracking, "log_scoring_run", broken)
        with pytest.raises(PublishedButNotTrackedError, match=r"published to .* complete.*database is locked.*again"):
            score(tmp_path)
    month = tmp_path / MONTH
    recorded = json.loads((month / "manifest.json").read_text())["files"]
    assert recorded and all(hashlib.sha256((month / n).read_bytes()).hexdigest() == h for n, h in recorded.items())
    assert no_temp_left(tmp_path)
    first = person_files(month)
    score(tmp_path)  # the scheduler's retry
    assert person_files(month) == first
    events = [json.loads(line)["event"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    # The retry's manifest is byte-identical, so it republishes without --replace (and says so).
    assert events == ["started", "published", "tracking_failed", "started", "replaced", "published", "tracked"]


def test_a_rerun_writes_a_byte_identical_manifest_and_keeps_timings_in_the_audit_log(score, tmp_path):
    out = tmp_path / "lists"
    score(out)
    first = (out / MONTH / "manifest.json").read_bytes()
    score(out)
    second = (out / MONTH / "manifest.json").read_bytes()
    assert b"timings" not in first and b"seconds" not in first
    assert second == first  # the workbooks' hashes too: their creation date is the scoring date
    published = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()
                 if json.loads(line)["event"] == "published"]
    assert len(published) == 2 and set(published[0]["timings_seconds"]) >= {"features", "prediction", "shap"}
    assert published[0]["files"]["manifest.json"] == hashlib.sha256(first).hexdigest()
    assert {"user", "time", "command", "models"} <= set(published[0])


def test_an_empty_month_does_not_replace_a_good_one_unless_forced(score, tmp_path):
    out = tmp_path / "lists"
    score(out)
    before = (out / MONTH / "manifest.json").read_bytes()
    with pytest.raises(PublishRefusedError, match="no one was scored"):
        score(out, "cohort.min_age=125")  # the defect: 0 people scored, the practice lists deleted, exit 0
    assert (out / MONTH / "manifest.json").read_bytes() == before
    with pytest.raises(PublishRefusedError, match=r"fewer; at most 20%"):
        score(out, "cohort.min_age=70")
    assert (out / MONTH / "manifest.json").read_bytes() == before
    forced = score(out, "cohort.min_age=70", "allow_population_shrink=true", "replace_existing=true")
    assert forced["counts"]["excluded_by_cohort"]["younger_than_min_age"] > 0


def test_republishing_a_month_with_other_models_is_refused_before_scoring_unless_replace(score, tmp_path, monkeypatch):
    out = tmp_path / "lists"
    score(out)
    before = (out / MONTH / "manifest.json").read_bytes()

    def never(*args, **kwargs):  # the refusal comes before anything is scored
        raise AssertionError("scored")

    with monkeypatch.context() as m:
        m.setattr(lists, "rank_population", never)
        both = rf"{MONTH} is already published .*{RISK_MODEL} v1, {COST_MODEL} v1\); this run \({RISK_MODEL} v1\)"
        with pytest.raises(AlreadyPublishedError, match=both + " would replace it.*--replace"):
            score(out, "models.high_cost=null")
    assert (out / MONTH / "manifest.json").read_bytes() == before
    first_run = (out / MONTH).resolve().name
    manifest = score(out, "models.high_cost=null", "replace_existing=true")
    assert list(manifest["models"]) == [RISK_MODEL]
    events = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["started", "published", "tracked", "refused",
                                            "started", "replaced", "published", "tracked"]
    replaced = events[5]
    assert replaced["previous_run_folder"] == f".runs/{first_run}" and set(replaced["previous_models"]) == {
        RISK_MODEL, COST_MODEL} and set(replaced["models"]) == {RISK_MODEL}
    assert (out / ".runs" / first_run / "manifest.json").read_bytes() == before  # kept until the next publish


def test_cli_replace_republishes_a_month(registry, data_dir, tmp_path):
    from riskstrat.cli import app

    out = tmp_path / "lists"
    args = ["score", "--as-of", AS_OF, "--data", str(data_dir), "--out", str(out), "--quiet",
            "--set", f"tracking.uri={registry['uri']}", "--set", f"models.risk={RISK_MODEL}",
            "--set", f"models.high_cost={COST_MODEL}", "--set", f"lists.list_size={LIST_SIZE}"]
    assert CliRunner().invoke(app, args).exit_code == 0
    refused = CliRunner().invoke(app, [*args, "--set", "models.high_cost=null"])
    assert refused.exit_code == 2 and "--replace" in " ".join(refused.output.split())
    replaced = CliRunner().invoke(app, [*args, "--set", "models.high_cost=null", "--replace"])
    assert replaced.exit_code == 0, replaced.output
    assert list(json.loads((out / MONTH / "manifest.json").read_text())["models"]) == [RISK_MODEL]


def test_a_full_disk_while_writing_is_a_message_and_leaves_the_month(score, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "lists"
    score(out)
    before = (out / MONTH / "manifest.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "list.html")

    monkeypatch.setattr(lists, "_write_html", full)
    with pytest.raises(RiskstratError, match=r"\(list.html\): the disk is full: free space and run again. Nothing was "
                                             r"published"):
        score(out)
    assert (out / MONTH / "manifest.json").read_bytes() == before
    assert visible(out) == [MONTH] and len(list((out / ".runs").iterdir())) == 1


# ----------------------------------------------------------------------------- refusing to score


@pytest.mark.parametrize(("how", "engine"), [("file missing", "pandas"), ("excluded in config", "pandas"),
                                             ("file missing", "duckdb")])
def test_data_without_a_source_the_model_used_is_refused(registry, data_dir, tmp_path, how, engine):
    if how == "file missing":
        data = tmp_path / "data"
        shutil.copytree(data_dir, data, ignore=shutil.ignore_patterns("social_care.parquet"))
        cfg = scoring_config(registry, data, tmp_path / "lists", f"engine={engine}")
    else:
        cfg = scoring_config(registry, data_dir, tmp_path / "lists", "data.exclude_sources=[social_care]",
                             f"engine={engine}")
    with pytest.raises(ModelDataMismatchError, match=r"trained with data from social_care, which this data set lacks"):
        run_scoring(cfg, AS_OF)
    assert not (tmp_path / "lists").exists()


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_a_stray_late_event_does_not_make_stale_data_current(registry, data_dir, tmp_path, with_a_stray_event,
                                                             engine):
    # The data run to 2025-10-31. With no dataset.json, one contact dated 2026-06-15 made the latest event
    # the data end, and a month scored at 2026-07-01 was published from data 8 months old.
    from riskstrat.modeling.guards import StaleDataError

    stray = with_a_stray_event(data_dir, tmp_path / "stray", "2026-06-15")
    cfg = scoring_config(registry, stray, tmp_path / "lists", f"engine={engine}")
    with pytest.raises(StaleDataError, match="the data run to 2025-10-31"):
        run_scoring(cfg, "2026-07-01")
    assert not (tmp_path / "lists").exists()


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_a_high_cost_model_is_refused_on_data_without_health_care_costs(registry, data_dir, tmp_path,
                                                                      without_health_costs, engine):
    from riskstrat.outcomes import MissingCostsError

    blank = without_health_costs(data_dir, tmp_path / "blank")
    cfg = scoring_config(registry, blank, tmp_path / "lists", f"engine={engine}")
    with pytest.raises(MissingCostsError, match=r"being in the highest-cost 5% needs health-care costs"):
        run_scoring(cfg, AS_OF)
    assert not (tmp_path / "lists").exists()


def test_a_missing_alias_tells_the_user_to_train_and_promote(registry, data_dir, tmp_path):
    cfg = scoring_config(registry, data_dir, tmp_path / "lists", "models.alias=staging")
    with pytest.raises(tracking.RegistryError,
                       match=rf"no model '{RISK_MODEL}' with alias 'staging'.*riskstrat train.*riskstrat promote"):
        run_scoring(cfg, AS_OF)
    assert not (tmp_path / "lists").exists()


# ----------------------------------------------------------------------------- manifest and MLflow


def test_manifest_records_models_data_date_and_counts(two_months, registry, data_dir):
    manifest = two_months["november"]
    month = two_months["out"] / MONTH
    runs = registry["runs"]
    assert manifest["models"] == {name: {"version": runs[name].model_version, "run_id": runs[name].run_id,
                                         "alias": "champion"} for name in (RISK_MODEL, COST_MODEL)}
    assert manifest["data"]["sha256"] == data_fingerprint(data_dir)["sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["data"]["sha256"])
    assert (manifest["as_of"], manifest["month"]) == (AS_OF, MONTH)
    # The date the data run to (dataset.json here), on every list too; the data set's currency.
    assert (manifest["data_end"], manifest["data_end_source"], manifest["currency"]) == ("2025-10-31", "dataset.json",
                                                                                          "GBP")
    first = sorted((month / "practices").iterdir())[0]
    assert "Data run to 2025-10-31." in (first / "list.html").read_text()
    assert manifest["counts"]["no_registered_practice"] == 0
    population = pd.read_parquet(month / "population.parquet")
    counts = manifest["counts"]
    assert counts["scored"] == len(population) == counts["eligible"]
    assert counts["listed"] == int(population["listed"].sum()) == 3 * LIST_SIZE
    assert counts["practices"] == 3
    assert sum(counts["tiers"].values()) == counts["scored"]
    assert "timings_seconds" not in manifest  # in the audit log: a rerun's manifest is byte-identical
    assert counts["in_data"] == 3000 and counts["in_data"] - sum(counts["excluded_by_cohort"].values()) == counts["eligible"]
    assert counts["rows_dropped_by_validation"] is not None and counts["empty_tables"] == []
    assert manifest["shap_additivity_max_error"] < 1e-6
    # PSI drift of the risk and of every model feature against the training-time profile.
    drift = manifest["drift"]
    assert drift["reference"] == "test people at 2024-11-01" and drift["score_status"] in ("stable", "warn", "alert")
    assert set(drift["features"]) == set(tracking.load_model(RISK_MODEL, uri=registry["uri"]).risk_model.feature_names)
    on_disk = json.loads((month / "manifest.json").read_text())
    for key in ("as_of", "models", "data", "counts", "package_version", "previous_month"):
        assert on_disk[key] == manifest[key], key
    for name, digest in on_disk["files"].items():
        assert hashlib.sha256((month / name).read_bytes()).hexdigest() == digest, name


def test_scoring_run_is_logged_to_mlflow_without_person_ids(two_months, registry, home_practice):
    import mlflow

    tracking.configure(registry["uri"])
    manifest = two_months["november"]
    runs = mlflow.search_runs(experiment_names=["riskstrat-scoring"], output_format="list",
                              filter_string=f"tags.`riskstrat.as_of` = '{AS_OF}'")
    logged = [r for r in runs
              if mlflow.artifacts.load_dict(f"runs:/{r.info.run_id}/manifest.json")["output_dir"]
              == manifest["output_dir"]]
    assert len(logged) == 1
    run = logged[0]
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"manifest.json", "summary.csv"}
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/manifest.json")["data"] == manifest["data"]
    assert run.data.params[f"model.{RISK_MODEL}"] == f"1 ({registry['runs'][RISK_MODEL].run_id})"
    assert run.data.metrics["count.scored"] == manifest["counts"]["scored"]
    texts = [mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{a}") for a in ("manifest.json", "summary.csv")]
    texts += [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(run.data.metrics)]
    ids = set(home_practice.index)
    assert not [pid for text in texts for pid in PERSON_ID.findall(text) if pid in ids]


# ----------------------------------------------------------------------------- re-identification


def test_reidentification_adds_local_ids_to_that_practice_only(score, home_practice, tmp_path):
    practice = sorted(home_practice.unique())[0]
    patients = home_practice.index[home_practice == practice]
    lookups = tmp_path / "lookups"
    lookups.mkdir()
    local = pd.DataFrame({"person_id": patients, "local_id": [f"NHS{i:07d}" for i in range(len(patients))]})
    local.to_csv(lookups / f"{practice}.csv", index=False)

    manifest = score(tmp_path / "lists", f"reidentify_dir={lookups}")

    month = Path(manifest["output_dir"])
    mapping = dict(zip(local["person_id"], local["local_id"]))
    for folder in practice_folders(month):
        table = pd.read_csv(folder / "list.csv", dtype=str, encoding="utf-8-sig")
        if folder.name == practice:
            assert list(table.columns[1:3]) == ["Local ID", "Person ID"]
            assert table["Local ID"].tolist() == table["Person ID"].map(mapping).tolist()
        else:
            assert "Local ID" not in table.columns
            for name in ("list.csv", "list.html", "list.xlsx"):
                assert "Local ID" not in file_text(folder / name) and "NHS" not in file_text(folder / name)
    for name in ("population.parquet", "summary.csv", "manifest.json"):
        assert not re.search(r"NHS\d{7}", file_text(month / name)), name


# ----------------------------------------------------------------------------- the command


def test_cli_score_prints_one_result_line(registry, data_dir, tmp_path, monkeypatch):
    from riskstrat.cli import app

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "lists"
    args = ["score", "--as-of", AS_OF, "--data", str(data_dir), "--out", str(out), "--quiet",
            "--set", f"tracking.uri={registry['uri']}", "--set", f"models.risk={RISK_MODEL}",
            "--set", f"models.high_cost={COST_MODEL}", "--set", "lists.holdout_fraction=0.1",
            "--set", "lists.holdout_approval=Test ICB governance, ref T-1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MONTH / "manifest.json").read_text())
    c = manifest["counts"]
    expected = (f"{MONTH}: scored {c['scored']:,} people (0 opted out removed) with {RISK_MODEL} v1, {COST_MODEL} v1; "
                f"{c['listed']:,} listed in 3 practices ({c['held_out']:,} held out, {c['new_this_month']:,} new) "
                f"-> {out / MONTH}")
    assert result.output == expected + "\n"  # one line, however long (batch logs are read with grep)
    assert not (tmp_path / "mlflow.db").exists()  # the configured store was used


@pytest.mark.parametrize(("extra", "message"), [
    (["--as-of", "2025-11-31"], "'2025-11-31' is not a date like 2026-11-01"),
    (["--as-of", AS_OF, "--set", "models.alias=staging"], "promote"),
    (["--as-of", AS_OF, "--set", "lists.list_sise=5"], "lists.list_sise"),
])
def test_cli_score_refusals_exit_2_with_a_clear_message(registry, data_dir, tmp_path, extra, message):
    from riskstrat.cli import app

    out = tmp_path / "lists"
    args = ["score", "--data", str(data_dir), "--out", str(out), "--set", f"tracking.uri={registry['uri']}",
            "--set", f"models.risk={RISK_MODEL}", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not out.exists()


# ----------------------------------------------------------------------------- environment faults


def test_missing_model_artifacts_are_a_message_naming_the_model(registry, data_dir, tmp_path):
    artifacts = registry["store"] / "mlartifacts"
    hidden = registry["store"] / "mlartifacts-hidden"
    artifacts.rename(hidden)
    try:
        with pytest.raises(tracking.TrackingStoreError, match=rf"the files of model {RISK_MODEL} version 1 .* cannot "
                                                              rf"be loaded.*train \(and promote\)"):
            run_scoring(scoring_config(registry, data_dir, tmp_path / "lists"), AS_OF)
    finally:
        hidden.rename(artifacts)
    assert not (tmp_path / "lists").exists()


@pytest.mark.parametrize("corrupt", [lambda b: b[: len(b) // 2], lambda b: bytes([0x80, 0x04, 0xD3]) + b[3:],
                                     lambda b: np.random.default_rng(0).bytes(len(b))],
                         ids=["truncated", "bad-opcode", "random"])
def test_a_corrupt_model_artifact_is_a_message_naming_the_model(registry, data_dir, tmp_path, corrupt):
    files = sorted((registry["store"] / "mlartifacts").rglob("*.joblib")) + sorted(
        (registry["store"] / "mlartifacts").rglob("python_model.pkl"))
    kept = {f: f.read_bytes() for f in files}
    try:
        for f, data in kept.items():
            f.write_bytes(corrupt(data))
        with pytest.raises(tracking.TrackingStoreError, match=rf"the files of model {RISK_MODEL} version 1 .* cannot "
                                                              rf"be loaded.*Restore the artifact store"):
            run_scoring(scoring_config(registry, data_dir, tmp_path / "lists"), AS_OF)
    finally:
        for f, data in kept.items():
            f.write_bytes(data)
    assert not (tmp_path / "lists").exists()


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_an_empty_feed_the_models_use_is_refused_unless_allowed(registry, data_dir, tmp_path, engine):
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    spells = pq.read_table(data / "inpatient_spells.parquet")
    pq.write_table(spells.slice(0, 0), data / "inpatient_spells.parquet")  # the header only
    with pytest.raises(ModelDataMismatchError, match=r"inpatient_spells has no rows in this data set.*"
                                                     r"allow_empty_sources=true"):
        run_scoring(scoring_config(registry, data, tmp_path / "lists", f"engine={engine}"), AS_OF)
    assert not (tmp_path / "lists").exists()
    manifest = run_scoring(scoring_config(registry, data, tmp_path / "lists", f"engine={engine}",
                                          "allow_empty_sources=true"), AS_OF)
    assert manifest["counts"]["scored"] > 0


def test_data_pseudonymised_under_another_key_are_refused_before_scoring(registry, data_dir, tmp_path, monkeypatch):
    from riskstrat.data.privacy import KEY_ENV, PseudonymKeyError, key_fingerprint

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    meta = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**meta, "pseudonym_key_fingerprint": key_fingerprint(b"old")}))
    monkeypatch.setenv(KEY_ENV, "new")
    with pytest.raises(PseudonymKeyError, match=rf"another key \(fingerprint {key_fingerprint(b'old')}\)"):
        run_scoring(scoring_config(registry, data, tmp_path / "lists"), AS_OF)
    assert not (tmp_path / "lists").exists()


def test_cli_a_second_run_on_the_same_output_folder_exits_2_naming_the_holder(registry, data_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    from riskstrat.cli import app

    out, marker = tmp_path / "lists", tmp_path / "holding"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from riskstrat.scoring.publish import output_lock
        with output_lock({str(out)!r}):
            Path({str(marker)!r}).write_text("")
            time.sleep(60)
    """)
    src = str(Path(__file__).resolve().parents[1] / "src")
    holder = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": src})
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        args = ["score", "--as-of", AS_OF, "--data", str(data_dir), "--out", str(out), "--quiet",
                "--set", f"tracking.uri={registry['uri']}", "--set", f"models.risk={RISK_MODEL}",
                "--set", f"models.high_cost={COST_MODEL}"]
        result = CliRunner().invoke(app, args)
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and f"pid {holder.pid}" in text and "being written by user" in text, text
        assert "Traceback" not in result.output and not (out / MONTH).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_reidentification_lookups_match_in_canonical_form_and_a_foreign_one_is_refused(score, home_practice,
                                                                                        tmp_path):
    from riskstrat.data.privacy import PseudonymKeyError

    practice = sorted(home_practice.unique())[0]
    patients = home_practice.index[home_practice == practice]
    lookups = tmp_path / "lookups"
    lookups.mkdir()
    # Upper case with spaces, as a spreadsheet may save it: still the same people.
    pd.DataFrame({"person_id": [f" {p.upper()} " for p in patients],
                  "local_id": [f"NHS{i:07d}" for i in range(len(patients))]}).to_csv(lookups / f"{practice}.csv",
                                                                                    index=False)
    manifest = score(tmp_path / "lists", f"reidentify_dir={lookups}")
    table = pd.read_csv(Path(manifest["output_dir"]) / "practices" / practice / "list.csv", dtype=str,
                        encoding="utf-8-sig")
    assert table["Local ID"].str.fullmatch(r"NHS\d{7}").all()
    assert manifest["counts"]["reidentify_rows_matching_no_one"] == 0

    pd.DataFrame({"person_id": [f"{i:016x}" for i in range(5)], "local_id": ["x"] * 5}).to_csv(
        lookups / f"{practice}.csv", index=False)
    with pytest.raises(PseudonymKeyError, match=rf"none of the 5 pseudonyms in practice {practice}'s"):
        score(tmp_path / "lists2", f"reidentify_dir={lookups}")
