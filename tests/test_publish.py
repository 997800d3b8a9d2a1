"""Publishing a month: one atomic step, one writer at a time, stale run folders cleaned, an audit log.

Faults are real: a subprocess killed with SIGKILL while writing or holding the lock, a read-only
folder, an output path that is a file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from riskstrat.scoring import publish
from riskstrat.errors import RiskstratError
from riskstrat.data.io import write_text
from riskstrat.scoring.publish import (AlreadyPublishedError, OutputLockedError, PublishError, PublishRefusedError,
                               append_audit, check_population, clean_stale, month_folder, output_lock)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def write_month(root: Path, month: str, text: str, *, replace: bool = False, models: dict | None = None) -> Path:
    with month_folder(root / month, replace=replace) as tmp:
        (tmp / "practices").mkdir()
        write_text(text, tmp / "practices" / "list.csv")
        if models:
            write_text(json.dumps({"models": models, "text": text}), tmp / "manifest.json")
    return root / month


def files(folder: Path) -> dict[str, str]:
    """The month's files as the lists' readers see them (riskstrat's marker and manifest aside)."""
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (publish.MARKER, "manifest.json")}


def child(script: str, marker: Path) -> subprocess.Popen:
    """A Python process running ``script``; waits until it has written ``marker``."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env={**os.environ, "PYTHONPATH": SRC})
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, "the child process ended early"
        assert time.monotonic() < deadline, "the child process did not start"
        time.sleep(0.05)
    return proc


def visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and p.name != publish.AUDIT_LOG)


def test_a_month_is_published_as_a_symlink_to_its_run_folder(tmp_path):
    month = write_month(tmp_path, "2025-11", "first")
    assert month.is_symlink() and files(month) == {"practices/list.csv": "first"}
    write_month(tmp_path, "2025-11", "second", replace=True)
    assert files(month) == {"practices/list.csv": "second"}
    assert len(list((tmp_path / ".runs").iterdir())) == 2  # the replaced run folder is kept until the next publish
    write_month(tmp_path, "2025-12", "next month")
    assert len(list((tmp_path / ".runs").iterdir())) == 2  # now it is gone: one run folder per month
    assert visible(tmp_path) == ["2025-11", "2025-12"]


def test_a_run_killed_while_writing_leaves_the_old_month_whole_and_the_next_run_cleans_up(tmp_path):
    write_month(tmp_path, "2025-11", "old")
    marker = tmp_path.parent / "writing"
    proc = child(f"""
        import time
        from pathlib import Path
        from riskstrat.scoring.publish import month_folder
        with month_folder(Path({str(tmp_path)!r}) / "2025-11") as tmp:
            (tmp / "population.parquet").write_text("person-level rows")
            Path({str(marker)!r}).write_text("")
            time.sleep(60)
    """, marker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert files(tmp_path / "2025-11") == {"practices/list.csv": "old"}
    assert len(list((tmp_path / ".runs").iterdir())) == 2  # the killed run's folder, with person-level rows
    write_month(tmp_path, "2025-10", "other month")
    runs = sorted(p.name for p in (tmp_path / ".runs").iterdir())
    assert len(runs) == 2 and not any((tmp_path / ".runs" / r / "population.parquet").exists() for r in runs)


def test_stale_temporary_folders_of_earlier_versions_are_removed(tmp_path):
    # Named as the writer before run folders named them: tempfile.mkdtemp(prefix=".<month>.tmp-" / ".old-").
    (tmp_path / ".2025-11.tmp-abc12_9z").mkdir(parents=True)
    (tmp_path / ".2025-11.tmp-abc12_9z" / "population.parquet").write_text("rows")
    (tmp_path / ".2025-10.old-xyzw0123").mkdir()
    (tmp_path / ".2025-10.link-0123456789ab").symlink_to(".runs/2025-10-0123456789ab")  # this version's, killed
    write_month(tmp_path, "2025-11", "new")
    assert visible(tmp_path) == ["2025-11"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name or ".link-" in p.name]


def test_entries_in_the_output_folder_not_named_and_shaped_as_riskstrats_own_are_left_and_reported(tmp_path, root):
    """The red team's case: a person's backup and work folder beside the months were rmtree'd."""
    outside = canary_folder(tmp_path)
    planted = {".2025-11.old-backup": "dir", ".my.tmp-work": "dir",       # not the old writer's names
               ".2025-11.tmp-abcd1234": "link", ".2025-11.old-abcd1234": "file",  # its names, not real folders
               ".2025-11.link-0123456789ab": "dir", ".2025-11.link-0123456789": "link"}  # a folder; short hex
    for name, kind in planted.items():
        if kind == "dir":
            (root / name).mkdir()
            (root / name / "kept.txt").write_text(name)
        elif kind == "file":
            (root / name).write_text(name)
        else:
            (root / name).symlink_to(outside, target_is_directory=True)
    with output_lock(root):
        pass
    for name, kind in planted.items():
        assert (root / name).is_symlink() if kind == "link" else (root / name).exists(), name
        if kind == "dir":
            assert (root / name / "kept.txt").read_text() == name
    assert_canaries(outside)
    cleaned = [json.loads(line) for line in (root / publish.AUDIT_LOG).read_text().splitlines()
               if json.loads(line)["event"] == "cleaned"]
    assert cleaned[-1]["removed"] == [] and cleaned[-1]["left_unmarked"] == sorted(planted)


