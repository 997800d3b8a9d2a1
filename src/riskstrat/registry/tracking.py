"""Everything MLflow: where runs go, what a training run logs, the registry and aliases.

Only aggregates, the configuration, the data fingerprint and the model go to MLflow; never a
person-level row (the input example is a synthetic median person, not a real one).
"""

from __future__ import annotations

import functools
import getpass
import os
import pickle
import re
import sqlite3
import struct
import tempfile
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import mlflow.pyfunc
import numpy as np
import pandas as pd

from riskstrat.errors import RiskstratError
from riskstrat.evaluation import plots
from riskstrat.features.costs import COSTS_KEY, cost_params, cost_tags
from riskstrat.modeling import refit as rf
from riskstrat.modeling.guards import DEGENERATE_TAG, DegenerateModelError, describe_degenerate
from riskstrat.registry.pyfunc import import_path_kept, log_served_model, older_class_paths, older_model_problem

DEFAULT_DB = "mlflow.db"
SPEC_TAG = "riskstrat.feature_spec_hash"  # on training runs and model versions: features.spec.spec_hash()

# The user's setting, read once: mlflow.set_tracking_uri() writes the variable back into the
# environment, so reading it later would return whatever an earlier run in this process used.
_ENV_URI = os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri(configured: str | None = None) -> str:
    """The tracking URI: the config's, else $MLFLOW_TRACKING_URI, else SQLite in the working folder."""
    return configured or _ENV_URI or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def configure(configured: str | None = None) -> str:
    import mlflow

    uri = tracking_uri(configured)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _experiment(name: str) -> str:
    """Create the experiment with artifacts under the working folder when tracking locally."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if mlflow.get_tracking_uri().startswith("sqlite:///"):
        db = Path(mlflow.get_tracking_uri().removeprefix("sqlite:///"))
        artifact_location = (db.parent / "mlartifacts").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=artifact_location)


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


def example_input(X: pd.DataFrame) -> pd.DataFrame:
    """An input example with no real person in it: the median of every feature."""
    return X.median(numeric_only=True).to_frame().T.reindex(columns=X.columns).astype("float64")


@dataclass
class LoggedRun:
    run_id: str
    model_name: str
    model_version: str | None  # None when nothing was registered (a refused degenerate model)
    model_uri: str


def _store_faults_named(fn):
    """``fn`` with a tracking store's fault (locked, read-only, corrupt) raised as a
    :class:`TrackingStoreError` saying what to do, whatever call inside it met the store first;
    riskstrat's own refusals and every other exception pass unchanged."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RiskstratError:
            raise
        except Exception as exc:
            import mlflow

            for cause in (exc, exc.__cause__):
                if cause is not None and (problem := store_problem(cause, mlflow.get_tracking_uri())) is not None:
                    raise problem from exc
            raise

    return wrapper


