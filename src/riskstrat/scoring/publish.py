"""Publishing a month into an output folder: one writer at a time, one atomic step, an audit trail.

Layout of an output folder (``output_dir``)::

    2025-11 -> .runs/2025-11-3f9c0a1b2c4d      a symlink: the published month
    .runs/                                       a real folder (never a link)
      2025-11-3f9c0a1b2c4d/                      the files of the run that published it
        .riskstrat-run                           the marker: {"run": "2025-11-3f9c0a1b2c4d", "month": ...}
    .lock                                        held (flock) by the run writing here; says who
    audit.jsonl                                  append-only: who ran what, on which inputs, wrote what

A run writes its month into a fresh folder under ``.runs/`` (mode 0700 while it is written, so no
other user can plant files in it) and publishes it by replacing the month's symlink with one
``os.replace`` (atomic on POSIX): a reader, or a crash at any instant, sees either the old month
whole or the new one whole, never neither. Folders under ``.runs/`` that no month points to are
left by killed runs (they hold person-level files) and are removed by the next run, under the lock.
In the output folder itself the next run removes only riskstrat's own temporary entries, known by
exact name and kind: a month link ``.YYYY-MM.link-<12 hex>`` that is a symlink, and an earlier
version's ``.YYYY-MM.tmp-`` / ``.old-<8 characters>`` that is a real folder; anything else is left
and listed in the audit log (event ``cleaned``, ``left_unmarked``).

Readers of published months (``score``'s last month, ``monitor``) list them with
:func:`published_months`, which resolves each once with :func:`month_run`, and read from the folder
it gives, never through the month link again; every file is opened by :func:`open_regular`
(``O_NOFOLLOW | O_NONBLOCK``, a regular file by ``fstat``), so a link or FIFO planted in place of a
file is refused, not followed or waited on.

The output folder is a trust boundary: whatever is planted inside it, a run writes, truncates or
removes nothing outside it. The run resolves the output folder once and then follows no link it
did not make: ``.runs`` must be a real folder; a month is trusted only as a symlink to
``.runs/<name>`` holding the marker; ``.lock`` and ``audit.jsonl`` are opened with ``O_NOFOLLOW``
and must be regular files with one link; a run folder holding a symlink is not published; every
such refusal is a :class:`PublishError` naming the path. Only marked run folders directly inside
``.runs`` that no month points to are removed (``shutil.rmtree`` does not follow links); anything
else there is left and reported in the audit log.

A month already published is replaced only when asked (``replace=True``; ``riskstrat score
--replace``) or when the new ``manifest.json`` is byte-identical to the published one (the same
inputs, models and files: the retry after an MLflow failure); the refusal names the models of both
runs. The run folder a republish replaces is kept under ``.runs/`` (its marker says
``replaced_by``) until the next publish in the output folder, of any month, which removes it; the
replacement is an audit event ``replaced`` (both run folders, both runs' models).

A month written by an earlier riskstrat (a real folder, not a symlink) is moved under ``.runs/``
(and marked) and replaced by a symlink the first time it is republished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import getpass
import json
import os
import re
import shutil
import stat
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from riskstrat.errors import RiskstratError
from riskstrat.data.io import file_kind

__all__ = ["AUDIT_LOG", "MARKER", "AlreadyPublishedError", "NotRegularFileError", "OutputLockedError", "PublishError",
           "PublishRefusedError", "append_audit", "check_population", "check_republish", "clean_stale", "month_folder",
           "month_run", "open_regular", "output_lock", "published_months", "read_regular"]

RUNS = ".runs"
LOCK = ".lock"
AUDIT_LOG = "audit.jsonl"
MARKER = ".riskstrat-run"  # in every run folder riskstrat makes: {"run": <its folder name>, "month": ...}

# Where the OS offers them: never follow a link at the last component, never leak the fd into a child,
# never block on a FIFO planted in place of a file.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

_held: dict[Path, int] = {}  # output folders this process holds the lock of, and how deeply


class PublishError(RiskstratError):
    """The output folder cannot be written as asked; the message says why and what to do."""


class OutputLockedError(PublishError):
    """Another run holds the output folder's lock."""


class PublishRefusedError(PublishError):
    """A month that would replace good lists with implausible ones (no one, or far fewer people)."""


