"""Wiring: the steps (pure functions elsewhere) joined with I/O and tracking into whole runs.

The CLI, notebooks and the batch job call these; each takes one validated config object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from riskstrat.config import TrainConfig, config_to_dict
from riskstrat.records import LinkedRecords

Stage = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


def load_data(cfg_data, *, stage: Stage = _quiet) -> LinkedRecords:
    """Read and validate a linked data set, dropping switched-off sources (raises ValidationError)."""
    from riskstrat.validate import load_records

    records = load_records(cfg_data.path, out_of_life_events=cfg_data.out_of_life_events)
    if cfg_data.exclude_sources:
        records = records.without(*cfg_data.exclude_sources)
    counts = records.row_counts()
    stage(f"loaded {counts['persons']:,} people and {sum(counts.values()) - counts['persons']:,} events "
          f"from {cfg_data.path} ({', '.join(records.sources) or 'no event tables'})")
    return records


def load_truth(cfg: TrainConfig) -> pd.DataFrame | None:
    """The synthetic data set's ground truth, read only for the oracle comparison."""
    path = cfg.evaluation.truth_path or Path(cfg.data.path) / "ground_truth" / "truth.parquet"
    return pd.read_parquet(path) if Path(path).exists() else None


@dataclass
class TrainingRun:
    result: object          # train.TrainingResult
    logged: object | None   # tracking.LoggedRun


def run_training(cfg: TrainConfig, *, stage: Stage = _quiet, log: bool = True,
                 records: LinkedRecords | None = None) -> TrainingRun:
    """Train, evaluate and (if ``log``) track and register one model as configured."""
    from riskstrat import tracking
    from riskstrat.features import feature_table
    from riskstrat.io import data_fingerprint
    from riskstrat.train import assemble, extract_end_of, fit_and_evaluate, truth_scores

    records = records if records is not None else load_data(cfg.data, stage=stage)
    extract_end = extract_end_of(cfg.data.path, records, cfg.data.extract_end)
    data = assemble(records, cfg, extract_end=extract_end, stage=stage)
    stage(f"{data.counts['train_rows']:,} training rows ({data.counts['train_people']:,} people), "
          f"{data.counts['calibration_rows']:,} calibration rows, {data.counts['test_rows']:,} test rows "
          f"at {cfg.index_dates.test}; {len(data.feature_names)} features")
    truth = truth_scores(load_truth(cfg), cfg, data.X_test.index)
    result = fit_and_evaluate(data, cfg, truth=truth, stage=stage)
    logged = None
    if log:
        features = feature_table()
        features = features[features["name"].isin(data.feature_names)]
        low, high = records.date_range()
        summary = {"row_counts": records.row_counts(), "first_event": str(low.date()) if low is not None else None,
                   "last_event": str(high.date()) if high is not None else None, "extract_end": str(extract_end.date()),
                   "sources": records.sources}
        logged = tracking.log_training_run(result, cfg, fingerprint=data_fingerprint(cfg.data.path),
                                           features=features, config_dict=config_to_dict(cfg), data_summary=summary)
        stage(f"logged run {logged.run_id}; registered {logged.model_name} version {logged.model_version}")
    return TrainingRun(result, logged)