def test_a_month_written_by_an_earlier_version_is_replaced_whole(tmp_path):
    legacy = tmp_path / "2025-11"
    (legacy / "practices").mkdir(parents=True)
    (legacy / "practices" / "list.csv").write_text("legacy")
    with pytest.raises(AlreadyPublishedError, match="a month folder written by an earlier riskstrat"):
        write_month(tmp_path, "2025-11", "new")
    write_month(tmp_path, "2025-11", "new", replace=True)
    assert legacy.is_symlink() and files(legacy) == {"practices/list.csv": "new"}
    kept = [p for p in (tmp_path / ".runs").iterdir() if "-legacy-" in p.name]  # kept until the next publish
    assert len(kept) == 1 and files(kept[0]) == {"practices/list.csv": "legacy"}
    write_month(tmp_path, "2025-12", "next")
    assert not kept[0].exists() and len(list((tmp_path / ".runs").iterdir())) == 2


def test_a_legacy_month_that_is_a_symlink_is_not_migrated(tmp_path):
    outside = canary_folder(tmp_path)
    root = tmp_path / "lists"
    root.mkdir()
    (root / "2025-11").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PublishError, match=r"2025-11 is a symbolic link to .*outside.*riskstrat did not make"):
        write_month(root, "2025-11", "new", replace=True)
    assert_canaries(outside)
    assert (root / "2025-11").is_symlink() and os.readlink(root / "2025-11") == str(outside)


def test_a_failure_while_writing_leaves_the_month_untouched(tmp_path):
    write_month(tmp_path, "2025-11", "good")
    with pytest.raises(RuntimeError):
        with month_folder(tmp_path / "2025-11", replace=True) as tmp:
            (tmp / "x").write_text("half")
            raise RuntimeError("boom")
    assert files(tmp_path / "2025-11") == {"practices/list.csv": "good"}
    assert len(list((tmp_path / ".runs").iterdir())) == 1


