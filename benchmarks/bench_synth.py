#!/usr/bin/env python
"""Benchmark the synthetic population writer, riskstrat.data.synth.write_population.

    .venv/bin/python benchmarks/bench_synth.py                      # 100,000 people
    .venv/bin/python benchmarks/bench_synth.py --people 20000,100000 --futures 12
    .venv/bin/python benchmarks/bench_synth.py --people 200000 --futures 2 --jobs 1,2 --rounds 2   # serial vs 2 workers

Each size runs in a fresh subprocess (so peak RSS is that size's own) and writes into a temporary
folder that is deleted afterwards (``--keep DIR`` keeps the data). Reports seconds, people/s,
peak RSS, rows per table and the size on disk; JSON goes to benchmarks/results/<name>.json.

``--jobs 1,2`` runs each size once per number of worker processes (``write_population(jobs=...)``), and
``--rounds R`` repeats them interleaved (1, 2, 1, 2, ...). Reported per run: wall seconds; CPU seconds of
the writing process and of its workers (user + system); the writing process's peak RSS, the largest
worker's, and the sampled peak of all of them together; the seconds until the last chunk was written (the
part the workers share) and after it (the ground truth's high-cost threshold and the stamp, in one
process); and the SHA-256 of every file, so runs with different ``--jobs`` can be checked byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as B  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--people", default="100000",
                   help="people to generate; a comma-separated list runs each size in turn (default 100000)")
    p.add_argument("--futures", type=int, default=12, help="simulated futures per person for the ground truth (default 12)")
    p.add_argument("--start", default="2021-11-01", help="first month of the extract (default 2021-11-01)")
    p.add_argument("--years", type=int, default=5, help="years of data (default 5)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--chunk-size", type=int, default=50_000, help="people simulated per chunk (default 50000)")
    p.add_argument("--jobs", default="1",
                   help="worker processes (write_population's jobs); a comma-separated list runs each in turn (default 1)")
    p.add_argument("--rounds", type=int, default=1, help="repeat every (size, jobs) run this many times, interleaved")
    p.add_argument("--tmp", default=None, help="folder for the temporary output (default: system temp)")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="keep the generated data in DIR/synth-<people> instead of deleting it")
    p.add_argument("--mem-limit-gib", type=float, default=16.0,
                   help="kill a size whose resident memory passes this (default 16)")
    p.add_argument("--name", default="synth", help="results file benchmarks/results/<name>.json (default synth)")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _sizes(text: str) -> list[int]:
    return [int(float(s.replace("_", ""))) for s in text.split(",") if s.strip()]


# ----------------------------------------------------------------------------- worker


class _TreeRss:
    """Samples the resident memory of this process and its children together (the workers), every 0.25 s."""

    def __init__(self) -> None:
        import psutil

        self.me, self.peak, self.stop = psutil.Process(), 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.25):
            total = 0
            for proc in [self.me, *self.me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except Exception:  # noqa: BLE001 - a child that ended between listing and reading
                    pass
            self.peak = max(self.peak, total / B.MIB)

    def close(self) -> float:
        self.stop.set()
        self.thread.join()
        return round(self.peak, 1)


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def work(args: argparse.Namespace, rep: B.Reporter) -> None:
    from riskstrat.data.synth.generator import write_population

    n, jobs = _sizes(args.people)[0], int(args.jobs)
    rep.update(people=n, jobs=jobs, rss_after_import_mib=B.current_rss_mib())
    tmp = Path(tempfile.mkdtemp(prefix="bench-synth-", dir=args.tmp))
    out = (Path(args.keep) / f"synth-{n}-jobs{jobs}") if args.keep else tmp / "data"
    last_chunk = []
    try:
        rep.step("write_population")
        tree = _TreeRss()
        cpu0, t0 = _cpu(resource.RUSAGE_SELF), time.perf_counter()
        meta = write_population(out, n, start=args.start, years=args.years, seed=args.seed,
                                n_futures=args.futures, chunk_size=args.chunk_size, jobs=jobs,
                                progress=lambda done, total: last_chunk.append((time.perf_counter(), _cpu(resource.RUSAGE_SELF))))
        seconds = time.perf_counter() - t0
        own_cpu, workers_cpu = _cpu(resource.RUSAGE_SELF) - cpu0, _cpu(resource.RUSAGE_CHILDREN)
        tree_peak = tree.close()
        files = {str(f.relative_to(out)): f.stat().st_size for f in sorted(out.rglob("*")) if f.is_file()}
        hashes = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in files}
        rep.update(seconds=round(seconds, 2), people_per_s=round(n / seconds, 1),
                   chunks_seconds=round(last_chunk[-1][0] - t0, 2), after_chunks_seconds=round(t0 + seconds - last_chunk[-1][0], 2),
                   cpu_after_chunks_seconds=round(cpu0 + own_cpu - last_chunk[-1][1], 1),
                   cpu_seconds=round(own_cpu + workers_cpu, 1), cpu_writer_seconds=round(own_cpu, 1),
                   cpu_workers_seconds=round(workers_cpu, 1),
                   worker_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1) if jobs > 1 else None,
                   tree_peak_rss_mib=tree_peak, files_sha256=hashes,
                   row_counts=meta["row_counts"], total_rows=sum(meta["row_counts"].values()),
                   rows_per_s=round(sum(meta["row_counts"].values()) / seconds, 1),
                   disk_bytes=sum(files.values()), disk_mib=round(sum(files.values()) / B.MIB, 1),
                   files_bytes=files, truth_dates=meta.get("truth_dates"),
                   data_dir=str(out) if args.keep else None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- parent


def main(argv: list[str]) -> int:
    result_path, argv = B.worker_args(argv)
    args = parse_args(argv)
    if args._worker:
        return B.worker_main(result_path, lambda rep: work(args, rep))

    out_path = B.RESULTS_DIR / f"{args.name}.json"
    doc = {"benchmark": "synth", "function": "riskstrat.data.synth.generator.write_population",
           "settings": {"futures": args.futures, "start": args.start, "years": args.years, "seed": args.seed,
                        "chunk_size": args.chunk_size, "jobs": args.jobs, "rounds": args.rounds},
           "environment": B.environment(), "runs": []}
    runs = [(n, jobs) for n in _sizes(args.people) for _ in range(args.rounds) for jobs in _sizes(args.jobs)]
    for n, jobs in runs:
        print(f"[bench_synth] {n:,} people, {args.futures} futures, jobs {jobs} ... (load {B.loadavg()})", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", "--people", str(n),
               "--futures", str(args.futures), "--start", args.start, "--years", str(args.years),
               "--seed", str(args.seed), "--chunk-size", str(args.chunk_size), "--jobs", str(jobs)]
        if args.tmp:
            cmd += ["--tmp", args.tmp]
        if args.keep:
            cmd += ["--keep", args.keep]
        res = B.run_worker(cmd, mem_limit_mib=args.mem_limit_gib * 1024)
        res["people"], res["jobs"] = n, jobs
        res["status"] = "ok" if res.get("ok") else "FAILED"
        doc["runs"].append(res)
        doc["environment"]["loadavg_at_end"] = B.loadavg()
        B.write_json(out_path, doc)
        if not res.get("ok"):
            print(f"[bench_synth] {n:,} people FAILED in {res.get('step')}: {res.get('failure')}", flush=True)

    print()
    print(B.table(doc["runs"], [("people", "people"), ("jobs", "jobs"), ("status", "status"), ("seconds", "wall s"),
                                ("chunks_seconds", "chunks s"), ("after_chunks_seconds", "after s"),
                                ("cpu_after_chunks_seconds", "after CPU s"),
                                ("cpu_seconds", "CPU s"), ("cpu_workers_seconds", "workers CPU s"),
                                ("people_per_s", "people/s"), ("total_rows", "rows"),
                                ("peak_rss_mib", "peak RSS MiB"), ("worker_peak_rss_mib", "worker peak MiB"),
                                ("tree_peak_rss_mib", "all at once MiB"), ("disk_mib", "disk MiB")]))
    for n in _sizes(args.people):
        digests = {json.dumps(r.get("files_sha256"), sort_keys=True) for r in doc["runs"] if r["people"] == n and r.get("ok")}
        if digests:
            print(f"{n:,} people: every run's files {'byte-identical' if len(digests) == 1 else 'DIFFER between runs'}")
    for run in doc["runs"]:
        if run.get("row_counts"):
            print(f"\nrows per table at {run['people']:,} people:")
            print(B.table([{"table": k, "rows": v, "per_person": v / run["people"]} for k, v in run["row_counts"].items()],
                          [("table", "table"), ("rows", "rows"), ("per_person", "per person")]))
    env = doc["environment"]
    print(f"\npython {env['python']}, numpy {env['numpy']}, pandas {env['pandas']}, {env['cpu_count']} CPUs, "
          f"load {env['loadavg_at_start']} -> {env['loadavg_at_end']}")
    print(f"results: {out_path}")
    return 0 if all(r.get("ok") for r in doc["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
