"""The small commands' wiring: ``riskstrat synth``, ``key``, ``validate`` and ``features``.

Each is a call or two into :mod:`riskstrat.data` or :mod:`riskstrat.features`; they sit here, apart
from the runs' pipelines, so that these commands load neither LightGBM nor MLflow (about 0.6 s).

>>> from riskstrat.pipelines.commands import validate_folder      # doctest: +SKIP
>>> report = validate_folder("riskstrat-data/synthetic")          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from riskstrat.data.io import write_json
from riskstrat.data.privacy import init_pseudonym_key, key_fingerprint, load_pseudonym_key
from riskstrat.data.synth import write_population
from riskstrat.data.validate import CHUNK_ROWS, ValidationReport, stamp_data_dir, validate_data_dir
from riskstrat.features.clinical import FEATURE_NAMES
from riskstrat.features.words import feature_table

# write_population is `riskstrat synth` whole: re-exported so the command imports only this module.
__all__ = ["create_key", "feature_list", "key_fingerprint_of", "validate_folder", "write_population",
           "write_validation_report"]


def create_key(key_file: str | Path | None = None) -> tuple[Path, str]:
    """Create the pseudonymisation key file (:func:`riskstrat.data.privacy.init_pseudonym_key`);
    return its path and fingerprint."""
    path = init_pseudonym_key(key_file)
    return path, key_fingerprint(path.read_text().strip().encode())


def key_fingerprint_of(key_file: str | Path | None = None) -> str:
    """The fingerprint of the configured key ($RISKSTRAT_PSEUDONYM_KEY, else ``key_file``)."""
    return key_fingerprint(load_pseudonym_key(key_file))


def validate_folder(data_dir: str | Path, *, out_of_life_events: str = "drop",
                    on_table: Callable[[str, int], None] | None = None, stamp: bool = False) -> ValidationReport:
    """Check every table of a data folder against the schema; the report only (no records kept). With
    ``stamp``, a folder that passes is stamped (:func:`riskstrat.data.validate.stamp_data_dir`; one that
    fails loses any older stamp)."""
    options = {"on_table": on_table} if on_table is not None else {}
    if stamp:
        return stamp_data_dir(data_dir, out_of_life_events=out_of_life_events, **options)[0]
    _, report = validate_data_dir(data_dir, out_of_life_events=out_of_life_events, keep_records=False,
                                  chunk_rows=CHUNK_ROWS, **options)
    return report


def write_validation_report(report: ValidationReport, path: str | Path) -> Path:
    """The report as JSON (counts, messages, example values): ``riskstrat validate --json``."""
    return write_json(report.to_dict(), path)


def feature_list() -> tuple[pd.DataFrame, int]:
    """The features riskstrat builds (name, source, kind, description; the generic covariates of the
    default config after the clinical ones) and how many of them are clinical."""
    return feature_table(generic=True), len(FEATURE_NAMES)
