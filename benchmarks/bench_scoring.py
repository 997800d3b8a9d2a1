#!/usr/bin/env python
"""Benchmark the monthly scoring run: features, prediction, SHAP reasons and writing the lists.

    .venv/bin/python benchmarks/bench_scoring.py                          # 100,000 people
    .venv/bin/python benchmarks/bench_scoring.py --people 100000,1000000
    .venv/bin/python benchmarks/bench_scoring.py --data riskstrat-data/synthetic

For each size a synthetic data set (start 2021-11-01, 5 years, seed 42, 12 futures: the same
settings as bench_training.py, so its folders <workdir>/synth-<n>-seed42 are reused) is generated
or reused; ``--data DIR`` uses an existing data folder instead (one size only). Stages, each in a
fresh subprocess so that the peak RSS reported is that stage's own:

    generate   write_population (skipped when a matching data set exists)
    train      ONCE, on the smallest size (or --train-data): an emergency-admission and a high-cost
               model with few trees (--n-estimators, default 400, about what early stopping keeps
               with the default config at 100k) but the default depth and leaves, trained at one
               index date, registered and promoted to champion in a temporary SQLite MLflow store
    score      riskstrat.pipelines.score.run_scoring with configs/scoring.yaml (list size 100, 10%
               hold-out), exactly as `riskstrat score` runs it: load + validate, features,
               prediction, SHAP for the listed people, writing; the split comes from the
               manifest's timings_seconds, and people/s from the people scored. With
               --engine spark a local[2] session is started before the clock (on a cluster it
               exists: its seconds are reported apart), and the JVM's peak RSS and its Python
               workers' are reported beside the worker's own
    shap       ONCE, on the first size scored: for 2,000 listed people, RiskModel.contributions
               (LightGBM pred_contrib, exact TreeSHAP) against shap.TreeExplainer(model.estimator)
               .shap_values, best of --repeats runs each, and the largest absolute difference. For
               LightGBM that TreeExplainer path calls pred_contrib itself, so shap's own C++ TreeSHAP
               (the explainer's "internal" model type, one thread) is timed as well, against
               LightGBM on all its threads and on one

    bare       after each score (--rounds times, interleaved with it), the same work written
               directly: the engine's aggregate queries (DuckDBEngine.aggregate_sql) on a fresh
               DuckDB connection; one booster.predict per model (the risk model, the high-cost
               classifier and its cost regressor) over the scored people's feature matrix, in
               data order as the run predicts (not read back in risk order: that doubles tree speed);
               booster.predict(pred_contrib=True) for the people the score run explained; and each
               practice's listed rows written as CSV with pandas. Its parts' sum is the floor the
               ratios compare the monthly run with (benchmarks/README.md)

The ratios printed (medians over the rounds, each round's score and bare run back to back):
scoring over bare predict (the run's "prediction" stage over the bare predict calls), writing's
share of the monthly run, the whole run over the sum of its bare parts, and load + features over
the bare query.

With --fallback-unvalidated, a size whose validated load is killed (load_records needs more than
18 GiB at 1M people) is scored again from unvalidated records, to time the stages after loading.

A stage that fails (exception, MemoryError, killed by the kernel or the memory guard) is recorded
with its step and peak RSS and the next size still runs. JSON goes to
benchmarks/results/<name>.json (temp file + os.replace) after every stage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as B  # noqa: E402

GEN_START, GEN_YEARS = "2021-11-01", 5
RISK_MODEL, COST_MODEL = "bench-emergency-admission", "bench-high-cost"
SCORING_CONFIG = B.REPO / "configs" / "scoring.yaml"
SPLIT = ("load", "features", "prediction", "shap", "writing")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--people", "--sizes", dest="sizes", default="100000",
                   help="people per data set, comma-separated; each size runs in turn (default 100000)")
    p.add_argument("--data", default=None, help="use this existing data folder instead of generating (one size only)")
    p.add_argument("--train-data", default=None,
                   help="data folder to train the models on (default: the smallest size's data)")
    p.add_argument("--workdir", default="/tmp/riskstrat-bench",
                   help="where generated data sets live and the temporary store and lists go (default /tmp/riskstrat-bench)")
    p.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    p.add_argument("--futures", type=int, default=12, help="generator futures per person (default 12)")
    p.add_argument("--as-of", default=None, help="scoring date (default: the day after the extract ends)")
    p.add_argument("--n-estimators", type=int, default=400, help="LightGBM trees per model (default 400)")
    p.add_argument("--train-date", default="2024-11-01", help="the one training index date (default 2024-11-01)")
    p.add_argument("--test-date", default="2025-11-01", help="the test index date (default 2025-11-01)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra scoring config override, e.g. --set lists.list_size=200 (repeatable)")
    p.add_argument("--shap-people", type=int, default=2000, help="listed people in the SHAP comparison (default 2000; 0 skips it: it loads "
                        "the data with the pandas engine)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per SHAP method, best kept (default 7)")
    p.add_argument("--load-mode", choices=("validated", "unvalidated"), default="validated",
                   help="validated: run_scoring loads and validates the data itself, as `riskstrat score` does "
                        "(default); unvalidated: the benchmark reads the Parquet files without validation and "
                        "hands the records to run_scoring, to time the later stages when validation does not fit")
    p.add_argument("--fallback-unvalidated", action="store_true",
                   help="when a size fails while loading, score it again with --load-mode unvalidated")
    p.add_argument("--engine", choices=("pandas", "duckdb", "spark"), default="duckdb",
                   help="feature engine of the monthly run (default duckdb; pandas is the reference; spark: a "
                        "local[2] session started before the clock, as a cluster's exists already)")
    p.add_argument("--rounds", type=int, default=1,
                   help="score + bare runs per size, interleaved; medians reported (default 1)")
    p.add_argument("--store", default=None,
                   help="MLflow store folder for the benchmark's champions: reused when it holds them (trained "
                        "there otherwise, and kept), e.g. to train once at 100k and score 1M")
    p.add_argument("--no-bare", dest="bare", action="store_false",
                   help="score only, no bare run after it (its untimed set-up holds the whole feature matrix twice: "
                        "at 5M people and 197 features about 16 GB)")
    p.add_argument("--keep", action="store_true", help="keep the MLflow store and the written lists")
    p.add_argument("--mem-limit-gib", type=float, default=18.0,
                   help="kill a stage whose resident memory passes this (default 18)")
    p.add_argument("--min-available-gib", type=float, default=1.5,
                   help="kill a stage when the machine's available memory drops below this (default 1.5)")
    p.add_argument("--timeout-min", type=float, default=45.0, help="kill a stage running longer than this (default 45)")
    p.add_argument("--name", default="scoring", help="results file benchmarks/results/<name>.json (default scoring)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--_datadir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_store", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_lists", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _sizes(text: str) -> list[int]:
    return [int(float(s.replace("_", ""))) for s in text.split(",") if s.strip()]


def _uri(store: str) -> str:
    return f"sqlite:///{Path(store) / 'mlflow.db'}"


def _as_of(args, data_dir: str) -> str:
    if args.as_of:
        return args.as_of
    meta = Path(data_dir) / "dataset.json"
    if meta.exists() and json.loads(meta.read_text()).get("extract_end"):
        end = dt.date.fromisoformat(json.loads(meta.read_text())["extract_end"])
        return str(end + dt.timedelta(days=1))
    raise SystemExit(f"{data_dir} has no dataset.json with extract_end: give --as-of")


def _scoring_config(args, data_dir: str, output_dir: str):
    from riskstrat.modeling.config import ScoringConfig, load_config

    return load_config(SCORING_CONFIG, [f"data.path={data_dir}", f"tracking.uri={_uri(args._store)}",
                                        f"models.risk={RISK_MODEL}", f"models.high_cost={COST_MODEL}",
                                        f"output_dir={output_dir}", f"engine={args.engine}", *args.overrides],
                       model=ScoringConfig)


def load_unvalidated(data_dir):
    """The Parquet tables as read, date columns cast to datetime64[s]: NO validation (as in
    bench_training.py's --load-mode unvalidated). Only to time the stages after loading when
    load_records does not fit in memory; it keeps the few out-of-life event rows validation drops."""
    import pandas as pd

    from riskstrat.data.io import read_raw_tables
    from riskstrat.data.records import LinkedRecords
    from riskstrat.data.schema import TABLES

    raw, _ = read_raw_tables(data_dir)
    for name, df in raw.items():
        for col in TABLES[name].date_columns:
            if col in df:
                df[col] = pd.to_datetime(df[col]).astype("datetime64[s]")
    return LinkedRecords(raw)


def _records(args, cfg, rep: B.Reporter):
    """None in validated mode (run_scoring loads the data itself), else the unvalidated records."""
    if args.load_mode == "validated":
        return None
    rep.step("load_unvalidated")
    t0 = time.perf_counter()
    records = load_unvalidated(cfg.data.path)
    if cfg.data.exclude_sources:
        records = records.without(*cfg.data.exclude_sources)
    rep.update(records_load_seconds=round(time.perf_counter() - t0, 2), rss_after_load_mib=B.current_rss_mib())
    return records


# ----------------------------------------------------------------------------- workers


def w_generate(args, rep: B.Reporter) -> None:
    from riskstrat.data.synth import write_population

    n, out = args._size, Path(args._datadir)
    rep.step("write_population")
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"    generated {done:,}/{total:,} people in {time.perf_counter() - t0:,.0f} s", flush=True)
        rep.update(generated=done)

    write_population(out, n, start=GEN_START, years=GEN_YEARS, seed=args.seed, n_futures=args.futures,
                     progress=progress)
    seconds = time.perf_counter() - t0
    rep.update(seconds=round(seconds, 2), people_per_s=round(n / seconds, 1))


def w_train(args, rep: B.Reporter) -> None:
    """Both champions, trained small and registered in the temporary store."""
    from riskstrat.registry import tracking
    from riskstrat.modeling.config import load_config
    from riskstrat.data.load import load_data
    from riskstrat.pipelines.train import run_training

    uri = _uri(args._store)
    common = [f"data.path={args._datadir}", f"tracking.uri={uri}", f"index_dates.train=[{args.train_date}]",
              f"index_dates.test={args.test_date}", f"model.lightgbm.n_estimators={args.n_estimators}",
              "evaluation.n_bootstrap=10", "model.baselines=[]",  # 0 bootstraps is refused by the metrics
              # Models trained to be timed, not used: small sizes must not stop at the event minimums.
              "guards.min_events_train=1", "guards.min_events_calibration=1", "guards.min_events_test=1"]
    records = None
    models = {}
    for target, name in [("emergency_admission", RISK_MODEL), ("high_cost", COST_MODEL)]:
        cfg = load_config(None, [*common, f"target.name={target}", f"tracking.registered_model={name}"])
        if records is None:
            rep.step("load_data")
            t0 = time.perf_counter()
            records = load_data(cfg.data)
            rep.update(load_seconds=round(time.perf_counter() - t0, 2))
        rep.step(f"train {target}")
        t0 = time.perf_counter()
        run = run_training(cfg, records=records)
        tracking.promote(name, run.logged.model_version, alias="champion", uri=uri)
        model = run.result.model
        models[name] = {"target": target, "seconds": round(time.perf_counter() - t0, 2),
                        "trees": int(model.estimator.booster_.num_trees()),
                        "best_iteration": model.metadata.get("best_iteration"),
                        "num_leaves": model.estimator.get_params()["num_leaves"],
                        "max_depth": model.estimator.get_params()["max_depth"],
                        "n_features": len(model.feature_names),
                        "auroc": round(run.result.metrics["lightgbm"]["auroc"], 4)}
        rep.update(models=models)


def _run_timings(output_dir) -> dict:
    """The stage timings of the run just published: the audit log's last "published" line (they are
    kept out of manifest.json so that a rerun's manifest is byte-identical)."""
    from riskstrat.scoring.publish import AUDIT_LOG

    events = [json.loads(line) for line in (Path(output_dir) / AUDIT_LOG).read_text().splitlines() if line]
    return dict([e for e in events if e["event"] == "published"][-1]["timings_seconds"])


def _next_step(message: str) -> str:
    """What run_scoring does after it reports ``message`` (so a killed worker says where it was)."""
    if message.startswith("loaded ") and " people and " in message:
        return "features (build_features, opt-outs)"
    if message.startswith("loaded "):
        return "load data (load_records: read + validate)"
    if message.startswith("features as of"):
        return "prediction and SHAP"
    if message.startswith("explained"):
        return "writing"
    if message.startswith("wrote"):
        return "MLflow logging"
    return f"after: {message[:60]}"


def _spark_memory(session) -> dict:
    """The local Spark session's JVM peak resident memory, and the sum of its live Python workers' peaks
    (an upper bound of what they held at once), in MiB."""
    import psutil

    jvm = session.sparkContext._gateway.proc.pid
    workers = [c.pid for c in psutil.Process(jvm).children(recursive=True)]
    return {"jvm_peak_rss_mib": B._proc_status(jvm).get("VmHWM"),
            "python_workers_peak_rss_mib": round(sum(B._proc_status(pid).get("VmHWM") or 0 for pid in workers), 1),
            "python_workers": len(workers)}


def w_score(args, rep: B.Reporter) -> None:
    t_imports = time.perf_counter()
    # The libraries run_scoring imports lazily, imported before the clock as the bare worker does
    # (their import time, several seconds on a loaded machine, is reported apart).
    import duckdb  # noqa: F401
    import lightgbm  # noqa: F401
    import mlflow.pyfunc  # noqa: F401
    import sklearn.calibration  # noqa: F401

    from riskstrat.pipelines.score import run_scoring

    rep.update(imports_seconds=round(time.perf_counter() - t_imports, 2))
    session = None
    if args.engine == "spark":  # the session is not in the run's time: on a cluster it exists already
        from riskstrat.features.spark import spark_session

        rep.step("spark session")
        t_session = time.perf_counter()
        session = spark_session()
        rep.update(session_seconds=round(time.perf_counter() - t_session, 2))
    cfg = _scoring_config(args, args._datadir, args._lists)
    as_of = _as_of(args, args._datadir)
    rep.update(as_of=as_of, load_mode=args.load_mode, rss_after_import_mib=B.current_rss_mib())
    marks: list[dict] = []
    t0 = time.perf_counter()

    def stage(message: str) -> None:
        marks.append({"at_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time(), 2),
                      "message": message, "rss_mib": B.current_rss_mib(), "peak_so_far_mib": B.peak_rss_mib()})
        print(f"    {marks[-1]['at_s']:7.1f} s  (CPU {marks[-1]['cpu_s']:7.1f} s, RSS {marks[-1]['rss_mib']:,.0f} MiB)  {message}",
              flush=True)
        rep.step(_next_step(message))
        rep.update(progress=marks)

    records = _records(args, cfg, rep)
    t0 = time.perf_counter()
    rep.step("run_scoring")
    manifest = run_scoring(cfg, as_of, stage=stage, records=records)
    timings = _run_timings(cfg.output_dir)
    if session is not None:  # the JVM and its Python workers are child processes: their memory apart
        rep.update(**_spark_memory(session))
    # run_scoring's "load" covers the models, and the data when it loads them itself.
    timings["load"] = round(timings["load"] + rep.result.get("records_load_seconds", 0.0), 3)
    total = time.perf_counter() - t0 + rep.result.get("records_load_seconds", 0.0)
    counts = manifest["counts"]
    scored = counts["scored"]
    pipeline = sum(timings[k] for k in SPLIT[1:])
    month = Path(manifest["output_dir"])
    rep.update(
        seconds=round(total, 2), timings_seconds=timings,
        # What run_scoring times as "writing" includes marking the lists, changes and the summary;
        # "other" is what the manifest does not time (MLflow logging, mostly).
        other_seconds=round(total - sum(timings.get(k, 0) for k in SPLIT), 2),
        scored=scored, listed=counts["listed"], explained=counts.get("explained", counts["listed"]),
        explain=getattr(cfg.lists, "explain", "listed"), practices=counts["practices"],
        people_per_s=round(scored / total, 1), people_per_s_after_load=round(scored / pipeline, 1),
        shap_people_per_s=(round(counts.get("explained", counts["listed"]) / timings["shap"], 1)
                           if timings["shap"] else None),
        writing_share=round(timings["writing"] / total, 4),
        output_mib=round(B.dir_size_bytes(month) / B.MIB, 1), output_files=sum(1 for p in month.rglob("*") if p.is_file()),
        shap_additivity_max_error=manifest["shap_additivity_max_error"],
        models={k: v["version"] for k, v in manifest["models"].items()})


def w_shap(args, rep: B.Reporter) -> None:
    """Native TreeSHAP (pred_contrib) against the shap package on the same listed people."""
    import numpy as np
    import pandas as pd

    from riskstrat.registry import tracking
    from riskstrat.features.reference import build_features
    from riskstrat.data.load import load_data
    from riskstrat.scoring.checks import check_feature_spec
    from riskstrat.data.records import LinkedRecords

    cfg = _scoring_config(args, args._datadir, args._lists)
    as_of = _as_of(args, args._datadir)
    month = Path(args._lists) / pd.Timestamp(as_of).strftime("%Y-%m")
    population = pd.read_parquet(month / "population.parquet", columns=["person_id", "rank", "listed"])
    listed = population.loc[population["listed"]].sort_values("rank")
    ids = pd.concat([listed, population.loc[~population["listed"]].sort_values("rank")])["person_id"]
    ids = ids.head(args.shap_people).astype(str)
    records = _records(args, cfg, rep)
    if records is None:
        rep.step("load_data")
        records = load_data(cfg.data)
    # Features are per person: build them for these people only.
    keep = set(ids)
    records = LinkedRecords({name: df.loc[df["person_id"].astype(str).isin(keep)] for name, df in records.tables.items()})
    loaded = tracking.load_model(cfg.models.risk, alias=cfg.models.alias, uri=cfg.tracking.uri)
    model = loaded.risk_model
    spec = check_feature_spec(loaded)  # the features the model was trained on, as stored with it
    X = build_features(records, as_of, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age,
                       spec=spec).loc[ids.to_numpy()]
    M = X[model.feature_names].astype("float64")
    booster = model.estimator.booster_
    rep.update(people=len(X), listed_people=int(min(len(listed), len(X))), trees=int(booster.num_trees()),
               best_iteration=int(booster.best_iteration or booster.num_trees()))

    def best_of(fn) -> tuple[float, object]:
        times, out = [], None
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    rep.step("native pred_contrib")
    native_s, (native, base) = best_of(lambda: model.contributions(X))
    booster_s, _ = best_of(lambda: booster.predict(M, pred_contrib=True))  # without RiskModel's frame handling
    # shap's own C++ TreeSHAP runs on one thread; LightGBM uses the model's n_jobs threads.
    one_thread_s, _ = best_of(lambda: booster.predict(M, pred_contrib=True, num_threads=1))
    rep.update(native_seconds=round(native_s, 4), native_people_per_s=round(len(X) / native_s, 1),
               native_booster_seconds=round(booster_s, 4), native_one_thread_seconds=round(one_thread_s, 4),
               lightgbm_threads=model.estimator.get_params().get("n_jobs"))

    import warnings

    import shap

    warnings.filterwarnings("ignore", message="LightGBM binary classifier with TreeExplainer")
    rep.step("shap.TreeExplainer")
    t0 = time.perf_counter()
    explainer = shap.TreeExplainer(model.estimator)
    init_s = time.perf_counter() - t0
    package_s, package = best_of(lambda: explainer.shap_values(M))
    package = np.asarray(package[1] if isinstance(package, list) else package)
    rep.update(shap_version=shap.__version__, shap_init_seconds=round(init_s, 4), shap_seconds=round(package_s, 4),
               shap_people_per_s=round(len(X) / package_s, 1), speed_ratio=round(package_s / native_s, 2),
               speed_ratio_with_init=round((package_s + init_s) / native_s, 2),
               max_abs_difference=float(np.max(np.abs(package - native.to_numpy()))))
    # For LightGBM, TreeExplainer's default path hands the work back to LightGBM's own pred_contrib
    # (so the ratio above is wrapper overhead). Time shap's own C++ TreeSHAP on the same trees too:
    # that is the "generic explainer" the native output is compared with.
    rep.step("shap internal TreeSHAP")
    own = shap.TreeExplainer(model.estimator)
    own.model.model_type = "internal"
    own_s, own_values = best_of(lambda: own.shap_values(M, check_additivity=False))
    own_values = np.asarray(own_values[1] if isinstance(own_values, list) else own_values)
    rep.update(shap_internal_seconds=round(own_s, 4), shap_internal_people_per_s=round(len(X) / own_s, 1),
               speed_ratio_internal=round(own_s / native_s, 2),
               speed_ratio_internal_one_thread=round(own_s / one_thread_s, 2),
               max_abs_difference_internal=float(np.max(np.abs(own_values - native.to_numpy()))),
               max_abs_base_difference_internal=float(np.max(np.abs(
                   np.asarray(own.expected_value).reshape(-1)[-1] - base))))


def w_bare(args, rep: B.Reporter) -> None:
    """The monthly run's work written directly with DuckDB, LightGBM and pandas (the floor).

    Untimed set-up: the aggregate SQL, the feature matrix of the people the last score run scored
    (from the engine, in data order as the run predicts them), the boosters, and that run's population.parquet (who was explained and
    listed). Timed: the queries, the predict calls, pred_contrib and the CSVs, each alone."""
    import duckdb
    import numpy as np
    import pandas as pd

    from riskstrat.registry import tracking
    from riskstrat.features.duckdb import DuckDBEngine, default_memory_limit
    from riskstrat.scoring.checks import models_spec

    cfg = _scoring_config(args, args._datadir, args._lists)
    as_of = _as_of(args, args._datadir)
    month = Path(args._lists) / pd.Timestamp(as_of).strftime("%Y-%m")
    rep.step("set-up (untimed)")
    loaded = [tracking.load_model(name, alias=cfg.models.alias, uri=cfg.tracking.uri)
              for name in (cfg.models.risk, cfg.models.high_cost)]
    risk, cost = (m.risk_model for m in loaded)
    spec = models_spec(loaded)  # the features the models were trained on, as the run builds them
    engine = DuckDBEngine(args._datadir, memory_limit=cfg.data.duckdb_memory_limit)  # the run's DuckDB memory
    queries = {name: engine.aggregate_sql(name, as_of, spec.aggregates_for(name)) for name in engine.sources}
    features = engine.features(as_of, min_age=cfg.cohort.min_age, max_age=cfg.cohort.max_age, spec=spec)
    del engine
    population = pd.read_parquet(month / "population.parquet")
    # The people scored (opt-outs removed) in data order, as the monthly run predicts them: rows read
    # back in population.parquet's risk order make LightGBM about twice as fast (branches predictable),
    # which flattered the bare predict. The population is aligned with these rows.
    features = features.loc[features.index.isin(population["person_id"].to_numpy())]
    population = population.set_index("person_id").loc[features.index].reset_index()
    M = features[risk.feature_names].to_numpy(dtype="float64")
    M_cost = M if cost.feature_names == risk.feature_names else features[cost.feature_names].to_numpy(dtype="float64")
    # Who the run explained: the listed people (before the hold-out), or everyone with lists.explain=all.
    everyone = getattr(cfg.lists, "explain", "listed") == "all"
    explained = np.ones(len(M), bool) if everyone else population["listed"].to_numpy()
    M_explained = M[explained]
    shown = population.loc[population["listed"] & ~population["holdout"]]
    list_columns = ["person_id", "practice_rank", "age", "sex", "risk", "tier", "groups", "high_cost_risk",
                    "predicted_cost_band", "emergency_admissions_12m", "ae_attendances_12m", "emergency_bed_days_12m",
                    "reasons", "new_this_month"]
    out_root = Path(args._lists) / "bare-csv"
    shutil.rmtree(out_root, ignore_errors=True)
    del features
    times = {}

    rep.step("bare query")
    t0 = time.perf_counter()
    con = duckdb.connect()
    limit = cfg.data.duckdb_memory_limit or default_memory_limit()  # the same limit the run's engine takes
    if limit:
        con.execute(f"SET memory_limit = '{limit}'")
    persons = str(Path(args._datadir) / "persons.parquet").replace("'", "''")
    con.execute("CREATE TEMP TABLE persons AS SELECT person_id, CAST(birth_date AS DATE) AS birth_date, "
                f"CAST(death_date AS DATE) AS death_date FROM read_parquet('{persons}')")
    rows = sum(len(con.execute(sql).df()) for sql in queries.values())
    con.close()
    times["query"] = time.perf_counter() - t0

    rep.step("bare predict")
    t0 = time.perf_counter()
    risk.estimator.booster_.predict(M)
    cost.estimator.booster_.predict(M_cost)
    if cost.cost_estimator is not None:
        cost.cost_estimator.booster_.predict(M_cost)
    times["predict"] = time.perf_counter() - t0

    rep.step("bare pred_contrib")
    t0 = time.perf_counter()
    risk.estimator.booster_.predict(M_explained, pred_contrib=True)
    times["pred_contrib"] = time.perf_counter() - t0

    rep.step("bare CSVs")
    t0 = time.perf_counter()
    for practice, part in shown.groupby(shown["practice_id"].fillna("no-registered-practice"), sort=False):
        folder = out_root / str(practice)
        folder.mkdir(parents=True)
        part[list_columns].sort_values("practice_rank").to_csv(folder / "list.csv", index=False)
    times["csv"] = time.perf_counter() - t0
    shutil.rmtree(out_root, ignore_errors=True)

    rep.update(seconds=round(sum(times.values()), 3), parts_seconds={k: round(v, 3) for k, v in times.items()},
               aggregate_rows=rows, people=len(M), explained=int(explained.sum()), csv_files=int(shown["practice_id"]
                                                                                              .nunique(dropna=False)))


WORKERS = {"generate": w_generate, "train": w_train, "score": w_score, "shap": w_shap, "bare": w_bare}


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
        for key in ("score", "score_unvalidated"):
            if key not in entry:
                continue
            r = entry[key]
            t = r.get("timings_seconds") or {}
            failed = r.get("status") != "ok"
            rows.append({"people": int(size), "mode": r.get("load_mode"), "status": r.get("status"),
                         **{k: t.get(k) for k in SPLIT}, "other": r.get("other_seconds"), "total": r.get("seconds"),
                         "scored": r.get("scored"), "listed": r.get("listed"), "people_per_s": r.get("people_per_s"),
                         "after_load": r.get("people_per_s_after_load"), "peak_rss_mib": r.get("peak_rss_mib"),
                         "loadavg": (r.get("loadavg_start") or [None])[0],
                         "note": f"in {r.get('step')}: {r.get('failure') or ''}"[:110] if failed else ""})
    return rows


def _ratios(score: dict, bare: dict) -> dict:
    """The issue's ratios for one round (score and bare run back to back)."""
    t, parts = score["timings_seconds"], bare["parts_seconds"]
    return {"prediction_over_bare_predict": round(t["prediction"] / parts["predict"], 2),
            "writing_share_of_run": round(t["writing"] / score["seconds"], 3),
            "run_over_bare_sum": round(score["seconds"] / bare["seconds"], 2),
            "load_features_over_bare_query": round((t["load"] + t["features"]) / parts["query"], 2)}


def _median_ratios(rounds: list[dict]) -> dict | None:
    import statistics

    done = [_ratios(r["score"], r["bare"]) for r in rounds
            if r["score"].get("status") == "ok" and (r["bare"] or {}).get("status") == "ok"]
    if not done:
        return None
    out = {k: round(statistics.median(d[k] for d in done), 3) for k in done[0]}
    scores = [r["score"] for r in rounds if r["score"].get("status") == "ok"]
    bares = [r["bare"] for r in rounds if r["bare"].get("status") == "ok"]
    out["run_seconds"] = round(statistics.median(r["seconds"] for r in scores), 2)
    out["bare_seconds"] = round(statistics.median(b["seconds"] for b in bares), 2)
    for part in bares[0]["parts_seconds"]:
        out[f"bare_{part}_seconds"] = round(statistics.median(b["parts_seconds"][part] for b in bares), 3)
    for stage in SPLIT:
        out[f"{stage}_seconds"] = round(statistics.median(r["timings_seconds"][stage] for r in scores), 3)
    out["rounds"] = len(done)
    out["loadavg"] = [r["score"].get("loadavg_start") for r in rounds]
    return out


TARGETS = {"prediction_over_bare_predict": 1.2, "writing_share_of_run": 0.10, "run_over_bare_sum": 1.3,
           "load_features_over_bare_query": 1.5}


def _record(doc: dict, out_path: Path, where: dict, key: str, result: dict) -> dict:
    result["status"] = "ok" if result.get("ok") else "FAILED"
    where[key] = result
    B.write_json(out_path, doc)
    return result


def _run_all(args, doc: dict, out_path: Path, sizes: list[int], workdir: Path, scratch: Path, worker) -> int | None:
    """Generate, train once, then score (and compare SHAP once); returns an exit code on an early stop."""
    data_dirs: dict[int, Path] = {}
    for n in sizes:
        data_dir = Path(args.data) if args.data else workdir / f"synth-{n}-seed{args.seed}"
        data_dirs[n] = data_dir
        entry = doc["sizes"][str(n)] = {"data_dir": str(data_dir)}
        if args.data or _matching_dataset(data_dir, n, args):
            entry["generate"] = {"status": "reused", "note": f"existing data set {data_dir}"}
            continue
        r = _record(doc, out_path, entry, "generate", worker("generate", n, data_dir))
        if r["status"] != "ok":
            print(f"[bench_scoring] {n:,}: generate FAILED: {r.get('failure')}", flush=True)

    usable = [n for n in sizes if doc["sizes"][str(n)]["generate"]["status"] in ("ok", "reused")]
    train_dir = Path(args.train_data) if args.train_data else (data_dirs[min(usable)] if usable else None)
    if train_dir is None:
        print("[bench_scoring] no data set to train on", flush=True)
        return 1
    trained_file = Path(args._store) / "trained.json"
    if trained_file.exists():  # --store with the champions already in it
        train = doc["train"] = {**json.loads(trained_file.read_text()), "status": "reused"}
        print(f"[bench_scoring] reusing the champions in {args._store}", flush=True)
    else:
        train = _record(doc, out_path, doc, "train", worker("train", 0, train_dir))
        doc["train"]["data_dir"] = str(train_dir)
        if train["status"] == "ok":
            trained_file.write_text(json.dumps(train, indent=1, default=str))
    B.write_json(out_path, doc)
    if train["status"] not in ("ok", "reused"):
        print(f"[bench_scoring] training FAILED: {train.get('failure')}", flush=True)
        return 1
    for name, m in train["models"].items():
        print(f"[bench_scoring] trained {name}: {m['trees']} trees, {m['num_leaves']} leaves, depth {m['max_depth']}, "
              f"AUROC {m['auroc']} in {m['seconds']:.0f} s", flush=True)

    for n in usable:
        entry = doc["sizes"][str(n)]
        lists_dir = scratch / f"lists-{n}"
        r = _record(doc, out_path, entry, "score", worker("score", n, data_dirs[n], lists_dir))
        if r["status"] != "ok":
            print(f"[bench_scoring] {n:,}: score FAILED in {r.get('step')}: {r.get('failure')}", flush=True)
            loading = str(r.get("step", "")).startswith("load data")
            if not (args.fallback_unvalidated and args.load_mode == "validated" and loading):
                continue
            shutil.rmtree(lists_dir, ignore_errors=True)
            r = _record(doc, out_path, entry, "score_unvalidated",
                        worker("score", n, data_dirs[n], lists_dir, load_mode="unvalidated"))
            if r["status"] != "ok":
                print(f"[bench_scoring] {n:,}: unvalidated score FAILED in {r.get('step')}: {r.get('failure')}",
                      flush=True)
                continue
        t = r["timings_seconds"]
        print(f"[bench_scoring] {n:,}: scored {r['scored']:,} in {r['seconds']:.1f} s "
              f"({', '.join(f'{k} {t[k]:.1f}' for k in SPLIT)}); peak {r['peak_rss_mib']:,.0f} MiB", flush=True)
        entry["rounds"] = []
        for round_ in range(max(1, args.rounds)):
            if round_:  # later rounds: another score run into a fresh folder
                shutil.rmtree(lists_dir, ignore_errors=True)
                r = worker("score", n, data_dirs[n], lists_dir, load_mode=r.get("load_mode"))
                r["status"] = "ok" if r.get("ok") else "FAILED"
                if r["status"] != "ok":
                    print(f"[bench_scoring] {n:,}: score round {round_ + 1} FAILED: {r.get('failure')}", flush=True)
                    break
            if not args.bare:
                entry["rounds"].append({"score": r, "bare": None})
                B.write_json(out_path, doc)
                continue
            bare = worker("bare", n, data_dirs[n], lists_dir, load_mode=r.get("load_mode"))
            bare["status"] = "ok" if bare.get("ok") else "FAILED"
            entry["rounds"].append({"score": r, "bare": bare})
            B.write_json(out_path, doc)
            if bare["status"] != "ok":
                print(f"[bench_scoring] {n:,}: bare FAILED in {bare.get('step')}: {bare.get('failure')}", flush=True)
                break
            ratios = _ratios(r, bare)
            print(f"[bench_scoring] {n:,} round {round_ + 1}: run {r['seconds']:.1f} s, bare {bare['seconds']:.1f} s "
                  f"({', '.join(f'{k} {v:.2f}' for k, v in bare['parts_seconds'].items())}); "
                  + ", ".join(f"{k} {v}" for k, v in ratios.items()), flush=True)
        entry["ratios"] = _median_ratios(entry["rounds"])
        B.write_json(out_path, doc)
        if doc["shap_comparison"] is None and args.shap_people > 0:
            s = _record(doc, out_path, doc, "shap_comparison",
                        worker("shap", n, data_dirs[n], lists_dir, load_mode=r.get("load_mode")))
            s["size"] = n
            B.write_json(out_path, doc)
            if s["status"] == "ok":
                print(f"[bench_scoring] SHAP on {s['people']:,} people: native {s['native_seconds']:.3f} s, "
                      f"shap TreeExplainer {s['shap_seconds']:.3f} s (x{s['speed_ratio']}), shap's own TreeSHAP "
                      f"{s['shap_internal_seconds']:.3f} s (x{s['speed_ratio_internal']})", flush=True)
        if not args.keep:
            shutil.rmtree(lists_dir, ignore_errors=True)

    return None


def main(argv: list[str]) -> int:
    result_path, argv = B.worker_args(argv)
    args = parse_args(argv)
    if args._worker:
        return B.worker_main(result_path, lambda rep: WORKERS[args._worker](args, rep))

    sizes = _sizes(args.sizes)
    if args.data:
        if len(sizes) != 1 and "--people" in argv:
            sys.exit("--data takes one data folder: give a single size (or leave --people out)")
        meta = Path(args.data) / "dataset.json"
        sizes = [json.loads(meta.read_text()).get("n_people") or sizes[0]] if meta.exists() else sizes[:1]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{args.name}-", dir=workdir))
    store = Path(args.store) if args.store else scratch / "mlflow"
    store.mkdir(parents=True, exist_ok=True)
    args._store = str(store)
    out_path = B.RESULTS_DIR / f"{args.name}.json"
    doc = {"benchmark": "scoring",
           "settings": {"sizes": sizes, "data": args.data, "train_data": args.train_data,
                        "generator": {"start": GEN_START, "years": GEN_YEARS, "seed": args.seed, "futures": args.futures},
                        "scoring_config": str(SCORING_CONFIG.relative_to(B.REPO)), "overrides": args.overrides,
                        "training": {"n_estimators": args.n_estimators, "train_dates": [args.train_date],
                                     "test_date": args.test_date, "n_bootstrap": 10, "baselines": []},
                        "shap_people": args.shap_people, "repeats": args.repeats, "load_mode": args.load_mode,
                        "fallback_unvalidated": args.fallback_unvalidated,
                        "mem_limit_gib": args.mem_limit_gib, "timeout_min": args.timeout_min},
           "environment": B.environment(), "train": None, "sizes": {}, "shap_comparison": None}
    B.write_json(out_path, doc)
    script = str(Path(__file__).resolve())
    passthrough = ["--seed", str(args.seed), "--futures", str(args.futures), "--n-estimators", str(args.n_estimators),
                   "--train-date", args.train_date, "--test-date", args.test_date, "--shap-people",
                   str(args.shap_people), "--repeats", str(args.repeats), "--workdir", args.workdir,
                   "--name", args.name, "--_store", str(store), "--engine", args.engine]
    passthrough += [x for o in args.overrides for x in ("--set", o)]
    passthrough += ["--timeout-min", str(args.timeout_min)]
    if args.as_of:
        passthrough += ["--as-of", args.as_of]
    guard = {"mem_limit_mib": args.mem_limit_gib * 1024, "min_available_mib": args.min_available_gib * 1024,
             "timeout_s": args.timeout_min * 60}

    def worker(name: str, n: int, data_dir: Path, lists_dir: Path | None = None, load_mode: str | None = None) -> dict:
        cmd = [sys.executable, script, "--_worker", name, "--_size", str(n), "--_datadir", str(data_dir), *passthrough,
               "--load-mode", load_mode or args.load_mode]
        if lists_dir is not None:
            cmd += ["--_lists", str(lists_dir)]
        print(f"[bench_scoring] {n:,}: {name} (load {B.loadavg()})", flush=True)
        return B.run_worker(cmd, **guard)

    try:
        code = _run_all(args, doc, out_path, sizes, workdir, scratch, worker)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)  # a --store outside the scratch folder stays
        else:
            print(f"[bench_scoring] kept the store and lists in {scratch}", flush=True)
    if code is not None:
        return code

    doc["environment"]["loadavg_at_end"] = B.loadavg()
    B.write_json(out_path, doc)
    print()
    print(B.table(_summary_rows(doc), [
        ("people", "people"), ("mode", "load mode"), ("status", "status"), ("load", "load s"), ("features", "features s"),
        ("prediction", "prediction s"), ("shap", "SHAP s"), ("writing", "writing s"), ("other", "other s"),
        ("total", "total s"), ("scored", "scored"), ("listed", "listed"), ("people_per_s", "people/s"),
        ("after_load", "people/s after load"), ("peak_rss_mib", "peak RSS MiB"), ("loadavg", "load avg"),
        ("note", "note")]))
    for size, entry in doc["sizes"].items():
        ratios = entry.get("ratios")
        if not ratios:
            continue
        print(f"\n{int(size):,} people, {ratios['rounds']} round(s), engine {args.engine} (medians; load averages at "
              f"each run's start {ratios['loadavg']}):")
        print(f"  monthly run {ratios['run_seconds']:.1f} s (load {ratios['load_seconds']:.1f}, features "
              f"{ratios['features_seconds']:.1f}, prediction {ratios['prediction_seconds']:.2f}, SHAP "
              f"{ratios['shap_seconds']:.2f}, writing {ratios['writing_seconds']:.2f}); bare parts "
              f"{ratios['bare_seconds']:.1f} s (query {ratios['bare_query_seconds']:.1f}, predict "
              f"{ratios['bare_predict_seconds']:.2f}, pred_contrib {ratios['bare_pred_contrib_seconds']:.2f}, CSVs "
              f"{ratios['bare_csv_seconds']:.2f})")
        for key, target in TARGETS.items():
            value = ratios[key]
            print(f"  {key.replace('_', ' ')}: {value:g} (target <= {target:g}: {'met' if value <= target else 'NOT met'})")
    s = doc["shap_comparison"]
    if s and s.get("status") == "ok":
        print(f"\nSHAP on {s['people']:,} listed people ({s['trees']} trees, best iteration {s['best_iteration']}):\n"
              f"  native pred_contrib: RiskModel.contributions {s['native_seconds']:.3f} s "
              f"(booster.predict alone {s['native_booster_seconds']:.3f} s)\n"
              f"  shap {s['shap_version']} TreeExplainer(model.estimator).shap_values {s['shap_seconds']:.3f} s "
              f"(+{s['shap_init_seconds']:.3f} s to build): x{s['speed_ratio']}, max |diff| {s['max_abs_difference']:.1e}\n"
              f"  shap's own C++ TreeSHAP on the same trees {s['shap_internal_seconds']:.3f} s (one thread): "
              f"x{s['speed_ratio_internal']} (x{s['speed_ratio_internal_one_thread']} against LightGBM on one thread "
              f"{s['native_one_thread_seconds']:.3f} s), max |diff| {s['max_abs_difference_internal']:.1e}")
    elif s:
        print(f"\nSHAP comparison FAILED: {s.get('failure')}")
    print(f"\nresults: {out_path}")
    return 0 if all((doc["sizes"][str(n)].get("score") or {}).get("status") == "ok" for n in sizes) else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