@_store_faults_named
def log_training_run(result, cfg, *, fingerprint: dict, features: pd.DataFrame, config_dict: dict,
                     data_summary: dict, register: bool = True, degenerate: Sequence[str] = (),
                     timings: dict[str, float] | None = None) -> LoggedRun:
    """Log a training run (params, metrics, plots, lineage, model) and register the model.

    ``degenerate`` (reason codes, see :func:`riskstrat.modeling.guards.degenerate_reasons`) tags the run and,
    when registered, the model version ``riskstrat.degenerate=<reasons>``. With ``register=False``
    the model is logged with the run but no version is created (``model_version`` is None).
    The model's feature-definition hash (``feature_spec_hash`` in its metadata) is a parameter, a
    run tag and a version tag (``riskstrat.feature_spec_hash``); its money (``costs`` in its metadata:
    currency, tables with costs, whether it uses cost features) parameters ``costs.*`` and tags
    ``riskstrat.currency``, ``riskstrat.uses_costs``, ``riskstrat.cost_sources`` (and
    ``riskstrat.cost_sources_without_costs``) on the run and the version. ``timings`` (seconds per stage) go
    in as metrics ``seconds.<stage>`` and the artifact ``timings.json``, with this logging's own
    seconds added as ``log`` (to the dict too).
    """
    import mlflow

    started = time.perf_counter()
    configure(cfg.tracking.uri)
    experiment_id = _experiment(cfg.tracking.experiment)
    name = cfg.registered_model_name
    spec = result.model.metadata.get("feature_spec_hash")
    costs = result.model.metadata.get(COSTS_KEY)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{cfg.target.name} {cfg.index_dates.test}") as run:
        mlflow.set_tags({"riskstrat.target": cfg.target.name, "riskstrat.outcome": cfg.target.words,
                         "riskstrat.kind": "training"})
        if spec:
            mlflow.set_tag(SPEC_TAG, spec)
            mlflow.log_param("feature_spec_hash", spec)
        if costs:  # the currency and which tables had costs: scoring refuses data it would misread
            mlflow.set_tags(cost_tags(costs))
            mlflow.log_params(cost_params(costs))
        if degenerate:
            mlflow.set_tag(DEGENERATE_TAG, ",".join(degenerate))
        mlflow.log_params(_flatten(config_dict))
        mlflow.log_dict(config_dict, "config.json")
        if params := result.model.metadata.get("lightgbm_params"):
            # The settings the model was fitted with, those chosen by the auto rule included (config: None).
            mlflow.log_params({f"lightgbm.{k}": v for k, v in params.items()})
            mlflow.log_param("lightgbm.auto", ",".join(result.model.metadata.get("lightgbm_auto", [])) or "none")
        if result.search is not None:
            # The parameters the final model was fitted with, and every trial (no rows, no people).
            mlflow.log_params({f"tuned.{k}": v for k, v in result.model.metadata["lightgbm_params"].items()})
            mlflow.log_metric("search.trials", len(result.search))
            mlflow.log_text(result.search.to_csv(index=False), "search/trials.csv")
        for model_name, values in result.metrics.items():
            mlflow.log_metrics({metric_key(f"{model_name}.{k}"): float(v) for k, v in values.items()
                                if v is not None and np.isfinite(v)})
        mlflow.log_metrics({f"data.{k}": float(v) for k, v in result.data.counts.items()})
        mlflow.log_dict({**fingerprint, **data_summary}, "data/fingerprint.json")
        if stored := result.model.metadata.get("feature_spec"):
            # The features as data (aggregates, rules, names, generic config and groups): no person.
            mlflow.log_dict(stored, "feature_spec.json")
        if design := result.model.metadata.get("training_design"):
            # Dates, horizon and the split rule (no person ids): which evaluations are in-sample.
            mlflow.log_dict(design, "training_design.json")
        schema_only = result.data.X_test.head(0).reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
            dataset = mlflow.data.from_pandas(schema_only, source=fingerprint.get("data_dir", ""),
                                              name="linked-records", digest=fingerprint["sha256"][:16])
        mlflow.log_input(dataset, context="training")
        mlflow.log_text(features.to_csv(index=False), "features.csv")
        mlflow.log_text(result.comparison().to_csv(), "evaluation/comparison.csv")
        mlflow.log_text(result.oe_table.to_csv(index=False), "evaluation/observed_expected_by_decile.csv")
        # The evaluation report's table (tables/subgroups.csv): attribute, group, n, n_events, small, metrics.
        mlflow.log_text(result.subgroups.by_group.reset_index().to_csv(index=False), "evaluation/subgroups.csv")
        y = result.data.y_test
        probs = {k: v for k, v in result.scores.items() if k != "prior_use"}
        if cfg.evaluation.figures:  # false: no plots/ (quick runs; the metrics and tables are the same)
            for fname, fig in (("roc", plots.roc_figure(y, result.scores)), ("pr", plots.pr_figure(y, result.scores)),
                               ("calibration", plots.calibration_figure(y, probs)),
                               ("top_k_ppv", plots.topk_ppv_figure(y, result.scores))):
                mlflow.log_figure(fig, f"plots/{fname}.png")
                _close(fig)
        info = _log_risk_model(result.model, result.baselines, result.data.X_train, reference=result.data.X_test,
                               name=name if register else None)
        version = str(info.registered_model_version) if register else None
        if version is not None and (degenerate or spec or costs):
            from mlflow import MlflowClient

            client = MlflowClient()
            if degenerate:
                client.set_model_version_tag(name, version, DEGENERATE_TAG, ",".join(degenerate))
            if spec:
                client.set_model_version_tag(name, version, SPEC_TAG, spec)
            for key, value in (cost_tags(costs) if costs else {}).items():
                client.set_model_version_tag(name, version, key, value)
        if timings is not None:
            timings["log"] = time.perf_counter() - started
            mlflow.log_metrics({f"seconds.{k}": float(v) for k, v in timings.items()})
            mlflow.log_dict({k: round(v, 3) for k, v in timings.items()}, "timings.json")
        if version is None:
            return LoggedRun(run.info.run_id, name, None, info.model_uri)
        return LoggedRun(run.info.run_id, name, version, f"models:/{name}/{version}")


