#!/usr/bin/env python
"""Is riskstrat better than an afternoon's model? Compare both on the same people and the same label.

    .venv/bin/python benchmarks/compare_simple.py --data riskstrat-data/synthea --as-of 2021-01-01
    .venv/bin/python benchmarks/compare_simple.py --data DIR --as-of 2020-01-01 --set split.mode=temporal_only

``--data`` is any imported data set (the canonical folder ``riskstrat import`` or ``riskstrat synth``
writes). Two models rank the people eligible on ``--as-of`` (T), and both are judged against one
label computed here, independently of riskstrat's outcome code: **any inpatient stay or emergency
department visit in the ``--horizon`` days from T** (an A&E attendance counts when its
``department_type`` is an emergency department, a single-specialty A&E or unknown: urgent care and
walk-in visits do not).

riskstrat runs as a user would, through its CLI, in a fresh work folder (its own MLflow store, the
data set's pseudonyms unchanged):

    riskstrat train  --set data.path=DATA --set data.extract_end=T-1 --set index_dates=auto ...
    riskstrat promote NAME VERSION --force --reason benchmark    (the latest version: the refit, if any)
    riskstrat score  --as-of T ...                                (the published population's ``risk``)

``data.extract_end=T-1`` keeps training, its test date and any refit to what was known at T.

The simple model is the one the issue that asked for this comparison describes (40 lines in a
notebook): LightGBM, 200 trees of 7 leaves, trained at T minus the horizon on the label above,
with features for each event table: counts in the last 90/365/730 days, cost sums in those windows,
plus age and days since the last event of any kind.

Printed: AUROC of both on the people both scored, events, people and both calibration slopes
(logistic regression of the label on logit(risk); 1 is ideal), and riskstrat's AUROC and slope
against the outcome it was trained for (``--target``, by riskstrat's own label code): a label that
counts other events (elective stays, say) moves the slope without the model being miscalibrated. JSON goes to
benchmarks/results/<name>.json. The data must cover the horizon after T (refused otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import REPO, RESULTS_DIR, environment, write_json  # noqa: E402

EVENT_DATES = {"inpatient_spells": "admission_date", "ae_attendances": "arrival_date",
               "outpatient_appointments": "appointment_date", "gp_contacts": "contact_date",
               "prescriptions": "issue_date", "social_care": "start_date"}
WINDOWS = (90, 365, 730)
ED_TYPES = ("emergency_department", "single_specialty", "unknown")


# ----------------------------------------------------------------------------- data


def read_table(data: Path, name: str) -> pd.DataFrame | None:
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = data / f"{name}{suffix}"
        if path.exists():
            frame = reader(path)
            from riskstrat.data.schema import TABLES

            for column in TABLES[name].date_columns:
                if column in frame:
                    frame[column] = pd.to_datetime(frame[column], errors="coerce")
            frame["person_id"] = frame["person_id"].astype(str)
            return frame
    return None


def load(data: Path) -> dict[str, pd.DataFrame]:
    tables = {name: read_table(data, name) for name in ("persons", *EVENT_DATES)}
    if tables["persons"] is None:
        sys.exit(f"{data}: no persons table (persons.parquet or persons.csv): is this an imported data set?")
    return {name: frame for name, frame in tables.items() if frame is not None}


def data_end(tables: dict[str, pd.DataFrame]) -> pd.Timestamp:
    return max(frame[EVENT_DATES[name]].max() for name, frame in tables.items() if name in EVENT_DATES and len(frame))


def eligible(persons: pd.DataFrame, t: pd.Timestamp, min_age: float = 18) -> pd.DataFrame:
    """People alive, registered and adult on ``t``."""
    age = (t - persons["birth_date"]).dt.days / 365.25
    alive = persons["death_date"].isna() | (persons["death_date"] >= t) if "death_date" in persons else True
    registered = pd.Series(True, index=persons.index)
    if "registration_start" in persons:
        registered &= persons["registration_start"].isna() | (persons["registration_start"] < t)
    if "registration_end" in persons:
        registered &= persons["registration_end"].isna() | (persons["registration_end"] >= t)
    keep = alive & registered & (age >= min_age)
    return persons.loc[keep, ["person_id"]].assign(age=age[keep]).set_index("person_id")


def label(tables: dict[str, pd.DataFrame], ids: pd.Index, t: pd.Timestamp, horizon: int) -> pd.Series:
    """Any inpatient stay or emergency-department visit in [t, t + horizon)."""
    end = t + pd.Timedelta(days=horizon)
    hit: set[str] = set()
    ip = tables.get("inpatient_spells")
    if ip is not None:
        hit |= set(ip.loc[ip["admission_date"].between(t, end, inclusive="left"), "person_id"])
    ae = tables.get("ae_attendances")
    if ae is not None:
        rows = ae["arrival_date"].between(t, end, inclusive="left")
        if "department_type" in ae:
            rows &= ae["department_type"].astype("string").fillna("unknown").isin(ED_TYPES)
        hit |= set(ae.loc[rows, "person_id"])
    return pd.Series(ids.isin(list(hit)).astype(int), index=ids)


def simple_features(tables: dict[str, pd.DataFrame], people: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Counts and cost sums per event table in 90/365/730 days before t, age, days since the last event."""
    out = pd.DataFrame(index=people.index)
    out["age"] = people["age"]
    latest: dict[str, pd.Series] = {}
    for name, date in EVENT_DATES.items():
        frame = tables.get(name)
        if frame is None:
            continue
        before = frame[(frame[date] < t) & frame["person_id"].isin(people.index)]
        days = (t - before[date]).dt.days
        cost = before["weekly_cost"] if name == "social_care" and "weekly_cost" in before else before.get("cost")
        for window in WINDOWS:
            rows = before[days <= window]
            out[f"{name}_n_{window}"] = rows.groupby("person_id").size().reindex(people.index, fill_value=0)
            if cost is not None:
                out[f"{name}_cost_{window}"] = cost[days <= window].groupby(rows["person_id"]).sum() \
                    .reindex(people.index, fill_value=0.0)
        latest[name] = before.groupby("person_id")[date].max().reindex(people.index)
    last = pd.DataFrame(latest, index=people.index).max(axis=1)
    out["days_since_last"] = (t - last).dt.days.fillna(9999)
    return out.astype("float64")


