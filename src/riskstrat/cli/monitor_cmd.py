"""`riskstrat monitor`: the published months against what happened next, and the hold-out's effect."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from riskstrat.cli.app import EXIT_REFUSED, app, fail, out, parse_date
from riskstrat.cli.progress import Stage, libraries_quiet


def print_monitoring(run) -> None:
    """Per assessed month: predicted against observed, by tier, the hold-out statement; then the
    months still to mature."""
    from riskstrat.pipelines.monitor import fmt

    out.print(f"[bold]Monitoring as of {run.as_of}[/] (data to {run.data_end.date()})", highlight=False)
    months = {m.month: m for m in run.assessed}
    for r in run.results:
        h, m = r.headline, months[r.month]
        practices = r.by("GP practice")
        out.print(f"\n[bold]{r.month}[/]: {m.model_name} v{m.model_version}, {m.outcome_words} within "
                  f"{m.horizon_days} days of {m.as_of.date()}", highlight=False)
        out.print(f"  {h['n']:,} people with a known outcome ({r.counts['not_in_data']:,} no longer in the data, "
                  f"{r.counts['no_label']:,} without a label): {h['events']:,} events against "
                  f"{fmt(h['expected'], 1)} expected, O/E {fmt(h.get('o_e_ratio'), 2)} (95% CI "
                  f"{fmt(h.get('o_e_ci_low'), 2)} to {fmt(h.get('o_e_ci_high'), 2)})", highlight=False)
        out.print(f"  AUROC {fmt(h['auroc'])} (95% CI {fmt(h['auroc_ci_low'])} to {fmt(h['auroc_ci_high'])}), "
                  f"calibration slope {fmt(h['calibration_slope'], 2)}", highlight=False)
        tiers = "; ".join(f"{t.tier} {fmt(t.o_e_ratio, 2)} ({t.n_events:,} of {t.n:,}{', small' if t.small else ''})"
                          for t in r.by("tier").itertuples())
        out.print(f"  O/E by tier: {tiers}", highlight=False)
        out.print(f"  practices: {len(practices)}, {int(practices['small'].sum())} with fewer than "
                  f"{r.groups.min_events} events (shown in the report, not to be over-read)", highlight=False)
        if r.holdout:
            style = "yellow" if r.holdout["too_few"] else "default"
            out.print(f"  [{style}]hold-out: {r.holdout['statement']}[/]", highlight=False)
        else:
            out.print("  no hold-out was kept, so the effect of the lists cannot be estimated")
        if r.month in run.worklist:
            out.print(f"  [yellow]by worklist status (observational, not causal): "
                      f"{run.worklist[r.month]['statement']}[/]", highlight=False)
    for m in run.pending:
        out.print(f"[dim]{m.month}: not yet matured (outcomes known once the data reach "
                  f"{(m.matures_on - dt.timedelta(days=1)).date()})[/]", highlight=False)


@app.command()
def monitor(
    as_of: str = typer.Option(..., "--as-of", help="Monitor as of this date (YYYY-MM-DD): months scored before it "
                                                   "whose outcome horizon the data cover."),
    config: Path = typer.Option(None, "--config", "-c", help="The scoring configuration (configs/scoring.yaml): "
                                                            "data, output_dir, tracking, opt_out_file."),
    data: Path = typer.Option(None, "--data", help="The later data folder (overrides data.path)."),
    lists_dir: Path = typer.Option(None, "--lists", help="The scoring output folder holding the months "
                                                        "(overrides output_dir)."),
    out_dir: Path = typer.Option(None, "--out", help="Report folder (default: DATE in riskstrat-output/monitoring)."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override one setting, e.g. --set tracking.uri=..."),
    n_boot: int = typer.Option(200, "--n-boot", min=10, help="Bootstrap resamples for the AUROC interval."),
    min_group_events: int = typer.Option(20, "--min-group-events", min=1,
                                         help="Tiers and practices with fewer events are flagged small."),
    worklist_db: str = typer.Option(None, "--worklist-db", metavar="URL",
                                    help="The worklist's database (the --db of riskstrat serve, e.g. "
                                         "sqlite:///worklist.db): also report outcomes by worklist status "
                                         "(observational, beside the hold-out)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the results."),
) -> None:
    """Compare what the published lists predicted with what happened.

    For each month scored before --as-of whose horizon the data now cover, label the people scored
    with the outcome of the model that scored them and report observed/expected (overall, by tier and by practice), AUROC and
    calibration; where a random hold-out was kept, the effect of being shown on a list (events per
    1,000 shown against held out, with an interval and what it allows one to conclude). Writes a
    self-contained report with CSV tables and logs a monitoring run to MLflow (no person rows).
    Months not yet matured are listed with the date they mature; with none matured it refuses (exit 2).
    With --worklist-db, outcomes of the listed people contacted or enrolled against those listed but not
    contacted, labelled observational and not causal, beside the hold-out comparison.

    Example: riskstrat monitor --config configs/scoring.yaml --data riskstrat-data/synthetic --as-of 2026-11-01
    """
    from riskstrat.pipelines.monitor import ScoringConfig, ValidationError, load_config, path_override, run_monitoring

    date = parse_date(as_of)
    extra = [path_override("data.path", data)] if data else []
    extra += [path_override("output_dir", lists_dir)] if lists_dir else []
    try:
        cfg = load_config(config, [*overrides, *extra], model=ScoringConfig)
        with libraries_quiet(quiet):
            run = run_monitoring(cfg, date, out_dir=out_dir, n_boot=n_boot, min_group_events=min_group_events,
                                 worklist_db=worklist_db, stage=Stage(quiet=quiet))
    except ValidationError as exc:
        fail(f"the data failed validation; nothing was monitored:\n{exc}", EXIT_REFUSED)
    print_monitoring(run)
    out.print(f"report: {run.out_dir / 'report.html'}" + (f"  MLflow run {run.run_id}" if run.run_id else ""),
              soft_wrap=True)
