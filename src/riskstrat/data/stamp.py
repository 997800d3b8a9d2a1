"""Validate once, trust by proof: a data folder's validation stamp.

A data set is validated when it is made (``riskstrat import``, ``riskstrat synth``, ``riskstrat
validate --stamp``) and stamped: :data:`STAMP` in the folder records what was checked (the schema
version, validation's rules and options, the last day the data could hold), what was found (rows per
table, rows dropped or changed) and each table file's size and BLAKE2b hash. A later run verifies the
stamp (:func:`verify_stamp`: hashes, read in 1 MiB pieces) instead of checking every row again, and
re-checks only the tables whose files are not stamped or changed since, saying which and why
(:meth:`Trust.message`). A stamp from another schema version, made with other options, or that cannot
be read is ignored (every table is checked), and said so.

The stamp holds counts and hashes only (never a row or an id), and no clock time.

>>> STAMP
'validated.json'
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import riskstrat
from riskstrat.data.schema import SCHEMA_VERSION

__all__ = ["CHECKS", "STAMP", "STAMP_VERSION", "Trust", "file_hash", "verify_stamp", "write_stamp"]

STAMP = "validated.json"
STAMP_VERSION = 1
# Validation's rules (riskstrat.data.validate), recorded in the stamp as what was checked.
CHECKS = ("missing_table", "missing_column", "unparseable_date", "wrong_type", "missing_value", "negative_cost",
          "out_of_range", "unknown_code", "end_before_start", "duplicate_rows", "duplicate_person", "unknown_person",
          "future_event", "unsafe_practice_id", "unsafe_value", "practice_id_case_collision", "event_before_birth",
          "event_after_death")
_PIECE = 1 << 20


def file_hash(path: str | Path) -> str:
    """``blake2b:<hex>`` of a file, read in 1 MiB pieces (memory stays flat however large the file)."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as handle:
        while piece := handle.read(_PIECE):
            digest.update(piece)
    return f"blake2b:{digest.hexdigest()}"


def _day(value) -> str:
    return pd.Timestamp(value).date().isoformat()


def write_stamp(data_dir: str | Path, report, files: Mapping[str, Path], *, options: Mapping[str, str],
                latest_date) -> Path:
    """Stamp ``data_dir`` with a passed validation ``report`` of the table ``files`` (name -> path), made
    with validation's ``options`` (``out_of_life_events``, ``duplicate_rows``, ``unknown_codes``) and
    ``latest_date``. Written atomically; returns its path. A report with errors is never stamped."""
    if not report.ok:
        raise ValueError("a data set that failed validation cannot be stamped")
    changed: dict[str, int] = {}
    for issue in report.issues:  # end dates set to the date of death: rows changed, not dropped
        if issue.action and issue.action.startswith("cut back"):
            changed[issue.table] = changed.get(issue.table, 0) + issue.n_rows
    tables = {}
    for name, path in files.items():
        path = Path(path)
        tables[name] = {"file": path.name, "bytes": path.stat().st_size, "hash": file_hash(path),
                        "rows": int(report.row_counts.get(name, 0)), "dropped": int(report.dropped.get(name, 0)),
                        "changed": int(changed.get(name, 0))}
    meta_path = Path(data_dir) / "dataset.json"
    stamp = {"stamp_version": STAMP_VERSION, "schema_version": SCHEMA_VERSION,
             "riskstrat_version": riskstrat.__version__, "checks": list(CHECKS),
             "options": {k: str(options[k]) for k in sorted(options)},
             "latest_date": _day(latest_date),
             "data_end": json.loads(meta_path.read_text()).get("extract_end") if meta_path.exists() else None,
             "row_counts": {name: int(n) for name, n in report.row_counts.items()},
             "warnings": len(report.warnings), "tables": tables}
    target = Path(data_dir) / STAMP
    tmp = target.with_name(f".{STAMP}.tmp")
    tmp.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, target)
    return target


