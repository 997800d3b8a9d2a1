"""Training with a temporal, person-grouped design: the rows, the split, the fitted models and their scores
on the later test date (measured by :mod:`riskstrat.evaluation.held_out`).

Design: people are split once, by a seeded hash of their pseudonym, into a training group, a
calibration group (early stopping and probability calibration only) and a test group. Training
rows are the training group at every training index date (person x date rows stacked); the test
rows are the test group at the later test index date. A person is never in two groups, and every
training label window ends on or before the test date.

``split.mode: temporal_only`` (for small data) has no test group: everyone eligible at the test
date is tested, the training and calibration people included. Training and calibration people are
still split by the hash. This is temporal validation only, weaker than the default: the model has
seen the tested people's earlier rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

import riskstrat
from riskstrat.modeling.config import TrainConfig
from riskstrat.modeling.design import characteristics, participant_flow
from riskstrat.features.engine import PandasEngine
from riskstrat.features.generic import build_spec
from riskstrat.features.spec import CLINICAL
from riskstrat.features.clinical import META_COLUMNS, features_for_sources
from riskstrat.modeling.guards import check_minimum_events
from riskstrat.outcomes.labels import check_horizon, future_cost
from riskstrat.outcomes import HighCost
from riskstrat.modeling.models import RiskModel, auto_lightgbm, fit_cost_regressor, fit_lightgbm, fit_logistic, prior_use_score
from riskstrat.modeling.profile import reference_profile
from riskstrat.data.records import LinkedRecords
from riskstrat.modeling.search import tune_lightgbm
from riskstrat.modeling.split import SPLIT_RULE, person_groups, suggest_index_dates, training_groups  # noqa: F401 - re-exported
from riskstrat.data.synth.truth import oracle_risk

Stage = Callable[[str], None]


def training_design(cfg: TrainConfig, *, key_fingerprint: str | None = None) -> dict:
    """What a model was trained on, with no person in it: the training index dates, the test date, the
    horizon, the cohort's ages, the person split (rule, seed, fractions, mode) and the fingerprint of
    the pseudonym key the data were made with. Kept in the model's metadata and logged with the run
    (``training_design.json``); :func:`training_groups` recomputes anyone's group from it."""
    return {"index_dates": [str(pd.Timestamp(d).date()) for d in cfg.index_dates.train],
            "test_date": str(pd.Timestamp(cfg.index_dates.test).date()), "horizon_days": int(cfg.target.horizon_days),
            "cohort": {"min_age": cfg.cohort.min_age, "max_age": cfg.cohort.max_age},
            "split": {"rule": SPLIT_RULE, "mode": cfg.split.mode, "seed": cfg.split.seed,
                      "test_fraction": cfg.split.test_fraction,
                      "calibration_fraction": cfg.split.calibration_fraction},
            "pseudonym_key_fingerprint": key_fingerprint}


def selected_features(cfg: TrainConfig, sources: list[str], spec=None) -> list[str]:
    """Features the run uses: those of the sources present (``spec``'s: default the clinical features),
    then the config's include/exclude."""
    present = [s for s in sources if s not in cfg.data.exclude_sources]
    available = features_for_sources(present) if spec is None else spec.features_for_sources(present)
    chosen = available if cfg.features.include == "all" else [f for f in cfg.features.include if f in available]
    return [f for f in chosen if f not in cfg.features.exclude]


class TablesOnDemand:
    """The data as :func:`riskstrat.modeling.guards.likely_cause` reads them (``has``, ``get``, ``persons``),
    each table read from the engine only when asked: refusals name a cause without reading every table."""

    def __init__(self, engine):
        self.engine = engine

    def has(self, name: str) -> bool:
        return name == "persons" or self.engine.has(name)

    def get(self, name: str) -> pd.DataFrame:
        return self.engine.tables([name]).get(name)

    @property
    def persons(self) -> pd.DataFrame:
        return self.engine.records.persons