def _log_risk_model(model, baselines: dict, X_train: pd.DataFrame, *, reference: pd.DataFrame, name: str | None):
    """Log ``model`` as the active run's pyfunc ``model`` (:func:`riskstrat.registry.pyfunc.log_served_model`:
    risk, tier and reasons, tier thresholds from the risk of ``reference``; registered as ``name``
    unless None) and the baselines as ``baselines/<name>.joblib``; returns MLflow's ModelInfo."""
    import mlflow

    info = log_served_model(model, example=example_input(X_train), reference=reference, name=name)
    with tempfile.TemporaryDirectory() as tmp:
        for bname, bmodel in baselines.items():
            bpath = Path(tmp) / f"{bname}.joblib"
            joblib.dump(bmodel, bpath)
            mlflow.log_artifact(str(bpath), "baselines")
    return info


def refit_description(refit) -> str:
    """The model version's description of a refit (:class:`riskstrat.modeling.refit.RefitResult`): what it was
    fitted on and the evaluation it inherits."""
    r, inh = refit.model.metadata["refit"], refit.inherited
    m = inh.get("metrics", {})
    figures = (f"AUROC {m['auroc']:.3f} ({m.get('auroc_ci_low', float('nan')):.3f}-{m.get('auroc_ci_high', float('nan')):.3f})"
               if "auroc" in m else "no AUROC")
    if "calibration_slope" in m:
        figures += f", calibration slope {m['calibration_slope']:.2f}"
    return (f"Refit for deployment of version {inh.get('version')} (run {inh.get('run_id')}): the same settings and "
            f"{r['trees']} trees, {r['calibration']} calibration, fitted on {r['counts']['train_rows']:,} rows at "
            f"{len(r['dates'])} index dates {r['dates'][0]} to {r['dates'][-1]} (labels to the day before "
            f"{r['labels_end']}; the test people included, the calibration people kept apart). It inherits the "
            f"evaluation of version {inh.get('version')} at {inh.get('test_date')} on {inh.get('test_rows', 0):,} "
            f"people with {inh.get('test_events', 0):,} events: {figures}. Its own check is riskstrat evaluate at "
            f"{r['labels_end']} or later.")


@_store_faults_named
def log_refit_run(refit, cfg, *, parent: LoggedRun, features: pd.DataFrame, config_dict: dict,
                  fingerprint: dict, seconds: float | None = None) -> LoggedRun:
    """Log a refit for deployment (:class:`riskstrat.modeling.refit.RefitResult`) as a run nested under the
    evaluated training run ``parent``, register it as its own version of the same model, and tag both
    versions: the refit with what it inherits (``riskstrat.refit_of_*``, ``riskstrat.inherited.*``, its
    dates and labels end, a description), the evaluated version with ``riskstrat.refit_version``.
    Its metrics are row counts only: the evaluation figures are its parent's (tags, not metrics)."""
    import mlflow
    from mlflow import MlflowClient

    configure(cfg.tracking.uri)
    experiment_id = _experiment(cfg.tracking.experiment)
    name = parent.model_name
    meta = refit.model.metadata
    r, inh = meta["refit"], refit.inherited
    spec = meta.get("feature_spec_hash")
    tags = {rf.REFIT_OF_VERSION_TAG: str(inh.get("version")), rf.REFIT_OF_RUN_TAG: str(inh.get("run_id")),
            rf.REFIT_DATES_TAG: ",".join(r["dates"]), rf.LABELS_END_TAG: r["labels_end"],
            f"{rf.INHERITED_PREFIX}test_date": str(inh.get("test_date")),
            f"{rf.INHERITED_PREFIX}test_events": str(inh.get("test_events")),
            **{f"{rf.INHERITED_PREFIX}lightgbm.{k}": f"{v:.4f}" for k, v in inh.get("metrics", {}).items()}}
    description = refit_description(refit)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{cfg.target.name} refit {r['dates'][-1]}",
                          parent_run_id=parent.run_id, description=description) as run:
        mlflow.set_tags({"riskstrat.target": cfg.target.name, "riskstrat.outcome": cfg.target.words,
                         "riskstrat.kind": "refit", **tags, **({SPEC_TAG: spec} if spec else {})})
        mlflow.log_params(_flatten(config_dict))
        mlflow.log_params({f"lightgbm.{k}": v for k, v in meta.get("lightgbm_params", {}).items()})
        mlflow.log_params({"refit.trees": r["trees"], "refit.dates": ",".join(r["dates"]),
                           "refit.calibration": r["calibration"]})
        mlflow.log_metrics({f"data.{k}": float(v) for k, v in r["counts"].items() if isinstance(v, (int, float))})
        mlflow.log_dict(config_dict, "config.json")
        mlflow.log_dict(meta["training_design"], "training_design.json")
        mlflow.log_dict(r, "refit.json")
        mlflow.log_dict(fingerprint, "data/fingerprint.json")
        mlflow.log_text(features.to_csv(index=False), "features.csv")
        info = _log_risk_model(refit.model, refit.baselines, refit.data.X_train, reference=refit.data.X_cal, name=name)
        if seconds is not None:
            mlflow.log_metric("seconds.refit", float(seconds))
        version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in ({**tags, **({SPEC_TAG: spec} if spec else {})}).items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=description)
    if inh.get("version"):
        client.set_model_version_tag(name, str(inh["version"]), rf.REFIT_VERSION_TAG, version)
    return LoggedRun(run.info.run_id, name, version, f"models:/{name}/{version}")


