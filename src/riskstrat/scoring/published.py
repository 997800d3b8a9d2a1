"""A published month read back, verified before it is believed.

``riskstrat score`` writes each month as ``<output_dir>/YYYY-MM/`` with a ``manifest.json`` that
records the SHA-256 of every file beside it (:func:`riskstrat.scoring.lists.write_month`). Whatever reads a
month again (``riskstrat monitor``, and ``riskstrat score`` reading last month's population) goes
through here:

- :func:`read_manifest`: the manifest parsed and checked for the fields readers rely on (a
  truncated or hand-edited file is a :class:`ManifestError` naming it, never a traceback), and its
  ``month`` / ``as_of`` checked against the month it is published as (``month=``; the run folder
  holding it is not named so);
- :func:`verify_file`: a file's SHA-256 (streamed, :func:`riskstrat.data.io.file_sha256`, the function
  that wrote the hashes) against the manifest's (:class:`TamperedFileError` otherwise);
- :func:`read_population`: ``population.parquet`` verified and parsed through the one descriptor
  it was hashed through, with the columns asked for (an older month without them is a
  :class:`MissingColumnsError`) and its ``as_of`` column, if it has one, checked against the
  manifest's.

Every file is opened by :func:`riskstrat.scoring.publish.open_regular`: without following a link, without
blocking on a FIFO, and refused (naming it) unless it is a regular file.

The manifest itself is not covered by its own hashes: what it says about models is checked against
the registry by the reader that uses it (:mod:`riskstrat.pipelines.monitor`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, BinaryIO

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from riskstrat.data.io import file_sha256
from riskstrat.errors import RiskstratError
from riskstrat.scoring.publish import NotRegularFileError, open_regular, read_regular

__all__ = ["MANIFEST", "ManifestError", "MissingColumnsError", "PublishedMonthError", "TamperedFileError",
           "read_manifest", "read_population", "read_verified", "verify_file"]

MANIFEST = "manifest.json"
POPULATION = "population.parquet"
_SHA256 = r"^[0-9a-f]{64}$"
_MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


class PublishedMonthError(RiskstratError):
    """A published month's files cannot be believed: the message names the file and what to do."""


class ManifestError(PublishedMonthError):
    """A month's ``manifest.json`` is unreadable, not JSON, or lacks (or mistypes) what readers need."""


class TamperedFileError(PublishedMonthError):
    """A month's file is missing, or its SHA-256 is not the one its manifest records."""


class MissingColumnsError(PublishedMonthError):
    """A month's population lacks columns a reader needs (written by an older riskstrat)."""


class _Loose(BaseModel):
    # Only the fields readers rely on are checked; the manifest holds much more.
    model_config = ConfigDict(extra="allow")


class _ModelRecord(_Loose):
    version: str = Field(pattern=r"^\d+$")
    run_id: str = Field(min_length=1)


class _Outcome(_Loose):
    name: str = Field(min_length=1)
    words: str
    horizon_days: int = Field(gt=0)


class _ConfigModels(_Loose):
    risk: str = Field(min_length=1)


class _Config(_Loose):
    models: _ConfigModels


class Manifest(_Loose):
    """What a reader of a published month needs from its ``manifest.json``."""

    month: str = Field(pattern=_MONTH)
    as_of: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")  # text as written (a number is no date)
    models: dict[str, _ModelRecord] = Field(min_length=1)
    outcome: _Outcome
    config: _Config
    files: dict[str, Annotated[str, Field(pattern=_SHA256)]]

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        dt.date.fromisoformat(self.as_of)  # a real day (ValueError: "day is out of range for month")
        if self.as_of[:7] != self.month:
            raise ValueError(f"as_of {self.as_of} is not in month {self.month}")
        if self.config.models.risk not in self.models:
            raise ValueError(f"config.models.risk {self.config.models.risk!r} is not among models "
                             f"{sorted(self.models)}")
        return self


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}" for e in exc.errors()[:8])


_REPAIR = ("restore the month's folder from a backup, or rescore the month (`riskstrat score --as-of` its date) "
           "to publish it afresh")


def _not_regular(path: Path, exc: OSError, error: type[PublishedMonthError]) -> PublishedMonthError:
    """A published file that is not a regular file, or cannot be opened, as ``error`` naming it."""
    if isinstance(exc, NotRegularFileError):
        return error(f"{path} is {exc.kind}, not a regular file: riskstrat publishes only regular files and reads "
                     f"no link, FIFO or device in their place (one was planted there); move it away, then {_REPAIR}")
    return error(f"{path} cannot be read ({exc.strerror or exc}); {_REPAIR}")


def _month_words(path: Path, month: str | None) -> str:
    """``path``, with the month it was published as when the folder's name does not say it."""
    return f"{path} (month {month})" if month and path.parent.name != month else f"{path}"


