"""`riskstrat train`, `riskstrat promote` and `riskstrat features`."""

from __future__ import annotations

from pathlib import Path

import typer

from riskstrat.cli.app import EXIT_REFUSED, app, fail, out
from riskstrat.cli.progress import Stage, libraries_quiet

_CONFIG_HELP = "YAML run configuration (see configs/); defaults are used for anything it leaves out."
_SET_HELP = "Override one setting, e.g. --set model.lightgbm.learning_rate=0.05 (repeatable)."


def print_comparison(result, *, title: str) -> None:
    """The models side by side on the test set (fits an 80-column terminal)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "AUROC", "95% CI", "AUPRC", "Brier", "slope", "PPV 1%", "PPV 5%", "gap"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for name, m in result.metrics.items():
        def f(key: str, fmt: str = ".3f") -> str:
            v = m.get(key)
            return "-" if v is None or v != v else format(v, fmt)
        table.add_row(name, f("auroc"), f"{f('auroc_ci_low')}-{f('auroc_ci_high')}", f("auprc"), f("brier", ".4f"),
                      f("calibration_slope", ".2f"), f("ppv_top_1pct", ".2f"), f("ppv_top_5pct", ".2f"),
                      f("auroc_gap_to_oracle"))
    out.print(table)
    lgbm = result.metrics.get("lightgbm", {})
    for other in ("logistic", "oracle"):
        if f"auroc_minus_{other}" in lgbm:
            out.print(f"LightGBM minus {other} AUROC: {lgbm[f'auroc_minus_{other}']:+.3f} (paired 95% CI "
                      f"{lgbm[f'auroc_minus_{other}_ci_low']:+.3f} to {lgbm[f'auroc_minus_{other}_ci_high']:+.3f})")
    out.print("[dim]slope: calibration slope (1 is ideal); PPV k%: share with the outcome among the top k%; "
              "gap: oracle AUROC minus the model's (synthetic data only)[/]", highlight=False)


def print_timings(timings: dict[str, float], *, engine: str) -> None:
    """The stages' seconds on one line (the per-date split in the MLflow run's timings.json)."""
    from riskstrat.pipelines.train import TRAINING_STAGES

    parts = [f"{stage.replace('_', ' ')} {timings[stage]:,.1f}" for stage in TRAINING_STAGES if stage in timings]
    total = sum(timings[stage] for stage in TRAINING_STAGES if stage in timings)
    out.print(f"[dim]seconds ({engine} engine): {', '.join(parts)}; total {total:,.1f}[/]", highlight=False)


@app.command()
def train(
    config: Path = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=_SET_HELP),
    no_tracking: bool = typer.Option(False, "--no-tracking", help="Train and evaluate without logging to MLflow (and so without the refit for deployment: nothing is registered)."),
    engine: str = typer.Option(None, "--engine", help="Feature engine: pandas (default; every table validated in "
                                                      "memory), duckdb (SQL over the Parquet folder, for large "
                                                      "populations) or spark (the same on Spark: pip install "
                                                      "'riskstrat\\[spark]'); the same model either way. Sets engine."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result line."),
) -> None:
    """Train a risk model (LightGBM + calibration) and its baselines, evaluate them on a later
    index date, log everything to MLflow and register the model.

    The outcome is target.name: emergency_admission (default; with death, as SPARRA v4), unplanned_hospital_use (an admission not recorded as planned, or an emergency-department A&E attendance, not urgent care or walk-in: for data without an admission method), death, high_cost, social_care_entry, or one declared in YAML (kind: event). --set index_dates=auto picks index dates that fit the extract; --set split.mode=temporal_only tests everyone at the test date (small data; weaker validation).

    With model.refit: latest (the default), the same settings are then fitted again on every labelled index date up to the data end (the test people included) and registered as a second version, the refit for deployment: it inherits the first version's evaluation, and is the one to promote for scoring; model.refit=none registers only the evaluated version.

    Exit status: 0 trained and registered; 2 refused (a bad config, data that fail validation, too few events, a degenerate model, dates the data do not cover: the message says why and what to do); 1 a file that cannot be read or written.

    Example: riskstrat train --config configs/high_cost.yaml --set split.seed=7

    Example: riskstrat train --set data.path=riskstrat-data/synthea --set target.name=unplanned_hospital_use --set index_dates=auto
    """
    from riskstrat.pipelines.train import DegenerateModelError, ValidationError, load_config, run_training

    try:
        cfg = load_config(config, [*overrides, *([f"engine={engine}"] if engine else [])])
        with libraries_quiet(quiet):
            run = run_training(cfg, stage=Stage(quiet=quiet), log=not no_tracking)
    except ValidationError as exc:
        fail(f"the data failed validation; nothing was trained:\n{exc}", EXIT_REFUSED)
    except DegenerateModelError as exc:
        if exc.run is not None:  # the metrics that explain the refusal
            ran = exc.run.config or cfg
            print_comparison(exc.run.result, title=f"{ran.target.name} ({ran.target.words}): test set at "
                                                   f"{ran.index_dates.test}")
        fail(str(exc), EXIT_REFUSED)
    cfg = run.config or cfg
    if not quiet:
        print_comparison(run.result, title=f"{cfg.target.name} ({cfg.target.words}): test set at {cfg.index_dates.test}")
    else:
        m = run.result.metrics["lightgbm"]
        out.print(f"{cfg.target.name}: LightGBM AUROC {m['auroc']:.3f} ({m['auroc_ci_low']:.3f}-{m['auroc_ci_high']:.3f}), "
                  f"calibration slope {m.get('calibration_slope', float('nan')):.2f} on {len(run.result.data.y_test):,} "
                  f"test people at {cfg.index_dates.test}")
    if run.result.degenerate:
        from riskstrat.pipelines.train import describe_degenerate

        out.print(f"[bold yellow]warning:[/] degenerate model ({describe_degenerate(run.result.degenerate)}); "
                  f"registered with the tag riskstrat.degenerate: promote and score refuse it unless forced",
                  highlight=False)
    if run.timings and not quiet:
        print_timings(run.timings, engine=cfg.engine)
    spec = run.result.model.metadata.get("feature_spec_hash")
    if run.logged:
        name, version = run.logged.model_name, run.logged.model_version
        next_step = ("not for live use: it is degenerate" if run.result.degenerate else
                     f"next: riskstrat evaluate --model {name}/{version} --data DIR --as-of DATE, "
                     f"then riskstrat promote {name} {version}")
        out.print(f"run {run.logged.run_id}  model {name} version {version}  feature definitions {spec}  "
                  f"({next_step})")
        if run.refit_logged is not None:
            r = run.refit.model.metadata["refit"]
            refit = run.refit_logged.model_version
            out.print(f"refit for deployment: run {run.refit_logged.run_id}  model {name} version {refit}: the same "
                      f"settings on {len(r['dates'])} index dates to {r['dates'][-1]} (labels to the data end), "
                      f"the test people included; it inherits version {version}'s evaluation. To score with it: "
                      f"evaluate version {version}, then riskstrat promote {name} {refit}; evaluate version {refit} "
                      f"at {r['labels_end']} or later as its own check", highlight=False)


@app.command()
def promote(
    name: str = typer.Argument(..., help="Registered model name, e.g. riskstrat-emergency-admission."),
    version: str = typer.Argument(..., help="Model version to promote."),
    alias: str = typer.Option("champion", help="Alias to move (the scorer loads models:/NAME@champion)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: ./mlflow.db)."),
    force: bool = typer.Option(False, "--force", help="Promote even if the gate fails or the version is tagged "
                                                      "riskstrat.degenerate (needs --reason; recorded)."),
    reason: str = typer.Option(None, "--reason", help="Why the gate is overridden (kept as a tag on the version)."),
    card_dir: Path = typer.Option(Path("models"), "--card-dir", help="Where models/<name>/gate.yaml lives."),
) -> None:
    """Point an alias (default: champion) at a registered model version, if its latest
    evaluation (`riskstrat evaluate`) passes the model's gate (models/<name>/gate.yaml).

    A version tagged riskstrat.degenerate is refused unless --force.

    Example: riskstrat promote riskstrat-emergency-admission 3 --alias champion
    """
    from riskstrat.pipelines.promote import promote as run_promotion

    done = run_promotion(name, version, alias=alias, uri=tracking_uri, card_dir=card_dir, force=force, reason=reason)
    if done.override is not None:
        out.print(f"gate overridden by {done.override['riskstrat.gate_override.user']}: {reason} "
                  f"(recorded on version {version})")
    before = f" (was version {done.moved['previous_version']})" if done.moved["previous_version"] else ""
    out.print(f"{name}@{alias} -> version {version}{before}")


@app.command()
def features() -> None:
    """List the features riskstrat builds, with their sources and plain-English descriptions.

    The clinical features come first, then the generic covariates of the default training config
    (features.generic).

    Generic covariates are named table__measure or table__group__measure: counts in each window (count_90d, count_365d, count_730d), days since the last event (days_since), a recent-vs-earlier trend (trend_90d_730d: the last 90 days' events minus the earlier rate over 90 days) and cost sums per table (cost_90d, ...: missing, not 0, where the data record no cost).

    The groups (admission method, A&E department type, attended or missed, GP contact type, BNF chapter, social care service) are the values the training data record (read from the rows dated before the test date: at most features.generic.max_values a table, each on at least features.generic.min_share of its rows and recorded for at least features.generic.min_people distinct people), stored with the model; here a group is shown as <column>. --set features.generic.enabled=false trains on the clinical features alone; --set features.generic.windows=[30,180,365] uses other windows.

    Example: riskstrat features
    """
    from rich.table import Column, Table

    from riskstrat.pipelines.commands import feature_list

    features, n_clinical = feature_list()
    # Names whole (no_wrap): cut short, the generic ones (..._count_365d, ..._count_730d) look alike.
    table = Table(Column("feature", no_wrap=True), "source", "description")
    for i, row in enumerate(features.itertuples()):
        if i == n_clinical:  # the generic covariates follow the clinical features
            table.add_section()
        table.add_row(row.name, row.source, row.description)
    out.print(table)
