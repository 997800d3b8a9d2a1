"""``riskstrat train``: fit, evaluate and register a model, then its refit for deployment.

The steps are :mod:`riskstrat.modeling`'s (assemble, fit and evaluate, refit); this module joins
them with the data (:mod:`riskstrat.features.engine`) and MLflow (:mod:`riskstrat.registry.tracking`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from riskstrat.quiet import no_stage
from riskstrat.data.data_end import data_end_of
from riskstrat.data.io import currency_of, data_fingerprint
from riskstrat.data.load import load_truth
from riskstrat.data.privacy import check_key_matches
from riskstrat.data.records import LinkedRecords
from riskstrat.data.validate import ValidationError
from riskstrat.features.words import feature_table
from riskstrat.features.costs import training_costs
from riskstrat.features.engine import PandasEngine, open_engine
from riskstrat.modeling.config import TrainConfig, config_to_dict, load_config
from riskstrat.modeling.guards import DegenerateModelError, describe_degenerate
from riskstrat.modeling.refit import refit_for_deployment
from riskstrat.evaluation.held_out import fit_and_evaluate
from riskstrat.modeling.train import TablesOnDemand, assemble, check_events, truth_scores
from riskstrat.outcomes import check_costs_known
from riskstrat.registry import tracking

# What `riskstrat train` loads, catches and says (load_config, the refusals, describe_degenerate),
# re-exported so that the command imports only its pipeline.
__all__ = ["TRAINING_STAGES", "TrainingRun", "run_training",
           "DegenerateModelError", "ValidationError", "describe_degenerate", "load_config"]

Stage = Callable[[str], None]


@dataclass
class TrainingRun:
    result: object          # evaluation.held_out.TrainingResult
    logged: object | None   # tracking.LoggedRun
    config: TrainConfig | None = None  # as run (index_dates: auto resolved to dates)
    timings: dict[str, float] | None = None  # seconds per stage (TRAINING_STAGES, then per index date)
    refit: object | None = None            # refit.RefitResult (model.refit: latest, logged runs only)
    refit_logged: object | None = None     # tracking.LoggedRun of the refit: the version to promote for scoring


# The stages of a training run, timed into its MLflow run (metrics seconds.<stage>, timings.json).
TRAINING_STAGES = ("load", "features_labels", "fit", "fit_baselines", "evaluate", "log", "refit")


def run_training(cfg: TrainConfig, *, stage: Stage = no_stage, log: bool = True,
                 records: LinkedRecords | None = None, engine=None) -> TrainingRun:
    """Train, evaluate and (if ``log``) track and register one model as configured.

    The features and labels come from the engine ``cfg.engine`` over ``cfg.data`` (or the given
    ``engine``, or the validated ``records`` through the pandas engine); every engine gives the same
    training matrix, labels and model. Refuses (:class:`riskstrat.modeling.guards.InsufficientEventsError`)
    before fitting when a part has fewer events than ``cfg.guards`` asks, and
    (:class:`riskstrat.modeling.guards.DegenerateModelError`, holding the run) after fitting when the model
    is degenerate and ``guards.register_degenerate`` is off; the run is then still logged, tagged
    ``riskstrat.degenerate``, with nothing registered. The stages' seconds are in ``timings`` and
    logged with the run.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    key_fingerprint = check_key_matches(cfg.data.path)
    if engine is None:
        engine = PandasEngine(records) if records is not None else open_engine(
            cfg.engine, cfg.data, stage=stage, check_every_row=True)
    found_end = _data_end(cfg, engine, stage=stage)
    extract_end = found_end.end
    timings["load"] = time.perf_counter() - started
    cfg = _index_dates(cfg, extract_end, stage=stage)
    started = time.perf_counter()
    per_date: dict[str, float] = {}
    data = assemble(engine, cfg, extract_end=extract_end, stage=stage, timings=per_date)
    timings["features_labels"] = time.perf_counter() - started
    result = _fit(engine, cfg, data, key_fingerprint=key_fingerprint, timings=timings, stage=stage)
    timings.update(per_date)
    logged = fingerprint = features = None
    if log:
        fingerprint = data_fingerprint(cfg.data.path)  # once: the refit below logs it too
        features = feature_table(data.feature_names)
        logged = _log(result, cfg, engine, found_end, fingerprint=fingerprint, features=features, timings=timings,
                      stage=stage)
    run = TrainingRun(result, logged, cfg, timings)
    if logged is not None and logged.model_version is not None and not result.degenerate \
            and cfg.model.refit == "latest":
        _refit_and_log(run, engine, extract_end=extract_end, key_fingerprint=key_fingerprint,
                       fingerprint=fingerprint, features=features, stage=stage)
    if result.degenerate and (logged is None or logged.model_version is None):
        raise _not_registered(run)
    return run


def _data_end(cfg: TrainConfig, engine, *, stage: Stage):
    """The data's end (configured, else read from the event volume; refused when unknown), once the
    outcome's costs are known to be in the data."""
    check_costs_known(cfg.target, row_counts=engine.row_counts, blank_costs=engine.blank_costs)
    found_end = data_end_of(cfg.data.path, engine, configured=cfg.data.extract_end)
    found_end.require(cfg.data.path)
    if found_end.warning:
        stage(f"warning: {found_end.warning}")
    return found_end


