"""All file input and output: reading raw tables, atomic writers, data fingerprints.

Every writer is atomic: it writes to a temporary sibling and renames it into place, so a crash
never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from typing import BinaryIO
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskstrat.errors import RiskstratError
from riskstrat.data.schema import TABLES, arrow_schema, check_schema_version

TABLE_SUFFIXES = (".parquet", ".csv", ".csv.gz")


class DataFileError(RiskstratError):
    """A data file is missing or cannot be read; the message names the file."""


# A file a person gives (an opt-out list, a look-up, a config) is read whole: beyond this it is not one.
MAX_USER_FILE_BYTES = 1 << 30


class NotAFileError(DataFileError, OSError):
    """A path that is not a regular file (a FIFO, a device, a socket, a folder) where a file is read,
    or one too large to be what it should be: a refusal naming it (the CLI exits 2)."""


def file_kind(mode: int) -> str:
    """What a file of ``mode`` (``st_mode``) is, in words: "a folder", "a FIFO (named pipe)", ...

    >>> file_kind(stat.S_IFIFO)
    'a FIFO (named pipe)'
    """
    return next((words for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                                           (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                                           (stat.S_ISBLK, "a device"), (stat.S_ISLNK, "a symbolic link"))
                 if test(mode)), "not a regular file")


def open_regular_file(path: str | Path, *, what: str = "file", max_bytes: int | None = None) -> int:
    """A descriptor of the regular file at ``path`` (links followed), opened without waiting (a FIFO
    would block for ever) and checked with ``fstat`` on that descriptor: anything else, or a file over
    ``max_bytes``, is a :class:`NotAFileError` naming it. The caller closes the descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAFileError(f"{path}: the {what} is {file_kind(st.st_mode)}, not a file: give the path of a file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise NotAFileError(f"{path}: the {what} is {st.st_size:,} bytes, more than such a file can be "
                                f"({max_bytes:,}): is it the right file?")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_user_bytes(path: str | Path, *, what: str, max_bytes: int = MAX_USER_FILE_BYTES) -> bytes:
    """The bytes of a regular file a person gave (:func:`open_regular_file`: a FIFO, a device such as
    ``/dev/zero``, a socket or a folder is refused, naming it, and so is a file over ``max_bytes``)."""
    with os.fdopen(open_regular_file(path, what=what, max_bytes=max_bytes), "rb") as fh:
        return fh.read()


def read_user_text(path: str | Path, *, what: str) -> str:
    """The text of a file a person gave (a config, a gate, a list of names), UTF-8 with or without a
    byte-order mark. A folder, or a file that is not UTF-8 text, is a :class:`DataFileError` naming
    it and saying what to do; other operating-system errors (no permission) pass as they are.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"{path}: is a folder, not the {what} file: give the path of the file")
    try:
        return read_user_bytes(path, what=f"{what} file").decode("utf-8-sig")
    except NotAFileError as exc:
        raise DataFileError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: the {what} file is not UTF-8 text (byte {exc.start} cannot be read): save it "
                            f"as UTF-8 (in Excel: CSV UTF-8; in an editor: encoding UTF-8) and run again") from None


def read_user_csv(path: str | Path, *, what: str) -> pd.DataFrame:
    """A CSV file a person gave, as text columns (:func:`read_user_text`); a file pandas cannot parse
    is a :class:`DataFileError` naming it."""
    import io as _io

    text = read_user_text(path, what=what)
    try:
        return pd.read_csv(_io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        raise DataFileError(f"{path}: the {what} file is not a readable CSV ({str(exc).splitlines()[0]})") from None


def find_table_file(data_dir: Path, table: str) -> Path | None:
    """The file holding ``table`` in ``data_dir`` (Parquet preferred over CSV), or None."""
    for suffix in TABLE_SUFFIXES:
        path = data_dir / f"{table}{suffix}"
        if path.exists():
            return path
    return None


def _parquet_text(path: Path) -> list[str]:
    """The text columns of a riskstrat Parquet file (read dictionary-encoded), after checking its schema version."""
    schema = pq.read_schema(path)
    meta = schema.metadata or {}
    check_schema_version((meta.get(b"riskstrat_schema_version") or b"").decode("utf-8", "replace"), str(path))
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def _frame(table: pa.Table) -> pd.DataFrame:
    # self_destruct frees each Arrow column once converted, so the table and the frame are
    # not both whole in memory; then the pool hands the buffers back to the system.
    frame = table.to_pandas(date_as_object=False, self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()
    return frame


def read_table_file(path: Path) -> pd.DataFrame:
    """Read one table file as it is: Parquet with its types, CSV with every column as text.

    Parquet text columns come back as pandas categoricals (each distinct value held once, 4 bytes
    a row) and dates as ``datetime64``, not Python objects: at a million people the event tables
    have over a hundred million rows, and per-row strings and objects would not fit in memory.
    """
    try:
        if path.name.endswith(".parquet"):
            return _frame(pq.read_table(path, read_dictionary=_parquet_text(path)))
        # utf-8-sig strips a byte-order mark; keep everything as text and let validation parse.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except (OSError, ValueError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot be read ({exc})") from exc


def table_files(data_dir: str | Path) -> dict[str, Path]:
    """The file of every canonical table present in ``data_dir``, in schema order."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataFileError(f"{data_dir}: no such data folder")
    return {name: path for name in TABLES if (path := find_table_file(data_dir, name)) is not None}