def read_manifest(path: str | Path, *, month: str | None = None) -> dict:
    """The manifest at ``path``, checked: JSON, an object, with ``month``, ``as_of`` (in that month),
    ``models`` (each with ``version`` and ``run_id``), ``outcome`` (``name``, ``words``,
    ``horizon_days``), ``config.models.risk`` (one of ``models``) and ``files`` (SHA-256 hex
    digests). Its ``month`` must be ``month`` (the name the month is published as; its run folder
    is not named so), or when that is not given, the name of the folder holding it if that is
    named like a month.

    The file is opened without following a link or blocking on a FIFO, and must be a regular file
    (:func:`riskstrat.scoring.publish.open_regular`). Returns the manifest as written (a dict, every field
    kept); raises :class:`ManifestError` naming the file and the problem otherwise.
    """
    path = Path(path)
    where = _month_words(path, month)
    try:
        text = read_regular(path).decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{where} is missing: a published month always has one; {_REPAIR}") from None
    except OSError as exc:
        raise _not_regular(path, exc, ManifestError) from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{where} cannot be read ({type(exc).__name__}: {exc}); {_REPAIR}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}; a "
                            f"truncated or hand-edited file?); {_REPAIR}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} holds a JSON {type(raw).__name__}, not the object a manifest is; {_REPAIR}")
    try:
        checked = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(f"{where} lacks what a published month's manifest holds ({_problems(exc)}); "
                            f"{_REPAIR}") from None
    folder = path.parent.name
    expected = month if month is not None else folder if re.fullmatch(r"\d{4}-\d{2}", folder) else None
    if expected is not None and expected != checked.month:
        lies = f"lies in the folder {folder}" if folder == expected else f"is published as month {expected}"
        raise ManifestError(f"{path} says month {checked.month} (as_of {checked.as_of}) but {lies}: the manifest "
                            f"was edited or moved; {_REPAIR}")
    return raw


@contextlib.contextmanager
def _verified(month_dir: Path, name: str, manifest: dict) -> Iterator[BinaryIO]:
    """``month_dir / name`` open (at its start) once its SHA-256, streamed from that descriptor,
    equals the one ``manifest`` records; what is read from it next is what was hashed."""
    path = month_dir / name
    expected = manifest.get("files", {}).get(name)
    where = f"{month_dir / MANIFEST}"
    if expected is None:
        raise TamperedFileError(f"{path} is not among the files {where} records, so it cannot be verified; "
                                f"{_REPAIR}")
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise TamperedFileError(f"{path} is missing, though {where} records it (SHA-256 {expected[:12]}…); "
                                f"{_REPAIR}") from None
    except OSError as exc:
        raise _not_regular(path, exc, TamperedFileError) from None
    with os.fdopen(fd, "rb") as fh:
        found = file_sha256(fh)
        if found != expected:
            raise TamperedFileError(
                f"{path} is not the file that was published: its SHA-256 begins {found[:12]}, {where} records "
                f"{expected[:12]}. It was edited, corrupted or replaced after publishing; restore it from a backup of "
                f"the month, or rescore the month (`riskstrat score --as-of {manifest.get('as_of')}`) to publish it "
                f"afresh")
        fh.seek(0)
        yield fh


def verify_file(month_dir: str | Path, name: str, manifest: dict) -> Path:
    """``month_dir / name``, once it is a regular file (opened as :func:`riskstrat.scoring.publish.open_regular`
    does) whose SHA-256 (streamed) equals the one ``manifest`` records for ``name``;
    :class:`TamperedFileError` (which file, the two hash prefixes, what to do) otherwise."""
    with _verified(Path(month_dir), name, manifest):
        pass
    return Path(month_dir) / name


def read_verified(month_dir: str | Path, name: str, manifest: dict) -> bytes:
    """The bytes of ``month_dir / name``, read through the descriptor they were verified through
    (:func:`verify_file`'s checks and errors)."""
    with _verified(Path(month_dir), name, manifest) as fh:
        return fh.read()


def read_population(month_dir: str | Path, *, month: str | None = None, columns: Sequence[str] | None = None,
                    optional: Sequence[str] = (), manifest: dict | None = None) -> tuple[dict, pd.DataFrame]:
    """``(manifest, population)`` of the month in ``month_dir``, both verified; ``month``: the name
    the month is published as (:func:`read_manifest`). The population is read through the
    descriptor it was hashed through.

    ``columns`` (default: all) must be in the file (:class:`MissingColumnsError` otherwise, naming
    them); ``optional`` columns are read when present. A population that carries ``as_of`` must
    carry the manifest's only.
    """
    import pyarrow.parquet as pq

    month_dir = Path(month_dir)
    manifest = manifest if manifest is not None else read_manifest(month_dir / MANIFEST, month=month)
    path = month_dir / POPULATION
    with _verified(month_dir, POPULATION, manifest) as fh:
        try:
            names = pq.read_schema(fh).names
        except Exception as exc:  # noqa: BLE001 - verified bytes that Arrow cannot read: say so, not a traceback
            raise PublishedMonthError(f"{path} cannot be read as Parquet ({type(exc).__name__}: {exc}); "
                                      f"{_REPAIR}") from None
        missing = [c for c in (columns or []) if c not in names]
        if missing:
            raise MissingColumnsError(
                f"{path} has no column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)} (it "
                f"has {', '.join(names[:12])}{', …' if len(names) > 12 else ''}): it was written by an older "
                f"riskstrat. Rescore that month with this version (`riskstrat score --as-of {manifest['as_of']}`)")
        wanted = None if columns is None else [*columns, *(c for c in optional if c in names and c not in columns)]
        if wanted is not None and "as_of" in names and "as_of" not in wanted:
            wanted.append("as_of")
        fh.seek(0)
        population = pd.read_parquet(fh, columns=wanted)
    if "as_of" in population.columns:
        dates = pd.to_datetime(population["as_of"]).dt.normalize().dropna().unique()
        if len(dates) and (len(dates) > 1 or dates[0] != pd.Timestamp(manifest["as_of"])):
            raise PublishedMonthError(
                f"{path} holds people scored as of {', '.join(str(pd.Timestamp(d).date()) for d in dates[:3])}, "
                f"but {month_dir / MANIFEST} says {manifest['as_of']}: the files do not belong together; {_REPAIR}")
        if columns is not None and "as_of" not in columns:
            population = population.drop(columns="as_of")
    return manifest, population
