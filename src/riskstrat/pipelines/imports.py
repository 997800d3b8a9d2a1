"""Importing a public data format: read it, validate it, write the canonical folder and its import report.

>>> from riskstrat.pipelines.imports import import_dataset              # doctest: +SKIP
>>> summary, report = import_dataset("synthea", "synthea/csv", "data/linked")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from riskstrat.data.io import DATASET_META, check_replaceable, read_json, write_records_tables
from riskstrat.data.privacy import FINGERPRINT_FIELD, key_fingerprint, load_pseudonym_key
from riskstrat.data.readers import ImportSummary, reader
from riskstrat.data.validate import ValidationError, ValidationReport, stamp_data_dir, validate_tables
from riskstrat.report.imports import (IMPORT_REPORT, dataset_metadata, format_import_report, import_report,
                                     unreadable_cost_issues)

# `riskstrat import` loads the key and catches ValidationError: re-exported so that the command imports
# only its pipeline.
__all__ = ["ValidationError", "import_dataset", "import_report_text", "load_pseudonym_key"]


def import_dataset(kind: str, src_dir: str | Path, out_dir: str | Path, *,
                   pseudonym_key: bytes | None = None,
                   reader_options: dict | None = None) -> tuple[ImportSummary, ValidationReport]:
    """Read a ``kind`` export (one of :data:`~riskstrat.data.readers.READERS`), validate it and write a
    canonical folder.

    Codes outside the reference lists are dropped (and counted) rather than failing the import.
    If validation still finds errors, :class:`riskstrat.data.validate.ValidationError` is raised and
    nothing is written. ``out_dir`` is written atomically and replaced as a whole; it holds one
    Parquet file per table, ``import_report.json`` (rows in and out per source, drops with example
    codes, unknown codes, the outcomes the data support: see :mod:`riskstrat.report.imports`) and
    ``dataset.json`` (source format, currency, extract end, the pseudonymisation key's fingerprint:
    :func:`riskstrat.data.privacy.key_fingerprint`, never the key). Both hold counts and codes only, and
    no clock time, so that a rerun writes the same bytes.
    """
    check_replaceable(out_dir, "data set")  # before reading anything
    read = reader(kind)
    key = pseudonym_key if pseudonym_key is not None else load_pseudonym_key()
    tables, summary = read(src_dir, pseudonym_key=key, **(reader_options or {}))
    records, report = validate_tables(tables, unknown_codes="drop")
    if records is None or not report.ok:
        raise ValidationError(report)
    # Costs that could not be read, beyond a small share, are said where validation's warnings are.
    report.issues.extend(unreadable_cost_issues(summary))
    summary.finish(records.tables)
    payload = import_report(summary, report, records.tables)
    write_records_tables(records.tables, out_dir, extra_files={
        IMPORT_REPORT: json.dumps(payload, indent=2, sort_keys=True) + "\n",
        DATASET_META: json.dumps({**dataset_metadata(summary), FINGERPRINT_FIELD: key_fingerprint(key)},
                                 indent=2, sort_keys=True) + "\n",
    })
    # Validated once more as written (the canonical folder, under the options a run uses) and stamped,
    # so that runs on it verify the files' hashes instead of checking every row again.
    stamp_data_dir(out_dir)
    return summary, report


def import_report_text(out_dir: str | Path) -> str:
    """The import report of an imported folder (``import_report.json``) as text for a terminal."""
    return format_import_report(read_json(Path(out_dir) / IMPORT_REPORT))
