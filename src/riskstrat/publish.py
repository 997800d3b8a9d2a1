"""Publishing a month into an output folder: one writer at a time, one atomic step, an audit trail.

Layout of an output folder (``output_dir``)::

    2025-11 -> .runs/2025-11-3f9c0a1b2c4d      a symlink: the published month
    .runs/2025-11-3f9c0a1b2c4d/                 the files of the run that published it
    .lock                                        held (flock) by the run writing here; says who
    audit.jsonl                                  append-only: who ran what, on which inputs, wrote what

A run writes its month into a fresh folder under ``.runs/`` and publishes it by replacing the
month's symlink with one ``os.replace`` (atomic on POSIX): a reader, or a crash at any instant,
sees either the old month whole or the new one whole, never neither. The run folder the symlink
pointed to before is removed afterwards. Folders under ``.runs/`` that no month points to are left
by killed runs (they hold person-level files) and are removed by the next run, under the lock.

A month written by an earlier riskstrat (a real folder, not a symlink) is moved under ``.runs/``
and replaced by a symlink the first time it is republished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import getpass
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from riskstrat.errors import RiskstratError

__all__ = ["AUDIT_LOG", "OutputLockedError", "PublishError", "PublishRefusedError", "append_audit",
           "check_population", "clean_stale", "month_folder", "output_lock"]

RUNS = ".runs"
LOCK = ".lock"
AUDIT_LOG = "audit.jsonl"

_held: dict[Path, int] = {}  # output folders this process holds the lock of, and how deeply


class PublishError(RiskstratError):
    """The output folder cannot be written as asked; the message says why and what to do."""


class OutputLockedError(PublishError):
    """Another run holds the output folder's lock."""


class PublishRefusedError(PublishError):
    """A month that would replace good lists with implausible ones (no one, or far fewer people)."""


def who() -> dict:
    """The OS user, process and command of this run (for the lock file and the audit log)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return {"user": user, "pid": os.getpid(), "host": os.uname().nodename, "command": " ".join(sys.argv)}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def output_root(root: str | Path) -> Path:
    """``root`` created if need be; an output path that is a file, or cannot be written, is a
    :class:`PublishError` a person can act on."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise PublishError(f"{root}: the output path is a file, not a folder; choose another output_dir "
                           f"or move the file")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PublishError(f"{root}: part of the output path is a file, not a folder") from None
    except PermissionError:
        raise PublishError(f"{root}: cannot create the output folder (permission denied); choose an output_dir "
                           f"you may write to") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise PublishError(f"{root}: the output folder is read-only for user {who()['user']}; make it writable "
                           f"or choose another output_dir")
    return root


@contextlib.contextmanager
def output_lock(root: str | Path) -> Iterator[Path]:
    """Hold ``root``'s lock while the block runs; re-entrant within one process.

    A second run (another process) gets :class:`OutputLockedError` at once, naming the holder
    (user, pid, host, start time, command) from the lock file. On first taking the lock, the
    temporary folders of killed runs are removed (:func:`clean_stale`).
    """
    root = output_root(root).resolve()
    if root in _held:
        _held[root] += 1
        try:
            yield root
        finally:
            _held[root] -= 1
        return
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            try:
                h = json.loads(holder)
                by = f"user {h['user']}, pid {h['pid']} on {h['host']}, since {h['started']} ({h['command']})"
            except (ValueError, KeyError, TypeError):
                by = "another run"
            refusal = OutputLockedError(f"{root} is being written by {by}; wait for it to finish (two runs must "
                                        f"not write one output folder at once)")
            append_audit(root, "refused", error=str(refusal))  # appending beside the holder is safe (O_APPEND)
            raise refusal from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({**who(), "started": _now()}) + "\n").encode(), 0)
        _held[root] = 1
        try:
            clean_stale(root)
            yield root
        finally:
            del _held[root]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _published_runs(root: Path) -> set[str]:
    names = set()
    for entry in root.iterdir():
        if entry.is_symlink():
            target = os.readlink(entry)
            if Path(target).parent.name == RUNS or target.startswith(RUNS + "/"):
                names.add(Path(target).name)
    return names


