#!/usr/bin/env python
"""LightGBM fit with 1 and with 2 threads on the same training data: which default serves a shared machine.

    .venv/bin/python benchmarks/bench_threads.py --data /tmp/bench100k               # 2 rounds of 1 and 2
    .venv/bin/python benchmarks/bench_threads.py --data DIR --threads 1,2,4 --rounds 3 --engine duckdb

The training data (features and labels at the default config's dates) are assembled once, in a
worker, and pickled into the work folder; then every fit runs in its own fresh worker:
riskstrat.modeling.models.fit_lightgbm as training calls it (early stopping and calibration on the
calibration rows), only ``n_jobs`` changed. The thread counts alternate in each round (1, 2, then
2, 1, ...) so that a change in the machine's load falls on both. The load average is recorded at
the start and end of every fit: on a shared machine, compare within one run only.
JSON goes to benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as B  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="data folder (the default config's index dates must fit it)")
    p.add_argument("--engine", choices=("pandas", "duckdb"), default="duckdb",
                   help="engine that assembles the training data (the same data either way; default duckdb)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--rounds", type=int, default=2, help="fits per thread count (default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override (repeatable)")
    p.add_argument("--workdir", default="/tmp/riskstrat-bench", help="where the pickled training data go")
    p.add_argument("--name", default="threads", help="results file benchmarks/results/<name>.json")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_threads", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _config(args):
    from riskstrat.modeling.config import load_config

    return load_config(None, [f"data.path={args.data}", f"engine={args.engine}", *args.overrides])


def _pickle(args) -> Path:
    return Path(args.workdir) / f"threads-{args.name}.pkl"


def w_assemble(args, rep: B.Reporter) -> None:
    from riskstrat.features.engine import open_engine
    from riskstrat.data.data_end import data_end_of
    from riskstrat.modeling.train import assemble

    cfg = _config(args)
    rep.step("assemble")
    t0 = time.perf_counter()
    engine = open_engine(cfg.engine, cfg.data)
    data = assemble(engine, cfg, extract_end=data_end_of(cfg.data.path, engine, configured=cfg.data.extract_end).end)
    rep.update(seconds=round(time.perf_counter() - t0, 2), train_rows=len(data.y_train),
               calibration_rows=len(data.y_cal), n_features=len(data.feature_names))
    path = _pickle(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)


def w_fit(args, rep: B.Reporter) -> None:
    from riskstrat.modeling.models import fit_lightgbm

    cfg = _config(args)
    with open(_pickle(args), "rb") as fh:
        data = pickle.load(fh)
    import lightgbm  # noqa: F401  imported before the clock starts

    params = cfg.model.lightgbm.model_copy(update={"n_jobs": args._threads})
    rep.step(f"fit_lightgbm n_jobs={args._threads}")
    load_before = B.loadavg()
    t0 = time.perf_counter()
    model = fit_lightgbm(data.X_train, data.y_train, data.X_cal, data.y_cal, params=params,
                         calibration=cfg.model.calibration, target=cfg.target.name, seed=cfg.split.seed)
    seconds = time.perf_counter() - t0
    rep.update(seconds=round(seconds, 2), threads=args._threads, trees=model.metadata.get("best_iteration"),
               load_before=load_before, load_after=B.loadavg(),
               dump_sha256=__import__("hashlib").sha256(
                   model.estimator.booster_.model_to_string().encode()).hexdigest()[:16])


def main(argv: list[str]) -> int:
    result_path, argv = B.worker_args(argv)
    args = parse_args(argv)
    if args._worker:
        fn = {"assemble": w_assemble, "fit": w_fit}[args._worker]
        return B.worker_main(result_path, lambda rep: fn(args, rep))
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    out_path = B.RESULTS_DIR / f"{args.name}.json"
    doc = {"benchmark": "lightgbm threads", "settings": {"data": args.data, "engine": args.engine, "threads": threads,
                                                         "rounds": args.rounds, "overrides": args.overrides},
           "environment": B.environment(), "fits": []}
    script = str(Path(__file__).resolve())
    common = ["--data", args.data, "--engine", args.engine, "--workdir", args.workdir, "--name", args.name]
    common += [x for o in args.overrides for x in ("--set", o)]
    print(f"[bench_threads] assembling the training data (load {B.loadavg()})", flush=True)
    doc["assemble"] = B.run_worker([sys.executable, script, "--_worker", "assemble", *common])
    B.write_json(out_path, doc)
    if not doc["assemble"].get("ok"):
        print(f"assemble failed: {doc['assemble'].get('failure')}")
        return 1
    try:
        for r in range(args.rounds):
            for t in (threads if r % 2 == 0 else threads[::-1]):
                res = B.run_worker([sys.executable, script, "--_worker", "fit", "--_threads", str(t), *common])
                res["round"] = r
                doc["fits"].append(res)
                B.write_json(out_path, doc)
                print(f"[bench_threads] round {r + 1}, {t} thread(s): {res.get('seconds')} s, {res.get('trees')} trees, "
                      f"load {res.get('load_before')} -> {res.get('load_after')}", flush=True)
    finally:
        _pickle(args).unlink(missing_ok=True)
    ok = [f for f in doc["fits"] if f.get("ok")]
    rows = []
    for t in threads:
        secs = [f["seconds"] for f in ok if f["threads"] == t]
        if secs:
            rows.append({"threads": t, "fits": len(secs), "median_s": round(statistics.median(secs), 2),
                         "min_s": min(secs), "max_s": max(secs),
                         "same_model": len({f["dump_sha256"] for f in ok if f["threads"] == t}) == 1})
    doc["summary"] = rows
    doc["environment"]["loadavg_at_end"] = B.loadavg()
    B.write_json(out_path, doc)
    print()
    print(B.table(rows, [("threads", "threads"), ("fits", "fits"), ("median_s", "median s"), ("min_s", "min s"),
                         ("max_s", "max s"), ("same_model", "same model")]))
    print(f"train rows {doc['assemble'].get('train_rows'):,}; load {doc['environment']['loadavg_at_start']} -> "
          f"{doc['environment']['loadavg_at_end']}; results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
