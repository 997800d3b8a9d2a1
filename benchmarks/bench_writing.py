#!/usr/bin/env python
"""The month's writing alone (lists, hold-out, changes, summary, then ``write_month``) on a made-up population.

    .venv/bin/python benchmarks/bench_writing.py --practices 66,666              # 100k-like and 1M-like months
    .venv/bin/python benchmarks/bench_writing.py --practices 666 --set workers=2 --rounds 3
    .venv/bin/python benchmarks/bench_writing.py --population <month>/population.parquet  # a real month
    .venv/bin/python benchmarks/bench_writing.py --practices 66 --profile cumulative

No models and no data set: each practice gets ``--per-practice`` people (default 1,200, as in the
synthetic 100k and 1M sets after the cohort: 79,358 / 66 and 793,686 / 666) with seeded risks,
costs, ages, past-year use and three reasons each, ranked by :func:`riskstrat.scoring.lists.rank_population`,
and a previous month (the same people with perturbed risks) so that the changes are real. Then the
steps ``_score_month`` times as **writing** run in this process, in order, each timed (wall
and CPU seconds; CPU includes finished worker processes):
``mark_lists``, ``practice_lists``, ``summary``, ``changes`` and ``write_month`` (Parquet, per
practice CSV + workbook + page + changes, summary, manifest with hashes, atomic publish).

``--population`` takes a published ``population.parquet`` instead (its list columns are dropped
and made again; no previous month). ``--set KEY=VALUE`` sets a field of ``write_month``'s options
(``lists.MonthOptions``: ``workbooks=none``, ``workers=2``). ``--hashes FILE`` writes the manifest's file
hashes of the last round, to compare two versions' folders byte for byte. The load average is
recorded before and after each round: on a shared machine compare within one run only.
JSON goes to benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as B  # noqa: E402

REASONS = ("3 emergency admissions in the last 12 months, the last 1 month ago",
           "many medicines: about 11 prescription items a month, from 10 BNF chapters",
           "heart failure on the register", "COPD on the register", "2 A&E visits in the last 3 months",
           "14 days in hospital after emergency admissions", "lives alone with a care package",
           "diabetes on the register, last HbA1c 9.1%", "frailty index 0.31 (moderate)",
           "£4,200 of health and care in the last 12 months")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--practices", default="66", help="practice counts, comma-separated (default 66)")
    p.add_argument("--per-practice", type=int, default=1200, help="people per practice (default 1200)")
    p.add_argument("--population", default=None, help="a published population.parquet instead of made-up people")
    p.add_argument("--list-size", type=int, default=100, help="people per list (default 100)")
    p.add_argument("--rounds", type=int, default=1, help="timed rounds per size (default 1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="write_month option, e.g. workbooks=none or workers=2 (repeatable)")
    p.add_argument("--profile", default=None, metavar="SORT",
                   help="profile the last round with cProfile and print the top 40 by SORT (cumulative, tottime)")
    p.add_argument("--hashes", default=None, help="write the last round's file hashes (manifest 'files') here")
    p.add_argument("--workdir", default=None, help="where the month folders go (default: a temporary folder)")
    p.add_argument("--name", default="writing", help="results file benchmarks/results/<name>.json")
    return p.parse_args(argv)


def _options(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = int(value) if value.isdigit() else value
    return out


def made_up_month(practices: int, per_practice: int, seed: int):
    """(population, previous month's population) for ``practices`` practices, ranked and marked."""
    import numpy as np
    import pandas as pd

    from riskstrat.scoring import lists
    from riskstrat.features.reasons import REASON_SEPARATOR

    rng = np.random.default_rng(seed)
    n = practices * per_practice
    ids = pd.Index([f"{i:016x}" for i in rng.permutation(np.arange(10**9, 10**9 + n) * 7919)], name="person_id")
    features = pd.DataFrame({
        "practice_id": [f"P{p:05d}" for p in np.repeat(np.arange(practices), per_practice)],
        "age": rng.uniform(18, 100, n), "sex": rng.choice(["F", "M"], n),
        "emergency_admissions_0_3m": rng.poisson(0.05, n).astype(float),
        "emergency_admissions_3_12m": rng.poisson(0.15, n).astype(float),
        "ae_attendances_0_3m": rng.poisson(0.1, n).astype(float),
        "ae_attendances_3_12m": rng.poisson(0.3, n).astype(float),
        "emergency_bed_days_12m": rng.poisson(0.8, n).astype(float),
        "cost_total_12m": rng.gamma(0.8, 1500, n),
    }, index=ids)
    base = rng.beta(0.6, 8, n)

    def ranked(noise: float):
        risk = np.clip(base * np.exp(rng.normal(0, noise, n)), 1e-4, 0.99)
        return lists.rank_population(features, risk, rank_score=risk, high_cost_risk=np.clip(risk * 0.6, 0, 1),
                                     predicted_cost=features["cost_total_12m"].to_numpy() * rng.uniform(0.5, 2, n))

    picks = rng.integers(0, len(REASONS), (n, 3))
    reasons = pd.Series([REASON_SEPARATOR.join(REASONS[j] for j in row) for row in picks], index=ids)
    previous = lists.mark_lists(ranked(0.3), list_size=100, month="2026-10", holdout_fraction=0.1, seed=seed,
                                reasons=reasons)
    return ranked(0.3), previous, reasons


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker processes of workers=N):
    steadier than wall time on a shared machine."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def real_month(path: str):
    import pandas as pd

    published = pd.read_parquet(path)
    base = published.drop(columns=[c for c in ("listed", "holdout", "new_this_month", "previous_tier",
                                               "tier_change", "reasons") if c in published])
    reasons = published.loc[published["listed"], ["person_id", "reasons"]].set_index("person_id")["reasons"]
    return base, None, reasons