class LazyTables(Mapping[str, pd.DataFrame]):
    """Tables read from their files when looked up, never kept: a validator that takes one table
    at a time then holds one raw table in memory, not all of them."""

    def __init__(self, files: dict[str, Path]):
        self.files = dict(files)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return read_table_file(self.files[name])

    def parquet_rows(self, name: str) -> int | None:
        """The rows of table ``name``'s file from its Parquet footer (None for CSV or an unreadable file)."""
        path = self.files[name]
        if not path.name.endswith(".parquet"):
            return None
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (OSError, ValueError, pa.ArrowException):
            return None  # read whole, where the error is reported as it always was

    def chunks(self, name: str, rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
        """Table ``name``'s Parquet file in pieces of ``rows`` rows, each as :func:`read_table_file` reads
        the whole file, with the position of its first row (memory holds one piece at a time)."""
        path = self.files[name]
        try:
            file = pq.ParquetFile(path, read_dictionary=_parquet_text(path))
            first = 0
            for batch in file.iter_batches(batch_size=rows):
                yield first, _frame(pa.Table.from_batches([batch]))
                first += batch.num_rows
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataFileError(f"{path}: cannot be read ({exc})") from exc

    def rows_at(self, name: str, positions) -> pd.DataFrame:
        """The rows of table ``name``'s Parquet file at 0-based ``positions`` (ascending), as
        :func:`read_table_file` reads them, indexed by their positions: one row group read at a time."""
        path = self.files[name]
        positions = np.asarray(positions, dtype=np.int64)
        try:
            file = pq.ParquetFile(path, read_dictionary=_parquet_text(path))
            parts, start = [], 0
            for group in range(file.metadata.num_row_groups):
                end = start + file.metadata.row_group(group).num_rows
                lo, hi = np.searchsorted(positions, [start, end])
                if hi > lo:
                    parts.append(file.read_row_group(group).take(pa.array(positions[lo:hi] - start)))
                start = end
            table = pa.concat_tables(parts).unify_dictionaries() if parts else file.schema_arrow.empty_table()
            frame = _frame(table.combine_chunks())
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataFileError(f"{path}: cannot be read ({exc})") from exc
        frame.index = pd.Index(positions)
        return frame

    def __contains__(self, name) -> bool:  # Mapping's default would read the file to find out
        return name in self.files

    def __iter__(self):
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def read_raw_tables(data_dir: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Path]]:
    """Read every canonical table present in ``data_dir``; returns (tables, files).

    To hold one table at a time instead, use ``LazyTables(table_files(data_dir))``.
    """
    files = table_files(data_dir)
    return {name: read_table_file(path) for name, path in files.items()}, files


FOLDER_MARKER = ".riskstrat-folder"
# What a folder of each kind holds (top level; sub-folders: the suffix of their files), and what one
# written before the marker existed always holds.
_FOLDER_ENTRIES = {
    # validated.json: the validation stamp (riskstrat.data.stamp.STAMP) synth, import and validate --stamp write.
    "data set": ({f"{name}.parquet" for name in TABLES} | {"dataset.json", "import_report.json", "validated.json"},
                 {"ground_truth": ".parquet"}),
    "evaluation report": ({"report.html", "evaluation.json"}, {"tables": ".csv", "figures": ".png"}),
    "monitoring report": ({"report.html", "monitoring.json"}, {"tables": ".csv", "figures": ".png"}),
}
_LEGACY_SIGN = {"data set": "dataset.json", "evaluation report": "evaluation.json",
                "monitoring report": "monitoring.json"}