def simple_model(tables, inputs, horizon: int, t: pd.Timestamp, seed: int) -> pd.Series:
    """Trained at t - horizon on the label up to t, scored at t; features from the tables ``inputs``."""
    import lightgbm as lgb

    t0 = t - pd.Timedelta(days=horizon)
    train_people = eligible(tables["persons"], t0)
    X0 = simple_features(inputs, train_people, t0)
    y0 = label(tables, X0.index, t0, horizon)
    model = lgb.LGBMClassifier(n_estimators=200, num_leaves=7, learning_rate=0.05, random_state=seed,
                               n_jobs=1, verbose=-1)
    model.fit(X0, y0)
    people = eligible(tables["persons"], t)
    X = simple_features(inputs, people, t)
    return pd.Series(model.predict_proba(X)[:, 1], index=X.index)


# ----------------------------------------------------------------------------- riskstrat through its CLI


def riskstrat(args: list[str], work: Path) -> str:
    cmd = [str(Path(sys.executable).with_name("riskstrat")), *args]
    print("  $ riskstrat " + " ".join(args), flush=True)
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"})
    if done.returncode != 0:
        sys.exit(f"riskstrat {args[0]} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def riskstrat_risks(data: Path, t: pd.Timestamp, work: Path, target: str, settings: list[str]) -> tuple[pd.Series, dict]:
    import mlflow

    name = "riskstrat-compare"
    end = (t - pd.Timedelta(days=1)).date().isoformat()
    sets = [f"data.path={data}", f"data.extract_end={end}", "index_dates=auto", f"target.name={target}",
            f"tracking.registered_model={name}", *settings]
    riskstrat(["train", *[x for s in sets for x in ("--set", s)]], work)
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    versions = mlflow.MlflowClient().search_model_versions(f"name='{name}'")
    version = max(versions, key=lambda v: int(v.version))
    riskstrat(["promote", name, str(version.version), "--force", "--reason", "benchmark compare_simple"], work)
    riskstrat(["score", "--config", str(REPO / "configs" / "scoring.yaml"), "--as-of", t.date().isoformat(),
               "--data", str(data), "--out", str(work / "out"), "--set", f"models.risk={name}",
               "--set", "models.high_cost=null"], work)
    from riskstrat.scoring.published import read_population

    month = work / "out" / t.strftime("%Y-%m")
    _, population = read_population(month, month=t.strftime("%Y-%m"), columns=["person_id", "risk"])
    return (pd.Series(population["risk"].to_numpy(), index=population["person_id"].astype(str)),
            {"model_version": str(version.version), "model_tags": {k: v for k, v in version.tags.items()
                                                              if k.startswith("riskstrat.")}})


# ----------------------------------------------------------------------------- metrics


def own_outcome(data: Path, risks: pd.Series, t: pd.Timestamp, target: str, end: pd.Timestamp) -> dict | None:
    """riskstrat's risks against the outcome it was trained for (its own label code, death included as
    configured): calibration is judged on what the model predicts, beside the comparison's label."""
    from sklearn.metrics import roc_auc_score

    from riskstrat.outcomes import parse_outcome
    from riskstrat.data.validate import load_records

    records = load_records(data)
    labels = parse_outcome({"name": target}).labels(records, t, pd.Index(risks.index), extract_end=end)
    known = labels.notna().to_numpy()
    y, p = labels[known].to_numpy(int), risks.to_numpy()[known]
    if y.min() == y.max():
        return None
    return {"people": int(len(y)), "events": int(y.sum()), "auroc": round(float(roc_auc_score(y, p)), 4),
            "calibration_slope": round(calibration_slope(y, p), 3), "mean_risk": round(float(p.mean()), 4),
            "observed": round(float(y.mean()), 4)}


def calibration_slope(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    p = np.clip(p, 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p)).reshape(-1, 1)
    return float(LogisticRegression(C=1e9, max_iter=1000).fit(logit, y).coef_[0, 0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="an imported data set (canonical folder)")
    parser.add_argument("--as-of", required=True, help="the scoring date T (YYYY-MM-DD, a first of the month)")
    parser.add_argument("--horizon", type=int, default=365, help="label window in days (default 365)")
    parser.add_argument("--target", default="unplanned_hospital_use", help="riskstrat's training outcome")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        help="extra `riskstrat train --set` settings, e.g. split.mode=temporal_only")
    parser.add_argument("--exclude-sources", default="",
                        help="comma-separated event tables neither model may use (riskstrat's data.exclude_sources)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--name", default="compare_simple", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args(argv)

    data = args.data.resolve()
    t = pd.Timestamp(args.as_of)
    excluded = [name for name in args.exclude_sources.split(",") if name.strip()]
    unknown = sorted(set(excluded) - set(EVENT_DATES) - {"ltc_register"})
    if unknown:
        sys.exit(f"--exclude-sources: {unknown} are not event tables ({', '.join(EVENT_DATES)}, ltc_register)")
    tables = load(data)
    end = data_end(tables)
    if t + pd.Timedelta(days=args.horizon - 1) > end:
        sys.exit(f"{data}: the data end on {end.date()}, before the {args.horizon}-day label window after "
                 f"{t.date()} closes: choose an --as-of at least {args.horizon} days before the data end")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="riskstrat-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"data {data} (events to {end.date()}), scored at {t.date()}, work folder {work}", flush=True)

    print("simple LightGBM on counts ...", flush=True)
    inputs = {name: frame for name, frame in tables.items() if name not in excluded}
    simple = simple_model(tables, inputs, args.horizon, t, args.seed)
    print("riskstrat through its CLI ...", flush=True)
    settings = args.settings + ([f"data.exclude_sources={json.dumps(excluded)}"] if excluded else [])
    ours, model = riskstrat_risks(data, t, work, args.target, settings)

    from sklearn.metrics import roc_auc_score

    ids = ours.index.intersection(simple.index)
    y = label(tables, ids, t, args.horizon).to_numpy()
    if y.min() == y.max():
        sys.exit(f"the label is {y[0]} for all {len(y)} people scored by both: nothing to compare")
    result = {
        "data": str(data), "as_of": str(t.date()), "horizon_days": args.horizon, "target": args.target,
        "settings": settings, "excluded_sources": excluded, "people": int(len(ids)), "events": int(y.sum()),
        "riskstrat_only": int(len(ours.index.difference(simple.index))),
        "simple_only": int(len(simple.index.difference(ours.index))),
        "auroc": {"riskstrat": round(float(roc_auc_score(y, ours[ids])), 4),
                  "simple_lightgbm": round(float(roc_auc_score(y, simple[ids])), 4)},
        "calibration_slope": {"riskstrat": round(calibration_slope(y, ours[ids].to_numpy()), 3),
                              "simple_lightgbm": round(calibration_slope(y, simple[ids].to_numpy()), 3)},
        "mean_risk": {"riskstrat": round(float(ours[ids].mean()), 4), "observed": round(float(y.mean()), 4)},
        "riskstrat_model": model, "environment": environment(),
    }
    own = own_outcome(data, ours, t, args.target, end)
    result["riskstrat_on_its_own_outcome"] = own
    print(f"\n{'':22}{'riskstrat':>12}{'simple LightGBM':>18}")
    print(f"{'AUROC':22}{result['auroc']['riskstrat']:>12.3f}{result['auroc']['simple_lightgbm']:>18.3f}")
    print(f"{'calibration slope':22}{result['calibration_slope']['riskstrat']:>12.2f}"
          f"{result['calibration_slope']['simple_lightgbm']:>18.2f}")
    print(f"people {result['people']}, events {result['events']} (riskstrat-only {result['riskstrat_only']}, "
          f"simple-only {result['simple_only']})")
    if own:
        print(f"riskstrat against the outcome it was trained for ({args.target}): AUROC {own['auroc']:.3f}, "
              f"slope {own['calibration_slope']:.2f}, mean risk {own['mean_risk']:.3f} vs observed {own['observed']:.3f} "
              f"({own['people']} people, {own['events']} events)")
    path = write_json(RESULTS_DIR / f"{args.name}.json", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
