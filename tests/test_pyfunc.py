"""The registered model as other tools load it (riskstrat.registry.pyfunc): mlflow.pyfunc.load_model
gives risk, tier and reasons per row; it loads in a clean environment from its own files (the modules and
the wheel's package data, nothing else); models logged before the re-layer load and predict as they did,
a model naming a class that is gone is refused in words; riskstrat's loads leave the import path as it was."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
import types
import venv
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import joblib

import riskstrat
from riskstrat.features.reasons import top_reasons
from riskstrat.features.spec import CLINICAL
from riskstrat.features.words import reason_thresholds
from riskstrat.modeling.calibration import MarginCalibrator, RawMargin
from riskstrat.modeling.config import LightGBMConfig, ListsConfig
from riskstrat.modeling.models import LogScaled, RiskModel, fit_lightgbm
from riskstrat.modeling.tiers import DEFAULT_TIER_CUTOFFS, LOWEST_TIER
from riskstrat.registry import pyfunc, tracking
from riskstrat.scoring.checks import FeatureSpecMismatchError, check_feature_spec

FEATURES = ["age", "emergency_admissions_0_3m", "emergency_admissions_3_12m", "emergency_admissions_12_24m",
            "days_since_emergency_admission", "ae_attendances_0_3m", "ae_attendances_3_12m", "rx_items_12m"]
CUTOFFS = {"very high": 0.01, "high": 0.05, "moderate": 0.20}


def _people(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.uniform(18, 95, n), "emergency_admissions_0_3m": rng.poisson(0.2, n),
                      "emergency_admissions_3_12m": rng.poisson(0.5, n), "emergency_admissions_12_24m": rng.poisson(0.5, n),
                      "days_since_emergency_admission": rng.uniform(1, 700, n), "ae_attendances_0_3m": rng.poisson(0.3, n),
                      "ae_attendances_3_12m": rng.poisson(0.8, n), "rx_items_12m": rng.poisson(20, n)}).astype("float64")
    logit = -3 + 0.03 * (X["age"] - 60) + 0.8 * (X["emergency_admissions_0_3m"] + X["emergency_admissions_3_12m"])
    return X, (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)


@pytest.fixture(scope="module")
def logged(tmp_path_factory, new_mlflow_store):
    """A small LightGBM model logged and registered as training logs it, in a temporary SQLite store."""
    X, y = _people(3000, 1)
    X_cal, y_cal = _people(1500, 2)
    model = fit_lightgbm(X, y, X_cal, y_cal, params=LightGBMConfig(n_estimators=40, n_jobs=1), target="emergency_admission")
    store = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(store)
    tracking.configure(uri)
    with mlflow.start_run(experiment_id=tracking._experiment("pyfunc-test")):
        info = pyfunc.log_served_model(model, example=tracking.example_input(X), reference=X_cal,
                                       lists=ListsConfig(tiers=CUTOFFS), name="pyfunc-test")
    return model, info, X_cal, uri


def test_load_model_gives_risk_tier_and_reasons_per_row(logged):
    model, info, reference, uri = logged
    tracking.configure(uri)
    served = mlflow.pyfunc.load_model(f"models:/pyfunc-test/{info.registered_model_version}")
    rows, _ = _people(40, 3)
    rows.index = [f"row{i}" for i in range(40)]  # any index: the output keeps it
    out = served.predict(rows)
    assert list(out.columns) == ["risk", "tier", "reasons", "reason_1", "reason_2", "reason_3"]
    assert out.index.equals(rows.index)
    np.testing.assert_allclose(out["risk"], model.predict_risk(rows), rtol=0, atol=1e-12)

    # The tier thresholds cut the reference population at the configured fractions.
    thresholds = pyfunc.tier_thresholds(model.predict_risk(reference), cutoffs=CUTOFFS)
    ranked = np.sort(model.predict_risk(reference))[::-1]
    assert thresholds == {name: float(ranked[round(f * len(ranked)) - 1]) for name, f in CUTOFFS.items()}
    assert served.metadata.metadata["tier_thresholds"] == thresholds
    expected = np.where(out["risk"] >= thresholds["very high"], "very high",
                        np.where(out["risk"] >= thresholds["high"], "high",
                                 np.where(out["risk"] >= thresholds["moderate"], "moderate", LOWEST_TIER)))
    assert out["tier"].tolist() == expected.tolist()
    assert out["tier"].nunique() >= 2

    # The lists' reasons for the same people, in words.
    # With the words of degree judged against the reference population, stored at logging time.
    frame = rows.reset_index(drop=True)
    kept = reason_thresholds(reference)
    assert served.metadata.metadata["reason_thresholds"] == kept.as_dict() and kept.values
    words = top_reasons(model.contributions(frame)[0], frame, n=3, thresholds=kept)
    assert out["reasons"].tolist() == words["reasons"].tolist()
    said = out["reason_1"].dropna()
    assert len(said) > 20 and all(isinstance(t, str) and any(c.isalpha() for c in t) for t in said)
    assert any("emergency admission" in t for t in said)

    one = served.predict(rows.iloc[[0]].astype({"emergency_admissions_0_3m": "int64"}))  # one person, counts as ints
    assert one["risk"].iloc[0] == pytest.approx(out["risk"].iloc[0], abs=1e-12)
    assert one["tier"].iloc[0] == out["tier"].iloc[0]


def test_riskstrat_still_unwraps_the_risk_model(logged):
    model, info, reference, uri = logged
    loaded = tracking.load_model("pyfunc-test", version=info.registered_model_version, uri=uri)
    np.testing.assert_allclose(loaded.risk_model.predict_risk(reference), model.predict_risk(reference), atol=0)


def test_the_model_carries_its_code_and_installable_requirements(logged):
    _, info, _, uri = logged
    tracking.configure(uri)
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    assert (local / "code" / "riskstrat" / "registry" / "pyfunc.py").is_file()
    assert (local / "code" / "riskstrat" / "data" / "codelists").is_dir()
    assert not list((local / "code").rglob("__pycache__"))
    home = Path(riskstrat.__file__).resolve().parent
    shipped = {str(p.relative_to(local / "code" / "riskstrat")) for p in (local / "code" / "riskstrat").rglob("*")
               if p.is_file()}
    assert shipped == {str(p.relative_to(home)) for p in home.rglob("*.py") if "__pycache__" not in p.parts} | {
        str(p.relative_to(home)) for pattern in pyfunc.PACKAGE_DATA for p in home.glob(pattern)}
    required = (local / "requirements.txt").read_text().split()
    assert not [r for r in required if r.startswith("riskstrat")], required
    assert all("==" in r for r in required), required
    assert {r.split("==")[0] for r in required} >= {"mlflow", "lightgbm", "scikit-learn", "pandas", "numpy"}
    example = json.loads((local / "input_example.json").read_text())
    assert example["columns"] == FEATURES and len(example["data"]) == 1  # a median person, no identifier


# The classes of riskstrat before the re-layer (c042a56), where its models' pickles name them: read with
# pickletools off the models and baselines `riskstrat demo` registered with that code.
BEFORE_RELAYER = {"riskstrat.models": {"RiskModel": RiskModel, "LogScaled": LogScaled},
                  "riskstrat.calibration": {"MarginCalibrator": MarginCalibrator, "RawMargin": RawMargin}}


class _RiskPyfuncBeforeRelayer(mlflow.pyfunc.PythonModel):
    """riskstrat.tracking.RiskPyfunc as it was before the re-layer (the same in all 29 versions of it)."""

    def load_context(self, context) -> None:
        self.risk_model = joblib.load(context.artifacts["risk_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        return pd.Series(self.risk_model.predict_risk(model_input), name="risk")


def _log_as_before_relayer(model, *, name: str, uri: str, tmp_path: Path, monkeypatch) -> Path:
    """Register ``model`` as riskstrat did before the re-layer: its pickles name the classes by their old
    modules (the classes' ``__module__`` and the old modules put back for the while); returns the
    joblib file of the risk model."""
    path = tmp_path / "risk_model.joblib"
    served = type("RiskPyfunc", (_RiskPyfuncBeforeRelayer,), {"__module__": "riskstrat.tracking"})
    with monkeypatch.context() as before:
        for module, classes in {**BEFORE_RELAYER, "riskstrat.tracking": {"RiskPyfunc": served}}.items():
            old = types.ModuleType(module)
            for cls_name, cls in classes.items():
                assert cls.__qualname__ == cls_name
                setattr(old, cls_name, cls)
                before.setattr(cls, "__module__", module)
            before.setitem(sys.modules, module, old)
        joblib.dump(model, path)
        tracking.configure(uri)
        with mlflow.start_run(experiment_id=tracking._experiment("pyfunc-test")):
            mlflow.pyfunc.log_model(name="model", python_model=served(),
                                    artifacts={"risk_model": str(path)}, registered_model_name=name,
                                    pip_requirements=["pandas"])
    assert not {"riskstrat.models", "riskstrat.calibration", "riskstrat.tracking"} & set(sys.modules)
    return path


def test_a_model_from_before_the_relayer_loads_and_predicts_the_same(logged, tmp_path, monkeypatch):
    model, _, reference, uri = logged
    path = _log_as_before_relayer(model, name="before-relayer", uri=uri, tmp_path=tmp_path, monkeypatch=monkeypatch)
    with pytest.raises(ModuleNotFoundError, match="riskstrat.models"):  # the pickle names the old module
        joblib.load(path)

    loaded = tracking.load_model("before-relayer", version=1, uri=uri)
    assert type(loaded.risk_model) is RiskModel and type(loaded.risk_model.calibrator) is MarginCalibrator
    np.testing.assert_array_equal(loaded.risk_model.predict_risk(reference), model.predict_risk(reference))
    assert not {"riskstrat.models", "riskstrat.calibration", "riskstrat.tracking"} & set(sys.modules)

    # Served as it was: the risk only, through the old class's new home.
    with pyfunc.older_class_paths():
        served = mlflow.pyfunc.load_model("models:/before-relayer/1")
    assert isinstance(served.unwrap_python_model(), pyfunc.OlderRiskPyfunc)
    out = served.predict(reference.head(20))
    np.testing.assert_array_equal(np.asarray(out["risk"] if isinstance(out, pd.DataFrame) else out),
                                  model.predict_risk(reference.head(20)))


def test_a_baseline_from_before_the_relayer_loads(tmp_path, monkeypatch):
    """The logistic baseline's pipeline holds riskstrat.models.LogScaled."""
    path = tmp_path / "logistic.joblib"
    scaled = LogScaled()
    with monkeypatch.context() as before:
        old = types.ModuleType("riskstrat.models")
        old.LogScaled = LogScaled
        before.setattr(LogScaled, "__module__", "riskstrat.models")
        before.setitem(sys.modules, "riskstrat.models", old)
        joblib.dump(scaled, path)
    with pytest.raises(ModuleNotFoundError):
        joblib.load(path)
    assert type(pyfunc.load_risk_model(path)) is LogScaled


@pytest.mark.parametrize("metadata, refusal", [
    ({"feature_spec_hash": "0" * 16}, r"feature definitions 0{16} when trained"),
    ({"feature_spec": {**CLINICAL.to_dict(), "derive_version": 1}}, r"derive version 1"),
])
def test_a_model_from_before_the_relayer_is_still_refused_for_its_features(logged, tmp_path, monkeypatch,
                                                                         metadata, refusal):
    """Loading it is no longer the refusal; the checks on what it was trained on still are."""
    model, _, _, uri = logged
    older = copy.deepcopy(model)
    older.metadata = {**older.metadata, **metadata}
    name = f"before-relayer-{len(refusal)}"
    _log_as_before_relayer(older, name=name, uri=uri, tmp_path=tmp_path, monkeypatch=monkeypatch)
    loaded = tracking.load_model(name, version=1, uri=uri)
    with pytest.raises(FeatureSpecMismatchError, match=refusal):
        check_feature_spec(loaded)


def test_a_model_naming_a_class_that_is_gone_is_refused_in_words(logged, monkeypatch):
    """A pickle naming a riskstrat class that exists neither where it says nor among the older paths
    riskstrat knows is refused with what to do, not a ModuleNotFoundError."""
    old = types.ModuleType("riskstrat.served")

    class RiskPyfunc(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
            return pd.Series(0.5, index=model_input.index, name="risk")

    RiskPyfunc.__module__, RiskPyfunc.__qualname__ = "riskstrat.served", "RiskPyfunc"
    old.RiskPyfunc = RiskPyfunc
    monkeypatch.setitem(sys.modules, "riskstrat.served", old)
    uri = logged[3]
    tracking.configure(uri)
    with mlflow.start_run(experiment_id=tracking._experiment("pyfunc-test")):
        mlflow.pyfunc.log_model(name="model", python_model=RiskPyfunc(), registered_model_name="gone-model",
                                pip_requirements=["pandas"])
    monkeypatch.delitem(sys.modules, "riskstrat.served")  # the module is gone
    with pytest.raises(pyfunc.OlderModelError, match=r"gone-model version 1 was logged by an older riskstrat.*"
                                                     r"riskstrat\.served.*Train the model again"):
        tracking.load_model("gone-model", version=1, uri=uri)


def _riskstrat_modules() -> dict:
    return {name: module for name, module in sys.modules.items() if name.split(".")[0] == "riskstrat"}


def test_riskstrats_loads_leave_the_import_path_as_it_was(logged):
    model, info, reference, uri = logged
    home = Path(riskstrat.__file__).resolve().parent
    path, modules = list(sys.path), _riskstrat_modules()
    tracking.load_model("pyfunc-test", version=info.registered_model_version, uri=uri)
    assert sys.path == path
    tracking.configure(uri)
    with mlflow.start_run(experiment_id=tracking._experiment("pyfunc-test")):
        pyfunc.log_served_model(model, example=tracking.example_input(reference), reference=reference)
    assert sys.path == path
    assert {k: v for k, v in _riskstrat_modules().items() if k in modules} == modules
    assert all(Path(m.__file__).resolve().is_relative_to(home) for m in _riskstrat_modules().values())

    # What is put back: MLflow's own load puts the model's code copy first.
    try:
        mlflow.pyfunc.load_model(f"models:/pyfunc-test/{info.registered_model_version}")
        assert sys.path[0].endswith("code") and sys.path[1:] == path
    finally:
        sys.path[:] = path


def test_import_path_kept_puts_back_the_path_and_riskstrats_modules(tmp_path):
    path, errors = sys.path, sys.modules["riskstrat.errors"]
    entries = list(path)
    copied = types.ModuleType("riskstrat.from_a_model")
    copied.__file__ = str(tmp_path / "code" / "riskstrat" / "from_a_model.py")
    with pyfunc.import_path_kept():
        sys.path = [str(tmp_path / "code"), *sys.path]
        sys.path.append("/gone")
        sys.modules["riskstrat.errors"] = types.ModuleType("riskstrat.errors")
        sys.modules["riskstrat.from_a_model"] = copied
    assert sys.path is path and sys.path == entries
    assert sys.modules["riskstrat.errors"] is errors
    assert "riskstrat.from_a_model" not in sys.modules


def test_the_code_copy_holds_the_modules_and_package_data_only(tmp_path):
    source = tmp_path / "src" / "riskstrat"
    wanted = ["__init__.py", "scoring/lists.py", "data/codelists/__init__.py", "data/codelists/ltc_icd10.csv",
              "templates/list.html.j2", "templates/list.css", "templates/list.js", "templates/card.md",
              "templates/evaluation.html"]
    stray = ["__pycache__/__init__.cpython-311.pyc", "scoring/__pycache__/lists.cpython-311.pyc", "notes.txt",
             "data/codelists/draft.xlsx", "templates/list.html.j2.orig", "templates/.list.css.swp", "_speedups.so",
             "data/synth/big.parquet"]
    for name in wanted + stray:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(name)
    copied = pyfunc._package_copy(tmp_path / "code", source=source)
    assert copied == tmp_path / "code" / "riskstrat"
    assert sorted(str(p.relative_to(copied)) for p in copied.rglob("*") if p.is_file()) == sorted(wanted)
    assert (copied / "templates" / "list.css").read_text() == "templates/list.css"


def test_the_package_data_copied_is_the_wheels():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert tuple(pyproject["tool"]["setuptools"]["package-data"]["riskstrat"]) == pyfunc.PACKAGE_DATA


def test_tier_of_follows_the_thresholds():
    thresholds = pyfunc.tier_thresholds(np.linspace(0, 1, 1000), cutoffs=DEFAULT_TIER_CUTOFFS)
    tiers = pyfunc.tier_of(np.linspace(0, 1, 1000), thresholds)
    assert {t: int((tiers == t).sum()) for t in ["very high", "high", "moderate", "low"]} == \
        {"very high": 5, "high": 45, "moderate": 150, "low": 800}


@pytest.mark.slow
def test_loads_in_a_clean_venv_from_its_own_files(logged, tmp_path):
    """A venv with nothing but the model's requirements.txt (from PyPI or the pip cache) loads the
    model without riskstrat installed, and again with riskstrat installed from its wheel."""
    model, info, _, uri = logged
    tracking.configure(uri)
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model")))
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env)
    python = env / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-r", str(local / "requirements.txt")], check=True, timeout=1800)
    rows, _ = _people(5, 4)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    script = ("import sys, mlflow.pyfunc, pandas as pd; m = mlflow.pyfunc.load_model(sys.argv[1]); "
              "out = m.predict(pd.read_csv(sys.argv[2])); import riskstrat; "
              "print(out.to_json(orient='split')); print(riskstrat.__file__)")

    def load() -> tuple[pd.DataFrame, str]:
        done = subprocess.run([str(python), "-c", script, str(local), str(tmp_path / "rows.csv")], check=True,
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
        *_, frame, where = done.stdout.strip().splitlines()
        return pd.read_json(__import__("io").StringIO(frame), orient="split"), where

    out, where = load()
    assert str(local / "code") in where  # riskstrat came with the model
    np.testing.assert_allclose(out["risk"], model.predict_risk(rows), atol=1e-12)
    assert out["reasons"].str.len().gt(0).any()

    root = Path(__file__).resolve().parents[1]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "wheels"), str(root)], check=True, timeout=900)
    wheel = next((tmp_path / "wheels").glob("riskstrat-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", str(wheel)], check=True, timeout=600)
    again, _ = load()
    pd.testing.assert_frame_equal(again, out)


@pytest.mark.slow
def test_spark_udf_gives_the_same_columns(logged):
    """A Databricks-style job: mlflow.pyfunc.spark_udf over a Spark frame gives one struct per row."""
    pytest.importorskip("pyspark", reason="the spark extra is not installed: pip install 'riskstrat[spark]'")
    import os
    import shutil

    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("no Java runtime (17 or later) for a local Spark session")
    from riskstrat.features.spark import spark_session

    model, info, _, uri = logged
    tracking.configure(uri)
    rows, _ = _people(20, 3)
    spark = spark_session()
    try:
        people = spark.createDataFrame(rows)
        score = mlflow.pyfunc.spark_udf(spark, info.model_uri, env_manager="local")
        out = people.withColumn("served", score(*[people[c] for c in FEATURES])).select("served.*").toPandas()
    finally:
        spark.stop()
    assert list(out.columns) == ["risk", "tier", "reasons", "reason_1", "reason_2", "reason_3"]
    np.testing.assert_allclose(out["risk"], model.predict_risk(rows), atol=1e-12)
    served = mlflow.pyfunc.load_model(info.model_uri).predict(rows)
    assert out["tier"].tolist() == served["tier"].tolist()
    assert out["reasons"].tolist() == served["reasons"].tolist()
