"""The registered model as other tools load it: ``mlflow.pyfunc.load_model``, ``mlflow.pyfunc.spark_udf``,
``mlflow models serve``.

:class:`RiskPyfunc` takes rows of the model's features (one person for a clinician, or a Spark
partition) and returns each row's calibrated risk, tier and top reasons in words: the risk from
:class:`riskstrat.modeling.models.RiskModel`, the reasons from
:func:`riskstrat.features.reasons.top_reasons` with the lists' settings, and the tier from risk
thresholds made once, when the model is logged, by ranking a reference population with the lists'
own rule (:func:`riskstrat.modeling.tiers.assign_tiers` and the configured cut-offs). The monthly
lists rank the month's whole population; a person scored on demand has no population to rank in,
so the thresholds stand in for it (someone tied with the threshold takes the higher tier). For the
same reason the reasons' words of degree ("much use of services", "many medicines") are judged
against the reference population's :class:`riskstrat.features.words.ReasonThresholds`, made when
the model is logged; a model logged before they were stored says every use plainly.

The model carries riskstrat's code (MLflow ``code_paths``: its modules and package data, as the wheel
holds them) and pins the libraries it imports, so it loads where riskstrat is not installed. Models
logged before the package was laid out by stage name their classes by the old modules; riskstrat's
own loads (:func:`older_class_paths`) find them where they live now, and :func:`older_model_problem`
names a model whose pickles name a class that no longer exists at all. MLflow puts a loaded model's
code copy first on ``sys.path``; riskstrat's loads put the path back (:func:`import_path_kept`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import tempfile
import threading
import types
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from pathlib import Path

import joblib
import mlflow.pyfunc
import numpy as np
import pandas as pd

import riskstrat
from riskstrat.errors import RiskstratError
from riskstrat.features.reasons import REASON_CONTEXT, top_reasons
from riskstrat.features.words import ReasonThresholds, reason_thresholds
from riskstrat.modeling.calibration import MarginCalibrator, RawMargin
from riskstrat.modeling.config import ListsConfig
from riskstrat.modeling.models import LogScaled, RiskModel
from riskstrat.modeling.tiers import DEFAULT_TIER_CUTOFFS, LOWEST_TIER, assign_tiers, check_tier_cutoffs

__all__ = ["OLDER_CLASS_PATHS", "OlderModelError", "OlderRiskPyfunc", "PACKAGE_DATA", "RiskPyfunc",
           "import_path_kept", "load_risk_model", "log_served_model", "older_class_paths", "older_model_problem",
           "requirements", "tier_of", "tier_thresholds"]

# The distributions riskstrat's modules import when the served model loads (measured in a clean venv by
# tests/test_pyfunc.py's slow test); pinned to this environment's versions so the pickles load.
SERVED_REQUIREMENTS = ("lightgbm", "scikit-learn", "scipy", "pandas", "numpy", "pyarrow", "joblib", "pydantic")
# The package data the wheel holds (pyproject.toml's [tool.setuptools.package-data], held equal by
# tests/test_pyfunc.py): with the modules, all of riskstrat a model's code copy needs.
PACKAGE_DATA = ("data/codelists/*.csv", "report/*.yaml", "templates/*.html", "templates/*.j2", "templates/*.md",
                "templates/*.css", "templates/*.js", "templates/serve/*", "serve/migrations/*.py",
                "serve/migrations/script.py.mako", "serve/migrations/versions/*.py")
# sys.path and sys.modules are the process's own: riskstrat loads one model at a time.
_LOADING = threading.RLock()


class OlderModelError(RiskstratError):
    """A registered model logged by an older riskstrat whose classes have gone."""


@contextlib.contextmanager
def import_path_kept() -> Iterator[None]:
    """Within: MLflow may change the import path (``mlflow.pyfunc.load_model`` puts the model's code copy
    first on ``sys.path``, ``log_model`` a temporary folder it then deletes). After: ``sys.path`` is as it
    was, and riskstrat's modules in ``sys.modules`` are the ones imported before (a riskstrat module first
    imported within stays only if it came from this riskstrat's folder, not a model's copy)."""
    with _LOADING:
        path, entries = sys.path, list(sys.path)
        home = Path(riskstrat.__file__).resolve().parent
        before = {name: module for name, module in sys.modules.items() if _is_riskstrat(name)}
        try:
            yield
        finally:
            sys.path = path
            path[:] = entries
            for name in [n for n in sys.modules if _is_riskstrat(n)]:
                if name in before:
                    sys.modules[name] = before[name]
                elif not _from(sys.modules[name], home):
                    del sys.modules[name]


def _is_riskstrat(name: str) -> bool:
    return name == "riskstrat" or name.startswith("riskstrat.")


def _from(module, home: Path) -> bool:
    where = getattr(module, "__file__", None)
    return bool(where) and Path(where).resolve().is_relative_to(home)


def load_risk_model(path) -> RiskModel:
    """The risk model joblib-pickled at ``path``, by this riskstrat or one before it was laid out by stage."""
    with older_class_paths():
        return joblib.load(path)


def tier_thresholds(risk, *, cutoffs: Mapping[str, float] | None = None) -> dict[str, float]:
    """The lowest risk of each tier (with those above it) when the reference population ``risk`` is
    tiered by rank (:func:`~riskstrat.modeling.tiers.assign_tiers`); ``inf`` for a tier nobody reaches.

    >>> tier_thresholds([0.9, 0.1, 0.5, 0.3], cutoffs={"very high": 0.25, "high": 0.5})
    {'very high': 0.9, 'high': 0.5}
    """
    cutoffs = check_tier_cutoffs(DEFAULT_TIER_CUTOFFS if cutoffs is None else cutoffs)
    risk = pd.Series(np.asarray(risk, dtype="float64"))
    tiers = assign_tiers(risk, cutoffs=cutoffs)
    return {name: float(risk[tiers <= name].min()) if (tiers <= name).any() else float("inf") for name in cutoffs}


def tier_of(risk, thresholds: Mapping[str, float]) -> np.ndarray:
    """Each risk's tier: the highest whose threshold it reaches, else ``low`` (an object array of names).

    >>> tier_of([0.95, 0.5, 0.2], {"very high": 0.9, "high": 0.5}).tolist()
    ['very high', 'high', 'low']
    """
    risk = np.asarray(risk, dtype="float64")
    out = np.full(len(risk), LOWEST_TIER, dtype=object)
    for name, threshold in reversed(list(thresholds.items())):  # the widest first: higher tiers overwrite
        out[risk >= threshold] = name
    return out


class RiskPyfunc(mlflow.pyfunc.PythonModel):
    """The served model: rows of features in; ``risk``, ``tier``, ``reasons`` and ``reason_1..n`` out.

    ``riskstrat score`` unwraps it (``risk_model``) and scores the month itself.
    """

    def __init__(self, *, thresholds: Mapping[str, float], n_reasons: int = 3, currency: str = "GBP",
                 demographic_reasons: bool = False, money_reasons: bool = False,
                 reason_thresholds: Mapping[str, Mapping[str, float]] | None = None):
        self.thresholds = dict(thresholds)
        self.reason_thresholds = ReasonThresholds.from_dict(reason_thresholds).as_dict()
        self.n_reasons, self.currency = n_reasons, currency
        self.demographic_reasons, self.money_reasons = demographic_reasons, money_reasons
        self.risk_model: RiskModel | None = None

    def load_context(self, context) -> None:
        self.risk_model = load_risk_model(context.artifacts["risk_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.explain(model_input)

    def explain(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Risk, tier and reasons for each row of ``rows`` (on the rows' index)."""
        model = self.risk_model
        missing = [c for c in model.feature_names if c not in rows.columns]
        if missing:
            raise RiskstratError(f"the rows lack {len(missing)} of the model's feature column(s): {missing[:8]}; "
                                 f"give every feature in the model's signature (mlflow.models.get_model_info)")
        frame = rows.reset_index(drop=True)  # the reasons match rows on the index: make it unique
        risk, _ = model.risk_and_raw_score(frame)
        out = pd.DataFrame({"risk": risk, "tier": tier_of(risk, self.thresholds)})
        names = [f"reason_{k + 1}" for k in range(self.n_reasons)]
        if model.kind == "lightgbm" and len(frame):
            words = top_reasons(model.contributions(frame)[0], frame, n=self.n_reasons, currency=self.currency,
                                demographic_reasons=self.demographic_reasons, money_reasons=self.money_reasons,
                                # older pickles lack the attribute: no words of degree
                                thresholds=ReasonThresholds.from_dict(getattr(self, "reason_thresholds", None)))
            out["reasons"] = words["reasons"].astype(object).to_numpy()
            for name in names:
                column = words[name].astype(object)
                out[name] = column.where(column.notna(), None).to_numpy()
        else:  # a model without SHAP values (logistic) has no reasons to say
            out["reasons"] = ""
            for name in names:
                out[name] = None
        out.index = rows.index
        return out