class AlreadyPublishedError(PublishError):
    """The month is already published and replacing it was not asked for (``--replace``)."""


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
    except OSError as exc:  # a read-only or pseudo file system (/proc, /sys), a full disk
        raise PublishError(f"{root}: cannot create the output folder ({exc.strerror or exc}); choose an output_dir "
                           f"on a writable disk") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise PublishError(f"{root}: the output folder is read-only for user {who()['user']}; make it writable "
                           f"or choose another output_dir")
    return root


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _link_words(path: Path) -> str:
    try:
        return f"a symbolic link (to {os.readlink(path)})"
    except OSError:
        return "a symbolic link"


class NotRegularFileError(OSError):
    """What :func:`open_regular` found in place of a regular file; ``kind`` says what it is, in words."""

    def __init__(self, path: str | Path, kind: str):
        super().__init__(errno.EINVAL, f"{kind}, not a regular file", str(path))
        self.kind = kind


def open_regular(path: str | Path) -> int:
    """A read-only descriptor of the regular file ``path``: opened with ``O_NOFOLLOW`` (a link at its
    last component is not followed), ``O_NONBLOCK`` (a FIFO planted there cannot hang the run) and
    ``O_CLOEXEC``, then ``fstat``-ed. Read from the descriptor, never from the path again, so nothing
    can be swapped in between.

    ``FileNotFoundError`` when there is nothing there; :class:`NotRegularFileError` (``kind``: "a
    symbolic link (to ...)", "a FIFO (named pipe)", "a folder", ...) for anything but a regular file;
    other ``OSError`` as the OS gives it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        st = _lstat(Path(path))
        if st is not None and stat.S_ISLNK(st.st_mode):  # ELOOP (Linux) or EMLINK (BSD) under O_NOFOLLOW
            raise NotRegularFileError(path, _link_words(Path(path))) from None
        if exc.errno == errno.ENXIO:  # a socket
            raise NotRegularFileError(path, file_kind(st.st_mode) if st is not None else "a socket") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, file_kind(mode))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | Path, *, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``), opened by :func:`open_regular`."""
    with os.fdopen(open_regular(path), "rb") as fh:
        return fh.read() if limit is None else fh.read(limit)