@_store_faults_named
def version_tags(name: str, version: str | int, *, uri: str | None = None) -> dict[str, str]:
    """The registry tags of ``name`` version ``version`` (:class:`RegistryError` when there is none)."""
    from mlflow import MlflowClient

    where = configure(uri)
    return dict(model_version(MlflowClient(), name, version, where=where).tags or {})


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


class RegistryError(RiskstratError, LookupError):
    """A registered model, version or alias does not exist."""


class TrackingStoreError(RiskstratError):
    """The tracking store cannot be used (corrupt or locked database, missing model artifacts)."""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


_METRIC_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. :]")


def metric_key(name: str) -> str:
    """``name`` as an MLflow metric or parameter key: MLflow accepts letters, digits, ``_ - . / :`` and
    spaces, and reads ``/`` and ``..`` as a path; so anything else (a tier called "very high (top 0.5%)"),
    ``/`` included, becomes ``_``, and runs of dots one dot.

    >>> metric_key("tier.very high (top 0.5%)"), metric_key("tier.../../etc/x")
    ('tier.very high _top 0.5__', 'tier._._etc_x')
    """
    return re.sub(r"\.{2,}", ".", _METRIC_UNSAFE.sub("_", str(name)))


def _from_sqlalchemy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLAlchemy's (MLflow's SQL store raises them), known by its class's module:
    SQLAlchemy comes with MLflow, not as a riskstrat dependency, so riskstrat does not import it."""
    return any(cls.__module__.split(".")[0] == "sqlalchemy" for cls in type(exc).__mro__)


def store_problem(exc: BaseException, uri: str) -> TrackingStoreError | None:
    """The tracking store's fault behind ``exc``, in words a person can act on (None if it is not one)."""
    text = str(exc).lower()
    if not isinstance(exc, sqlite3.Error) and not _from_sqlalchemy(exc) and "database" not in text:
        return None
    if "readonly" in text or "read-only" in text or "read only" in text:
        return TrackingStoreError(f"the tracking store {uri} is read-only for user {_user()}: give this user write "
                                  f"access to the database file and its folder (SQLite writes a journal beside it), "
                                  f"or set tracking.uri to a store it may write")
    if "locked" in text or "busy" in text:
        return TrackingStoreError(f"the tracking store {uri} is locked by another process (database is locked): "
                                  f"wait for it to finish and run again")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return TrackingStoreError(f"the tracking store {uri} is not a readable MLflow database (it may be corrupt): "
                                  f"restore it from a backup, or set tracking.uri to the right store")
    return TrackingStoreError(f"the tracking store {uri} cannot be used: {str(exc).splitlines()[0]}")


