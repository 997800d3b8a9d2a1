"""`riskstrat evaluate`: the evidence for a registered model on any data at a matured index date."""

from __future__ import annotations

from pathlib import Path

import typer

from riskstrat.cli.app import EXIT_REFUSED, app, fail, out, parse_date
from riskstrat.cli.progress import Stage, libraries_quiet


def print_headline(run) -> None:
    """The models side by side, the paired differences and the gate's reading."""
    from rich import box
    from rich.table import Table

    from riskstrat.pipelines.evaluate import fmt

    ev = run.evaluation
    table = Table(title=f"{run.candidate.name} v{run.candidate.version}: {run.outcome.words} within "
                        f"{run.outcome.horizon_days} days of {run.as_of} ({ev.n:,} people, {ev.n_events:,} events)",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "AUROC", "95% CI", "AUPRC", "slope", "ICI", "O/E", "PPV 1%", "PPV 5%"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for name, m in ev.headline.iterrows():
        table.add_row(str(name), fmt(m["auroc"]), f"{fmt(m['auroc_ci_low'])}-{fmt(m['auroc_ci_high'])}", fmt(m["auprc"]),
                      fmt(m.get("calibration_slope"), 2), fmt(m.get("ici"), 4), fmt(m.get("o_e_ratio"), 2),
                      fmt(m["ppv_top_1pct"], 2), fmt(m["ppv_top_5pct"], 2))
    out.print(table)
    if run.unseen and run.unseen["headline"]:
        out.print(f"not used in training only ({run.unseen['n']:,} people, {run.unseen['n_events']:,} events): "
                  + "; ".join(f"{m['model']} AUROC {fmt(m['auroc'])}" for m in run.unseen["headline"]))
    for line in run.overlap.sentences() if run.overlap else ():
        out.print(line, highlight=False)
    for row in ev.comparison.itertuples():
        out.print(f"candidate minus {row.versus} AUROC: {row.auroc_difference:+.3f} (paired 95% CI "
                  f"{row.ci_low:+.3f} to {row.ci_high:+.3f})")
    gaps = ev.subgroups.gaps("auroc").head(3)
    for g in gaps.itertuples():
        out.print(f"largest AUROC gap by {g.attribute}: {g.lowest_group} {g.lowest:.3f} vs {g.highest_group} "
                  f"{g.highest:.3f}")
    small = int(ev.subgroups.by_group["small"].sum())
    if small:
        out.print(f"[dim]{small} groups have fewer than {ev.subgroups.min_events} events: shown in the report, "
                  f"not relied on[/]", highlight=False)
    for c in run.gate:
        out.print(("[green]pass[/] " if c.passed else "[red]FAIL[/] ") + f"{c.name}: {c.detail}", highlight=False)


@app.command()
def evaluate(
    model: str = typer.Option(..., "--model", "-m", help="Model to evaluate: NAME@ALIAS or NAME/VERSION."),
    data: Path = typer.Option(..., "--data", help="Data folder (canonical tables)."),
    as_of: str = typer.Option(..., "--as-of", help="Index date (YYYY-MM-DD) whose outcome horizon the data cover."),
    against: str = typer.Option(None, "--against", help="Compare with this model on the same people, e.g. NAME@champion."),
    out_dir: Path = typer.Option(None, "--out", help="Report folder (default: NAME-vV-DATE in riskstrat-output/evaluations)."),
    card_dir: Path = typer.Option(Path("models"), "--card-dir", help="Where models/<name>/card.md and gate.yaml live."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: ./mlflow.db)."),
    n_boot: int = typer.Option(200, "--n-boot", min=10, help="Bootstrap resamples for intervals."),
    min_events: int = typer.Option(100, "--min-events", min=1, help="Refuse with fewer outcome events than this."),
    include_seen: bool = typer.Option(False, "--include-seen", help="Evaluate everyone, the people the model was "
                                      "trained or calibrated on included, with the unseen people's figures beside."),
    currency_rate: float = typer.Option(
        None, "--currency-rate",
        help="Convert the data's costs into the model's currency: the data's amounts (dataset.json currency) are "
             "multiplied by RATE before the cost features are built; the evaluation's amounts are then in the "
             "model's currency."),
    without_costs: bool = typer.Option(
        False, "--without-costs", help="Evaluate with the cost features missing for everyone (data without the costs "
                                       "the model was trained with): the ranking is degraded; the report says so."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the headline table."),
) -> None:
    """Evaluate a registered model at a later date (temporal validation) or on another data set
    (external validation).

    Discrimination, calibration, case finding and subgroups, against the champion if asked. Writes a self-contained HTML report with its tables (CSV) and figures (PNG),
    drafts models/<name>/card.md, and logs an evaluation run that `riskstrat promote` checks.

    Example: riskstrat evaluate --model riskstrat-emergency-admission/2 --against riskstrat-emergency-admission@champion
    --data riskstrat-data/synthetic --as-of 2025-11-01
    """
    from riskstrat.pipelines.evaluate import CensoredIndexDateError, ValidationError, run_evaluation

    date = parse_date(as_of)
    try:
        with libraries_quiet(quiet):
            run = run_evaluation(model, data, date, against=against, out_dir=out_dir, card_dir=card_dir,
                                 uri=tracking_uri, n_boot=n_boot, min_events=min_events, include_seen=include_seen,
                                 currency_rate=currency_rate, without_costs=without_costs, stage=Stage(quiet=quiet))
    except ValidationError as exc:
        fail(f"the data failed validation; nothing was evaluated:\n{exc}", EXIT_REFUSED)
    except CensoredIndexDateError as exc:
        fail(f"the outcomes after {date} have not matured: {exc}", EXIT_REFUSED)
    print_headline(run)
    out.print(f"report: {run.out_dir / 'report.html'}" + (f"  card: {run.card_path}" if run.card_path else "")
              + (f"  MLflow run {run.run_id}" if run.run_id else ""), soft_wrap=True)
