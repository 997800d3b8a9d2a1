#!/usr/bin/env python
"""LightGBM settings against the number of training rows: the fixed defaults against the auto rule.

    .venv/bin/python benchmarks/bench_small_data.py                               # 1k, 3k, 10k, 20k people
    .venv/bin/python benchmarks/bench_small_data.py --sizes 1000,3000 --variant "mcs50:min_child_samples=50"

For each size a synthetic data set is made as `riskstrat demo` makes it (riskstrat.data.synth.write_population,
seed 42, 5 years from 2021-11-01) in <workdir>/synth-<n>-seed<seed> (reused when there), and assembled
once with the default config (riskstrat.modeling.train.assemble; below 10,000 people split.mode=temporal_only,
as the demo does, since a held-out group would have too few events). The assembled rows are cached
(a pickle in the work folder), so a rerun only fits. Then for each variant LightGBM is fitted as
`riskstrat train` fits it (riskstrat.modeling.models.fit_lightgbm: early stopping and sigmoid calibration on the
calibration people, n_jobs=1) and scored on the test rows at the test date: AUROC and calibration slope.

Variants: ``fixed`` (the settings before the auto rule: 1,500 trees at 0.03, min_child_samples 200),
``auto`` (riskstrat.modeling.models.auto_lightgbm, the default now) and any ``--variant NAME:key=value,...``
(explicit LightGBM settings on top of the fixed ones). One seed, one thread: a modest measurement on
a shared machine; with ~100-300 test events at 1,000-3,000 people the AUROC's 95% interval is about
+-0.03-0.05 (printed), so differences smaller than that at those sizes are noise.

Prints a table and writes benchmarks/results/<name>.json (after every size).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as B  # noqa: E402

FIXED = {"n_estimators": 1500, "learning_rate": 0.03, "min_child_samples": 200}
TEMPORAL_ONLY_BELOW = 10_000  # as riskstrat.pipelines.demo


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, settings = text.partition(":")
    values = {}
    for item in filter(None, settings.split(",")):
        key, _, raw = item.partition("=")
        values[key.strip()] = float(raw) if "." in raw else int(raw)
    return name, values


def assembled(n: int, *, seed: int, workdir: Path, target: str):
    """The demo's data set of ``n`` people and its assembled training data (cached)."""
    from riskstrat.modeling.config import load_config, path_override
    from riskstrat.data.load import load_data
    from riskstrat.data.synth import write_population
    from riskstrat.modeling.train import assemble

    data_dir = workdir / f"synth-{n}-seed{seed}"
    if not (data_dir / "dataset.json").exists():
        started = time.perf_counter()
        write_population(data_dir, n, seed=seed)
        print(f"  generated {n:,} people in {time.perf_counter() - started:.0f}s", flush=True)
    mode = "temporal_only" if n < TEMPORAL_ONLY_BELOW else "person_and_date"
    cache = workdir / f"assembled-{n}-seed{seed}-{target}-{mode}.pickle"
    if cache.exists():
        return pickle.loads(cache.read_bytes()), mode
    cfg = load_config(None, [f"target.name={target}", path_override("data.path", data_dir), f"split.mode={mode}"])
    records = load_data(cfg.data)
    import riskstrat.data.io as rio

    extract_end = rio.dataset_metadata(data_dir)["extract_end"]
    data = assemble(records, cfg, extract_end=extract_end)
    cache.write_bytes(pickle.dumps(data))
    return data, mode


def fit_variant(data, settings: dict | None, *, seed: int) -> dict:
    """Fit LightGBM with ``settings`` (None: the auto rule) and score the test rows."""
    from riskstrat.evaluation import metrics
    from riskstrat.modeling.config import LightGBMConfig
    from riskstrat.modeling.models import fit_lightgbm

    n_rows = len(data.y_train)
    if settings is None:
        from riskstrat.modeling.models import auto_lightgbm

        params, chosen = auto_lightgbm(LightGBMConfig(), n_rows=n_rows)
    else:
        params, chosen = LightGBMConfig(**{**FIXED, **settings}), {}
    started = time.perf_counter()
    model = fit_lightgbm(data.X_train, data.y_train, data.X_cal, data.y_cal, params=params, calibration="sigmoid",
                         seed=seed)
    seconds = time.perf_counter() - started
    p = model.predict_risk(data.X_test)
    low, high = metrics.auroc_ci(data.y_test, p, n_boot=200, seed=0)
    return {"n_estimators": params.n_estimators, "learning_rate": params.learning_rate,
            "min_child_samples": params.min_child_samples, "auto": sorted(chosen),
            "trees": model.metadata["best_iteration"], "auroc": metrics.auroc(data.y_test, p),
            "auroc_ci": [low, high], "calibration_slope": metrics.calibration_slope(data.y_test, p),
            "fit_seconds": round(seconds, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,3000,10000,20000")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--target", default="emergency_admission")
    ap.add_argument("--workdir", default="/tmp/bench-small-data")
    ap.add_argument("--variant", action="append", default=[], help="NAME:key=value,... (repeatable)")
    ap.add_argument("--no-auto", action="store_true", help="skip the auto rule (e.g. before it exists)")
    ap.add_argument("--name", default="small_data")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    variants = {"fixed": {}, **({} if args.no_auto else {"auto": None}), **dict(map(parse_variant, args.variant))}
    out = {"environment": B.environment(), "args": vars(args), "sizes": {}}
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        started = time.perf_counter()
        data, mode = assembled(n, seed=args.seed, workdir=workdir, target=args.target)
        size = {"people": n, "split_mode": mode, "train_rows": len(data.y_train), "train_events": int(data.y_train.sum()),
                "calibration_rows": len(data.y_cal), "test_rows": len(data.y_test), "test_events": int(data.y_test.sum()),
                "assemble_seconds": round(time.perf_counter() - started, 1), "variants": {}}
        print(f"{n:,} people ({mode}): {size['train_rows']:,} training rows, {size['test_events']:,} test events",
              flush=True)
        for name, settings in variants.items():
            got = fit_variant(data, settings, seed=args.seed)
            size["variants"][name] = got
            rows.append({"people": n, "variant": name, **{k: v for k, v in got.items() if k != "auto"},
                         "ci": f"{got['auroc_ci'][0]:.3f}-{got['auroc_ci'][1]:.3f}", "auroc_text": f"{got['auroc']:.3f}",
                         "slope_text": f"{got['calibration_slope']:.2f}", "lr_text": f"{got['learning_rate']:g}"})
            print(f"  {name:>10}: AUROC {got['auroc']:.3f} ({rows[-1]['ci']}), slope {got['calibration_slope']:.2f}, "
                  f"{got['trees']} trees (lr {got['learning_rate']}, mcs {got['min_child_samples']}), "
                  f"{got['fit_seconds']}s", flush=True)
        out["sizes"][str(n)] = size
        B.write_json(B.RESULTS_DIR / f"{args.name}.json", out)
    print(B.table(rows, [("people", "people"), ("variant", "variant"), ("min_child_samples", "mcs"),
                         ("lr_text", "lr"), ("trees", "trees"), ("auroc_text", "AUROC"), ("ci", "95% CI"),
                         ("slope_text", "slope"), ("fit_seconds", "fit s")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