def _refuse_degenerate(mv, *, what: str, override: str) -> None:
    reasons = (mv.tags or {}).get(DEGENERATE_TAG)
    if reasons:
        raise DegenerateModelError(
            f"{mv.name} version {mv.version} is tagged {DEGENERATE_TAG}={reasons} "
            f"({describe_degenerate(reasons.split(','))}): refusing to {what}; {override} to do it anyway",
            reasons=reasons.split(","))


@_store_faults_named
def refuse_degenerate(name: str, version: str | int, *, what: str, override: str, uri: str | None = None) -> None:
    """Raise :class:`riskstrat.modeling.guards.DegenerateModelError` if the version is tagged degenerate."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(uri)
    try:
        mv = MlflowClient().get_model_version(name, str(version))
    except MlflowException:
        return  # an unknown version is reported by whoever needs it, with the versions there are
    _refuse_degenerate(mv, what=what, override=override)


@_store_faults_named
def degenerate_tag(name: str, version: str | int, *, uri: str | None = None) -> str | None:
    """The ``riskstrat.degenerate`` tag of a model version (reason codes joined by ','), or None."""
    from mlflow import MlflowClient

    configure(uri)
    return (MlflowClient().get_model_version(name, str(version)).tags or {}).get(DEGENERATE_TAG)


@_store_faults_named
def promote(name: str, version: str | int, *, alias: str = "champion", uri: str | None = None,
            force: bool = False) -> dict:
    """Point ``alias`` at ``version`` of registered model ``name``; returns what moved.

    A version tagged ``riskstrat.degenerate`` is refused (:class:`riskstrat.modeling.guards.DegenerateModelError`)
    unless ``force``.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    where = configure(uri)
    client = MlflowClient()
    mv = model_version(client, name, version, where=where)
    if not force:
        _refuse_degenerate(mv, what=f"make it {alias}", override="pass --force")
    previous = None
    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        pass
    client.set_registered_model_alias(name, alias, str(version))
    return {"model": name, "alias": alias, "version": str(version), "previous_version": previous}


def model_version(client, name: str, version: str | int, *, where: str):
    """``name`` version ``version`` from the registry at ``where``: a store fault is a
    :class:`TrackingStoreError`, a version (or model) it does not hold a :class:`RegistryError`
    naming the versions it does."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if (problem := store_problem(exc.__cause__ or exc, where)) is not None:
            raise problem from exc
        raise missing_version(client, name, version) from None


def missing_version(client, name: str, version) -> RegistryError:
    """The refusal for a version (or model) the registry does not hold, naming the versions it does."""
    versions = _versions(client, name)
    if not versions:
        return RegistryError(f"there is no registered model {name} (no versions): check the name, or train one "
                             f"(riskstrat train)")
    return RegistryError(f"model {name} has no version {version} (versions: {', '.join(versions)})")


@_store_faults_named
def require_version(name: str, version: str | int, *, uri: str | None = None) -> None:
    """Refuse (:class:`RegistryError`) a version of ``name`` the registry does not hold."""
    from mlflow import MlflowClient

    model_version(MlflowClient(), name, version, where=configure(uri))


def _versions(client, name: str) -> list[str]:
    try:
        return sorted((str(v.version) for v in client.search_model_versions(f"name='{name}'")), key=int)
    except Exception:  # noqa: BLE001 - only used to enrich an error message
        return []


@dataclass
class LoadedModel:
    risk_model: object
    name: str
    version: str
    run_id: str
    alias: str | None
    degenerate: str | None = None  # the version's riskstrat.degenerate tag, when it has one


def load_model(name: str, *, alias: str = "champion", version: str | int | None = None,
               uri: str | None = None, allow_degenerate: bool = False) -> LoadedModel:
    """Load ``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION`` when ``version`` is given) and
    return our RiskModel with its registry coordinates.

    A version tagged ``riskstrat.degenerate`` is refused unless ``allow_degenerate`` (loading by
    version, for evaluation, never refuses: the tag travels with the loaded model).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    where = configure(uri)
    if version is not None:
        mv = model_version(MlflowClient(), name, version, where=where)
        return _loaded(mv, f"models:/{name}/{mv.version}", alias=None)
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if (problem := store_problem(exc.__cause__ or exc, where)) is not None:
            raise problem from exc
        raise RegistryError(f"no model {name!r} with alias {alias!r} in {mlflow.get_tracking_uri()}: train one "
                            f"(`riskstrat train`) and promote it (`riskstrat promote {name} VERSION --alias {alias}`)") from None
    except Exception as exc:
        if (problem := store_problem(exc, where)) is not None:
            raise problem from exc
        raise
    if not allow_degenerate:
        _refuse_degenerate(mv, what="score with it", override="set models.allow_degenerate=true")
    return _loaded(mv, f"models:/{name}@{alias}", alias=alias)