@dataclass
class TrainingData:
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_cal: pd.DataFrame
    y_cal: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    meta_test: pd.DataFrame
    feature_names: list[str]
    spec: object = None  # the riskstrat.features.spec.FeatureSpec the features were built with
    counts: dict[str, int] = field(default_factory=dict)
    # Next-horizon cost per row (high-cost target only), for the expected-cost model.
    cost_train: np.ndarray | None = None
    cost_cal: np.ndarray | None = None
    cost_test: np.ndarray | None = None
    # Aggregates for the design section (riskstrat.modeling.design): the participant flow at each index date
    # ("flow") and the characteristics of each part ("characteristics": train, calibration, test). No person.
    summary: dict = field(default_factory=dict)


def assemble(data, cfg: TrainConfig, *, extract_end, stage: Stage = lambda m: None,
             timings: dict[str, float] | None = None) -> TrainingData:
    """Features and labels at every index date, split by person and by date.

    ``data`` is validated :class:`~riskstrat.data.records.LinkedRecords` or a feature engine
    (:mod:`riskstrat.features.engine`): the engine builds the features at each date, and gives the tables
    the outcome reads (``engine.tables(cfg.target.tables)``), on which the labels are computed as
    on the reference. ``timings`` (when given) receives the seconds spent per index date
    (``features_labels.<date>``).
    """
    engine = PandasEngine(data) if isinstance(data, LinkedRecords) else data
    # The clinical features and the generic covariates of features.generic, their groups read from the data.
    spec = build_spec(cfg.features.generic, engine, until=cfg.index_dates.test, stage=stage)
    names = selected_features(cfg, engine.sources, spec)
    persons = engine.records.persons
    # With temporal_only there is no test group (everyone is tested at the test date): its people train.
    groups = training_groups(persons["person_id"], training_design(cfg))
    temporal_only = cfg.split.mode == "temporal_only"
    t = cfg.target
    dates = [*cfg.index_dates.train, cfg.index_dates.test]
    for d in dates:  # fail before hours of feature building, not after
        check_horizon(d, horizon_days=t.horizon_days, extract_end=extract_end)
    records = engine.tables(t.tables)  # persons and what the outcome reads
    test_date = pd.Timestamp(cfg.index_dates.test)
    # Each date's rows go straight to their part (training and calibration rows before the test date,
    # held-out people at it): the features into one float64 matrix a part, the other columns beside it.
    others = ["label", *(["future_cost"] if isinstance(t, HighCost) else []), *META_COLUMNS, "age", "index_date"]
    parts = {part: PartRows(names, others) for part in ("train", "calibration", "test")}
    flow = []
    # Every date's features from one pass over the events where the engine can (DuckDB), a date at a time
    # otherwise; the first date's seconds then hold that pass.
    frames = engine.features_at(dates, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age, spec=spec)
    started = time.perf_counter()
    for d, features in zip(dates, frames):
        f = labelled_rows(engine, records, cfg, d, extract_end=extract_end, spec=spec, features=features)
        del features
        if timings is not None:
            timings[f"features_labels.{pd.Timestamp(d).date()}"] = time.perf_counter() - started
        group = groups.reindex(f.index).to_numpy()
        stage(f"features and labels at {d}: {len(f):,} people, {int(f['label'].sum()):,} with the outcome, "
              f"{int(f['label'].isna().sum()):,} without a label")
        labelled = f["label"].notna().to_numpy()
        flow.append(participant_flow(persons, d, f.index, f["label"], horizon_days=t.horizon_days,
                                     min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age))
        if pd.Timestamp(d) == test_date:
            flow[-1]["rows"] = {"test": parts["test"].add(f, labelled & ((group == "test") | temporal_only))}
        else:
            flow[-1]["rows"] = {part: parts[part].add(f, labelled & (group == part)) for part in ("train", "calibration")}
        del f
        started = time.perf_counter()
    (X_train, train), (X_cal, cal), (X_test, test) = (parts.pop(part).join() for part in ("train", "calibration", "test"))
    if any(part["label"].nunique() < 2 for part in (train, cal, test)):
        # A part with one class cannot be fitted or judged: refused as the guards refuse too few events
        # (the minimums are at least 1), with the rate and the people needed.
        check_events(cfg, {"training": train["label"].to_numpy(), "calibration": cal["label"].to_numpy(),
                           "test": test["label"].to_numpy()}, TablesOnDemand(engine))
    meta = test[list(META_COLUMNS)].assign(age=test["age"], index_date=test["index_date"])
    costs = {}
    if isinstance(t, HighCost):
        costs = {"cost_train": train["future_cost"].to_numpy(), "cost_cal": cal["future_cost"].to_numpy(),
                 "cost_test": test["future_cost"].to_numpy()}
    return TrainingData(**costs,
        X_train=X_train, y_train=train["label"].to_numpy(int), X_cal=X_cal, y_cal=cal["label"].to_numpy(int),
        X_test=X_test, y_test=test["label"].to_numpy(int), meta_test=meta, feature_names=names, spec=spec,
        summary={"flow": flow, "characteristics": {
            part: characteristics(_described(X, frame), frame["label"])
            for part, X, frame in (("train", X_train, train), ("calibration", X_cal, cal), ("test", X_test, test))}},
        counts={"train_rows": len(train), "calibration_rows": len(cal), "test_rows": len(test),
                "train_positive": int(train["label"].sum()), "calibration_positive": int(cal["label"].sum()),
                "test_positive": int(test["label"].sum()),
                "train_people": int(train.index.nunique()), "test_people": int(test.index.nunique())},
    )


