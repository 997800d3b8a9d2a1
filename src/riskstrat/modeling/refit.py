"""A refit for deployment: the evaluated settings fitted again on every labelled date the data cover.

``riskstrat train`` evaluates a model trained on dates whose labels end by the test date, a year or
more behind the data. With ``model.refit: latest`` (the default) the same settings are then fitted
again, and registered as their own version, the one to promote for scoring:

- **dates**: the training dates, then every ``step`` months after the last one while the date's
  horizon ends by the data end (``step``: the training dates' spacing, the median gap in months; 3
  with one training date), and the test date; every refit label ends by the data end;
- **people**: everyone but the calibration people trains (the training and the test people); the
  calibration people, at the same dates, calibrate;
- **settings**: the evaluated LightGBM (a clone: the same parameters) with exactly the number of trees
  its early stopping or the search kept (no early stopping: no held-out rows are left to judge it), the
  same calibration method; the expected-cost model and the logistic baseline likewise.

The refit cannot be judged on these data (it has seen every labelled outcome): it inherits the
evaluation of the version it refits (the tags say which: :data:`REFIT_OF_VERSION_TAG` ...), and
``riskstrat evaluate`` at a date on or after its labels end (its last date plus the horizon) is its
real check (riskstrat.pipelines.promote reads the inherited evaluation until then).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from riskstrat.modeling.calibration import fit_margin_calibrator
from riskstrat.modeling.config import TrainConfig
from riskstrat.features.spec import CLINICAL, FeatureSpec
from riskstrat.modeling.models import RiskModel, fit_logistic
from riskstrat.modeling.profile import reference_profile
from riskstrat.outcomes import HighCost
from riskstrat.modeling.split import training_groups
from riskstrat.modeling.train import PartRows, labelled_rows, training_design

Stage = Callable[[str], None]

# Tags on a refit's run and model version (and REFIT_VERSION_TAG on the version it refits).
REFIT_OF_VERSION_TAG = "riskstrat.refit_of_version"   # the evaluated version whose settings were refitted
REFIT_OF_RUN_TAG = "riskstrat.refit_of_run"           # that version's training run
REFIT_DATES_TAG = "riskstrat.refit_dates"             # the index dates the refit was fitted on
# Last training (or refit) date + horizon, the first day after the labels: on a refit and on an evaluation
# run (riskstrat.evaluation.gate reads it); evaluate on or after it.
LABELS_END_TAG = "riskstrat.training_labels_end"
INHERITED_PREFIX = "riskstrat.inherited."             # the parent's test date and metrics, as tags
REFIT_VERSION_TAG = "riskstrat.refit_version"         # on the evaluated version: its refit

INHERITED_METRICS = ("auroc", "auroc_ci_low", "auroc_ci_high", "calibration_slope", "calibration_intercept",
                     "brier", "auprc")


def step_months(dates) -> int:
    """The spacing of ``dates`` in whole months (the median gap; 3 for a single date).

    >>> step_months(["2023-11-01", "2024-02-01", "2024-05-01"]), step_months(["2024-11-01"])
    (3, 3)
    """
    months = sorted({pd.Timestamp(d).year * 12 + pd.Timestamp(d).month for d in dates})
    if len(months) < 2:
        return 3
    return max(1, int(round(float(np.median(np.diff(months))))))


def refit_dates(train_dates, test_date, *, horizon_days: int, extract_end) -> list[pd.Timestamp]:
    """The refit's index dates: the training dates, every :func:`step_months` after the last one whose
    horizon ends by ``extract_end`` (labels count ``[T, T + horizon)``), and the test date.

    >>> [str(d.date()) for d in refit_dates(["2023-11-01", "2024-02-01"], "2025-02-01", horizon_days=365,
    ...                                      extract_end="2026-05-31")]
    ['2023-11-01', '2024-02-01', '2024-05-01', '2024-08-01', '2024-11-01', '2025-02-01', '2025-05-01']
    """
    last_start = pd.Timestamp(extract_end) + pd.Timedelta(days=1) - pd.Timedelta(days=horizon_days)
    dates = {pd.Timestamp(d) for d in train_dates} | {pd.Timestamp(test_date)}
    step, last = step_months(train_dates), max(pd.Timestamp(d) for d in train_dates)
    k = 1
    while (d := last + pd.DateOffset(months=step * k)) <= last_start:
        dates.add(pd.Timestamp(d))
        k += 1
    return sorted(d for d in dates if d <= last_start)


@dataclass
class RefitData:
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_cal: pd.DataFrame
    y_cal: np.ndarray
    X_latest: pd.DataFrame            # everyone labelled at the latest refit date (the drift reference)
    dates: list[pd.Timestamp]
    counts: dict = field(default_factory=dict)
    cost_train: np.ndarray | None = None
    cost_cal: np.ndarray | None = None


def refit_design(cfg: TrainConfig, dates, *, key_fingerprint: str | None, of_version: str | None,
                 of_run: str | None) -> dict:
    """:func:`riskstrat.modeling.train.training_design` of the refit: its dates, and ``refit`` (whose settings, and
    that the test people trained), so that ``evaluate`` excludes everyone it was fitted or calibrated on."""
    design = training_design(cfg, key_fingerprint=key_fingerprint)
    design["index_dates"] = [str(pd.Timestamp(d).date()) for d in dates]
    design["refit"] = {"of_version": of_version, "of_run": of_run, "evaluated_test_date": design["test_date"],
                       "people": "training and test people trained, calibration people calibrated"}
    return design


def assemble_refit(engine, cfg: TrainConfig, *, dates, feature_names: list[str], extract_end, spec=None,
                   stage: Stage = lambda m: None) -> RefitData:
    """Rows at every refit date: the training and test people to fit, the calibration people to calibrate;
    the features of ``spec``, the evaluated model's :class:`riskstrat.features.spec.FeatureSpec`."""

    design = refit_design(cfg, dates, key_fingerprint=None, of_version=None, of_run=None)
    groups = training_groups(engine.records.persons["person_id"], design)
    records = engine.tables(cfg.target.tables)
    cost = isinstance(cfg.target, HighCost)
    others = ["label", *(["future_cost"] if cost else [])]
    parts = {part: PartRows(feature_names, others) for part in ("train", "calibration")}
    by_date, latest = {}, None
    frames = engine.features_at(dates, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age, spec=spec)
    for d, features in zip(dates, frames):  # every date from one pass over the events where the engine can
        f = labelled_rows(engine, records, cfg, d, extract_end=extract_end, spec=spec, features=features)
        del features
        labelled = f["label"].notna().to_numpy()
        group = groups.reindex(f.index).to_numpy()
        for part, rows in parts.items():
            rows.add(f, labelled & (group == part))
        by_date[str(pd.Timestamp(d).date())] = int(labelled.sum())
        stage(f"refit rows at {pd.Timestamp(d).date()}: {int(labelled.sum()):,} people, "
              f"{int(f['label'].sum()):,} with the outcome")
        if d == dates[-1]:  # everyone labelled at the latest date: the drift reference
            latest = PartRows(feature_names, [])
            latest.add(f, labelled)
        del f
    (X_train, train), (X_cal, cal) = (parts.pop(part).join() for part in ("train", "calibration"))
    return RefitData(
        X_train=X_train, y_train=train["label"].to_numpy(int), X_cal=X_cal,
        y_cal=cal["label"].to_numpy(int), X_latest=latest.join()[0], dates=[pd.Timestamp(d) for d in dates],
        cost_train=train["future_cost"].to_numpy() if cost else None,
        cost_cal=cal["future_cost"].to_numpy() if cost else None,
        counts={"train_rows": len(train), "calibration_rows": len(cal), "train_positive": int(train["label"].sum()),
                "calibration_positive": int(cal["label"].sum()), "train_people": int(train.index.nunique()),
                "calibration_people": int(cal.index.nunique()), "rows_by_date": by_date})


