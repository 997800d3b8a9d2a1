"""`riskstrat score`: the monthly batch job."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import typer

import riskstrat

from riskstrat.cli.app import EXIT_REFUSED, app, fail, out, parse_date
from riskstrat.cli.progress import Stage, libraries_quiet
from riskstrat.errors import RiskstratError


# The --allow-* flags in a panel of their own: publishing despite a guard rail is a decision apart
# (and their long names need the width of a table without the value column).
_GUARDS = "Guard rails (each refuses unless allowed)"


@app.command()
def score(
    as_of: str = typer.Option(..., "--as-of", help="Score as of this date (YYYY-MM-DD); the lists are for its month."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML scoring configuration (see configs/scoring.yaml)."),
    data: Path = typer.Option(None, "--data", help="Data folder (overrides data.path)."),
    out_dir: Path = typer.Option(None, "--out", help="Output root (overrides output_dir); the month goes in YYYY-MM/."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override one setting, e.g. --set lists.list_size=50."),
    allow_stale_data: bool = typer.Option(
        False, "--allow-stale-data", rich_help_panel=_GUARDS, help="Score even if --as-of is more than max_data_lag_days (default 62) "
                                          "after the data end; the lists then miss recent events."),
    allow_unmatched_opt_outs: bool = typer.Option(
        False, "--allow-unmatched-opt-outs", rich_help_panel=_GUARDS, help="Publish even when none of the opt-out file's ids matches anyone "
                                                  "in the data (usually a wrong key or a wrong file), or an unmatched "
                                                  "id looks mis-pasted."),
    allow_population_shrink: bool = typer.Option(
        False, "--allow-population-shrink", rich_help_panel=_GUARDS, help="Publish even when no one is scored, or far fewer people than last "
                                                 "month (max_population_shrink, default 0.2)."),
    allow_unverified_previous_month: bool = typer.Option(
        False, "--allow-unverified-previous-month", rich_help_panel=_GUARDS, help="Publish even when last month's files cannot be verified "
                                                         "(edited, truncated, older version): it is treated as "
                                                         "absent and the manifest says why."),
    replace: bool = typer.Option(
        False, "--replace", help="Replace the month if it is already published in the output folder (otherwise "
                                 "refused, naming both runs' models); the replaced run is kept under .runs/ until the "
                                 "next publish and the replacement is recorded in audit.jsonl."),
    engine: str = typer.Option(None, "--engine", help="Feature engine: pandas (default; the reference), duckdb "
                                                    "(SQL over the Parquet folder, for large populations) or spark "
                                                    "(the same on Spark: pip install 'riskstrat\\[spark]'; the active "
                                                    "session, else local[2]). Overrides the config's engine."),
    explain: str = typer.Option(None, "--explain", help="Whose reasons to compute: listed (default; the people "
                                                        "on the lists) or all (everyone scored, in "
                                                        "population.parquet; slower). Overrides lists.explain."),
    currency_rate: float = typer.Option(
        None, "--currency-rate",
        help="Convert the data's costs into the models' currency: the data's amounts (dataset.json currency) are "
             "multiplied by RATE before the cost features are built (e.g. 0.79 for US dollars into a model trained "
             "on pounds); amounts are then written in the model's currency. Overrides currency_rate."),
    without_costs: bool = typer.Option(
        False, "--without-costs", help="Score with the cost features missing for everyone (data without the costs the "
                                       "models were trained with, or in another currency): the ranking is degraded; "
                                       "the manifest records it. A model that predicts costs (high_cost) in "
                                       "another currency needs --currency-rate instead."),
    jobs: str = typer.Option(None, "--jobs", "-j", help="Processes writing the practices' files at once (1: the "
                                                        "run's own; more: worker processes): a number, or auto "
                                                        "(the default: the CPUs free to the run, at most 4, for "
                                                        "hundreds of practices). The same files either way. "
                                                        "Overrides lists.write_workers."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result line."),
) -> None:
    """Score the whole population with the champion models and publish the month's case-finding lists.

    Ranks the population, explains the listed people and writes per-practice lists (CSV, Excel,
    HTML), a commissioners' summary and a manifest, all at once.

    Example: riskstrat score --config configs/scoring.yaml --as-of 2026-11-01
    """
    from riskstrat.pipelines.score import (PublishedButNotTrackedError, ScoringConfig, ValidationError, load_config,
                                           path_override, run_scoring, stage_report)

    date = parse_date(as_of)
    extra = [path_override("data.path", data)] if data else []
    extra += [path_override("output_dir", out_dir)] if out_dir else []
    extra += ["allow_stale_data=true"] if allow_stale_data else []
    extra += ["allow_unmatched_opt_outs=true"] if allow_unmatched_opt_outs else []
    extra += ["allow_population_shrink=true"] if allow_population_shrink else []
    extra += ["allow_unverified_previous_month=true"] if allow_unverified_previous_month else []
    extra += ["replace_existing=true"] if replace else []
    extra += [f"engine={engine}"] if engine else []
    extra += [f"lists.explain={explain}"] if explain else []
    extra += [f"currency_rate={currency_rate!r}"] if currency_rate is not None else []
    extra += ["without_costs=true"] if without_costs else []
    extra += [f"lists.write_workers={jobs}"] if jobs else []
    try:
        cfg = load_config(config, [*overrides, *extra], model=ScoringConfig)
        timings: dict[str, float] = {}
        started = riskstrat.process_started()
        # The 240,000 objects the imports made (MLflow's, scikit-learn's...) outlive the run: kept out of the
        # collector's full passes, which walked them all each time (1.15 against 0.51 s of CPU at 100k people).
        gc.freeze()
        try:
            with libraries_quiet(quiet):
                manifest = run_scoring(cfg, date, stage=Stage(quiet=quiet), timings=timings, started=started)
        finally:
            gc.unfreeze()  # collected as usual again (a test process runs many commands)
        wall = time.time() - started
    except ValidationError as exc:
        fail(f"the data failed validation; nothing was written:\n{exc}", EXIT_REFUSED)
    except PublishedButNotTrackedError:
        raise  # its message says the month was published; "nothing was written" would be untrue
    except RiskstratError as exc:
        fail(f"{exc}\nnothing was written", EXIT_REFUSED)
    c = manifest["counts"]
    models = ", ".join(f"{n} v{m['version']}" for n, m in manifest["models"].items())
    unmatched = (f", {c['opt_out_ids_matching_no_one']:,} of {c['opt_out_ids']:,} opt-out ids matched no one"
                 if c.get("opt_out_ids") else "")
    out.print(f"{manifest['month']}: scored {c['scored']:,} people ({c['opted_out_removed']:,} opted out removed"
              f"{unmatched}) with "
              f"{models}; {c['listed']:,} listed in {c['practices']} practices ({c['held_out']:,} held out, "
              f"{c['new_this_month']:,} new) -> {manifest['output_dir']}", soft_wrap=True)  # one line, also in logs
    if not quiet:  # every second of the run in a stage, from the process's start
        out.print(f"[dim]{stage_report(timings, wall=wall)}[/]", highlight=False, soft_wrap=True)
    if manifest.get("previous_month_unverified"):  # shown even with --quiet: the changes are not since last month
        out.print(f"[yellow]warning: last month ({manifest['previous_month_unverified']['month']}) could not be "
                  f"verified and was treated as absent (see previous_month_unverified in the manifest)[/]",
                  soft_wrap=True)