class FolderNotOursError(RiskstratError):
    """An output folder that would be replaced as a whole holds something riskstrat did not write."""


def _foreign_entries(folder: Path, kind: str) -> list[str]:
    """What in ``folder`` a ``kind`` folder of riskstrat's never holds (links count as foreign)."""
    files, subfolders = _FOLDER_ENTRIES[kind]
    foreign = []
    for entry in os.scandir(folder):
        if entry.name == FOLDER_MARKER or (entry.name in files and entry.is_file(follow_symlinks=False)):
            continue
        suffix = subfolders.get(entry.name)
        if suffix is not None and entry.is_dir(follow_symlinks=False):
            inner = [e.name for e in os.scandir(entry.path)
                     if not (e.is_file(follow_symlinks=False) and e.name.endswith(suffix))]
            foreign += [f"{entry.name}/{name}" for name in inner]
            continue
        foreign.append(entry.name)
    return sorted(foreign)


def check_replaceable(target: str | Path, kind: str) -> None:
    """Refuse (:class:`FolderNotOursError`) to replace ``target`` as a whole unless it is absent, an
    empty folder, or a folder riskstrat wrote as ``kind`` (its :data:`FOLDER_MARKER` says so, or, for
    one written before the marker, the file every such folder holds) that holds nothing else: every
    entry must be one a ``kind`` folder holds, so that nobody's notes, data or lists inside it are
    deleted with it. A link is judged by the folder it points to (only the link itself is replaced).

    A mistyped ``--out`` (a home folder, the lists' output folder, a data folder) is thus never
    deleted: riskstrat replaces only what it made.
    """
    target = Path(target)
    if not os.path.lexists(target):
        return
    real = target.resolve() if target.is_symlink() else target
    if real.exists() and not real.is_dir():
        raise FolderNotOursError(f"{target} is a file, not a folder: choose another output folder, or move the file")
    if not real.exists():
        return  # a dangling link: replacing it touches nothing
    names = {entry.name for entry in os.scandir(real)}
    if not names:
        return
    ours = False
    if FOLDER_MARKER in names:
        try:
            ours = json.loads((real / FOLDER_MARKER).read_text(encoding="utf-8")).get("kind") == kind
        except (OSError, ValueError, AttributeError):
            ours = False
    elif _LEGACY_SIGN[kind] in names:
        ours = True
    if not ours:
        raise FolderNotOursError(
            f"{target} already exists and is not a riskstrat {kind} ({len(names)} entries, no "
            f"{FOLDER_MARKER} marker saying '{kind}'): riskstrat replaces an output folder as a whole, so it will "
            f"not replace this one. Choose a new folder, or move this one away")
    foreign = _foreign_entries(real, kind)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FolderNotOursError(
            f"{target} is a riskstrat {kind} but also holds what riskstrat did not write there ({shown}): "
            f"riskstrat replaces the folder as a whole, so it will not replace this one. Move those entries out, "
            f"or choose a new folder")


