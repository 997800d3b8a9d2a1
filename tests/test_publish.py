"""Publishing a month: one atomic step, one writer at a time, stale run folders cleaned, an audit log.

Faults are real: a subprocess killed with SIGKILL while writing or holding the lock, a read-only
folder, an output path that is a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from riskstrat import publish
from riskstrat.errors import RiskstratError
from riskstrat.publish import (OutputLockedError, PublishError, PublishRefusedError, append_audit, check_population,
                               month_folder, output_lock)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def write_month(root: Path, month: str, text: str) -> Path:
    with month_folder(root / month) as tmp:
        (tmp / "practices").mkdir()
        (tmp / "practices" / "list.csv").write_text(text)
    return root / month


def files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


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
    write_month(tmp_path, "2025-11", "second")
    assert files(month) == {"practices/list.csv": "second"}
    assert len(list((tmp_path / ".runs").iterdir())) == 1  # the replaced run folder is gone
    assert visible(tmp_path) == ["2025-11"]


def test_a_run_killed_while_writing_leaves_the_old_month_whole_and_the_next_run_cleans_up(tmp_path):
    write_month(tmp_path, "2025-11", "old")
    marker = tmp_path.parent / "writing"
    proc = child(f"""
        import time
        from pathlib import Path
        from riskstrat.publish import month_folder
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
    (tmp_path / ".2025-11.tmp-abc123").mkdir(parents=True)
    (tmp_path / ".2025-11.tmp-abc123" / "population.parquet").write_text("rows")
    (tmp_path / ".2025-10.old-xyz").mkdir()
    write_month(tmp_path, "2025-11", "new")
    assert visible(tmp_path) == ["2025-11"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_a_month_written_by_an_earlier_version_is_replaced_whole(tmp_path):
    legacy = tmp_path / "2025-11"
    (legacy / "practices").mkdir(parents=True)
    (legacy / "practices" / "list.csv").write_text("legacy")
    write_month(tmp_path, "2025-11", "new")
    assert legacy.is_symlink() and files(legacy) == {"practices/list.csv": "new"}
    assert len(list((tmp_path / ".runs").iterdir())) == 1


def test_a_failure_while_writing_leaves_the_month_untouched(tmp_path):
    write_month(tmp_path, "2025-11", "good")
    with pytest.raises(RuntimeError):
        with month_folder(tmp_path / "2025-11") as tmp:
            (tmp / "x").write_text("half")
            raise RuntimeError("boom")
    assert files(tmp_path / "2025-11") == {"practices/list.csv": "good"}
    assert len(list((tmp_path / ".runs").iterdir())) == 1


def test_a_second_writer_is_refused_and_told_who_holds_the_lock(tmp_path):
    marker = tmp_path.parent / "locked"
    proc = child(f"""
        import time
        from pathlib import Path
        from riskstrat.publish import output_lock
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
    write_month(tmp_path, "2025-11", "after")  # a killed holder's lock goes with it
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