def _index_dates(cfg: TrainConfig, extract_end, *, stage: Stage) -> TrainConfig:
    """``cfg`` with ``index_dates: auto`` resolved to dates for an extract ending ``extract_end``."""
    if cfg.index_dates != "auto":
        return cfg
    cfg = cfg.with_index_dates_for(extract_end)
    stage(f"index dates for an extract ending {extract_end.date()}: training "
          f"{', '.join(str(d) for d in cfg.index_dates.train)}; test {cfg.index_dates.test}")
    return cfg


def _fit(engine, cfg: TrainConfig, data, *, key_fingerprint, timings: dict, stage: Stage):
    """The model fitted and evaluated on the assembled ``data`` (:func:`riskstrat.evaluation.held_out.fit_and_evaluate`),
    once every part has the events ``cfg.guards`` asks for."""
    tested = "everyone" if cfg.split.mode == "temporal_only" else "held-out people"
    stage(f"{data.counts['train_rows']:,} training rows ({data.counts['train_people']:,} people), "
          f"{data.counts['calibration_rows']:,} calibration rows, {data.counts['test_rows']:,} test rows "
          f"({tested}) at {cfg.index_dates.test}; {len(data.feature_names)} features")
    check_events(cfg, {"training": data.y_train, "calibration": data.y_cal, "test": data.y_test},
                 TablesOnDemand(engine))
    truth = truth_scores(load_truth(cfg), cfg, data.X_test.index)
    costs = training_costs(currency=currency_of(cfg.data.path), sources=engine.sources, row_counts=engine.row_counts,
                           blank_costs=engine.blank_costs, feature_names=data.feature_names)
    return fit_and_evaluate(data, cfg, truth=truth, stage=stage, timings=timings,
                            key_fingerprint=key_fingerprint, costs=costs)


def _log(result, cfg: TrainConfig, engine, found_end, *, fingerprint: dict, features: pd.DataFrame, timings: dict,
         stage: Stage):
    """The run logged to MLflow, and its model registered unless degenerate (and not allowed to be)."""
    low, high = engine.date_range()
    summary = {"row_counts": dict(engine.row_counts), "first_event": str(low.date()) if low is not None else None,
               "last_event": str(high.date()) if high is not None else None,
               "extract_end": str(found_end.end.date()), **found_end.as_dict(), "sources": engine.sources,
               "engine": engine.name}
    register = not result.degenerate or cfg.guards.register_degenerate
    with _store_faults(cfg.tracking.uri):
        logged = tracking.log_training_run(result, cfg, fingerprint=fingerprint,
                                           features=features, config_dict=config_to_dict(cfg),
                                           data_summary=summary, register=register, degenerate=result.degenerate,
                                           timings=timings)
    stage(f"logged run {logged.run_id}; " + (f"registered {logged.model_name} version {logged.model_version}"
                                             + (" tagged riskstrat.degenerate" if result.degenerate else "")
                                             if register else "registered nothing (degenerate model)"))
    return logged


def _not_registered(run: TrainingRun) -> DegenerateModelError:
    """The refusal of a degenerate model that was not registered (holding the run)."""
    cfg, result, logged = run.config, run.result, run.logged
    where = f"run {logged.run_id} is logged with the tag riskstrat.degenerate" if logged else "nothing was logged"
    return DegenerateModelError(
        f"the {cfg.target.name.replace('_', ' ')} model is degenerate and was not registered: "
        f"{describe_degenerate(result.degenerate, min_distinct_scores=cfg.guards.min_distinct_scores)}. "
        f"{where[0].upper() + where[1:]}. Usually the data hold too little signal for this outcome: more "
        f"people or index dates, or another outcome; to register it anyway (promote and score will still "
        f"refuse it unless forced), set guards.register_degenerate=true",
        reasons=result.degenerate, run=run)

@contextmanager
def _store_faults(configured_uri):
    """A corrupt or locked MLflow store is the environment's fault, not a bug: its failure becomes
    :func:`riskstrat.registry.tracking.store_problem`'s refusal; anything else is raised as it is."""
    try:
        yield
    except Exception as exc:
        problem = tracking.store_problem(exc, tracking.tracking_uri(configured_uri))
        if problem is None:
            raise
        raise problem from exc


def _refit_and_log(run: TrainingRun, engine, *, extract_end, key_fingerprint, fingerprint: dict,
                   features: pd.DataFrame, stage: Stage) -> None:
    """The refit for deployment of a logged, registered run (riskstrat.modeling.refit), logged and registered as
    its own version; into ``run.refit`` and ``run.refit_logged``."""
    cfg, logged = run.config, run.logged
    started = time.perf_counter()
    run.refit = refit_for_deployment(engine, cfg, run.result, extract_end=extract_end,
                                     of_version=logged.model_version, of_run=logged.run_id,
                                     key_fingerprint=key_fingerprint, stage=stage)
    seconds = time.perf_counter() - started
    run.timings["refit"] = seconds
    with _store_faults(cfg.tracking.uri):
        run.refit_logged = tracking.log_refit_run(run.refit, cfg, parent=logged, features=features,
                                                  config_dict=config_to_dict(cfg), fingerprint=fingerprint,
                                                  seconds=seconds)
    stage(f"logged the refit as run {run.refit_logged.run_id}; registered {logged.model_name} version "
          f"{run.refit_logged.model_version} (refit of version {logged.model_version}, inheriting its evaluation)")