# What unpickling a truncated or corrupt artifact raises: pickle's opcodes read as dictionary keys
# (``KeyError: 211``), short reads, bad lengths, classes that moved.
_UNLOADABLE = (OSError, EOFError, ValueError, ImportError, AttributeError, KeyError, IndexError, TypeError,
               pickle.UnpicklingError, struct.error, zlib.error)


def _loaded(mv, uri: str, *, alias: str | None) -> LoadedModel:
    """Our RiskModel of registry version ``mv`` (loaded from ``uri``) with its coordinates; files that
    cannot be loaded are a :class:`TrackingStoreError` saying what to do. A model logged before the package
    was laid out by stage loads too (:func:`riskstrat.registry.pyfunc.older_class_paths`); the import path
    is left as it was (:func:`riskstrat.registry.pyfunc.import_path_kept`)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        with import_path_kept(), older_class_paths():
            pyfunc = mlflow.pyfunc.load_model(uri)
    except _UNLOADABLE + (MlflowException,) as exc:
        if (older := older_model_problem(exc, what=f"model {mv.name} version {mv.version}")) is not None:
            raise older from exc
        raise TrackingStoreError(
            f"the files of model {mv.name} version {mv.version} ({mv.source}) cannot be loaded: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. Restore the artifact store, or "
            f"train (and promote) the model again") from exc
    return LoadedModel(pyfunc.unwrap_python_model().risk_model, mv.name, str(mv.version), mv.run_id, alias,
                       degenerate=(mv.tags or {}).get(DEGENERATE_TAG))


@_store_faults_named
def load_baseline(run_id: str, name: str, *, uri: str | None = None):
    """The baseline ``name`` (e.g. ``logistic``) fitted in training run ``run_id`` on the same training
    rows as that run's model (a run from before the package was laid out by stage too), or None when the
    run logged none (older runs, or not configured)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    configure(uri)
    try:
        listed = {Path(f.path).name for f in mlflow.artifacts.list_artifacts(run_id=run_id, artifact_path="baselines")}
    except MlflowException:
        return None
    if f"{name}.joblib" not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"baselines/{name}.joblib", dst_path=tmp)
        try:
            with older_class_paths():  # a baseline logged before the re-layer names riskstrat.models
                return joblib.load(path)
        except _UNLOADABLE as exc:
            raise TrackingStoreError(
                f"the {name} baseline of training run {run_id} (baselines/{name}.joblib) cannot be loaded: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. Restore the artifact store, "
                f"or train the model again") from exc


@_store_faults_named
def training_config(run_id: str, *, uri: str | None = None) -> dict | None:
    """The configuration training run ``run_id`` logged (``config.json``), or None when it has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    configure(uri)
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json")
    except (MlflowException, OSError, ValueError):
        return None


@_store_faults_named
def training_run_record(run_id: str, *, uri: str | None = None) -> dict:
    """What training run ``run_id`` logged besides its model: ``params``, ``metrics`` and ``tags`` (empty
    dicts when the store does not hold the run). The evaluation report's design section reads the row
    counts (``data.*``) and settings of models trained before their metadata recorded them."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(uri)
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        return {"params": {}, "metrics": {}, "tags": {}}
    return {"params": dict(run.data.params), "metrics": dict(run.data.metrics), "tags": dict(run.data.tags)}


# The tags riskstrat promote --force writes on a version (riskstrat.pipelines.promote.record_override).
OVERRIDE_PREFIX = "riskstrat.gate_override."


