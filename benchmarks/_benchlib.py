"""Shared helpers for the benchmark scripts (not part of the riskstrat package).

Each measured piece of work runs in a fresh worker subprocess so that its peak resident memory is
its own. The parent watches the worker through /proc: it records the high-water mark (VmHWM) even
when the worker dies, and kills the worker when it grows past a memory limit or the machine runs
short of memory, so a benchmark cannot take down other people's processes. The worker writes its
(partial) result to a JSON file after every step, so a killed worker still says how far it got.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parent
MIB = 1024 * 1024


# ----------------------------------------------------------------------------- environment


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB."""
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _git() -> dict:
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def environment() -> dict:
    """Versions, machine and date, for the JSON results."""
    import lightgbm
    import numpy
    import pandas
    import pyarrow
    import sklearn

    try:
        from importlib.metadata import version

        riskstrat_version = version("riskstrat")
    except Exception:  # noqa: BLE001 - informational only
        riskstrat_version = None
    mem = _meminfo()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "lightgbm": lightgbm.__version__,
        "pyarrow": pyarrow.__version__,
        "scikit-learn": sklearn.__version__,
        "riskstrat": riskstrat_version,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gib": round(mem.get("MemTotal", 0) / MIB, 1),
        "mem_available_gib_at_start": round(mem.get("MemAvailable", 0) / MIB, 1),
        "loadavg_at_start": loadavg(),
        "git": _git(),
    }


# ----------------------------------------------------------------------------- files


def write_json(path: str | Path, obj) -> Path:
    """Write JSON atomically (temp file in the same folder, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def dir_size_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ----------------------------------------------------------------------------- memory


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_rss_mib() -> float | None:
    status = _proc_status(os.getpid())
    return status.get("VmRSS")


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far (VmHWM): read at each stage mark, it says which
    stage set the peak."""
    return _proc_status(os.getpid()).get("VmHWM")


def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of a process in MiB ({} once it has gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = round(int(value.split()[0]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return out


# ----------------------------------------------------------------------------- workers


class Reporter:
    """Used inside a worker: accumulates the result and rewrites the result file after each step."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.result: dict = {"ok": None, "step": "starting", "loadavg_start": loadavg()}
        self.flush()

    def step(self, name: str) -> None:
        """Mark the step now running (a worker killed during it is reported as failing in it)."""
        self.result["step"] = name
        self.flush()

    def update(self, **values) -> None:
        self.result.update(values)
        self.result["rss_now_mib"] = current_rss_mib()
        self.result["peak_rss_mib"] = peak_rss_mib()
        self.flush()

    def flush(self) -> None:
        write_json(self.path, self.result)


class StageTimer:
    """A ``stage(message)`` callback for riskstrat pipelines: times the gap since the last message,
    prints it, and keeps the list in the report under ``key``."""

    def __init__(self, rep: "Reporter", key: str) -> None:
        self.rep, self.key = rep, key
        self.marks: list[dict] = []
        self.t0 = self.last = time.perf_counter()

    def mark(self, message: str) -> None:
        now = time.perf_counter()
        self.marks.append({"message": message, "seconds": round(now - self.last, 2), "rss_mib": current_rss_mib()})
        self.last = now

    def __call__(self, message: str) -> None:
        self.mark(message)
        print(f"    {time.perf_counter() - self.t0:7.1f} s  {message}", flush=True)
        self.rep.update(**{self.key: self.marks})


def worker_main(result_path: str, fn: Callable[[Reporter], None]) -> int:
    """Run ``fn`` in this (worker) process; record success, MemoryError or any other failure."""
    rep = Reporter(result_path)
    try:
        fn(rep)
    except MemoryError:
        rep.result.update(ok=False, error="MemoryError", traceback=traceback.format_exc(limit=8))
        rep.update()
        return 3
    except Exception as exc:  # noqa: BLE001 - recorded, not hidden
        rep.result.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000], traceback=traceback.format_exc(limit=8))
        rep.update()
        return 2
    rep.result.update(ok=True, step="done", loadavg_end=loadavg())
    rep.update()
    return 0


def run_worker(cmd: list[str], *, mem_limit_mib: float | None = None, min_available_mib: float = 1024,
               timeout_s: float | None = None, poll_s: float = 0.25) -> dict:
    """Run ``cmd`` (a worker invocation that gets ``--_result FILE`` appended) and watch it.

    Returns the worker's result dict plus ``returncode``, ``wall_seconds``, ``peak_rss_mib``
    (VmHWM seen from outside; also set when the worker was killed) and, on failure, ``failure``.
    """
    fd, result_path = tempfile.mkstemp(prefix="bench-result-", suffix=".json")
    os.close(fd)
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "--_result", result_path])
    hwm = 0.0
    killed_for = None
    try:
        while proc.poll() is None:
            st = _proc_status(proc.pid)
            hwm = max(hwm, st.get("VmHWM", 0.0))
            avail = _meminfo().get("MemAvailable", 0) / 1024
            if mem_limit_mib and st.get("VmRSS", 0) > mem_limit_mib:
                killed_for = f"resident memory passed the limit of {mem_limit_mib:,.0f} MiB"
            elif avail and avail < min_available_mib:
                killed_for = f"machine had under {min_available_mib:,.0f} MiB available"
            elif timeout_s and time.perf_counter() - t0 > timeout_s:
                killed_for = f"timed out after {timeout_s:,.0f} s"
            if killed_for:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise
    wall = time.perf_counter() - t0
    try:
        result = json.loads(Path(result_path).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        result = {}
    finally:
        Path(result_path).unlink(missing_ok=True)
    rc = proc.returncode
    result["returncode"] = rc
    result["process_wall_seconds"] = round(wall, 2)
    # The worker's own ru_maxrss is exact; the outside VmHWM covers a killed worker too.
    result["peak_rss_mib"] = max(result.get("peak_rss_mib") or 0.0, hwm) or None
    if killed_for:
        result.update(ok=False, failure=f"killed by the benchmark: {killed_for}")
    elif rc != 0 and result.get("ok") is not False:
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        hint = " (SIGKILL: probably the kernel's out-of-memory killer)" if rc == -signal.SIGKILL else ""
        result.update(ok=False, failure=f"worker died with {how}{hint}")
    elif result.get("ok") is False:
        result["failure"] = result.get("error")
    return result


# ----------------------------------------------------------------------------- tables


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain-text table; ``columns`` are (key, header)."""
    def cell(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    body = [[cell(r.get(k)) for k, _ in columns] for r in rows]
    heads = [h for _, h in columns]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(heads), line(["-" * w for w in widths]), *(line(b) for b in body)])


def worker_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """Split off ``--_result FILE`` (present only in worker invocations)."""
    if "--_result" in argv:
        i = argv.index("--_result")
        return argv[i + 1], argv[:i] + argv[i + 2:]
    return None, argv
