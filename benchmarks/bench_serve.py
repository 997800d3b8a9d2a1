#!/usr/bin/env python
"""The worklist (``riskstrat serve``) under load: coordinators working through their lists at once.

    .venv/bin/python benchmarks/bench_serve.py --people 1000000 --coordinators 50 --duration 120   # the target
    .venv/bin/python benchmarks/bench_serve.py --people 100000 --coordinators 10 --duration 30     # a quick check

1. **A published month** of ``--people`` people in ``--per-practice`` (1,500: 666 practices at 1M) is
   written directly in the published format (``YYYY-MM/practices/<code>/list.csv``, ``population.parquet``,
   ``manifest.json`` with each file's SHA-256, as ``riskstrat score`` lays it out): a seeded synthetic
   population's risks (Beta(1.2, 20), no model is trained or run), the top ``--list-share`` (6.6%, the
   share the synthetic 1M month lists) of each practice listed, with the list's columns
   (:data:`riskstrat.scoring.lists.PRACTICE_LIST_COLUMNS`) filled with plausible values.
2. **The server** in its own process (uvicorn, one worker, no access log, as ``riskstrat serve`` runs):
   the month loaded into a fresh database (SQLite in WAL mode in the work folder, or ``--db URL``),
   one coordinator account per practice for the first ``--coordinators`` practices (scrypt at its
   default cost). The load time and the server's peak memory are recorded.
3. **The coordinators** (httpx.AsyncClient, one cookie jar each, all at once, in this process, each
   from its own address as a reverse proxy reports it in ``X-Forwarded-For``): each logs in, then repeats until ``--rounds`` rounds or ``--duration`` seconds: open the practice's list
   (``GET /p/<code>``, timed as *list page*), open one listed person (*person page*), record a status
   for them (``POST .../status``, with the page's CSRF token, timed as *status update*), each request after
   ``--think`` seconds on average (uniform 0.5 to 1.5 times it: reading the page). ``--think 0`` is a
   stress test: every coordinator clicks again the moment a page arrives, so a request's latency is
   mostly its wait behind the others' (about coordinators × service time on one server process).

Reports p50 / p95 / p99 / max per kind of request, requests per second, errors (any exception or
unexpected status code) and the load average before, during and after; prints a table and writes
JSON to ``benchmarks/results/bench_serve.json``. The client shares the machine's cores with the
server, so on a busy machine the latencies include waiting for a core: record the load average and
compare within one run. Targets (issue 25): list page p95 < 200 ms, status update p95 < 100 ms, no error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import RESULTS_DIR, REPO, _proc_status, loadavg, write_json  # noqa: E402

MONTH = "2026-11"
PASSWORD = "benchmark coordinator password"
TARGETS_MS = {"list": 200, "status": 100}


# ----------------------------------------------------------------------------- the month


def build_month(lists_dir: Path, *, people: int, per_practice: int, list_share: float, seed: int) -> dict:
    """A published month in ``lists_dir/MONTH`` made from a seeded synthetic population's risks."""
    from riskstrat.scoring.lists import PRACTICE_LIST_COLUMNS

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_practices = math.ceil(people / per_practice)
    codes = np.array([f"P{80000 + i}" for i in range(n_practices)])
    raw = rng.bytes(8 * people)  # 16 hex characters, as riskstrat's pseudonyms
    ids = np.array([raw[i:i + 8].hex() for i in range(0, 8 * people, 8)])
    population = pd.DataFrame({"person_id": ids, "practice_id": codes[np.arange(people) % n_practices],
                               "risk": rng.beta(1.2, 20, people)})
    population["rank"] = population.groupby("practice_id")["risk"].rank(ascending=False, method="first").astype(int)
    per = population.groupby("practice_id")["person_id"].transform("size")
    population["listed"] = population["rank"] <= np.ceil(per * list_share)
    cut = population["risk"].quantile([0.995, 0.98])
    population["tier"] = np.where(population["risk"] >= cut[0.995], "very high",
                                  np.where(population["risk"] >= cut[0.98], "high", "moderate"))
    population["holdout"] = False
    folder = lists_dir / MONTH
    files = {}
    listed = population.loc[population["listed"]].sort_values(["practice_id", "rank"])
    n = len(listed)
    groups = np.array(["", "frequent users", "care provision 85+", "high-cost individuals"])
    table = pd.DataFrame({
        "Rank": listed["rank"].to_numpy(), "Person ID": listed["person_id"].to_numpy(),
        "Age": rng.integers(45, 99, n), "Sex": rng.choice(["F", "M"], n), "Risk (%)": (listed["risk"] * 100).round(1),
        "Tier": listed["tier"].to_numpy(), "Priority groups": groups[rng.integers(0, 4, n)],
        "Predicted cost": rng.integers(800, 40000, n), "High-cost risk (%)": rng.integers(1, 60, n),
        "Emergency admissions (12m)": rng.integers(0, 6, n), "A&E visits (12m)": rng.integers(0, 9, n),
        "Bed days (12m)": rng.integers(0, 40, n),
        "Top reasons": "2 emergency admissions in the past year; heart failure; 11 repeat medicines",
        "New this month": np.where(rng.random(n) < 0.2, "yes", "")}, columns=list(PRACTICE_LIST_COLUMNS))
    for code, rows in table.groupby(listed["practice_id"].to_numpy(), sort=True):
        path = folder / "practices" / code / "list.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rows.to_csv(index=False).encode("utf-8-sig"))
        files[f"practices/{code}/list.csv"] = path
    population.drop(columns="rank").to_parquet(folder / "population.parquet", index=False)
    files["population.parquet"] = folder / "population.parquet"
    manifest = {"month": MONTH, "as_of": f"{MONTH}-01", "models": {"risk": {"version": "1", "run_id": "bench"}},
                "outcome": {"name": "emergency_admission", "words": "an emergency admission", "horizon_days": 365},
                "config": {"models": {"risk": "risk"}}, "opt_out_file": None,
                "files": {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return {"people": people, "practices": n_practices, "listed": n, "build_seconds": round(time.perf_counter() - started, 1)}


# ----------------------------------------------------------------------------- the server (its own process)


def serve(args) -> None:
    """Load the month, add the coordinators, write the timings, then serve until killed."""
    from riskstrat.serve.app import ServeSettings, create_app, run_server
    from riskstrat.serve.auth import add_user
    from riskstrat.serve.months import load_months

    started = time.perf_counter()
    settings = ServeSettings(lists_dir=Path(args.lists), db_url=args.db, note_retention_days=None)
    app = create_app(settings, load=False)
    with app.state.db() as db:
        load_months(db, settings.lists_dir)
    loaded = time.perf_counter() - started
    practices = json.loads(args.practices)
    started = time.perf_counter()
    with app.state.db() as db:
        for i, code in enumerate(practices):
            add_user(db, f"coord{i}", PASSWORD, role="coordinator", practices=[code])
    write_json(args.timing, {"load_seconds": round(loaded, 2), "users_seconds": round(time.perf_counter() - started, 2)})
    run_server(app, host="127.0.0.1", port=args.port)


# ----------------------------------------------------------------------------- the coordinators


CSRF = re.compile(r'<meta name="csrf" content="([^"]+)"')
LOGIN_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PSEUDONYM = re.compile(r'<tr data-pseudonym="([0-9a-f]+)"')
STATUSES = ["reviewed_mdt", "contacted", "enrolled", "declined", "to_review"]


async def coordinator(i: int, practice: str, base: str, *, rounds: int, deadline: float, timings: dict,
                      errors: list, seed: int, think: float) -> None:
    import httpx

    rng = random.Random(seed + i)

    async def timed(kind: str, method: str, url: str, expect: int, **kwargs):
        if think and kind != "login":  # a person reads the page before the next click
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))
        start = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is an error, counted
            errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:200])
            return None
        timings[kind].append(1000 * (time.perf_counter() - start))
        if response.status_code != expect:
            errors.append(f"{kind}: HTTP {response.status_code}")
            return None
        return response

    # Each coordinator from their own machine, as the reverse proxy in front reports it (uvicorn trusts
    # X-Forwarded-For from 127.0.0.1): the login rate limit is per client address, and 50 logins from
    # one address in a minute would be refused as an attack.
    headers = {"X-Forwarded-For": f"10.0.{i // 250}.{i % 250 + 1}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, follow_redirects=False, headers=headers) as client:
        form = await timed("login", "GET", "/login", 200)
        if form is None:
            return
        token = LOGIN_CSRF.search(form.text).group(1)
        if await timed("login", "POST", "/login", 303,
                       data={"csrf": token, "username": f"coord{i}", "password": PASSWORD}) is None:
            return
        for _ in range(rounds):
            if time.perf_counter() > deadline:
                break
            page = await timed("list", "GET", f"/p/{practice}", 200)
            if page is None:
                continue
            people, csrf = PSEUDONYM.findall(page.text), CSRF.search(page.text).group(1)
            if not people:
                errors.append("list: no rows")
                continue
            person = rng.choice(people)
            if await timed("person", "GET", f"/p/{practice}/person/{person}", 200) is None:
                continue
            status = rng.choice(STATUSES)
            await timed("status", "POST", f"/p/{practice}/person/{person}/status", 303,
                        data={"csrf": csrf, "status": status, "note": f"benchmark round note {rng.random():.6f}",
                              "next_review": "2027-01-15"})


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1), "max_ms": round(float(a.max()), 1)}