@_store_faults_named
def version_status(name: str, version: str | int, *, uri: str | None = None) -> dict:
    """The registry's status of ``name`` version ``version``: ``aliases`` (those pointing at it),
    ``model_aliases`` (every alias of the model and its version), ``override`` (a forced promotion's record
    from ``riskstrat promote --force``: reason, user, time, failed; None when none), ``degenerate``, and
    ``refit`` (its refit for deployment, which inherits its evaluation: the same keys, or None).
    :class:`RegistryError` for a version the registry does not hold."""
    from mlflow import MlflowClient

    where = configure(uri)
    client = MlflowClient()
    model = client.get_registered_model(name)
    aliases = {str(k): str(v) for k, v in (getattr(model, "aliases", None) or {}).items()}

    def status(v) -> tuple[dict, dict]:
        mv = model_version(client, name, v, where=where)
        tags = dict(mv.tags or {})
        override = {k.removeprefix(OVERRIDE_PREFIX): val for k, val in tags.items() if k.startswith(OVERRIDE_PREFIX)}
        return {"version": str(mv.version), "aliases": sorted(a for a, x in aliases.items() if x == str(mv.version)),
                "override": override or None, "degenerate": tags.get(DEGENERATE_TAG)}, tags

    out, tags = status(version)
    refit = tags.get(rf.REFIT_VERSION_TAG)
    out["refit"] = status(refit)[0] if refit else None
    out["model_aliases"] = aliases
    return out


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``(name, alias, version)`` from ``NAME@ALIAS`` or ``NAME/VERSION`` (a bare NAME means @champion).

    >>> parse_model_ref("riskstrat-high-cost/3"), parse_model_ref("m@challenger")
    (('riskstrat-high-cost', None, '3'), ('m', 'challenger', None))
    """
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    elif ref:
        return ref, "champion", None
    raise RegistryError(f"model {ref!r} is not NAME@ALIAS or NAME/VERSION (e.g. riskstrat-emergency-admission@champion)")


def load_model_ref(ref: str, *, uri: str | None = None) -> LoadedModel:
    """Load a model named as ``NAME@ALIAS`` or ``NAME/VERSION``."""
    name, alias, version = parse_model_ref(ref)
    return load_model(name, alias=alias or "champion", version=version, uri=uri)


@_store_faults_named
def load_champion_version(name: str, *, alias: str = "champion", uri: str | None = None) -> str | None:
    """The version ``alias`` points at, or None when the model has no such alias."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(uri)
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@_store_faults_named
def log_scoring_run(manifest: dict, summary: pd.DataFrame, cfg, *, timings: dict | None = None) -> str:
    """Log a scoring run: the manifest and the commissioners' aggregates only (no person rows);
    ``timings`` (seconds per stage) as metrics (they are kept out of the manifest, whose bytes a
    rerun repeats)."""
    import mlflow

    configure(cfg.tracking.uri)
    experiment_id = _experiment(cfg.tracking.experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"scoring {manifest['as_of']}") as run:
        mlflow.set_tags({"riskstrat.kind": "scoring", "riskstrat.as_of": manifest["as_of"]})
        mlflow.log_params({f"model.{name}": f"{m['version']} ({m['run_id']})" for name, m in manifest["models"].items()})
        if manifest.get("costs"):  # how the data's money was read: its currency, a conversion rate, or without
            mlflow.log_params({f"costs.{k}": v for k, v in manifest["costs"].items()})
        counts = {k: v for k, v in manifest["counts"].items() if isinstance(v, (int, float))}
        counts.update({f"tier.{k}": v for k, v in manifest["counts"]["tiers"].items()})
        mlflow.log_metrics({metric_key(f"count.{k}"): float(v) for k, v in counts.items()})
        mlflow.log_metrics({f"seconds.{k}": float(v) for k, v in (timings or {}).items()})
        mlflow.log_dict(manifest, "manifest.json")
        mlflow.log_text(summary.to_csv(index=False), "summary.csv")
        return run.info.run_id