def _open_own_file(path: Path, flags: int, what: str, *, mode: int = 0o600) -> int:
    """Open riskstrat's own file ``path`` (the lock, the audit log) without following a link; it
    must be a regular file with one name. Anything else is a :class:`PublishError` naming it."""
    redo = f"move it away (riskstrat makes a new {what}) and run again"
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, mode)
    except OSError as exc:
        st = _lstat(path)
        if st is not None and stat.S_ISLNK(st.st_mode):  # ELOOP (Linux) or EMLINK (BSD) under O_NOFOLLOW
            raise PublishError(f"{path}: the {what} is {_link_words(path)} that riskstrat did not make; riskstrat "
                               f"follows no link for its {what} (it would write outside the output folder): remove "
                               f"the link and run again") from None
        if exc.errno == errno.EISDIR or (st is not None and stat.S_ISDIR(st.st_mode)):
            raise PublishError(f"{path}: the {what} is a folder, not a file; {redo}") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PublishError(f"{path}: the {what} cannot be opened for writing by user {who()['user']} (operation "
                               f"not permitted: read-only, immutable or append-only for others?); make it writable "
                               f"by the user running riskstrat, or {redo}") from None
        if exc.errno == errno.ENXIO:
            raise PublishError(f"{path}: the {what} is not a regular file (a FIFO or socket); {redo}") from None
        raise PublishError(f"{path}: cannot open the {what}: {exc.strerror or exc}; {redo}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PublishError(f"{path}: the {what} is not a regular file; {redo}")
        if st.st_nlink != 1:  # a hard link to a file elsewhere would be written through
            raise PublishError(f"{path}: the {what} has {st.st_nlink} names (a hard link, perhaps to a file outside "
                               f"the output folder); riskstrat will not write to it: {redo}")
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def output_lock(root: str | Path) -> Iterator[Path]:
    """Hold ``root``'s lock while the block runs; re-entrant within one process.

    A second run (another process) gets :class:`OutputLockedError` at once, naming the holder
    (user, pid, host, start time, command) from the lock file. On first taking the lock, the
    temporary folders of killed runs are removed (:func:`clean_stale`). ``.lock`` must be a regular
    file (a link, a folder or a hard link is a :class:`PublishError` naming it).
    """
    root = output_root(root).resolve()
    if root in _held:
        _held[root] += 1
        try:
            yield root
        finally:
            _held[root] -= 1
        return
    fd = _open_own_file(root / LOCK, os.O_RDWR | os.O_CREAT, "lock file")
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


def runs_folder(root: str | Path, *, create: bool = False) -> Path | None:
    """``<root>/.runs``, a real folder (made if ``create``), or None if there is none. A link or a
    file there is a :class:`PublishError`: run folders hold person-level files and must stay
    inside the output folder."""
    runs = Path(root) / RUNS
    st = _lstat(runs)
    if st is None:
        if not create:
            return None
        os.mkdir(runs)
        return runs
    if stat.S_ISLNK(st.st_mode):
        raise PublishError(f"{runs} is {_link_words(runs)}; riskstrat keeps its run folders (person-level files) "
                           f"in a real {RUNS} folder inside the output folder and follows no link it did not make. "
                           f"Remove the link and run again; to keep run folders on another disk, move the whole "
                           f"output_dir there (or point output_dir at it)")
    if not stat.S_ISDIR(st.st_mode):
        raise PublishError(f"{runs} is a file, not riskstrat's folder of run folders; move it away and run again")
    return runs


def _marker(folder: Path) -> dict | None:
    """The marker of ``folder`` if it is a run folder riskstrat made: a real folder holding a regular
    ``.riskstrat-run`` that names it; else None."""
    st = _lstat(folder)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return None
    try:
        data = read_regular(folder / MARKER, limit=1 << 16)
    except OSError:
        return None
    try:
        marker = json.loads(data)
    except ValueError:
        return None
    return marker if isinstance(marker, dict) and marker.get("run") == folder.name else None


def _put_marker(folder: Path, **fields) -> None:
    """Write ``folder``'s marker: a fresh file renamed over the old one (a link there is replaced,
    never followed)."""
    tmp = folder / f"{MARKER}.tmp-{uuid.uuid4().hex[:12]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"run": folder.name, **fields}, sort_keys=True) + "\n")
    os.replace(tmp, folder / MARKER)


def month_run(root: str | Path, month: str) -> Path | None:
    """Where the published ``month`` of ``root`` is: its run folder under ``.runs/``, a month folder
    written by an earlier riskstrat (a real folder), or None if the month is not published.

    A month is trusted only as a symlink to ``.runs/<name>`` at a run folder carrying riskstrat's
    marker for that month; any other link (or a file) is a :class:`PublishError` naming it, and
    nothing it points to is read, replaced or removed.
    """
    root = Path(root)
    target = root / month
    st = _lstat(target)
    if st is None:
        return None
    if stat.S_ISDIR(st.st_mode):
        return target
    if not stat.S_ISLNK(st.st_mode):
        raise PublishError(f"{target} is a file, not a month folder; move it away and run again")
    pointed = os.readlink(target)
    parts = pointed.split("/")
    if len(parts) == 2 and parts[0] == RUNS and parts[1] not in ("", ".", ".."):
        runs = runs_folder(root)
        marker = _marker(runs / parts[1]) if runs is not None else None
        if marker is not None and marker.get("month") == month:
            return runs / parts[1]
    raise PublishError(f"{target} is a symbolic link to {pointed}, which riskstrat did not make (a published month "
                       f"points to {RUNS}/<run folder> holding riskstrat's {MARKER} marker); riskstrat will not read, "
                       f"replace or remove what it points to. Move the link away (and find out who made it), then "
                       f"run again")


MONTH_NAME = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def published_months(root: str | Path, *, before: str | None = None) -> list[tuple[str, Path]]:
    """Every month published in ``root`` (earlier than ``before``, if given), oldest first: ``(month,
    folder)``, the folder resolved once by :func:`month_run` (a run folder, or a month folder of an
    earlier riskstrat). Read the month's files from that folder, never through ``root / month``
    again: a link swapped in between would be followed.

    Every entry named ``YYYY-MM`` counts, whatever it holds; one that is not a trusted month (a
    link riskstrat did not make, a file) is a :class:`PublishError` naming it.
    """
    root = Path(root)
    with os.scandir(root) as entries:
        names = sorted(e.name for e in entries if MONTH_NAME.fullmatch(e.name) and (before is None or e.name < before))
    months = []
    for name in names:
        folder = month_run(root, name)
        if folder is not None:  # None: removed since the listing
            months.append((name, folder))
    return months


def _published_runs(root: Path) -> set[str]:
    """Names of the run folders that month links in ``root`` point to (kept, whatever else holds)."""
    names = set()
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_symlink():
                parts = os.readlink(entry.path).split("/")
                if len(parts) == 2 and parts[0] == RUNS:
                    names.add(parts[1])
    return names


def _remove_run(folder: Path) -> bool:
    """Remove ``folder`` if it is a run folder riskstrat made (a real folder with the marker);
    ``shutil.rmtree`` follows no link inside. Returns whether it was removed."""
    if _marker(folder) is None:
        return False
    try:
        shutil.rmtree(folder)
    except OSError:
        return False
    return True


def _remove_entry(path: Path) -> None:
    """Remove ``path``, a temporary entry riskstrat made: a real folder whole, anything else (a file,
    a link) by its own name only."""
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# What riskstrat leaves in the output folder's root when killed, named exactly as it names them:
# its temporary month links (this version), and the temporary and replaced month folders of the
# writer before run folders (io.atomic_path's tempfile.mkdtemp(prefix=".<month>.tmp-"/".old-"):
# eight characters of tempfile's alphabet).
_TEMP_LINK = re.compile(r"\.\d{4}-(0[1-9]|1[0-2])\.link-[0-9a-f]{12}")
_OLD_TEMP_FOLDER = re.compile(r"\.\d{4}-(0[1-9]|1[0-2])\.(tmp|old)-[a-z0-9_]{8}")
_TEMP_LOOKALIKE = (".tmp-", ".old-", ".link-")  # what earlier versions removed by these words alone


def _own_temporary(entry: os.DirEntry) -> bool:
    """Whether ``entry`` in the output folder's root is a temporary entry riskstrat made, known by its
    exact name and kind (a link for a month link; a real folder, not a link, for an old folder)."""
    if _TEMP_LINK.fullmatch(entry.name):
        return entry.is_symlink()
    if _OLD_TEMP_FOLDER.fullmatch(entry.name):
        return entry.is_dir(follow_symlinks=False)
    return False


def clean_stale(root: str | Path) -> list[str]:
    """Remove what killed runs left in ``root`` (call with the lock held): run folders no month
    points to, and riskstrat's own temporary entries in ``root``. Returns what was removed.

    Only what riskstrat made and can recognise exactly is removed: run folders directly inside a
    real ``.runs`` carrying the marker; in ``root``, temporary month links (``.YYYY-MM.link-`` and
    12 hex digits, symbolic links) and the temporary folders of the writer before run folders
    (``.YYYY-MM.tmp-`` or ``.old-`` and 8 characters, real folders). Anything else in ``.runs``, and
    any other entry in ``root`` named like a temporary one, is left and reported in the audit log
    (event ``cleaned``, ``left_unmarked``). The run folder a republish replaced is kept until the
    next publish (:func:`month_folder`).
    """
    root = Path(root)
    removed, left = [], []
    runs = runs_folder(root)
    if runs is not None:
        keep = _published_runs(root)
        for entry in sorted(os.scandir(runs), key=lambda e: e.name):
            if entry.name in keep:
                continue
            folder = Path(entry.path)
            marker = _marker(folder)
            if marker is not None and marker.get("replaced_by") in keep:
                continue  # the previous run of a republished month: kept until the next publish
            (removed if _remove_run(folder) else left).append(f"{RUNS}/{entry.name}")
    with os.scandir(root) as scanned:
        entries = sorted(scanned, key=lambda e: e.name)
    for entry in entries:
        if _own_temporary(entry):
            _remove_entry(Path(entry.path))
            removed.append(entry.name)
        elif entry.name.startswith(".") and any(tag in entry.name for tag in _TEMP_LOOKALIKE):
            left.append(entry.name)
    if removed or left:
        append_audit(root, "cleaned", removed=removed, left_unmarked=left,
                     **({"note": f"not made by riskstrat (no {MARKER} marker, or not named and shaped as riskstrat "
                                 f"names its temporary entries): left in place; check who put them there and "
                                 f"remove them by hand"} if left else {}))
    return removed


def _models_words(models: Mapping | None) -> str:
    if not models:
        return "models unknown (no manifest.json)"
    return ", ".join(f"{name} v{info.get('version')}" if isinstance(info, Mapping) else f"{name} {info}"
                     for name, info in sorted(models.items()))


def _models_key(models: Mapping | None) -> dict | None:
    if not models:
        return None
    return {name: (info.get("version"), info.get("run_id")) if isinstance(info, Mapping) else info
            for name, info in models.items()}


def _manifest(folder: Path) -> tuple[bytes | None, dict | None]:
    """``folder``'s manifest.json (bytes, models), read as :func:`read_regular` does; (None, None) if
    there is none, or it is not a regular file."""
    try:
        data = read_regular(folder / "manifest.json")
    except OSError:
        return None, None
    try:
        models = json.loads(data).get("models")
    except (ValueError, AttributeError):
        models = None
    return data, models if isinstance(models, Mapping) else None


def _published_words(root: Path, published: Path) -> str:
    where = (f"run folder {RUNS}/{published.name}" if published.parent.name == RUNS
             else "a month folder written by an earlier riskstrat")
    return f"{where}, {_models_words(_manifest(published)[1])}"


def _refuse_republish(root: Path, month: str, published: Path, why: str) -> AlreadyPublishedError:
    return AlreadyPublishedError(
        f"{month} is already published in {root} ({_published_words(root, published)}); {why}. Nothing was "
        f"published. To replace it, run again with --replace (replace_existing: true); the replaced run folder is "
        f"kept under {RUNS}/ until the next publish")


def check_republish(output_dir: str | Path, month: str, *, replace: bool, models: Mapping | None) -> None:
    """Refuse (:class:`AlreadyPublishedError`) a run of other ``models`` for a ``month`` already
    published in ``output_dir``, unless ``replace``; before anything is scored. A run of the same
    models is decided when it is written: it may republish only a byte-identical manifest
    (:func:`month_folder`). An untrusted month link is a :class:`PublishError`."""
    root = Path(output_dir)
    if not root.is_dir():
        return
    published = month_run(root, month)
    if published is None or replace or models is None:
        return
    old = _manifest(published)[1]
    if _models_key(old) != _models_key(models):
        raise _refuse_republish(root, month, published, f"this run ({_models_words(models)}) would replace it")


def _scan_links(run: Path) -> None:
    """Refuse a run folder holding a symbolic link: riskstrat makes none inside, so one was planted."""
    with os.scandir(run) as entries:
        for entry in entries:
            if entry.is_symlink():
                raise PublishError(f"{entry.path} is {_link_words(Path(entry.path))} that riskstrat did not make; "
                                   f"the run folder was not published and is removed (the link is not followed). "
                                   f"Check who can write to the output folder")
            if entry.is_dir(follow_symlinks=False):
                _scan_links(Path(entry.path))


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


@contextlib.contextmanager
def month_folder(target: str | Path, *, replace: bool = False, models: Mapping | None = None) -> Iterator[Path]:
    """Yield a fresh run folder for the month ``target`` (``<output_dir>/<month>``); when the block
    ends without error, publish it as ``target`` in one atomic step (the symlink swap). On error the
    run folder is removed and ``target`` is untouched. Holds the output folder's lock throughout.

    A month already published is replaced only if ``replace`` (or if the new ``manifest.json`` is
    byte-identical to the published one: a retry); otherwise :class:`AlreadyPublishedError` naming
    both runs' models (``models``: the new run's, ``{name: {"version": ...}}``; else read from its
    manifest). The replaced run folder is kept until the next publish, and the replacement is an
    audit event ``replaced``. See the module's docstring for what is refused as not riskstrat's.
    """
    target = Path(target)
    with output_lock(target.parent) as root:
        month = target.name
        runs = runs_folder(root, create=True)
        check_republish(root, month, replace=replace, models=models)  # before a file is written
        if _lstat(root / AUDIT_LOG) is not None:  # a planted log is refused before anything is published
            os.close(_open_own_file(root / AUDIT_LOG, os.O_WRONLY | os.O_APPEND, "audit log"))
        run = runs / f"{month}-{uuid.uuid4().hex[:12]}"
        os.mkdir(run, 0o700)  # private while written: no other user can plant a file or link in it
        try:
            _put_marker(run, month=month, created=_now())
            yield run
            _scan_links(run)
            if _marker(run) is None:
                raise PublishError(f"{run}: riskstrat's {MARKER} marker is gone from the run folder; it was not "
                                   f"published. Check who can write to the output folder")
            os.chmod(run, _default_mode())
            previous, models = _swap(root, run, month, replace=replace, models=models)
        except BaseException:
            _remove_entry(run)  # ours, not published: a real folder (rmtree follows no link inside)
            raise
        _after_swap(root, run, month, previous, models)  # the month is out: nothing here may remove ``run``


def _swap(root: Path, run: Path, month: str, *, replace: bool,
          models: Mapping | None) -> tuple[tuple[Path, Mapping | None] | None, Mapping | None]:
    """Point ``<root>/<month>`` at ``run`` (one ``os.replace``); returns the previous run folder (and
    its models), if any, and the new run's models."""
    target = root / month
    runs = run.parent
    previous = month_run(root, month)  # again, under the lock: a link riskstrat did not make is refused
    previous_models = None
    if previous is not None:
        old_manifest, previous_models = _manifest(previous)
        new_manifest, new_models = _manifest(run)
        models = new_models or models
        if not replace and (old_manifest is None or old_manifest != new_manifest):
            same = _models_key(previous_models) == _models_key(models) and models is not None
            why = ("this run, of the same models, gives other lists (its manifest.json differs)" if same
                   else f"this run ({_models_words(models)}) would replace it")
            raise _refuse_republish(root, month, previous, why)
    legacy = previous is not None and previous.parent == root
    if legacy:  # a month written by an earlier version (a real folder): moved whole under .runs, marked
        moved = runs / f"{month}-legacy-{uuid.uuid4().hex[:12]}"
        os.rename(previous, moved)
        previous = moved
    link = root / f".{month}.link-{uuid.uuid4().hex[:12]}"
    try:
        if legacy:
            _put_marker(previous, month=month, created=_now(), legacy=True)
        os.symlink(f"{RUNS}/{run.name}", link)
        os.replace(link, target)  # replaces the link itself (or nothing): follows nothing
    except BaseException:
        link.unlink(missing_ok=True)
        if legacy and _lstat(target) is None:
            os.rename(previous, target)  # the earlier version's month back where it was
        raise
    _fsync_dir(root)
    return ((previous, previous_models) if previous is not None else None), models


def _after_swap(root: Path, run: Path, month: str, previous: tuple[Path, Mapping | None] | None,
                models: Mapping | None) -> None:
    """After publishing: mark the replaced run folder (kept until the next publish), record the
    replacement, and remove the run folders earlier republishes kept."""
    runs = run.parent
    kept = None
    if previous is not None and previous[0] != run:
        folder, previous_models = previous
        _put_marker(folder, **{k: v for k, v in (_marker(folder) or {}).items() if k != "run"},
                    replaced_by=run.name, replaced_at=_now())
        kept = folder.name
        append_audit(root, "replaced", month=month, run_folder=f"{RUNS}/{run.name}", models=models,
                     previous_run_folder=f"{RUNS}/{folder.name}", previous_models=previous_models)
    # The previous run a republish kept has had its grace: the next publish (this one) removes it.
    published = _published_runs(root)
    removed = []
    for entry in sorted(os.scandir(runs), key=lambda e: e.name):
        if entry.name in published or entry.name == kept:
            continue
        marker = _marker(Path(entry.path))
        if marker is not None and marker.get("replaced_by") and _remove_run(Path(entry.path)):
            removed.append(f"{RUNS}/{entry.name}")
    if removed:
        append_audit(root, "cleaned", removed=removed, left_unmarked=[])


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
    command) and ``fields``. Never holds person-level data: counts, hashes, versions and paths only.
    The log is opened without following a link and must be a regular file (:class:`PublishError`)."""
    record = {"event": event, "time": _now(), **who(), **fields}
    path = output_root(root).resolve() / AUDIT_LOG
    fd = _open_own_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "audit log", mode=0o640)
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
    riskstrat.scoring.publish.PublishRefusedError: 79 people scored against 100 in the previous month (21% fewer; ...
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