def write_once(population, previous, reasons, out: Path, *, list_size: int, seed: int, options: dict) -> dict:
    """The writing stage as ``_score_month`` runs it; seconds per step."""
    from riskstrat.scoring import lists
    from riskstrat.modeling.tiers import DEFAULT_GROUPS

    t: dict[str, float] = {}
    cpu: dict[str, float] = {}
    clock = {}

    def start():
        clock["wall"], clock["cpu"] = time.perf_counter(), _cpu()

    def stop(step: str):
        t[step], cpu[step] = time.perf_counter() - clock["wall"], _cpu() - clock["cpu"]

    start()
    pop = lists.mark_lists(population, list_size=list_size, month="2026-11", previous=previous, reasons=reasons,
                           holdout_fraction=0.1, seed=seed)
    stop("mark_lists")
    start()
    practice_lists = lists.practice_lists(pop, list_size=list_size)
    stop("practice_lists")
    start()
    summary = lists.suppress_small_numbers(lists.commissioner_summary(pop, list_size=list_size, groups=DEFAULT_GROUPS))
    stop("summary")
    start()
    changes = lists.changes_since(previous, pop, list_size=list_size)
    stop("changes")
    start()
    manifest = {"as_of": "2026-11-01", "month": "2026-11", "data_end": "2026-10-31",
                "models": {"emergency_admission": {"version": "3", "run_id": "0123abcd"}},
                "package_version": "bench", "holdout": lists.holdout_rule(fraction=0.1, seed=seed)}
    lists.write_month(out, population=pop, practice_lists=practice_lists, summary=summary, manifest=manifest,
                      changes=changes, options=lists.MonthOptions(**options))
    stop("write_month")
    t["writing"] = sum(t.values())
    t["writing_cpu"] = sum(cpu.values())
    t["write_month_cpu"] = cpu["write_month"]
    return t


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    options = _options(args.options)
    doc = {"benchmark": "writing", "args": vars(args), "environment": B.environment(), "results": []}
    out_path = B.RESULTS_DIR / f"{args.name}.json"
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="riskstrat-bench-writing-"))
    sizes = [None] if args.population else [int(s) for s in args.practices.split(",")]
    rows = []
    for practices in sizes:
        t0 = time.perf_counter()
        if args.population:
            population, previous, reasons = real_month(args.population)
        else:
            population, previous, reasons = made_up_month(practices, args.per_practice, args.seed)
        setup = time.perf_counter() - t0
        rounds = []
        for r in range(args.rounds):
            out = workdir / f"month-{practices or 'real'}-{r}" / "2026-11"
            load_before = B.loadavg()
            profile = args.profile and r == args.rounds - 1
            if profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                profiler.enable()
            t = write_once(population, previous, reasons, out, list_size=args.list_size, seed=args.seed,
                           options=options)
            if profile:
                profiler.disable()
                pstats.Stats(profiler).sort_stats(args.profile).print_stats(40)
            manifest = json.loads((out / "manifest.json").read_text())
            files = manifest["files"]
            rounds.append({**{k: round(v, 3) for k, v in t.items()}, "files": len(files), "profiled": bool(profile),
                           "load_before": load_before, "load_after": B.loadavg()})
            print(f"practices={practices or 'real'} round {r}: "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()) + f" ({len(files)} files, load "
                  f"{load_before[0]} -> {B.loadavg()[0]})", flush=True)
            if args.hashes and r == args.rounds - 1:
                Path(args.hashes).write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
            shutil.rmtree(out.parent, ignore_errors=True)
        timed = [x for x in rounds if not x["profiled"]] or rounds
        result = {"practices": practices or "real", "people": int(len(population)), "setup_seconds": round(setup, 2),
                  "options": options, "rounds": rounds,
                  "median": {k: round(statistics.median(x[k] for x in timed), 3)
                             for k in ("mark_lists", "practice_lists", "summary", "changes", "write_month", "writing",
                                       "write_month_cpu", "writing_cpu")}}
        doc["results"].append(result)
        rows.append({"practices": result["practices"], "people": f"{result['people']:,}", **result["median"],
                     "files": rounds[-1]["files"]})
        B.write_json(out_path, doc)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    print(B.table(rows, [("practices", "practices"), ("people", "people"), ("mark_lists", "mark_lists s"),
                         ("practice_lists", "practice_lists s"), ("summary", "summary s"), ("changes", "changes s"),
                         ("write_month", "write_month s"), ("writing", "writing s"),
                         ("write_month_cpu", "write_month CPU s"), ("writing_cpu", "writing CPU s"), ("files", "files")]))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