@_store_faults_named
def recorded_manifests(as_of: str, *, experiment: str, uri: str | None = None) -> list[dict]:
    """The manifests recorded in MLflow by the scoring runs of ``experiment`` as of ``as_of`` (one per
    run, newest first; a rerun or a replaced month leaves several). What the output folder's
    ``manifest.json`` is checked against: whoever can write the folder cannot write the registry."""
    import mlflow
    from mlflow import MlflowClient

    configure(uri)
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = mlflow.search_runs(experiment_ids=[found.experiment_id], output_format="list",
                              filter_string=f"tags.`riskstrat.kind` = 'scoring' and tags.`riskstrat.as_of` = '{as_of}'",
                              order_by=["attributes.start_time DESC"])
    manifests = []
    for run in runs:
        try:
            manifests.append(mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/manifest.json"))
        except Exception as exc:  # noqa: BLE001 - a run without its manifest artifact is skipped, said below
            if store_problem(exc, mlflow.get_tracking_uri()) is not None:
                raise
    return manifests


EVALUATION_EXPERIMENT = "riskstrat-evaluation"


@_store_faults_named
def log_evaluation_run(*, model_name: str, model_version: str, model_run_id: str, tags: dict, metrics: dict,
                       folder: Path, uri: str | None = None, experiment: str = EVALUATION_EXPERIMENT) -> str:
    """Log an evaluation (aggregates, report, tables, figures: no person rows) as its own run, tagged
    with the model version it evaluates, and link it from that version (tag riskstrat.evaluation_run_id)."""
    import mlflow
    from mlflow import MlflowClient

    configure(uri)
    experiment_id = _experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=f"evaluate {model_name} v{model_version} {tags.get('riskstrat.as_of', '')}") as run:
        mlflow.set_tags({"riskstrat.kind": "evaluation", "riskstrat.model_name": model_name,
                         "riskstrat.model_version": str(model_version), "riskstrat.model_run_id": model_run_id,
                         **{k: str(v) for k, v in tags.items()}})
        mlflow.log_metrics({metric_key(k): float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        mlflow.log_artifacts(str(folder), "evaluation")
        run_id = run.info.run_id
    MlflowClient().set_model_version_tag(model_name, str(model_version), "riskstrat.evaluation_run_id", run_id)
    return run_id


MONITORING_EXPERIMENT = "riskstrat-monitoring"


@_store_faults_named
def log_monitoring_run(*, tags: dict, metrics: dict, folder: Path, uri: str | None = None,
                       experiment: str = MONITORING_EXPERIMENT) -> str:
    """Log a monitoring run (``riskstrat monitor``): aggregates, the report and its tables only,
    never a person row; tagged with the months assessed and the model versions that scored them."""
    import mlflow

    configure(uri)
    experiment_id = _experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor {tags.get('riskstrat.as_of', '')}") as run:
        mlflow.set_tags({"riskstrat.kind": "monitoring", **{k: str(v) for k, v in tags.items()}})
        mlflow.log_metrics({metric_key(k): float(v) for k, v in metrics.items()
                            if isinstance(v, (int, float)) and v is not None and np.isfinite(v)})
        mlflow.log_artifacts(str(folder), "monitoring")
        return run.info.run_id


@_store_faults_named
def find_evaluation(name: str, version: str | int, *, uri: str | None = None):
    """The latest evaluation run of ``name`` version ``version`` (an ``mlflow.entities.Run``), or None."""
    import mlflow

    configure(uri)
    runs = mlflow.search_runs(
        search_all_experiments=True, output_format="list", max_results=1, order_by=["attributes.start_time DESC"],
        filter_string=(f"tags.`riskstrat.kind` = 'evaluation' AND tags.`riskstrat.model_name` = '{name}' "
                       f"AND tags.`riskstrat.model_version` = '{version}'"))
    return runs[0] if runs else None


@_store_faults_named
def tag_model_version(name: str, version: str | int, tags: dict, *, uri: str | None = None) -> None:
    """Set registry tags on one model version (e.g. why a gate was overridden, by whom, when)."""
    from mlflow import MlflowClient

    configure(uri)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


@dataclass(frozen=True)
class RegisteredVersion:
    """What the registry holds about one model version: the run that trained it and its outcome."""

    name: str
    version: str
    run_id: str
    target: str | None  # the training run's riskstrat.target tag (None for a run without one)


@_store_faults_named
def registered_version(name: str, version: str | int, *, uri: str | None = None) -> RegisteredVersion:
    """The registry's record of ``name`` version ``version`` and its training run (public
    ``MlflowClient.get_model_version`` and ``get_run``); :class:`RegistryError` when either is not
    in this store, :class:`TrackingStoreError` when the store cannot be read."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    where = configure(uri)
    client = MlflowClient()
    mv = model_version(client, name, version, where=where)
    try:
        run = client.get_run(mv.run_id) if mv.run_id else None
    except MlflowException as exc:
        if (problem := store_problem(exc.__cause__ or exc, where)) is not None:
            raise problem from exc
        run = None
    if run is None:
        raise RegistryError(f"{name} version {version} in {where} names training run {mv.run_id or '(none)'}, "
                            f"which the store does not hold")
    return RegisteredVersion(name, str(mv.version), mv.run_id, (run.data.tags or {}).get("riskstrat.target"))
