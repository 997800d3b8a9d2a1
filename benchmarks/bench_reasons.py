#!/usr/bin/env python
"""Reasons in words (``top_reasons``) and the ranking (``rank_population``) on a real feature frame.

    .venv/bin/python benchmarks/bench_reasons.py --data /tmp/bench/synth-1m --save-features /tmp/f.parquet
    .venv/bin/python benchmarks/bench_reasons.py --features /tmp/f.parquet --all --hashes /tmp/h.json
    PYTHONPATH=<other checkout>/src .venv/bin/python benchmarks/bench_reasons.py --features /tmp/f.parquet ...

The features come from ``--features`` (a saved feature frame) or are built from ``--data`` with the
DuckDB engine as of ``--index-date`` (about 50 s and 1.5 GiB at 1M people; ``--save-features``
keeps them). The SHAP values are those of a small LightGBM model (215 trees of 7 leaves, depth 6,
as the 1M benchmark's) fitted on a seeded made-up label, for the listed people (each practice's
top ``--list-size`` by the model's raw score) and, with ``--all``, for everyone (about 3 minutes
at 800k; ``--save-shap`` / ``--shap`` keep them). Timed, each ``--rounds`` times: ``top_reasons``
for the listed people and (``--all``) everyone, with money off and on, and ``rank_population``
for everyone. ``--hashes FILE`` writes SHA-256 of each output (as Parquet), so that two versions
of riskstrat can be shown to give identical output. Compare timings within one run only; the
load average is printed with each.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as B  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", help="a saved feature frame (Parquet, index person_id)")
    source.add_argument("--data", help="a data folder to build the features from with DuckDB")
    p.add_argument("--index-date", default="2026-11-01")
    p.add_argument("--save-features", default=None, help="save the built features here (Parquet)")
    p.add_argument("--shap", default=None, help="saved SHAP values of everyone (Parquet), instead of computing them")
    p.add_argument("--save-shap", default=None, help="save everyone's SHAP values here (with --all)")
    p.add_argument("--all", action="store_true", help="also explain everyone, not only the listed people")
    p.add_argument("--list-size", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--hashes", default=None, help="write SHA-256 of each output here (JSON)")
    return p.parse_args(argv)


def features_frame(args):
    import pandas as pd

    if args.features:
        return pd.read_parquet(args.features)
    from riskstrat.features.duckdb import DuckDBEngine

    started = time.perf_counter()
    features = DuckDBEngine(args.data).features(pd.Timestamp(args.index_date), min_age=18, max_age=130)
    print(f"features: {len(features):,} people in {time.perf_counter() - started:.1f} s", flush=True)
    if args.save_features:
        features.to_parquet(args.save_features)
    return features


def made_up_model(features, seed: int):
    """A LightGBM booster shaped like the benchmark's, fitted on a seeded label from a few features."""
    import lightgbm as lgb
    import numpy as np

    from riskstrat.features.clinical import FEATURE_NAMES

    rng = np.random.default_rng(seed)
    X = features[list(FEATURE_NAMES)].astype("float64")
    logit = (-4 + 0.03 * X["age"].fillna(50) + 0.6 * X["emergency_admissions_3_12m"].fillna(0)
             + 0.3 * X["ltc_count"].fillna(0) + 0.05 * X["rx_items_3m"].fillna(0))
    y = rng.random(len(X)) < 1 / (1 + np.exp(-logit.to_numpy()))
    fit = rng.choice(len(X), min(len(X), 100_000), replace=False)
    model = lgb.LGBMClassifier(n_estimators=215, num_leaves=7, max_depth=6, learning_rate=0.05, n_jobs=2,
                               verbose=-1, random_state=seed)
    model.fit(X.iloc[fit], y[fit])
    return model.booster_, list(FEATURE_NAMES)


def digest(frame) -> str:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def timed(label: str, fn, rounds: int, results: dict, hashes: dict):
    seconds = []
    for _ in range(rounds):
        load = B.loadavg()
        started = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - started)
        print(f"{label}: {seconds[-1]:.2f} s (load {load[0]:.2f})", flush=True)
    results[label] = {"seconds": seconds, "loadavg_at_start": load}
    hashes[label] = digest(out)
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import numpy as np
    import pandas as pd

    from riskstrat.scoring.lists import rank_population
    from riskstrat.features.reasons import top_reasons

    features = features_frame(args)
    booster, names = made_up_model(features, args.seed)
    X = features[names].astype("float64")
    raw = booster.predict(X, raw_score=True)
    per_practice = pd.Series(raw, index=features.index).groupby(features["practice_id"].astype("str"))
    listed = (per_practice.rank(method="first", ascending=False) <= args.list_size).to_numpy()
    print(f"{len(features):,} people, {int(listed.sum()):,} listed", flush=True)

    def contributions(rows) -> pd.DataFrame:
        return pd.DataFrame(booster.predict(X.iloc[rows], pred_contrib=True)[:, :-1], index=features.index[rows],
                            columns=names)

    everyone_shap = pd.read_parquet(args.shap) if args.shap else None
    results: dict = {"environment": B.environment(), "people": len(features), "listed": int(listed.sum())}
    hashes: dict = {}
    groups = [("listed", np.flatnonzero(listed))] + ([("all", np.arange(len(features)))] if args.all else [])
    for name, rows in groups:
        if everyone_shap is not None:
            shap = everyone_shap.iloc[rows]
        else:
            started = time.perf_counter()
            shap = contributions(rows)
            print(f"SHAP values of {len(rows):,} people: {time.perf_counter() - started:.1f} s", flush=True)
            if name == "all" and args.save_shap:
                shap.to_parquet(args.save_shap)
        people = features.iloc[rows]
        for money in (False, True):
            timed(f"top_reasons {name} ({len(rows):,}) money={money}",
                  lambda: top_reasons(shap, people, n=3, money_reasons=money), args.rounds, results, hashes)
    risk = 1 / (1 + np.exp(-raw))
    timed(f"rank_population ({len(features):,})",
          lambda: rank_population(features, risk, high_cost_risk=risk ** 2, rank_score=raw), args.rounds, results, hashes)
    B.write_json(Path(__file__).resolve().parent / "results" / "reasons.json", results)
    if args.hashes:
        Path(args.hashes).write_text(json.dumps(hashes, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
