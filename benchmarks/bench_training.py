#!/usr/bin/env python
"""Benchmark the training path: load + validate, features, features + labels, fit + evaluate.

    .venv/bin/python benchmarks/bench_training.py                         # 100,000 people
    .venv/bin/python benchmarks/bench_training.py --sizes 100000,1000000 --name training
    .venv/bin/python benchmarks/bench_training.py --data riskstrat-data/synthetic --profile
    .venv/bin/python benchmarks/bench_training.py --data /tmp/bench/synth-1m --engine duckdb --stages train

For each size a synthetic data set is generated with riskstrat.data.synth.write_population (start
2021-11-01, 5 years, so the default config's index dates fit) into <workdir>/synth-<n>-seed<seed>,
or reused when that folder already holds the same settings (``--regenerate`` forces a new one);
``--data DIR`` uses an existing data folder instead (one size only).

Every stage runs in its own fresh subprocess, so the peak RSS reported is that stage's own:

    generate   write_population (skipped with --data or a reused folder)
    load       riskstrat.data.validate.validate_tables over LazyTables, timing the reads (= load_records)
    features   build_features for ONE index date (default: the config's test date), after load_records
    profile    (--profile) the same under cProfile (top functions into the JSON, the .prof file into
               the work folder), and build_features once per source to split the time by table
    assemble   riskstrat.modeling.train.assemble: features + labels for the config's 5 training dates + test date
    fit        riskstrat.evaluation.held_out.fit_and_evaluate (LightGBM + isotonic calibration, logistic and
               prior-use baselines, metrics with evaluation.n_bootstrap bootstrap resamples),
               on the assemble stage's TrainingData (passed through a pickle in the work folder)
    train      (opt-in: --stages train) the whole riskstrat.pipelines.train.run_training in one process, as
               `riskstrat train --no-tracking` runs it: its stage timings and the run's peak RSS

``--engine duckdb`` runs load, features, assemble and train through the DuckDB engine
(riskstrat.features.engine.open_engine, with every row checked as training does); default pandas.

A stage that fails (exception, MemoryError, killed by the kernel or by the memory guard) is
recorded with its stage, step and peak RSS, the later stages of that size are skipped, and the
next size still runs. JSON goes to benchmarks/results/<name>.json after every stage.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as B  # noqa: E402

STAGES = ("generate", "load", "features", "profile", "assemble", "fit", "train")
DEFAULT_STAGES = ("generate", "load", "features", "assemble", "fit")
GEN_START, GEN_YEARS = "2021-11-01", 5


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", "--people", dest="sizes", default="100000",
                   help="people per data set, comma-separated; each size runs in turn (default 100000)")
    p.add_argument("--data", default=None, help="use this existing data folder instead of generating (one size only)")
    p.add_argument("--workdir", default="/tmp/riskstrat-bench",
                   help="where generated data sets and intermediate files go (default /tmp/riskstrat-bench)")
    p.add_argument("--regenerate", action="store_true", help="generate even if a matching data set exists")
    p.add_argument("--cleanup", action="store_true", help="delete generated data sets when a size is done")
    p.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    p.add_argument("--futures", type=int, default=12, help="generator futures per person for the truth (default 12)")
    p.add_argument("--index-date", default=None, help="index date of the features stage (default: the config's test date)")
    p.add_argument("--n-bootstrap", type=int, default=50, help="evaluation.n_bootstrap (default 50)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override, e.g. --set model.lightgbm.n_jobs=2 (repeatable)")
    p.add_argument("--load-mode", choices=("load_records", "unvalidated"), default="load_records",
                   help="how the stages load the data: riskstrat.data.validate.load_records (default), or unvalidated "
                        "(Parquet as read, dates cast, no checks: only to reach the later stages when validation "
                        "does not fit in memory)")
    p.add_argument("--no-truth", action="store_true", help="do not score the ground-truth oracle in the fit stage")
    p.add_argument("--profile", action="store_true", help="also cProfile build_features (the profile stage)")
    p.add_argument("--engine", choices=("pandas", "duckdb"), default="pandas",
                   help="feature engine of the load, features, assemble and train stages (default pandas)")
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help=f"stages to run, comma-separated, from {','.join(STAGES)}")
    p.add_argument("--mem-limit-gib", type=float, default=18.0,
                   help="kill a stage whose resident memory passes this (default 18)")
    p.add_argument("--min-available-gib", type=float, default=1.5,
                   help="kill a stage when the machine's available memory drops below this (default 1.5)")
    p.add_argument("--name", default="training", help="results file benchmarks/results/<name>.json (default training)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--_datadir", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _sizes(text: str) -> list[int]:
    return [int(float(s.replace("_", ""))) for s in text.split(",") if s.strip()]


def _config(args: argparse.Namespace, data_dir: str):
    from riskstrat.modeling.config import load_config

    return load_config(None, [f"data.path={data_dir}", f"evaluation.n_bootstrap={args.n_bootstrap}",
                              f"engine={args.engine}", *args.overrides])


def _pickle_path(args: argparse.Namespace, size: int) -> Path:
    return Path(args.workdir) / f"training-data-{args.name}-{size}.pkl"


def load_unvalidated(data_dir):
    """Parquet tables as read, with date columns cast to datetime64[s]: NO validation.

    Only to time the later stages where load_records does not fit in memory. It skips every check
    and keeps the few out-of-life event rows validation would drop (95 of 7.9M prescriptions at
    100k people), so features differ from the validated ones in a handful of people.
    """
    from riskstrat.data.io import read_raw_tables
    from riskstrat.data.records import LinkedRecords
    from riskstrat.data.schema import TABLES

    raw, _ = read_raw_tables(data_dir)
    for name, df in raw.items():
        for col in TABLES[name].date_columns:
            if col in df:
                df[col] = pd_to_datetime_s(df[col])
    return LinkedRecords(raw)


def pd_to_datetime_s(values):
    import pandas as pd

    return pd.to_datetime(values).astype("datetime64[s]")


def _load(cfg, rep: B.Reporter, mode: str = "load_records"):
    """The records as the training pipeline loads them (riskstrat.data.load.load_data), or unvalidated;
    with ``engine: duckdb``, the DuckDB engine as training opens it (persons validated, every table checked)."""
    from riskstrat.data.load import load_data

    if cfg.engine != "pandas":
        from riskstrat.features.engine import open_engine

        rep.step(f"open_engine({cfg.engine})")
        t0 = time.perf_counter()
        engine = open_engine(cfg.engine, cfg.data, check_every_row=True)
        seconds = time.perf_counter() - t0
        rep.update(load_mode=f"engine {cfg.engine}", load_seconds=round(seconds, 2),
                   rss_after_load_mib=B.current_rss_mib(), peak_rss_after_load_mib=B.peak_rss_mib(),
                   event_rows=sum(engine.row_counts.values()) - engine.row_counts["persons"])
        return engine
    rep.step(mode)
    t0 = time.perf_counter()
    if mode == "unvalidated":
        records = load_unvalidated(cfg.data.path)
        if cfg.data.exclude_sources:
            records = records.without(*cfg.data.exclude_sources)
    else:
        records = load_data(cfg.data)
    seconds = time.perf_counter() - t0
    rep.update(load_mode=mode, load_seconds=round(seconds, 2), rss_after_load_mib=B.current_rss_mib(),
               peak_rss_after_load_mib=B.peak_rss_mib(), event_rows=sum(records.row_counts().values()))
    return records


# ----------------------------------------------------------------------------- workers


def w_generate(args, rep: B.Reporter) -> None:
    from riskstrat.data.synth.generator import write_population

    n, out = args._size, Path(args._datadir)
    rep.step("write_population")
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        el = time.perf_counter() - t0
        print(f"    generated {done:,}/{total:,} people in {el:,.0f} s (load {B.loadavg()})", flush=True)
        rep.update(generated=done, generate_elapsed_s=round(el, 1))

    meta = write_population(out, n, start=GEN_START, years=GEN_YEARS, seed=args.seed, n_futures=args.futures,
                            progress=progress)
    seconds = time.perf_counter() - t0
    rows = sum(meta["row_counts"].values())
    rep.update(seconds=round(seconds, 2), people_per_s=round(n / seconds, 1), row_counts=meta["row_counts"],
               total_rows=rows, rows_per_s=round(rows / seconds, 1), disk_mib=round(B.dir_size_bytes(out) / B.MIB, 1))


class TimedTables(Mapping):
    """Wraps riskstrat.data.io.LazyTables: adds up the time spent reading files and the rows read."""

    def __init__(self, tables):
        self.tables, self.seconds, self.rows = tables, 0.0, {}

    def __getitem__(self, name):
        t0 = time.perf_counter()
        frame = self.tables[name]
        self.seconds += time.perf_counter() - t0
        self.rows[name] = len(frame)
        return frame

    def __contains__(self, name):
        return name in self.tables

    def __iter__(self):
        return iter(self.tables)

    def __len__(self):
        return len(self.tables)


def w_load(args, rep: B.Reporter) -> None:
    from riskstrat.data.io import LazyTables, table_files
    from riskstrat.data.validate import validate_tables

    cfg = _config(args, args._datadir)
    rep.update(rss_after_import_mib=B.current_rss_mib())
    if args.engine != "pandas":
        _load(cfg, rep)
        rep.update(seconds=rep.result["load_seconds"], rows=rep.result["event_rows"],
                   rows_per_s=round(rep.result["event_rows"] / rep.result["load_seconds"], 1))
        return
    if args.load_mode != "load_records":
        records = _load(cfg, rep, args.load_mode)
        rep.update(seconds=rep.result["load_seconds"], rows=rep.result["event_rows"],
                   rows_per_s=round(rep.result["event_rows"] / rep.result["load_seconds"], 1),
                   row_counts=records.row_counts(),
                   memory_of_records_mib=round(sum(df.memory_usage(deep=True).sum() for df in records.tables.values()) / B.MIB, 1))
        return
    # Exactly load_records: tables read lazily, one at a time, as validation reaches them; the
    # reads are timed inside the lookups.
    files = {name: path for name, path in table_files(cfg.data.path).items() if name not in cfg.data.exclude_sources}
    reads = TimedTables(LazyTables(files))
    rep.step("validate_tables (reading each table as it goes)")
    t0 = time.perf_counter()
    records, report = validate_tables(reads, files=files, out_of_life_events=cfg.data.out_of_life_events)
    seconds = time.perf_counter() - t0
    if records is None:
        raise RuntimeError("validation failed: " + report.format(severity="error")[:1000])
    rows = sum(reads.rows.values())
    rep.update(read_seconds=round(reads.seconds, 2), validate_seconds=round(seconds - reads.seconds, 2),
               seconds=round(seconds, 2), rows=rows, rows_per_s=round(rows / seconds, 1),
               row_counts=records.row_counts(), n_warnings=len(report.warnings),
               memory_of_records_mib=round(sum(df.memory_usage(deep=True).sum() for df in records.tables.values()) / B.MIB, 1))


def _index_date(args, cfg) -> str:
    return args.index_date or str(cfg.index_dates.test)


def w_features(args, rep: B.Reporter) -> None:
    from riskstrat.features.reference import build_features

    cfg = _config(args, args._datadir)
    records = _load(cfg, rep, args.load_mode)
    d = _index_date(args, cfg)
    rep.step(f"build_features({d})")
    before = B.current_rss_mib()
    t0 = time.perf_counter()
    f = records.features(d, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age) if cfg.engine != "pandas" \
        else build_features(records, d, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age)
    seconds = time.perf_counter() - t0
    rep.update(index_date=d, seconds=round(seconds, 2), rows=len(f), columns=f.shape[1],
               rows_per_s=round(len(f) / seconds, 1), events_per_s=round(rep.result["event_rows"] / seconds, 1),
               rss_before_features_mib=before, features_frame_mib=round(f.memory_usage(deep=True).sum() / B.MIB, 1))


def w_profile(args, rep: B.Reporter) -> None:
    import cProfile
    import io
    import pstats

    from riskstrat.features.reference import build_features

    cfg = _config(args, args._datadir)
    records = _load(cfg, rep, args.load_mode)
    d = _index_date(args, cfg)
    rep.step(f"cProfile build_features({d})")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    f = build_features(records, d, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age)
    prof.disable()
    seconds = time.perf_counter() - t0
    prof_path = Path(args.workdir) / f"{args.name}-features-{args._size}.prof"  # not in results/: only JSON is git-ignored there
    prof_path.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(prof_path)
    stats = pstats.Stats(prof)

    def top(key: str, k: int = 25) -> list[dict]:
        rows = []
        for (file, line, func), (cc, nc, tt, ct, _) in stats.stats.items():
            short = file.split("site-packages/")[-1].split("/src/")[-1]
            rows.append({"function": f"{short}:{line}({func})" if line else func,
                         "calls": nc, "tottime": round(tt, 3), "cumtime": round(ct, 3)})
        return sorted(rows, key=lambda r: -r[key])[:k]

    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(30)
    rep.update(index_date=d, seconds=round(seconds, 2), rows=len(f), profile_file=str(prof_path),
               top_tottime=top("tottime"), top_cumulative=top("cumtime"), blocks=_time_blocks(records, d, cfg))
    print(text.getvalue()[:6000], flush=True)


def _time_blocks(records, d, cfg) -> dict[str, float]:
    """Wall time of build_features with one source at a time (persons only as the base)."""
    from riskstrat.features.reference import build_features
    from riskstrat.data.records import LinkedRecords

    out = {}
    base = LinkedRecords({"persons": records.persons})
    t0 = time.perf_counter()
    build_features(base, d, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age)
    out["persons_only"] = round(time.perf_counter() - t0, 3)
    for name in records.sources:
        sub = LinkedRecords({"persons": records.persons, name: records.tables[name]})
        t0 = time.perf_counter()
        build_features(sub, d, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age)
        out[name] = round(time.perf_counter() - t0 - out["persons_only"], 3)
    return out


def w_assemble(args, rep: B.Reporter) -> None:
    from riskstrat.data.data_end import data_end_of
    from riskstrat.modeling.train import assemble

    cfg = _config(args, args._datadir)
    records = _load(cfg, rep, args.load_mode)
    extract_end = data_end_of(cfg.data.path, records, configured=cfg.data.extract_end).end
    dates = [str(x) for x in [*cfg.index_dates.train, cfg.index_dates.test]]
    rep.step("assemble")
    stage = B.StageTimer(rep, "per_date")
    marks, t0 = stage.marks, stage.t0
    data = assemble(records, cfg, extract_end=extract_end, stage=stage)
    seconds = time.perf_counter() - t0
    person_dates = sum(int(m["message"].split(": ")[1].split(" people")[0].replace(",", "")) for m in marks)
    rep.update(seconds=round(seconds, 2), index_dates=dates, extract_end=str(extract_end.date()),
               person_date_rows=person_dates, rows_per_s=round(person_dates / seconds, 1), counts=data.counts,
               n_features=len(data.feature_names))
    rep.step("pickle TrainingData")
    path = _pickle_path(args, args._size)
    path.parent.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    rep.update(pickle_seconds=round(time.perf_counter() - t1, 2), pickle_mib=round(path.stat().st_size / B.MIB, 1))


def w_fit(args, rep: B.Reporter) -> None:
    from riskstrat.data.load import load_truth
    from riskstrat.evaluation.held_out import fit_and_evaluate
    from riskstrat.modeling.train import truth_scores

    cfg = _config(args, args._datadir)
    rep.step("unpickle TrainingData")
    with open(_pickle_path(args, args._size), "rb") as fh:
        data = pickle.load(fh)
    truth = None if args.no_truth else truth_scores(load_truth(cfg), cfg, data.X_test.index)
    rep.update(rss_before_fit_mib=B.current_rss_mib(), train_rows=len(data.y_train), calibration_rows=len(data.y_cal),
               test_rows=len(data.y_test), n_features=len(data.feature_names), oracle=truth is not None)
    rep.step("fit_and_evaluate")
    stage = B.StageTimer(rep, "parts")
    marks, t0 = stage.marks, stage.t0
    res = fit_and_evaluate(data, cfg, truth=truth, stage=stage)
    seconds = time.perf_counter() - t0
    stage.mark("evaluation (metrics, bootstrap, O/E, subgroups)")
    keys = ("auroc", "auprc", "brier", "calibration_slope", "ppv_top_5pct")
    rep.update(seconds=round(seconds, 2), parts=marks, best_iteration=res.model.metadata.get("best_iteration"),
               lightgbm_fit_and_calibration_s=marks[0]["seconds"], baselines_s=marks[1]["seconds"],
               evaluation_s=marks[2]["seconds"], train_rows_per_s=round(len(data.y_train) / marks[0]["seconds"], 1),
               metrics={m: {k: (round(v[k], 4) if isinstance(v.get(k), float) else v.get(k)) for k in keys}
                        for m, v in res.metrics.items()})


def w_train(args, rep: B.Reporter) -> None:
    from riskstrat.pipelines.train import run_training

    cfg = _config(args, args._datadir)
    rep.step(f"run_training (engine {cfg.engine}, no tracking)")
    marks = []
    t0, c0 = time.perf_counter(), time.process_time()

    def stage(message: str) -> None:  # wall and CPU (every thread of the process) at each stage message
        marks.append({"wall": round(time.perf_counter() - t0, 2), "cpu": round(time.process_time() - c0, 2),
                      "message": message[:100]})

    run = run_training(cfg, log=False, stage=stage)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    data = run.result.data
    rep.update(seconds=round(seconds, 2), cpu_seconds=round(cpu, 2), marks=marks, engine=cfg.engine,
               timings={k: round(v, 2) for k, v in run.timings.items()},
               train_rows=len(data.y_train), rows=len(data.y_train), rows_per_s=round(len(data.y_train) / seconds, 1),
               best_iteration=run.result.model.metadata.get("best_iteration"),
               auroc=round(run.result.metrics["lightgbm"]["auroc"], 4))


WORKERS = {"generate": w_generate, "load": w_load, "features": w_features, "profile": w_profile,
           "assemble": w_assemble, "fit": w_fit, "train": w_train}


# ----------------------------------------------------------------------------- parent


def _matching_dataset(path: Path, n: int, args) -> bool:
    meta = path / "dataset.json"
    if not meta.exists():
        return False
    info = json.loads(meta.read_text())
    return (info.get("n_people") == n and info.get("seed") == args.seed and info.get("start") == GEN_START
            and info.get("years") == GEN_YEARS and info.get("n_futures") == args.futures)


def _summary_rows(doc: dict) -> list[dict]:
    rows = []
    for size, entry in doc["sizes"].items():
        for stage, r in entry["stages"].items():
            rows.append({"people": int(size), "stage": stage, "status": r.get("status"),
                         "seconds": r.get("seconds"), "rows": r.get("rows") or r.get("person_date_rows") or r.get("train_rows"),
                         "rows_per_s": r.get("rows_per_s") or r.get("people_per_s") or r.get("train_rows_per_s"),
                         "peak_rss_mib": r.get("peak_rss_mib"), "load": (r.get("loadavg_start") or [None])[0],
                         "note": (r.get("failure") or "")[:60] if r.get("status") != "ok" else ""})
    return rows


def main(argv: list[str]) -> int:
    result_path, argv = B.worker_args(argv)
    args = parse_args(argv)
    if args._worker:
        return B.worker_main(result_path, lambda rep: WORKERS[args._worker](args, rep))

    sizes = _sizes(args.sizes)
    if args.data and len(sizes) != 1:
        sys.exit("--data takes one data folder: give a single size (or leave --sizes out)")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.profile and "profile" not in stages:
        stages.insert(stages.index("assemble") if "assemble" in stages else len(stages), "profile")
    bad = [s for s in stages if s not in STAGES]
    if bad:
        sys.exit(f"unknown stages {bad}; choose from {', '.join(STAGES)}")
    if args.engine != "pandas" and "profile" in stages:
        sys.exit("--profile profiles build_features (the pandas engine): leave out --engine or --profile")
    if args.data:
        meta = Path(args.data) / "dataset.json"
        if meta.exists():
            sizes = [json.loads(meta.read_text()).get("n_people") or sizes[0]]
    out_path = B.RESULTS_DIR / f"{args.name}.json"
    doc = {"benchmark": "training",
           "settings": {"sizes": sizes, "data": args.data, "generator": {"start": GEN_START, "years": GEN_YEARS,
                        "seed": args.seed, "futures": args.futures}, "n_bootstrap": args.n_bootstrap,
                        "overrides": args.overrides, "load_mode": args.load_mode, "engine": args.engine, "oracle": not args.no_truth, "stages": stages,
                        "mem_limit_gib": args.mem_limit_gib},
           "environment": B.environment(), "sizes": {}}
    B.write_json(out_path, doc)
    script = str(Path(__file__).resolve())
    passthrough = ["--seed", str(args.seed), "--futures", str(args.futures), "--n-bootstrap", str(args.n_bootstrap),
                   "--workdir", args.workdir, "--name", args.name, "--engine", args.engine]
    passthrough += [x for o in args.overrides for x in ("--set", o)] + ["--load-mode", args.load_mode]
    if args.index_date:
        passthrough += ["--index-date", args.index_date]
    if args.no_truth:
        passthrough += ["--no-truth"]

    for n in sizes:
        data_dir = Path(args.data) if args.data else Path(args.workdir) / f"synth-{n}-seed{args.seed}"
        entry = doc["sizes"][str(n)] = {"data_dir": str(data_dir), "stages": {}}
        failed = None
        for stage in stages:
            if stage == "generate" and (args.data or (not args.regenerate and _matching_dataset(data_dir, n, args))):
                entry["stages"]["generate"] = {"status": "reused", "note": f"existing data set {data_dir}"}
                print(f"[bench_training] {n:,}: reusing {data_dir}", flush=True)
                continue
            if failed:
                entry["stages"][stage] = {"status": "skipped", "failure": f"skipped after {failed} failed"}
                continue
            print(f"[bench_training] {n:,} people: stage {stage} (load {B.loadavg()})", flush=True)
            cmd = [sys.executable, script, "--_worker", stage, "--_size", str(n), "--_datadir", str(data_dir), *passthrough]
            res = B.run_worker(cmd, mem_limit_mib=args.mem_limit_gib * 1024,
                               min_available_mib=args.min_available_gib * 1024)
            res["status"] = "ok" if res.get("ok") else "FAILED"
            entry["stages"][stage] = res
            doc["environment"]["loadavg_at_end"] = B.loadavg()
            B.write_json(out_path, doc)
            line = (f"[bench_training] {n:,} {stage}: {res['status']}, {res.get('seconds')} s, "
                    f"peak {res.get('peak_rss_mib')} MiB")
            print(line + (f" -- {res.get('failure')} (in {res.get('step')})" if not res.get("ok") else ""), flush=True)
            if not res.get("ok"):
                failed = stage
        entry["status"] = "ok" if not failed else f"failed in {failed}"
        _pickle_path(args, n).unlink(missing_ok=True)
        if args.cleanup and not args.data:
            shutil.rmtree(data_dir, ignore_errors=True)
        B.write_json(out_path, doc)

    print()
    print(B.table(_summary_rows(doc), [("people", "people"), ("stage", "stage"), ("status", "status"),
                                       ("seconds", "seconds"), ("rows", "rows"), ("rows_per_s", "rows/s"),
                                       ("peak_rss_mib", "peak RSS MiB"), ("load", "load1"), ("note", "note")]))
    print("rows: generate = people; load = event rows; features = people at one date; "
          "assemble = person-date rows; fit = training rows")
    for size, entry in doc["sizes"].items():
        fit = entry["stages"].get("fit", {})
        if fit.get("ok"):
            print(f"\n{int(size):,} people, fit: LightGBM + calibration {fit['lightgbm_fit_and_calibration_s']} s "
                  f"({fit['best_iteration']} trees), baselines {fit['baselines_s']} s, evaluation {fit['evaluation_s']} s")
            print("  " + ", ".join(f"{m} AUROC {v.get('auroc')}" for m, v in fit["metrics"].items()))
        train = entry["stages"].get("train", {})
        if train.get("ok"):
            print(f"\n{int(size):,} people, run_training ({train['engine']} engine): {train['seconds']} s "
                  f"({train.get('cpu_seconds')} s CPU), peak "
                  f"{train.get('peak_rss_mib')} MiB, AUROC {train['auroc']}; stages (s): "
                  + ", ".join(f"{k} {v}" for k, v in train["timings"].items() if not k.startswith("features_labels.")))
        prof = entry["stages"].get("profile", {})
        if prof.get("ok"):
            print(f"\n{int(size):,} people, build_features profile: top functions by own time")
            print(B.table(prof["top_tottime"][:12], [("function", "function"), ("calls", "calls"),
                                                     ("tottime", "tottime s"), ("cumtime", "cumtime s")]))
            print("  time per source (s): " + ", ".join(f"{k} {v}" for k, v in prof["blocks"].items()))
    env = doc["environment"]
    print(f"\npython {env['python']}, numpy {env['numpy']}, pandas {env['pandas']}, lightgbm {env['lightgbm']}, "
          f"{env['cpu_count']} CPUs, load {env['loadavg_at_start']} -> {env.get('loadavg_at_end')}")
    print(f"results: {out_path}")
    return 0 if all(e["status"] == "ok" for e in doc["sizes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