def inherited_evaluation(result, cfg: TrainConfig, *, version: str | None, run_id: str | None) -> dict:
    """What a refit inherits from the evaluated run (``result``:
    :class:`riskstrat.evaluation.held_out.TrainingResult`): its version and run, its test date, people and
    events, and its LightGBM test metrics."""
    m = result.metrics["lightgbm"]
    return {"version": version, "run_id": run_id, "test_date": str(pd.Timestamp(cfg.index_dates.test).date()),
            "test_rows": int(len(result.data.y_test)), "test_events": int(result.data.y_test.sum()),
            "metrics": {k: float(m[k]) for k in INHERITED_METRICS if m.get(k) is not None and np.isfinite(m[k])}}


@dataclass
class RefitResult:
    model: object                                   # models.RiskModel
    baselines: dict = field(default_factory=dict)   # name -> RiskModel, fitted on the refit rows
    data: RefitData | None = None
    inherited: dict = field(default_factory=dict)   # inherited_evaluation


def fit_refit(data: RefitData, cfg: TrainConfig, evaluated, *, inherited: dict, key_fingerprint: str | None = None,
              stage: Stage = lambda m: None) -> RefitResult:
    """``evaluated`` (the evaluated :class:`~riskstrat.modeling.models.RiskModel`) fitted again on ``data``: its
    parameters with the trees it kept, its calibration method on the calibration rows."""
    from sklearn.base import clone

    trees = int(evaluated.metadata["best_iteration"])
    clf = clone(evaluated.estimator).set_params(n_estimators=trees)
    clf.fit(data.X_train.astype("float64"), data.y_train)
    method = getattr(evaluated.calibrator, "method", cfg.model.calibration)
    calibrator = fit_margin_calibrator(clf, data.X_cal.astype("float64"), data.y_cal, method=method)
    metadata = copy.deepcopy({k: v for k, v in evaluated.metadata.items() if k not in ("degenerate",)})
    latest = max(data.dates)
    labels_end = latest + pd.Timedelta(days=int(cfg.target.horizon_days))
    metadata.update({
        "best_iteration": trees,
        "lightgbm_params": {**metadata.get("lightgbm_params", {}), "n_estimators": trees},
        "training_design": refit_design(cfg, data.dates, key_fingerprint=key_fingerprint,
                                        of_version=inherited.get("version"), of_run=inherited.get("run_id")),
        "refit": {"of_version": inherited.get("version"), "of_run": inherited.get("run_id"),
                  "dates": [str(d.date()) for d in data.dates], "labels_end": str(labels_end.date()),
                  "trees": trees, "calibration": method, "counts": data.counts, "inherited": inherited},
    })
    model = RiskModel("lightgbm", evaluated.target, list(evaluated.feature_names), clf, calibrator, metadata=metadata)
    if evaluated.cost_estimator is not None and data.cost_train is not None:
        cost_trees = int(evaluated.metadata.get("cost_best_iteration") or evaluated.cost_estimator.n_estimators)
        model.cost_estimator = clone(evaluated.cost_estimator).set_params(n_estimators=cost_trees).fit(
            data.X_train.astype("float64"), data.cost_train)
    model.metadata["reference_profile"] = reference_profile(
        data.X_latest, model.predict_risk(data.X_latest), described=f"everyone labelled at {latest.date()}")
    baselines = {}
    if "logistic" in cfg.model.baselines:
        baselines["logistic"] = fit_logistic(data.X_train, data.y_train, target=evaluated.target)
    stage(f"refitted for deployment: {trees} trees on {data.counts['train_rows']:,} rows at {len(data.dates)} dates "
          f"({data.dates[0].date()} to {latest.date()}; labels to {(labels_end - pd.Timedelta(days=1)).date()}), "
          f"{method} calibration on {data.counts['calibration_rows']:,} rows")
    return RefitResult(model, baselines, data, inherited)


def refit_for_deployment(engine, cfg: TrainConfig, result, *, extract_end, of_version: str | None = None,
                         of_run: str | None = None, key_fingerprint: str | None = None,
                         stage: Stage = lambda m: None) -> RefitResult:
    """The refit of ``result`` (the evaluated :class:`riskstrat.evaluation.held_out.TrainingResult`) on every
    labelled date up to the latest the data cover (:func:`refit_dates`)."""
    dates = refit_dates(cfg.index_dates.train, cfg.index_dates.test, horizon_days=cfg.target.horizon_days,
                        extract_end=extract_end)
    stage(f"refit for deployment on {len(dates)} index dates: {', '.join(str(d.date()) for d in dates)}")

    stored = result.model.metadata.get("feature_spec")  # the features the evaluated model was built on
    spec = FeatureSpec.from_dict(stored) if stored else CLINICAL
    data = assemble_refit(engine, cfg, dates=dates, feature_names=list(result.model.feature_names),
                          extract_end=extract_end, spec=spec, stage=stage)
    inherited = inherited_evaluation(result, cfg, version=of_version, run_id=of_run)
    return fit_refit(data, cfg, result.model, inherited=inherited, key_fingerprint=key_fingerprint, stage=stage)
