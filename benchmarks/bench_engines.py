"""Load + features for one index date: the pandas engine, the DuckDB engine, a bare DuckDB query, and Spark.

    .venv/bin/python benchmarks/bench_engines.py --data /tmp/riskstrat-bench/synth-100000-seed42 [--repeats 3] [--spark]

Every measurement runs in a fresh worker process (peak RSS is its own); the runs are interleaved
(pandas, duckdb, bare, pandas, ...) so that a busy moment on the shared machine hits all three:

- ``pandas``: ``load_records`` (read + validate every table) then ``build_features``.
- ``duckdb``: ``DuckDBEngine(folder)`` (persons validated in pandas, the event tables' checks as SQL
  counts) then ``.features(T)`` (one query per table: cleaning, counts and aggregates, then the
  derived features in numpy).
- ``bare``: the same aggregate queries (``DuckDBEngine.aggregate_sql``, written out by the parent)
  run on a fresh DuckDB connection with persons read straight from Parquet, results fetched into
  pandas; no validation, no checks, no derived features: the floor the engine is compared with.
- ``spark`` (with ``--spark``; needs the spark extra): a local Spark session (``--spark-master``,
  default ``local[2]``; its start is timed apart, ``session_seconds``, and not in the total, as a
  cluster's session exists already), ``SparkEngine(folder)`` then ``.features(T)``. The JVM is a
  child process: its peak resident memory is ``jvm_peak_rss_mib``, apart from the Python side's.

A ``check`` worker compares the DuckDB engine's frame with pandas' (max absolute difference), and
with ``--spark`` a ``check_spark`` worker Spark's with DuckDB's. Results go to
``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as B  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="A canonical Parquet data folder (e.g. bench_training's synth-100000-seed42).")
    p.add_argument("--index-date", default="2025-11-01")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: DuckDB's, all cores).")
    p.add_argument("--mem-limit-gib", type=float, default=16)
    p.add_argument("--min-available-gib", type=float, default=1.5)
    p.add_argument("--spark", action="store_true", help="Also run the Spark engine (riskstrat[spark]).")
    p.add_argument("--spark-master", default="local[2]")
    p.add_argument("--name", default="engines")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_sql", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- workers


def w_pandas(args, rep: B.Reporter) -> None:
    from riskstrat.features.reference import build_features
    from riskstrat.data.validate import load_records

    rep.step("load_records")
    t0 = time.perf_counter()
    records = load_records(args.data)
    t1 = time.perf_counter()
    rep.step("build_features")
    features = build_features(records, args.index_date)
    t2 = time.perf_counter()
    rep.update(load_seconds=round(t1 - t0, 3), features_seconds=round(t2 - t1, 3), seconds=round(t2 - t0, 3),
               people=len(features))


def w_duckdb(args, rep: B.Reporter) -> None:
    from riskstrat.features.duckdb import DuckDBEngine

    rep.step("DuckDBEngine")
    t0 = time.perf_counter()
    engine = DuckDBEngine(args.data, threads=args.threads)
    t1 = time.perf_counter()
    rep.step("features")
    features = engine.features(args.index_date)
    t2 = time.perf_counter()
    rep.update(load_seconds=round(t1 - t0, 3), features_seconds=round(t2 - t1, 3), seconds=round(t2 - t0, 3),
               people=len(features))


def w_bare(args, rep: B.Reporter) -> None:
    import duckdb
    import pandas  # noqa: F401 - imported before the clock, as in the other workers (.df() needs it)

    queries = json.loads(Path(args._sql).read_text())
    rep.step("bare queries")
    t0 = time.perf_counter()
    con = duckdb.connect()
    if args.threads is not None:
        con.execute(f"SET threads = {int(args.threads)}")
    persons = str(Path(args.data) / "persons.parquet").replace("'", "''")
    con.execute("CREATE TEMP TABLE persons AS SELECT person_id, CAST(birth_date AS DATE) AS birth_date, "
                f"CAST(death_date AS DATE) AS death_date FROM read_parquet('{persons}')")
    rows = sum(len(con.execute(sql).df()) for sql in queries.values())
    t1 = time.perf_counter()
    rep.update(seconds=round(t1 - t0, 3), aggregate_rows=rows)


def w_check(args, rep: B.Reporter) -> None:
    import numpy as np
    import pandas as pd

    from riskstrat.features.duckdb import DuckDBEngine
    from riskstrat.features.reference import build_features
    from riskstrat.data.validate import load_records

    rep.step("both engines")
    reference = build_features(load_records(args.data), args.index_date)
    got = DuckDBEngine(args.data).features(args.index_date)
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    numbers = reference.select_dtypes("float64").columns
    diff = np.nanmax(np.abs(got[numbers].to_numpy() - reference[numbers].to_numpy()))
    rep.update(equal=True, people=len(got), columns=got.shape[1], max_abs_difference=float(diff))


def w_sql(args, rep: B.Reporter) -> None:
    """Write out the engine's aggregate queries for the bare runs (in a worker: the parent stays small,
    and a worker's peak RSS starts from its parent's size at fork)."""
    from riskstrat.features.duckdb import DuckDBEngine

    engine = DuckDBEngine(args.data)
    Path(args._sql).write_text(json.dumps({name: engine.aggregate_sql(name, args.index_date)
                                           for name in engine.sources}))
    rep.update(tables=engine.sources)


def w_spark(args, rep: B.Reporter) -> None:
    from riskstrat.features.spark import SparkEngine, spark_session

    rep.step("spark session")
    t0 = time.perf_counter()
    session = spark_session(master=args.spark_master)
    t1 = time.perf_counter()
    rep.step("SparkEngine")
    engine = SparkEngine(args.data, spark=session)
    t2 = time.perf_counter()
    rep.step("features")
    features = engine.features(args.index_date)
    t3 = time.perf_counter()
    jvm = B._proc_status(session.sparkContext._gateway.proc.pid).get("VmHWM")
    rep.update(session_seconds=round(t1 - t0, 3), load_seconds=round(t2 - t1, 3), features_seconds=round(t3 - t2, 3),
               seconds=round(t3 - t1, 3), people=len(features), jvm_peak_rss_mib=jvm)


def w_check_spark(args, rep: B.Reporter) -> None:
    import numpy as np
    import pandas as pd

    from riskstrat.features.duckdb import DuckDBEngine
    from riskstrat.features.spark import SparkEngine, spark_session

    rep.step("duckdb and spark")
    reference = DuckDBEngine(args.data).features(args.index_date)
    got = SparkEngine(args.data, spark=spark_session(master=args.spark_master)).features(args.index_date)
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    numbers = reference.select_dtypes("float64").columns
    diff = np.nanmax(np.abs(got[numbers].to_numpy() - reference[numbers].to_numpy()))
    rep.update(equal=True, people=len(got), columns=got.shape[1], max_abs_difference=float(diff))


WORKERS = {"pandas": w_pandas, "duckdb": w_duckdb, "bare": w_bare, "check": w_check, "sql": w_sql,
           "spark": w_spark, "check_spark": w_check_spark}


# ----------------------------------------------------------------------------- parent


def main(argv: list[str]) -> int:
    result_path, argv = B.worker_args(argv)
    args = parse_args(argv)
    if args._worker:
        return B.worker_main(result_path, lambda rep: WORKERS[args._worker](args, rep))

    fd, name = tempfile.mkstemp(prefix="bench-engines-", suffix=".json")
    os.close(fd)
    sql_file = Path(name)
    meta = Path(args.data) / "dataset.json"
    out_path = B.RESULTS_DIR / f"{args.name}.json"
    doc = {"benchmark": "engines", "settings": {"data": args.data, "index_date": args.index_date,
                                                "repeats": args.repeats, "threads": args.threads,
                                                "dataset": json.loads(meta.read_text()) if meta.exists() else None},
           "environment": B.environment(), "runs": {"pandas": [], "duckdb": [], "bare": []}, "check": None}
    engines = ("pandas", "duckdb", "bare") + (("spark",) if args.spark else ())
    if args.spark:
        doc["runs"]["spark"] = []
        doc["settings"]["spark_master"] = args.spark_master
    B.write_json(out_path, doc)
    guard = {"mem_limit_mib": args.mem_limit_gib * 1024, "min_available_mib": args.min_available_gib * 1024}
    script = str(Path(__file__).resolve())

    def worker(name: str) -> dict:
        cmd = [sys.executable, script, "--data", args.data, "--index-date", args.index_date, "--_worker", name,
               "--_sql", str(sql_file), "--spark-master", args.spark_master] + (
            ["--threads", str(args.threads)] if args.threads else [])
        r = B.run_worker(cmd, **guard)
        r["status"] = "ok" if r.get("ok") else "FAILED"
        print(f"[bench_engines] {name}: {r.get('seconds')} s, peak {r.get('peak_rss_mib') or 0:,.0f} MiB "
              f"(load {B.loadavg()[0]})" + (f" FAILED: {r.get('failure')}" if r["status"] != "ok" else ""), flush=True)
        return r

    try:
        if worker("sql")["status"] != "ok":
            return 2
        for _ in range(args.repeats):
            for name in engines:
                doc["runs"][name].append(worker(name))
                B.write_json(out_path, doc)
        doc["check"] = worker("check")
        if args.spark:
            doc["check_spark"] = worker("check_spark")
    finally:
        sql_file.unlink(missing_ok=True)

    def median(name: str, key: str):
        values = [r[key] for r in doc["runs"][name] if r.get("status") == "ok" and r.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    keys = ("session_seconds", "load_seconds", "features_seconds", "seconds", "peak_rss_mib", "jvm_peak_rss_mib")
    summary = {name: {k: median(name, k) for k in keys} for name in doc["runs"]}
    bare = summary["bare"]["seconds"]
    for name in summary:
        s = summary[name]
        s["over_bare"] = round(s["seconds"] / bare, 2) if bare and s["seconds"] else None
    doc["summary"] = summary
    doc["environment"]["loadavg_at_end"] = B.loadavg()
    B.write_json(out_path, doc)
    print()
    duck = summary["duckdb"]["seconds"]
    for s in summary.values():
        s["over_duckdb"] = round(s["seconds"] / duck, 2) if duck and s["seconds"] else None
    print(B.table([{"engine": k, **v} for k, v in summary.items()], [
        ("engine", "engine"), ("load_seconds", "load/open s"), ("features_seconds", "features s"),
        ("seconds", "total s"), ("over_bare", "x bare DuckDB"), ("over_duckdb", "x DuckDB engine"),
        ("peak_rss_mib", "peak RSS MiB")] + ([("session_seconds", "session start s"),
                                               ("jvm_peak_rss_mib", "JVM peak RSS MiB")] if args.spark else [])))
    c = doc["check"]
    print(f"\nmedians of {args.repeats} interleaved runs; check: "
          + (f"equal, max |difference| {c['max_abs_difference']:.1e} over {c['people']:,} people"
             if c.get("status") == "ok" else f"FAILED {c.get('failure')}"))
    if args.spark:
        c2 = doc["check_spark"]
        print("spark check: " + (f"equal to DuckDB, max |difference| {c2['max_abs_difference']:.1e} over "
                                 f"{c2['people']:,} people" if c2.get("status") == "ok" else f"FAILED {c2.get('failure')}"))
    print(f"results: {out_path}")
    ok = c.get("status") == "ok" and (not args.spark or doc["check_spark"].get("status") == "ok")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