async def drive(base: str, practices: list[str], *, rounds: int, duration: float, seed: int, think: float,
                loads: list) -> dict:
    timings = {"login": [], "list": [], "person": [], "status": []}
    errors: list[str] = []
    deadline = time.perf_counter() + duration

    async def watch():
        while True:
            loads.append(loadavg()[0])
            await asyncio.sleep(5)

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    await asyncio.gather(*(coordinator(i, p, base, rounds=rounds, deadline=deadline, timings=timings, errors=errors,
                                       seed=seed, think=think) for i, p in enumerate(practices)))
    wall = time.perf_counter() - started
    watcher.cancel()
    return {"wall_seconds": round(wall, 1), "timings": timings, "errors": errors}


# ----------------------------------------------------------------------------- main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--per-practice", type=int, default=1500)
    parser.add_argument("--list-share", type=float, default=0.066)
    parser.add_argument("--coordinators", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40, help="Rounds (list, person, status) per coordinator, at most.")
    parser.add_argument("--duration", type=float, default=120, help="Seconds of load, at most.")
    parser.add_argument("--think", type=float, default=1.0,
                        help="Mean seconds a coordinator spends on a page before the next request (0: none, a "
                             "stress test whose latency is the queue of all coordinators' requests).")
    parser.add_argument("--db", help="Database URL (default: a fresh SQLite file in the work folder).")
    parser.add_argument("--workdir", type=Path, help="Where the month and database go (default: a temp folder, removed).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="bench_serve")
    parser.add_argument("--_serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lists", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--timing", help=argparse.SUPPRESS)
    parser.add_argument("--practices", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._serve:
        serve(args)
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    result = {"args": {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in
                       ("lists", "port", "timing", "practices")}, "loadavg_start": loadavg()}
    out_path = RESULTS_DIR / f"{args.name}.json"
    server = None
    try:
        result["month"] = build_month(work / "lists", people=args.people, per_practice=args.per_practice,
                                      list_share=args.list_share, seed=args.seed)
        print(f"month: {result['month']['people']:,} people, {result['month']['practices']} practices, "
              f"{result['month']['listed']:,} listed, built in {result['month']['build_seconds']} s", flush=True)
        practices = [f"P{80000 + i}" for i in range(min(args.coordinators, result["month"]["practices"]))]
        db = args.db or f"sqlite:///{work / 'worklist.db'}"
        port, timing = free_port(), work / "server-timing.json"
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        server = subprocess.Popen([sys.executable, __file__, "--_serve", "--lists", str(work / "lists"), "--db", db,
                                   "--port", str(port), "--timing", str(timing), "--practices", json.dumps(practices)],
                                  env=env)
        base = f"http://127.0.0.1:{port}"
        import httpx

        for _ in range(1200):  # the month loads first: up to 10 minutes at 1M on a busy machine
            if server.poll() is not None:
                raise SystemExit(f"the server exited ({server.returncode}) before serving")
            try:
                if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        result["server"] = json.loads(timing.read_text())
        print(f"server: month loaded in {result['server']['load_seconds']} s, {len(practices)} coordinators added "
              f"in {result['server']['users_seconds']} s", flush=True)
        loads: list[float] = []
        ran = asyncio.run(drive(base, practices, rounds=args.rounds, duration=args.duration, seed=args.seed,
                                think=args.think, loads=loads))
        result["server"].update(memory_mib=_proc_status(server.pid))
        total = sum(len(v) for v in ran["timings"].values())
        result.update(wall_seconds=ran["wall_seconds"], requests=total,
                      requests_per_second=round(total / ran["wall_seconds"], 1) if ran["wall_seconds"] else None,
                      latency={k: percentiles(v) for k, v in ran["timings"].items()},
                      errors=len(ran["errors"]), error_examples=sorted(set(ran["errors"]))[:10],
                      loadavg_during=loads, loadavg_end=loadavg())
        result["targets_met"] = {k: result["latency"][k].get("p95_ms", math.inf) < ms for k, ms in TARGETS_MS.items()}
        result["targets_met"]["no_errors"] = result["errors"] == 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        write_json(out_path, result)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'request':<10}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for kind, row in result["latency"].items():
        if row["n"]:
            print(f"{kind:<10}{row['n']:>7}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['p99_ms']:>9}{row['max_ms']:>9}")
    print(f"\n{result['requests']:,} requests in {result['wall_seconds']} s ({result['requests_per_second']}/s), "
          f"errors {result['errors']}; load average start {result['loadavg_start']}, during {result['loadavg_during']}, "
          f"end {result['loadavg_end']}; server memory {result['server']['memory_mib']}")
    print(f"targets (list p95 < 200 ms, status p95 < 100 ms, no error): {result['targets_met']}")
    print(f"results: {out_path}")


if __name__ == "__main__":
    main()