def clean_stale(root: str | Path) -> list[str]:
    """Remove what killed runs left in ``root`` (call with the lock held): run folders no month
    points to, and the temporary siblings of earlier versions' writers. Returns what was removed."""
    root = Path(root)
    removed = []
    runs = root / RUNS
    if runs.is_dir():
        keep = _published_runs(root)
        for entry in runs.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                removed.append(f"{RUNS}/{entry.name}")
    for entry in root.iterdir():
        if entry.name.startswith(".") and any(tag in entry.name for tag in (".tmp-", ".old-", ".link-")):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def month_folder(target: str | Path) -> Iterator[Path]:
    """Yield a fresh run folder for the month ``target`` (``<output_dir>/<month>``); when the block
    ends without error, publish it as ``target`` in one atomic step (the symlink swap), then remove
    the run folder it replaces. On error the run folder is removed and ``target`` is untouched.
    Holds the output folder's lock throughout."""
    target = Path(target)
    with output_lock(target.parent) as root:
        target = root / target.name
        runs = root / RUNS
        runs.mkdir(exist_ok=True)
        run = runs / f"{target.name}-{uuid.uuid4().hex[:12]}"
        run.mkdir()
        try:
            yield run
            _swap(root, run, target)
        except BaseException:
            shutil.rmtree(run, ignore_errors=True)
            raise


def _swap(root: Path, run: Path, target: Path) -> None:
    previous = None
    if target.is_symlink():
        previous = root / os.readlink(target)
    elif target.is_dir():  # a month written by an earlier version: keep it whole until replaced
        previous = root / RUNS / f"{target.name}-legacy-{uuid.uuid4().hex[:12]}"
        target.rename(previous)
    elif target.exists():
        raise PublishError(f"{target} is a file, not a month folder; move it away and run again")
    link = root / f".{target.name}.link-{uuid.uuid4().hex[:12]}"
    os.symlink(f"{RUNS}/{run.name}", link)
    try:
        os.replace(link, target)
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    _fsync_dir(root)
    if previous is not None and previous.resolve() != run.resolve():
        shutil.rmtree(previous, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a folder; the rename is still atomic
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def append_audit(root: str | Path, event: str, **fields) -> dict:
    """Append one JSON line to ``<root>/audit.jsonl``: the event, when, who (OS user, pid, host,
    command) and ``fields``. Never holds person-level data: counts, hashes, versions and paths only."""
    record = {"event": event, "time": _now(), **who(), **fields}
    path = output_root(root) / AUDIT_LOG
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return record


def check_population(scored: int, previous: int | None, *, max_shrink: float, allow: bool,
                     previous_month: str | None = None) -> None:
    """Refuse (:class:`PublishRefusedError`) a month with no one scored, or with fewer people than
    ``previous`` by more than ``max_shrink`` (a fraction), unless ``allow``.

    >>> check_population(79, 100, max_shrink=0.2, allow=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    riskstrat.publish.PublishRefusedError: 79 people scored against 100 in the previous month (21% fewer; ...
    """
    if allow:
        return
    if scored == 0:
        raise PublishRefusedError("no one was scored, so publishing would replace the lists with empty ones; check "
                                  "the data and the cohort settings (cohort.min_age, cohort.max_age), or force it "
                                  "with allow_population_shrink=true")
    if previous and scored < previous * (1 - max_shrink):
        drop = 1 - scored / previous
        raise PublishRefusedError(
            f"{scored:,} people scored against {previous:,} in the previous month"
            f"{f' ({previous_month})' if previous_month else ''} ({drop:.0%} fewer; at most {max_shrink:.0%} is "
            f"allowed by max_population_shrink): check the extract and the cohort settings; if the population "
            f"really shrank, publish with allow_population_shrink=true (--allow-population-shrink)")
