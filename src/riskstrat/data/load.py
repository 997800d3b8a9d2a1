"""Reading a linked data set as training, evaluation and scoring use it: validated, or refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from riskstrat.quiet import no_stage
from riskstrat.data.records import LinkedRecords
from riskstrat.data.validate import ValidationError, validate_data_dir

__all__ = ["load_data", "load_truth"]

Stage = Callable[[str], None]


def load_data(cfg_data, *, stage: Stage = no_stage) -> LinkedRecords:
    """Read and validate a linked data set (``cfg_data``: a :class:`riskstrat.modeling.config.DataConfig`);
    switched-off sources are never read (raises ValidationError). A table whose file the folder's
    validation stamp proves unchanged is not checked row by row again (:mod:`riskstrat.data.stamp`);
    the stage line says which tables are trusted and why the others are checked."""
    records, report = validate_data_dir(cfg_data.path, out_of_life_events=cfg_data.out_of_life_events,
                                        exclude_sources=cfg_data.exclude_sources, trust_stamp=True,
                                        on_table=lambda name, rows: stage(f"checked {name}: {rows:,} rows"))
    if report.trust is not None:
        stage(report.trust.message())
    if records is None or not report.ok:
        raise ValidationError(report)
    records.validation = {"rows_dropped": dict(report.dropped),
                          "empty_tables": sorted(i.table for i in report.issues if i.rule == "empty_table"),
                          "warnings": len(report.warnings)}
    dropped = sum(report.dropped.values())
    if dropped or records.validation["empty_tables"]:
        stage(f"validation dropped {dropped:,} rows ({', '.join(f'{t} {n:,}' for t, n in report.dropped.items()) or 'none'})"
              + (f"; empty tables: {', '.join(records.validation['empty_tables'])}"
                 if records.validation["empty_tables"] else ""))
    counts = records.row_counts()
    stage(f"loaded {counts['persons']:,} people and {sum(counts.values()) - counts['persons']:,} events "
          f"from {cfg_data.path} ({', '.join(records.sources) or 'no event tables'})")
    return records


def load_truth(cfg) -> pd.DataFrame | None:
    """The synthetic data set's ground truth, read only for the oracle comparison (``cfg``: a
    :class:`riskstrat.modeling.config.TrainConfig`; ``evaluation.truth_path``, else the data's own)."""
    path = cfg.evaluation.truth_path or Path(cfg.data.path) / "ground_truth" / "truth.parquet"
    return pd.read_parquet(path) if Path(path).exists() else None
