"""Published months loaded into the worklist's database, read-only, verified, with the governance applied.

:func:`load_months` reads each month under the lists folder (``YYYY-MM/`` with its ``manifest.json``,
as ``riskstrat score`` publishes it): every practice's ``list.csv`` (the rows, reasons and clinical
facts the practice page shows) checked against the SHA-256 its manifest records, and
``population.parquet``'s ``holdout`` column. The published files are never written.

- People held back for the impact evaluation (``holdout``) never reach the worklist, even if a list
  file held them.
- Opted-out people never appear: the month's own opt-out file (the manifest's ``opt_out_file``, when
  it is still there and unchanged) and any the server is given are read as ``riskstrat score`` reads
  them; an opted-out pseudonym's stored statuses, notes and list rows (every month) are deleted, in
  the same transaction as the month's rows, and it is remembered so a later month cannot bring it back.
- Notes older than the retention are cleared (:func:`purge_notes`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession

from riskstrat.data.io import dataset_metadata
from riskstrat.data.privacy import canonical_ids, read_opt_outs
from riskstrat.scoring.published import MANIFEST, PublishedMonthError, TamperedFileError, read_manifest, read_population
from riskstrat.scoring.publish import read_regular
from riskstrat.serve.db import ListRow, LoadedMonth, OptedOut, Status, StatusEvent, utcnow

__all__ = ["LIST_FILE", "demo_practice", "load_months", "month_folders", "purge_notes", "synthetic_only"]

LIST_FILE = re.compile(r"^practices/([^/]+)/list\.csv$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# Columns a published list may carry (re-identified by the practice's look-up at publishing): never stored here.
IDENTIFYING_COLUMNS = frozenset({"Local ID", "local_id", "NHS number", "nhs_number", "_practice"})


def month_folders(lists_dir: str | Path) -> list[Path]:
    """The published months under ``lists_dir`` (``YYYY-MM`` folders holding a manifest), oldest first."""
    lists_dir = Path(lists_dir)
    if not lists_dir.is_dir():
        raise PublishedMonthError(f"{lists_dir} is not a folder of published months: give the lists folder "
                                  f"`riskstrat score` writes (for the demo, riskstrat-output/lists)")
    months = sorted(p for p in lists_dir.iterdir() if _MONTH.match(p.name) and (p / MANIFEST).exists())
    if not months:
        raise PublishedMonthError(f"{lists_dir} holds no published month (no YYYY-MM folder with a {MANIFEST}): "
                                  f"give the folder `riskstrat score` publishes into")
    return months


def _verified_bytes(month_dir: Path, name: str, manifest: dict) -> bytes:
    """The bytes of ``month_dir / name``, read once, whose SHA-256 is the manifest's."""
    expected = manifest["files"].get(name)
    data = read_regular(month_dir / name)
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        raise TamperedFileError(f"{month_dir / name} is not the file its manifest records: it was edited or replaced "
                                f"after publishing; restore the month from a backup or rescore it")
    return data


def _opt_out_ids(manifest: dict, extra: Sequence[Path]) -> set[str]:
    """The canonical ids of the month's own opt-out file (when it is still there, unchanged) and of ``extra``."""
    ids: set[str] = set()
    own = manifest.get("opt_out_file")
    if isinstance(own, dict) and own.get("path") and Path(own["path"]).is_file():
        path = Path(own["path"])
        if hashlib.sha256(read_regular(path)).hexdigest() == own.get("sha256"):
            ids |= set(read_opt_outs(path, allow_empty=True))
    for path in extra:
        ids |= set(read_opt_outs(path, allow_empty=True))
    return ids


def _month_rows(month_dir: Path, manifest: dict) -> tuple[pd.DataFrame, list[str]]:
    """Every practice's list rows of the month (``practice_id`` added), without the held-back people;
    and the list's columns in the page's order."""
    _, population = read_population(month_dir, columns=["person_id"], optional=["holdout"], manifest=manifest)
    held = set(population.loc[population["holdout"].fillna(False).astype(bool), "person_id"].astype(str)) \
        if "holdout" in population else set()
    frames, columns = [], []
    for name in sorted(manifest["files"]):
        found = LIST_FILE.match(name)
        if not found:
            continue
        table = pd.read_csv(io.BytesIO(_verified_bytes(month_dir, name, manifest)), dtype=str, keep_default_na=False,
                            encoding="utf-8-sig")
        columns = columns or [c for c in table.columns if c not in IDENTIFYING_COLUMNS]
        frames.append(table.assign(_practice=found.group(1)))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns, "_practice"])
    return rows.loc[~rows["Person ID"].isin(held)].reset_index(drop=True), columns