@contextlib.contextmanager
def atomic_path(target: str | Path, *, directory: bool = False, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    On any exception the temporary path is removed and ``target`` is left untouched.
    For a directory an existing ``target`` is replaced as a whole: only when it is absent, empty or
    a folder riskstrat wrote as ``kind`` (:func:`check_replaceable`; the new folder gets the marker).

    The temporary path is new (created exclusively, so a planted link there is never opened) and
    is renamed onto ``target``: a symbolic link at ``target`` is replaced itself, never followed, so
    nothing is written where it points.
    """
    target = Path(target)
    # os.path rather than pathlib here: the lists write thousands of small files, and pathlib's
    # parsing was most of this helper's cost.
    parent, name = os.path.split(os.fspath(target))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    if directory:
        if kind is None:
            raise TypeError("atomic_path(directory=True) needs the kind of folder it writes")
        check_replaceable(target, kind)
    umask = os.umask(0)
    os.umask(umask)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent or None))
        os.chmod(tmp, 0o777 & ~umask)
        (tmp / FOLDER_MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
    else:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.tmp-", dir=parent or None)
        os.close(fd)
        os.chmod(tmp_name, 0o666 & ~umask)
        tmp = Path(tmp_name)
    try:
        yield tmp
        if directory and os.path.lexists(target):
            check_replaceable(target, kind)  # again: it may have changed while the folder was written
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            old.rmdir()
            target.rename(old)
            tmp.rename(target)
            if old.is_symlink():  # a link was there: remove the link, not what it points to
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def canonical_to_arrow(name: str, df: pd.DataFrame) -> pa.Table:
    """Convert a canonical table to Arrow with the schema's types (dates as date32)."""
    columns = [c for c in TABLES[name].column_names if c in df.columns]
    schema = arrow_schema(name, present=columns)
    arrays = []
    for f in schema:
        values = df[f.name]
        if pa.types.is_date32(f.type):
            arrays.append(pa.array(values.dt.date if len(values) else [], type=pa.date32(), from_pandas=True))
        elif pa.types.is_dictionary(f.type):
            arrays.append(pa.array(values.astype("string").astype(object), type=pa.string(),
                                   from_pandas=True).dictionary_encode())
        else:
            arrays.append(pa.array(values.astype(object) if f.type == pa.string() else values,
                                   type=f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(df: pd.DataFrame | pa.Table, path: str | Path) -> Path:
    """Write a DataFrame or Arrow table to Parquet atomically (deterministic bytes for equal data)."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def write_records_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path,
                         *, extra_files: dict[str, str] | None = None) -> Path:
    """Write canonical tables as ``<table>.parquet`` into ``out_dir``, atomically as a whole.

    ``extra_files`` maps file names to text content written into the same folder (e.g. a summary).
    """
    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True, kind="data set") as tmp:
        for name, df in tables.items():
            pq.write_table(canonical_to_arrow(name, df), tmp / f"{name}.parquet", compression="zstd")
        for fname, text in (extra_files or {}).items():
            (tmp / fname).write_text(text)
    return out_dir


def write_bytes(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to ``path`` atomically (a link at ``path`` is replaced, not followed)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json(obj, path: str | Path) -> Path:
    return write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def file_sha256(source: str | Path | BinaryIO, *, chunk: int = 1 << 20) -> str:
    """The SHA-256 (hex) of a file, streamed in ``chunk``-byte blocks: ``source`` is a path, or a
    file already open in binary mode, read from where it stands to its end (the caller keeps it
    open: a published file is hashed and then read through the one descriptor,
    :func:`riskstrat.scoring.published.read_population`)."""
    if isinstance(source, (str, os.PathLike)):  # a regular file only: a FIFO would block for ever
        with os.fdopen(open_regular_file(source), "rb") as fh:
            return file_sha256(fh, chunk=chunk)
    digest = hashlib.sha256()
    buffer = bytearray(chunk)  # one buffer, filled in place: no new bytes object per block
    view = memoryview(buffer)
    while n := source.readinto(buffer):
        digest.update(view[:n])
    return digest.hexdigest()


def data_fingerprint(data_dir: str | Path) -> dict:
    """A fingerprint of a data folder: per-table file hash and size (never any rows)."""
    data_dir = Path(data_dir)
    files = {}
    for name in TABLES:
        path = find_table_file(data_dir, name)
        if path is not None:
            files[name] = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}
    combined = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"data_dir": str(data_dir.resolve()), "sha256": combined, "tables": files}


DATASET_META = "dataset.json"
CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€"}


def dataset_metadata(data_dir: str | Path) -> dict:
    """A data set's ``dataset.json`` (``extract_end``, ``currency``, who made it), or ``{}``.

    ``currency`` (ISO 4217, e.g. ``GBP``, ``USD``) says what every cost column is in; a data set
    without it is taken to be in pounds (the synthetic population and NHS extracts).
    """
    path = Path(data_dir) / DATASET_META
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataFileError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataFileError(f"{path}: expected a JSON object")
    check_schema_version(meta.get("schema_version"), str(path))
    return meta


def currency_of(data_dir: str | Path) -> str:
    """The ISO currency code of a data set's costs (default ``GBP``)."""
    return str(dataset_metadata(data_dir).get("currency") or "GBP").upper()


def money(amount: float, currency: str = "GBP") -> str:
    """``money(1234.5) == '£1,234'``; ``money(1234.5, 'USD') == '$1,234'``; unknown codes are written out."""
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{symbol}{amount:,.0f}" if symbol else f"{amount:,.0f} {currency.upper()}"