def test_a_second_writer_is_refused_and_told_who_holds_the_lock(tmp_path):
    marker = tmp_path.parent / "locked"
    proc = child(f"""
        import time
        from pathlib import Path
        from riskstrat.scoring.publish import output_lock
        with output_lock({str(tmp_path)!r}):
            Path({str(marker)!r}).write_text("")
            time.sleep(60)
    """, marker)
    try:
        with pytest.raises(OutputLockedError, match=rf"being written by user \S+, pid {proc.pid} on .*since 20\d\d-"):
            write_month(tmp_path, "2025-11", "second")
        assert not (tmp_path / "2025-11").exists()
        refused = json.loads((tmp_path / publish.AUDIT_LOG).read_text().splitlines()[-1])
        assert refused["event"] == "refused" and f"pid {proc.pid}" in refused["error"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    write_month(tmp_path, "2025-11", "after")  # a killed holder's lock goes with it (nothing was published)
    assert files(tmp_path / "2025-11") == {"practices/list.csv": "after"}


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    with output_lock(tmp_path):
        write_month(tmp_path, "2025-11", "inside")
    assert files(tmp_path / "2025-11") == {"practices/list.csv": "inside"}


def test_an_output_path_that_is_a_file_is_a_refusal(tmp_path):
    (tmp_path / "lists").write_text("not a folder")
    with pytest.raises(PublishError, match="is a file, not a folder"):
        write_month(tmp_path / "lists", "2025-11", "x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only folder")
def test_a_read_only_output_folder_is_a_refusal(tmp_path):
    root = tmp_path / "lists"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(PublishError, match="read-only"):
            write_month(root, "2025-11", "x")
    finally:
        root.chmod(0o755)


def test_a_read_only_output_folder_is_a_refusal_even_for_root(tmp_path, monkeypatch):
    root = tmp_path / "lists"
    root.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PublishError, match="read-only"):
        write_month(root, "2025-11", "x")


def test_the_audit_log_is_appended_one_json_line_per_event(tmp_path):
    append_audit(tmp_path, "started", month="2025-11")
    append_audit(tmp_path, "published", month="2025-11", files={"a.csv": "00"})
    lines = [json.loads(line) for line in (tmp_path / publish.AUDIT_LOG).read_text().splitlines()]
    assert [line["event"] for line in lines] == ["started", "published"]
    assert {"user", "pid", "time", "command"} <= set(lines[0])


@pytest.mark.parametrize(("scored", "previous", "refused"), [
    (0, None, "no one was scored"), (0, 100, "no one was scored"), (79, 100, "21% fewer"),
    (80, 100, None), (100, None, None), (150, 100, None),
])
def test_a_month_with_no_one_or_a_shrunken_population_is_refused(scored, previous, refused):
    if refused:
        with pytest.raises(PublishRefusedError, match=refused):
            check_population(scored, previous, max_shrink=0.2, allow=False)
        assert issubclass(PublishRefusedError, RiskstratError)
    else:
        check_population(scored, previous, max_shrink=0.2, allow=False)
    check_population(scored, previous, max_shrink=0.2, allow=True)  # forced


# ----------------------------------------------------------------------------- the output folder is a trust boundary
# Each test plants something inside the output folder (tmp_path / "lists") that points OUTSIDE it
# (tmp_path / "outside"), and checks that the outside files survive byte for byte.

CANARIES = {"canary.txt": b"must survive\n", "deep/canary.bin": bytes(range(256))}