def load_months(db: DbSession, lists_dir: str | Path, *, opt_out_files: Sequence[Path] = (),
                note_retention_days: int | None = None, stage: Callable[[str], None] = lambda _m: None) -> list[str]:
    """Load every published month under ``lists_dir`` not loaded yet (or republished since), apply the
    opt-outs and hold-outs, and clear notes past their retention; returns the months now loaded."""
    loaded = []
    for month_dir in month_folders(lists_dir):
        manifest = read_manifest(month_dir / MANIFEST, month=month_dir.name)
        sha = manifest["files"].get("population.parquet", "")
        known = db.get(LoadedMonth, manifest["month"])
        db.commit()  # ends the read; the object stays loaded
        if known is not None and known.population_sha256 == sha:
            loaded.append(manifest["month"])
            continue
        rows, columns = _month_rows(month_dir, manifest)
        opted = _opt_out_ids(manifest, opt_out_files)
        n = _store_month(db, manifest, rows, columns, opted)
        stage(f"loaded {manifest['month']}: {n:,} people on {rows['_practice'].nunique()} practices' lists")
        loaded.append(manifest["month"])
    # An opt-out given to the server applies to months loaded before it too.
    if opt_out_files:
        with db.begin():
            _apply_opt_outs(db, {i for f in opt_out_files for i in read_opt_outs(f, allow_empty=True)})
    if note_retention_days is not None:
        purge_notes(db, days=note_retention_days)
    return loaded


def _apply_opt_outs(db: DbSession, opted: Iterable[str]) -> None:
    """Remember the opted-out pseudonyms and delete everything stored about them (inside the caller's transaction)."""
    opted = sorted(set(opted))
    if not opted:
        return
    known = set(db.scalars(sa.select(OptedOut.pseudonym)).all())
    db.add_all(OptedOut(pseudonym=p) for p in opted if p not in known)
    for start in range(0, len(opted), 500):  # bound parameters, in chunks under SQLite's limit
        chunk = opted[start:start + 500]
        for table in (Status, StatusEvent, ListRow):
            db.execute(sa.delete(table).where(table.pseudonym.in_(chunk)))


def _store_month(db: DbSession, manifest: dict, rows: pd.DataFrame, columns: list[str], opted: set[str]) -> int:
    month = manifest["month"]
    canonical = canonical_ids(rows["Person ID"]).fillna("")
    with db.begin():
        _apply_opt_outs(db, opted)
        gone = set(db.scalars(sa.select(OptedOut.pseudonym)).all())
        keep = ~canonical.isin(gone).to_numpy()
        rows = rows.loc[keep]
        db.execute(sa.delete(ListRow).where(ListRow.month == month))
        db.merge(LoadedMonth(month=month, as_of=manifest["as_of"], population_sha256=manifest["files"].get(
            "population.parquet", ""), columns=json.dumps(columns), loaded_at=utcnow()))
        # A list re-identified at publishing carries local ids: the server keeps pseudonyms only.
        cells = [c for c in columns if c not in IDENTIFYING_COLUMNS]
        records = [{"month": month, "practice_id": r["_practice"], "pseudonym": r["Person ID"],
                    "rank": int(r["Rank"]), "tier": r.get("Tier", ""), "groups": r.get("Priority groups", ""),
                    "new": r.get("New this month", "") == "yes", "risk": r.get("Risk (%)", ""),
                    "cells": json.dumps({c: r[c] for c in cells}, ensure_ascii=False)}
                   for r in rows.to_dict("records")]
        if records:
            db.execute(sa.insert(ListRow), records)
    return len(records)


def purge_notes(db: DbSession, *, days: int) -> int:
    """Clear notes written more than ``days`` ago (the status stays); returns how many were cleared."""
    cutoff = utcnow() - dt.timedelta(days=days)
    with db.begin():
        result = db.execute(sa.update(Status).where(Status.note.is_not(None), Status.note_at < cutoff)
                            .values(note=None, note_at=None))
    return result.rowcount or 0


def synthetic_only(lists_dir: str | Path) -> bool:
    """Whether every month under ``lists_dir`` was scored on riskstrat's synthetic population (the demo)."""
    for month_dir in month_folders(lists_dir):
        data_dir = read_manifest(month_dir / MANIFEST, month=month_dir.name).get("data", {}).get("data_dir")
        if not data_dir or dataset_metadata(data_dir).get("generator") != "riskstrat.synth":
            return False
    return True


def demo_practice(lists_dir: str | Path) -> str:
    """The first practice (by id) with a list in the newest month under ``lists_dir``."""
    month_dir = month_folders(lists_dir)[-1]
    manifest = read_manifest(month_dir / MANIFEST, month=month_dir.name)
    practices = sorted(m.group(1) for name in manifest["files"] if (m := LIST_FILE.match(name)))
    if not practices:
        raise PublishedMonthError(f"{month_dir} has no practice's list: there is nobody to show")
    return practices[0]