class OlderRiskPyfunc(mlflow.pyfunc.PythonModel):
    """The served model of riskstrat before the package was laid out by stage (``riskstrat.tracking.RiskPyfunc``
    in the models registered then): rows of features in, the calibrated ``risk`` out, as it was.

    ``riskstrat score`` unwraps it (``risk_model``) as it does :class:`RiskPyfunc`.
    """

    def load_context(self, context) -> None:
        self.risk_model = load_risk_model(context.artifacts["risk_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        return pd.Series(self.risk_model.predict_risk(model_input), name="risk")


# Where the classes an older riskstrat pickled into its registered models live now, by the module
# the pickles name: those of riskstrat before the package was laid out by stage (December 2026).
# Read off with pickletools from the models `riskstrat demo` registered then: no other riskstrat
# class is in them (the metadata are plain data).
OLDER_CLASS_PATHS: dict[str, dict[str, type]] = {
    "riskstrat.models": {"RiskModel": RiskModel, "LogScaled": LogScaled},
    "riskstrat.calibration": {"MarginCalibrator": MarginCalibrator, "RawMargin": RawMargin},
    "riskstrat.tracking": {"RiskPyfunc": OlderRiskPyfunc},
}


@contextlib.contextmanager
def older_class_paths() -> Iterator[None]:
    """Within: the modules older models' pickles name (:data:`OLDER_CLASS_PATHS`) are in ``sys.modules``,
    each holding only the classes listed for it, so unpickling (joblib's and MLflow's cloudpickle) finds
    them where they live now; a class not listed stays unknown (:func:`older_model_problem`). After:
    they are gone again."""
    with _LOADING:
        added = {}
        for old, classes in OLDER_CLASS_PATHS.items():
            if old not in sys.modules:  # within an outer use, or a module of that name: leave it be
                module = types.ModuleType(old, f"{old} of an older riskstrat, for unpickling its models")
                module.__dict__.update(classes)
                added[old] = sys.modules[old] = module
        try:
            yield
        finally:
            for old, module in added.items():
                if sys.modules.get(old) is module:
                    del sys.modules[old]


def signature(model: RiskModel, *, n_reasons: int):
    """The model's columns in (its features, required; the reasons' context columns, optional) and out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    context = [c for c in REASON_CONTEXT if c not in model.feature_names]
    inputs = Schema([ColSpec("double", c) for c in model.feature_names]
                    + [ColSpec("double", c, required=False) for c in context])
    outputs = Schema([ColSpec("double", "risk"), ColSpec("string", "tier"), ColSpec("string", "reasons")]
                     + [ColSpec("string", f"reason_{k + 1}", required=False) for k in range(n_reasons)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def requirements() -> list[str]:
    """The model's pip requirements: the libraries its code imports, at this environment's versions
    (MLflow adds itself). riskstrat is not among them: its code travels with the model."""
    return [f"{name}=={version(name)}" for name in SERVED_REQUIREMENTS]


def _package_copy(into: Path, *, source: Path | None = None) -> Path:
    """riskstrat as its wheel holds it (every ``*.py`` and the :data:`PACKAGE_DATA`: code lists, templates),
    copied from ``source`` (default: this riskstrat's folder) to ``into/riskstrat``; nothing else there
    (caches, notes, files left by an editor) goes with a model."""
    source = Path(riskstrat.__file__).resolve().parent if source is None else Path(source)
    target = into / "riskstrat"
    files = {p for p in source.rglob("*.py") if "__pycache__" not in p.relative_to(source).parts}
    files |= {p for pattern in PACKAGE_DATA for p in source.glob(pattern)}
    for file in sorted(f for f in files if f.is_file()):
        copied = target / file.relative_to(source)
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, copied)
    return target


def log_served_model(model: RiskModel, *, example: pd.DataFrame, reference: pd.DataFrame,
                     lists: ListsConfig | None = None, name: str | None = None):
    """Log ``model`` as the active run's pyfunc ``model`` (registered as ``name`` unless None) with
    riskstrat's code, and return MLflow's ModelInfo.

    ``example`` is the input example (no real person: :func:`riskstrat.registry.tracking.example_input`);
    ``reference`` the rows whose risk sets the tier thresholds and whose uses set the reasons' words of
    degree (:func:`riskstrat.features.words.reason_thresholds`; aggregates only are kept); ``lists``
    the tiers' cut-offs, how many reasons and whether demographic ones (default: the lists' defaults,
    as training knows no scoring config).
    """
    lists = lists or ListsConfig()
    costs = model.metadata.get("costs") or {}
    outcome = (model.metadata.get("outcome") or {}).get("name", model.target)
    served = RiskPyfunc(thresholds=tier_thresholds(model.predict_risk(reference), cutoffs=lists.tiers),
                        n_reasons=lists.reasons, currency=costs.get("currency") or "GBP",
                        demographic_reasons=lists.demographic_reasons, money_reasons=outcome == "high_cost",
                        reason_thresholds=reason_thresholds(reference).as_dict())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk_model.joblib"
        joblib.dump(model, path)
        # Our own class, its code logged with it: the generic CloudPickle warning does not apply.
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
        with import_path_kept():  # log_model loads the model to check the example, from a folder it deletes
            return mlflow.pyfunc.log_model(
                name="model", python_model=served, artifacts={"risk_model": str(path)},
                code_paths=[str(_package_copy(Path(tmp) / "code"))], signature=signature(model, n_reasons=lists.reasons),
                input_example=example, registered_model_name=name, pip_requirements=requirements(),
                metadata={"riskstrat_version": riskstrat.__version__, "tier_thresholds": served.thresholds,
                          "reason_thresholds": served.reason_thresholds})


def older_model_problem(exc: BaseException, *, what: str) -> OlderModelError | None:
    """The refusal for ``what`` (a model version) when loading it failed because its pickles name a
    riskstrat class that this riskstrat has neither where they say nor in :data:`OLDER_CLASS_PATHS`;
    else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("riskstrat."):
            gone = exc.name
        elif isinstance(exc, AttributeError) and "riskstrat." in str(exc) and "Can't get attribute" in str(exc):
            gone = str(exc).splitlines()[0]
        else:
            exc = exc.__cause__ or exc.__context__
            continue
        return OlderModelError(
            f"{what} was logged by an older riskstrat: its files name {gone}, which this riskstrat "
            f"({riskstrat.__version__}) no longer has (the package was laid out by stage). Train the model again "
            f"(riskstrat train, then riskstrat promote), or use it with the riskstrat that trained it")
    return None