@dataclass
class Trust:
    """What a stamp proves of a folder's tables: ``tables`` maps each trusted table (its file unchanged
    since it was validated) to True when validation dropped and changed none of its rows (no row check
    is needed at all) or False (rows were dropped or changed: the checks that drop or change rows run
    again, the checks that can only refuse do not); ``checked`` maps every other table to why its rows
    are checked; ``ignored`` says why the whole stamp was set aside (None when it was used)."""

    tables: dict[str, bool] = field(default_factory=dict)
    checked: dict[str, str] = field(default_factory=dict)
    ignored: str | None = None

    def trusts(self, name: str) -> bool:
        return name in self.tables

    def message(self) -> str:
        """One line for the stage report: what is trusted, what is checked and why."""
        if self.ignored:
            return f"validation stamp ignored ({self.ignored}): every row is checked"
        parts = []
        if self.tables:
            parts.append(f"validation stamp verified (hashes) for {', '.join(self.tables)}: their rows are not "
                         f"checked again")
        if self.checked:
            parts.append("rows checked for " + "; ".join(f"{name} ({why})" for name, why in self.checked.items()))
        return "; ".join(parts) or "no tables"


def _read(data_dir: Path) -> tuple[dict | None, str | None]:
    path = data_dir / STAMP
    if not path.is_file():
        return None, f"no {STAMP} in the data folder (riskstrat validate --stamp writes one)"
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path} cannot be read: {exc}"
    if not isinstance(stamp, dict) or not isinstance(stamp.get("tables"), dict):
        return None, f"{path} is not a riskstrat validation stamp"
    if stamp.get("stamp_version") != STAMP_VERSION:
        return None, f"{path} is stamp version {stamp.get('stamp_version')!r}, this riskstrat writes {STAMP_VERSION}"
    if stamp.get("schema_version") != SCHEMA_VERSION:
        return None, (f"{path} was made for schema version {stamp.get('schema_version')!r}, this riskstrat reads "
                      f"{SCHEMA_VERSION!r}; stamp it again with riskstrat validate --stamp")
    return stamp, None


def verify_stamp(data_dir: str | Path, files: Mapping[str, Path], *, options: Mapping[str, str],
                 latest_date) -> Trust:
    """Which of the table ``files`` (name -> path) the folder's stamp proves validated under ``options``
    with a latest date no later than ``latest_date`` (a later latest date flags no more events as
    future ones): each file's size and hash must be the stamp's. When persons is not trusted, no table
    is (every link to a person is checked again)."""
    data_dir = Path(data_dir)
    stamp, why = _read(data_dir)
    if stamp is None:
        return Trust(checked={name: "not stamped" for name in files}, ignored=why)
    stamped = stamp.get("options") or {}
    differ = [f"{k}={stamped.get(k)!r} when stamped, {v!r} now" for k, v in options.items() if stamped.get(k) != str(v)]
    if differ:
        return Trust(checked={name: "stamped with other options" for name in files},
                     ignored=f"validated with other options: {', '.join(differ)}")
    if pd.Timestamp(stamp.get("latest_date")) > pd.Timestamp(latest_date):
        return Trust(checked={name: "stamped with a later data end" for name in files},
                     ignored=f"validated up to {stamp.get('latest_date')}, later than the data end now "
                             f"({_day(latest_date)})")
    trust = Trust()
    for name, path in files.items():
        entry = stamp["tables"].get(name)
        path = Path(path)
        if not isinstance(entry, dict) or entry.get("file") != path.name:
            trust.checked[name] = f"{path.name} not stamped"
        elif entry.get("bytes") != path.stat().st_size or entry.get("hash") != file_hash(path):
            trust.checked[name] = f"{path.name} changed since it was stamped"
        else:
            trust.tables[name] = not entry.get("dropped") and not entry.get("changed")
    if "persons" in trust.checked:  # every event table's links to people hang on persons
        for name in list(trust.tables):
            del trust.tables[name]
            trust.checked[name] = "persons changed"
    return trust