def canary_folder(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    for name, data in CANARIES.items():
        (outside / name).parent.mkdir(parents=True, exist_ok=True)
        (outside / name).write_bytes(data)
    return outside


def assert_canaries(outside: Path) -> None:
    found = {p.relative_to(outside).as_posix(): p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    assert found == CANARIES


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "lists"
    root.mkdir()
    return root


@pytest.mark.parametrize("pointing", ["absolute", "relative", "through .runs"])
def test_a_month_planted_as_a_link_to_another_folder_is_refused_and_its_target_survives(tmp_path, root, pointing):
    outside = canary_folder(tmp_path)
    write_month(root, "2025-10", "october")  # .runs exists
    link = {"absolute": str(outside), "relative": "../outside", "through .runs": ".runs/../../outside"}[pointing]
    (root / "2025-11").symlink_to(link, target_is_directory=True)
    for replace in (False, True):
        with pytest.raises(PublishError, match=rf"{root / '2025-11'} is a symbolic link to .*did not make"):
            write_month(root, "2025-11", "new", replace=replace)
    assert_canaries(outside)
    assert os.readlink(root / "2025-11") == link
    assert len(list((root / ".runs").iterdir())) == 1  # no run folder of the refused runs is left


def test_a_month_link_to_an_unmarked_folder_inside_runs_is_refused_and_the_folder_kept(root):
    write_month(root, "2025-10", "october")
    planted = root / ".runs" / "2025-11-000000000000"
    planted.mkdir()
    (planted / "data.csv").write_text("not riskstrat's")
    (root / "2025-11").symlink_to(".runs/2025-11-000000000000")
    with pytest.raises(PublishError, match=r"2025-11 is a symbolic link to \.runs/2025-11-000000000000.*marker"):
        write_month(root, "2025-11", "new", replace=True)
    assert (planted / "data.csv").read_text() == "not riskstrat's"


def test_a_month_link_to_another_months_run_folder_is_refused(root):
    october = write_month(root, "2025-10", "october")
    (root / "2025-11").symlink_to(os.readlink(october))
    with pytest.raises(PublishError, match="2025-11 is a symbolic link"):
        write_month(root, "2025-11", "new", replace=True)
    assert files(october) == {"practices/list.csv": "october"}


def test_runs_planted_as_a_link_is_refused_and_nothing_there_is_removed(tmp_path, root):
    outside = canary_folder(tmp_path)
    (root / ".runs").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PublishError, match=r"lists/\.runs is a symbolic link .*move the whole output_dir"):
        write_month(root, "2025-11", "x")
    assert_canaries(outside)  # clean_stale would have removed them, and the run folder written there
    with pytest.raises(PublishError, match=r"\.runs is a symbolic link"):
        clean_stale(root)
    assert_canaries(outside)


@pytest.mark.parametrize("name", [publish.LOCK, publish.AUDIT_LOG])
def test_the_lock_or_audit_log_planted_as_a_link_is_refused_and_its_target_untouched(tmp_path, root, name):
    outside = canary_folder(tmp_path)
    (root / name).symlink_to(outside / "canary.txt")
    with pytest.raises(PublishError, match=rf"lists/{re.escape(name)}: the .* is a symbolic link .*did not make"):
        write_month(root, "2025-11", "x")
    with pytest.raises(PublishError, match=rf"lists/{re.escape(name)}: .*symbolic link"):
        append_audit(root, "started") if name == publish.AUDIT_LOG else output_lock(root).__enter__()
    assert_canaries(outside)  # not truncated (the lock), nothing appended (the audit log)
    assert not (root / "2025-11").exists()


@pytest.mark.parametrize("name", [publish.LOCK, publish.AUDIT_LOG])
def test_the_lock_or_audit_log_as_a_hard_link_to_an_outside_file_is_refused(tmp_path, root, name):
    outside = canary_folder(tmp_path)
    os.link(outside / "canary.txt", root / name)
    with pytest.raises(PublishError, match=rf"lists/{re.escape(name)}: .* 2 names \(a hard link"):
        write_month(root, "2025-11", "x")
    assert_canaries(outside)


@pytest.mark.parametrize("name", [publish.LOCK, publish.AUDIT_LOG])
def test_the_lock_or_audit_log_as_a_folder_is_a_publish_error_naming_it(root, name):
    (root / name).mkdir()
    with pytest.raises(PublishError, match=rf"lists/{re.escape(name)}: the .* is a folder, not a file; move it away"):
        write_month(root, "2025-11", "x")


@pytest.mark.parametrize("name", [publish.LOCK, publish.AUDIT_LOG])
def test_an_operation_not_permitted_on_the_lock_or_audit_log_is_a_publish_error_naming_it(root, name, monkeypatch):
    real_open = os.open

    def immutable(path, flags, *args, **kwargs):  # as chattr +i or +a would (needs root and a real file system)
        if Path(path).name == name:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real_open(path, flags, *args, **kwargs)

    (root / name).write_text("")
    monkeypatch.setattr(os, "open", immutable)
    with pytest.raises(PublishError, match=rf"lists/{re.escape(name)}: the .* cannot be opened for writing"):
        write_month(root, "2025-11", "x")
    if name == publish.AUDIT_LOG:
        with pytest.raises(PublishError, match=rf"lists/{re.escape(name)}: the audit log cannot be opened"):
            append_audit(root, "started")


def test_a_link_planted_at_a_file_the_run_writes_is_replaced_not_followed(tmp_path, root):
    outside = canary_folder(tmp_path)
    from riskstrat.scoring import lists

    with month_folder(root / "2025-11") as tmp:
        (tmp / "practices").mkdir()
        (tmp / "practices" / "list.csv").symlink_to(outside / "canary.txt")  # planted while the run writes
        (tmp / "practices" / "list.html").symlink_to(outside / "deep" / "canary.bin")
        write_text("ours", tmp / "practices" / "list.csv")
        lists._write_bytes(b"ours too", tmp / "practices" / "list.html")  # the lists' writer
    assert_canaries(outside)
    assert files(root / "2025-11") == {"practices/list.csv": "ours", "practices/list.html": "ours too"}
    assert not any(p.is_symlink() for p in (root / "2025-11").rglob("*"))


def test_a_run_folder_holding_a_planted_link_is_not_published_and_removed_without_following_it(tmp_path, root):
    outside = canary_folder(tmp_path)
    write_month(root, "2025-11", "good")
    with pytest.raises(PublishError, match=r"practices/extra is a symbolic link \(to .*outside\) that riskstrat did"):
        with month_folder(root / "2025-11", replace=True) as tmp:
            (tmp / "practices").mkdir()
            write_text("new", tmp / "practices" / "list.csv")
            (tmp / "practices" / "extra").symlink_to(outside, target_is_directory=True)
    assert_canaries(outside)  # rmtree of the refused run folder removed the link, not what it points to
    assert files(root / "2025-11") == {"practices/list.csv": "good"}
    assert len(list((root / ".runs").iterdir())) == 1


def test_a_run_folder_is_private_while_written_and_marked(root):
    with month_folder(root / "2025-11") as tmp:
        assert tmp.stat().st_mode & 0o777 == 0o700
        marker = json.loads((tmp / publish.MARKER).read_text())
        assert marker["run"] == tmp.name and marker["month"] == "2025-11"
    assert (root / "2025-11").resolve().stat().st_mode & 0o077  # readable as the umask says once published


def test_entries_in_runs_without_the_marker_are_left_and_reported(tmp_path, root):
    outside = canary_folder(tmp_path)
    write_month(root, "2025-10", "october")
    runs = root / ".runs"
    (runs / "2025-09-abcdef123456").mkdir()  # looks like a run folder, but riskstrat did not mark it
    (runs / "2025-09-abcdef123456" / "population.parquet").write_text("someone's")
    (runs / "notes.txt").write_text("a note")
    (runs / "elsewhere").symlink_to(outside, target_is_directory=True)
    forged = runs / "2025-08-forged000000"
    forged.mkdir()
    (forged / publish.MARKER).symlink_to(outside / "canary.txt")  # a marker must be a regular file
    killed = runs / "2025-11-killed000000"
    killed.mkdir()
    (killed / publish.MARKER).write_text(json.dumps({"run": killed.name, "month": "2025-11"}))
    write_month(root, "2025-11", "november")
    assert not killed.exists()  # riskstrat's own, published by no month: removed
    assert (runs / "2025-09-abcdef123456" / "population.parquet").read_text() == "someone's"
    assert (runs / "notes.txt").read_text() == "a note" and (runs / "elsewhere").is_symlink() and forged.is_dir()
    assert_canaries(outside)
    cleaned = [json.loads(line) for line in (root / publish.AUDIT_LOG).read_text().splitlines()
               if json.loads(line)["event"] == "cleaned"]
    assert cleaned[-1]["removed"] == [".runs/2025-11-killed000000"]
    assert cleaned[-1]["left_unmarked"] == [".runs/2025-08-forged000000", ".runs/2025-09-abcdef123456",
                                            ".runs/elsewhere", ".runs/notes.txt"]


MODELS_A = {"riskstrat-emergency-admission": {"version": "3", "run_id": "r3"}}
MODELS_B = {"riskstrat-emergency-admission": {"version": "4", "run_id": "r4"}}


def test_republishing_a_month_is_refused_naming_both_runs_models_unless_replace(root):
    month = write_month(root, "2025-11", "first", models=MODELS_A)
    first_run = os.readlink(month)
    both = r"2025-11 is already published .*emergency-admission v3\); this run \(riskstrat-emergency-admission v4\)"
    with pytest.raises(AlreadyPublishedError, match=both + ".*--replace"):
        write_month(root, "2025-11", "second", models=MODELS_B)
    with pytest.raises(AlreadyPublishedError, match=r"v3\); this run \(.* v4\)"):  # the early check (before scoring)
        publish.check_republish(root, "2025-11", replace=False, models=MODELS_B)
    assert files(month) == {"practices/list.csv": "first"} and len(list((root / ".runs").iterdir())) == 1
    with pytest.raises(AlreadyPublishedError, match="of the same models, gives other lists"):
        write_month(root, "2025-11", "other text", models=MODELS_A)
    write_month(root, "2025-11", "first", models=MODELS_A)  # byte-identical manifest: a retry, allowed

    write_month(root, "2025-11", "second", models=MODELS_B, replace=True)
    assert files(month) == {"practices/list.csv": "second"}
    replaced = [json.loads(line) for line in (root / publish.AUDIT_LOG).read_text().splitlines()
                if json.loads(line)["event"] == "replaced"][-1]
    assert replaced["month"] == "2025-11" and replaced["run_folder"] == os.readlink(month)
    assert replaced["models"] == MODELS_B and replaced["previous_models"] == MODELS_A
    kept = root / replaced["previous_run_folder"]
    assert files(kept) == {"practices/list.csv": "first"}  # the replaced run stays until the next publish
    assert json.loads((kept / publish.MARKER).read_text())["replaced_by"] == Path(os.readlink(month)).name
    assert first_run != replaced["previous_run_folder"]  # the identical retry had replaced the first run
    write_month(root, "2025-12", "december")
    assert not kept.exists()


def test_the_atomic_writer_replaces_a_linked_folder_without_touching_its_target(tmp_path, root):
    from riskstrat.data.io import atomic_path

    from riskstrat.data.io import FolderNotOursError

    outside = canary_folder(tmp_path)
    (root / "data").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FolderNotOursError):  # the link leads to a folder riskstrat did not write
        with atomic_path(root / "data", directory=True, kind="data set") as tmp:
            (tmp / "persons.parquet").write_text("new")
    assert_canaries(outside)
    assert (root / "data").is_symlink()
    # A link to a data set riskstrat wrote: the link itself is replaced, the folder it led to untouched.
    ours = tmp_path / "ours"
    with atomic_path(ours, directory=True, kind="data set") as tmp:
        (tmp / "persons.parquet").write_text("old")
    (root / "data").unlink()
    (root / "data").symlink_to(ours, target_is_directory=True)
    with atomic_path(root / "data", directory=True, kind="data set") as tmp:
        (tmp / "persons.parquet").write_text("new")
    assert (ours / "persons.parquet").read_text() == "old"
    assert not (root / "data").is_symlink() and (root / "data" / "persons.parquet").read_text() == "new"
    assert sorted(p.name for p in root.iterdir()) == ["data"]  # the link itself removed, no .old- left


def test_an_output_folder_that_cannot_be_created_is_a_refusal_naming_it(tmp_path):
    from riskstrat.scoring.publish import output_root

    with pytest.raises(PublishError, match=r"/proc/riskstrat-review: cannot create the output folder \(.*\); choose"):
        output_root("/proc/riskstrat-review")