class PartRows:
    """One part's rows (training, calibration or test), gathered date by date and joined once.

    Each date gives its chosen rows' features (a float64 copy of those rows only) and their ``others``
    columns (label, groups, date); :meth:`join` copies the features into one row-major float64 matrix,
    each date's block freed as it is copied, and puts the feature frame over it without a copy. The
    part is so held about once: the dates' frames and their concatenation held it twice, and its
    column selection sometimes a third time (a million people, 5 dates, 197 features: 4.4 GB a copy).
    Row-major, LightGBM builds its Dataset from the matrix as it is, and the logistic baseline's solver
    gets the row-major array it asks for from :class:`~riskstrat.modeling.models.LogScaled`.
    """

    def __init__(self, names: list[str], others: list[str]):
        self.names, self.others = list(names), list(others)
        self._blocks: list[np.ndarray] = []
        self._others: list[pd.DataFrame] = []

    def add(self, frame: pd.DataFrame, rows: np.ndarray) -> int:
        """Add the rows of ``frame`` where ``rows`` (a boolean mask) is true; returns their number."""
        # Rows first, then columns: only the chosen rows are copied, whether or not the chosen columns are
        # one run of the frame's float64 block (a subset with gaps would copy every row of the date).
        self._blocks.append(frame.loc[rows, self.names].to_numpy(dtype="float64"))
        self._others.append(frame.loc[rows, [c for c in dict.fromkeys(self.others) if c in frame]])
        return int(len(self._blocks[-1]))

    def join(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The part's features (a frame over one row-major float64 matrix) and its other columns, in the
        order the rows were added, indexed by person."""
        others = pd.concat(self._others) if self._others else pd.DataFrame(columns=self.others)
        self._others = []
        X = np.empty((len(others), len(self.names)), dtype="float64")
        at = 0
        while self._blocks:
            block = self._blocks.pop(0)
            X[at:at + len(block)] = block
            at += len(block)
            del block  # freed as soon as it is copied: the part is never held twice
        return pd.DataFrame(X, index=others.index, columns=self.names, copy=False), others


# The feature columns riskstrat.modeling.design.characteristics reads beside a part's other columns.
_DESCRIBED = ("age", "sex_female", "deprivation_decile", "emergency_admissions_0_3m", "emergency_admissions_3_12m")


def _described(X: pd.DataFrame, others: pd.DataFrame) -> pd.DataFrame:
    """A part's other columns with the features its Table 1 reads (:func:`characteristics`)."""
    return others.assign(**{c: X[c].to_numpy() for c in _DESCRIBED if c in X.columns and c not in others})


def labelled_rows(engine, records, cfg: TrainConfig, index_date, *, extract_end, spec=None,
                  features: pd.DataFrame | None = None) -> pd.DataFrame:
    """Everyone eligible at ``index_date``: the engine's features (those of ``spec``, a
    :class:`riskstrat.features.spec.FeatureSpec`; ``features``: that frame, already built), ``label``
    (NaN: no label), ``future_cost`` (high-cost target only) and ``index_date``."""
    t = cfg.target
    f = features if features is not None else engine.features(
        index_date, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age, spec=spec)
    f["label"] = t.labels(records, index_date, f.index, extract_end=extract_end).to_numpy()
    if isinstance(t, HighCost):
        f["future_cost"] = future_cost(records, index_date, f.index, horizon_days=t.horizon_days).to_numpy()
    f["index_date"] = pd.Timestamp(index_date)
    return f


def check_events(cfg: TrainConfig, labels: dict[str, np.ndarray], records=None) -> dict[str, dict[str, int]]:
    """:func:`riskstrat.modeling.guards.check_minimum_events` with ``cfg.guards``' minimums and the rows each
    eligible person gives a part (split fraction times index dates), so that a refusal says about
    how many people would be needed."""
    g, sp = cfg.guards, cfg.split
    n_train = len(cfg.index_dates.train)
    shares = {"training": (1 - sp.test_fraction - sp.calibration_fraction) * n_train,
              "calibration": sp.calibration_fraction * n_train,
              "test": 1.0 if sp.mode == "temporal_only" else sp.test_fraction}
    return check_minimum_events(labels, minimums={"training": g.min_events_train,
                                                  "calibration": g.min_events_calibration,
                                                  "test": g.min_events_test},
                                target=cfg.target.name, records=records, tables=tuple(cfg.target.tables),
                                temporal_only=sp.mode == "temporal_only", shares=shares)


def truth_scores(truth: pd.DataFrame | None, cfg: TrainConfig, test_index: pd.Index) -> np.ndarray | None:
    """The oracle's risk for the test rows from a synthetic data set's ground truth, if it has one."""
    return oracle_risk(truth, cfg.target.truth_column, cfg.index_dates.test, test_index)


@dataclass
class FittedModels:
    """What :func:`fit_models` fitted, with each model's scores for the test rows; measured by
    :func:`riskstrat.evaluation.held_out.evaluate_fitted`."""

    model: RiskModel
    baselines: dict[str, RiskModel]
    scores: dict[str, np.ndarray]          # test-set score per model (probabilities, except prior_use)
    data: TrainingData
    cost_predictions: np.ndarray | None = None  # the expected-cost model's test-set predictions (high-cost target)
    search: pd.DataFrame | None = None     # one row per hyperparameter-search trial, when searched


def fit_models(data: TrainingData, cfg: TrainConfig, *, stage: Stage = lambda m: None,
               timings: dict[str, float] | None = None, key_fingerprint: str | None = None,
               costs: dict | None = None) -> FittedModels:
    """Fit LightGBM (after the search, when configured), the expected-cost model and the baselines, and
    score the temporal test set.

    The model's metadata records the feature spec its features were built with (``feature_spec``: the
    aggregates, derived rules, feature names, generic config and group values, as JSON-ready data) and
    its hash (``feature_spec_hash``): scoring builds exactly that spec, and refuses what it cannot build.
    ``timings`` (when given) receives the seconds of ``fit`` (search, LightGBM, calibration, the cost
    model, the test predictions) and ``fit_baselines``. The metadata also records
    :func:`training_design` (``training_design``), with ``key_fingerprint`` (the data's pseudonym key
    fingerprint, if any), and ``costs`` (:func:`riskstrat.features.costs.training_costs`: the data's
    currency, which tables had costs, whether the model uses cost features) under ``costs``: scoring and
    evaluation refuse data whose money the model would misread. ``reference_profile`` holds the test
    people's :func:`riskstrat.modeling.profile.reference_profile`, for drift at every scoring run.
    """
    timings = {} if timings is None else timings
    started = time.perf_counter()
    # Settings left to auto scale with the training rows (the rule in models.auto_lightgbm).
    params, auto = auto_lightgbm(cfg.model.lightgbm, n_rows=len(data.y_train))
    configured, trials = params, None  # the cost model is fitted with these (not the searched ones)
    if auto:
        stage(f"LightGBM settings for {len(data.y_train):,} training rows: "
              + ", ".join(f"{k} {v:g}" for k, v in auto.items()) + " (auto; set them in model.lightgbm to fix them)")
    if cfg.model.search.enabled:
        stage(f"searching LightGBM parameters: up to {cfg.model.search.n_trials} trials on the training people")
        params, trials = tune_lightgbm(data.X_train, data.y_train, base=params, space=cfg.model.search,
                                       seed=cfg.split.seed, stage=stage)
    lgbm = fit_lightgbm(data.X_train, data.y_train, data.X_cal, data.y_cal, params=params,
                        calibration=cfg.model.calibration, target=cfg.target.name, seed=cfg.split.seed)
    lgbm.metadata["lightgbm_params"] = params.model_dump()
    lgbm.metadata["lightgbm_auto"] = sorted(auto)  # which of them the rule chose
    lgbm.metadata["outcome"] = cfg.target.describe()  # the lists name what the model predicts
    spec = data.spec or CLINICAL  # the feature definitions it was trained on, as data and as a hash
    lgbm.metadata["feature_spec"] = spec.to_dict()
    lgbm.metadata["feature_spec_hash"] = spec.hash()
    if costs is not None:  # the money it was trained on (riskstrat.features.costs.check_model_costs reads it)
        lgbm.metadata["costs"] = costs
    lgbm.metadata["riskstrat_version"] = riskstrat.__version__
    # Dates, horizon and split rule (no person): evaluate tells in-sample dates and people from them.
    lgbm.metadata["training_design"] = training_design(cfg, key_fingerprint=key_fingerprint)
    # What the evaluation report's design section states: counts, flow, Table 1, the calibration and the tuning.
    lgbm.metadata["training_summary"] = {
        **data.summary, "counts": dict(data.counts), "calibration": cfg.model.calibration,
        "candidate_predictors": len(data.feature_names),
        "search": ({"trials": int(len(trials)), **cfg.model.search.model_dump(mode="json")} if trials is not None
                   else {"enabled": False})}
    stage(f"LightGBM fitted ({lgbm.metadata['best_iteration']} trees after early stopping), "
          f"{cfg.model.calibration} calibration on {len(data.y_cal):,} held-out rows")
    scores = {"lightgbm": lgbm.predict_risk(data.X_test)}
    # Aggregates only (decile edges and shares), for PSI drift at every scoring run.
    lgbm.metadata["reference_profile"] = reference_profile(
        data.X_test, scores["lightgbm"], described=f"test people at {cfg.index_dates.test}")
    cost_predictions = None
    if data.cost_train is not None:
        lgbm.cost_estimator = fit_cost_regressor(data.X_train, data.cost_train, data.X_cal, data.cost_cal,
                                                 params=configured, seed=cfg.split.seed)
        # The trees early stopping kept, for the refit (riskstrat.modeling.refit).
        lgbm.metadata["cost_best_iteration"] = int(lgbm.cost_estimator.best_iteration_ or configured.n_estimators)
        cost_predictions = lgbm.predict_cost(data.X_test)
    timings["fit"] = time.perf_counter() - started
    started = time.perf_counter()
    baselines: dict[str, RiskModel] = {}
    if "logistic" in cfg.model.baselines:
        baselines["logistic"] = fit_logistic(data.X_train, data.y_train, target=cfg.target.name)
        scores["logistic"] = baselines["logistic"].predict_risk(data.X_test)
    if "prior_use" in cfg.model.baselines:
        scores["prior_use"] = prior_use_score(data.X_test)
    timings["fit_baselines"] = time.perf_counter() - started
    return FittedModels(lgbm, baselines, scores, data, cost_predictions=cost_predictions, search=trials)
