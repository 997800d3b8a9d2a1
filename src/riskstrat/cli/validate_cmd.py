"""`riskstrat validate`: check a linked data folder against the schema and report every problem."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from riskstrat.cli.app import EXIT_REFUSED, app, fail, out
from riskstrat.cli.progress import Stage


class OutOfLifeEvents(str, Enum):
    drop = "drop"
    keep = "keep"
    error = "error"


@app.command()
def validate(
    data_dir: Path = typer.Argument(..., help="Data folder with one file per table: persons.parquet or "
                                              "persons.csv, inpatient_spells.parquet, ..."),
    out_of_life_events: OutOfLifeEvents = typer.Option(
        OutOfLifeEvents.drop, "--out-of-life-events",
        help="Events dated before the person's birth or after their death: drop them (a warning), "
             "keep them (a warning) or count them as errors."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the report (counts, messages and up to 5 example values per "
                             "issue) as JSON to this file."),
    stamp: bool = typer.Option(
        False, "--stamp", help="When the folder passes, stamp it (validated.json: what was checked and each file's "
                               "hash), so that score, train and evaluate verify the hashes instead of checking "
                               "every row again."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines, only the report."),
) -> None:
    """Check a linked data folder: tables, columns, types, codes, dates and links between tables.

    Prints the rows per table and every issue found, and exits with status 2 if there are errors.
    Nothing is written except the optional --json report and, with --stamp, the stamp.

    Example: riskstrat validate riskstrat-data/synthetic --json validation.json
    """
    from riskstrat.pipelines.commands import validate_folder, write_validation_report

    stage = Stage(quiet=quiet)
    report = validate_folder(data_dir, out_of_life_events=out_of_life_events.value,
                             on_table=lambda name, rows: stage(f"checked {name}: {rows:,} rows"), stamp=stamp)
    _print_report(report)
    if json_path is not None:
        write_validation_report(report, json_path)
        out.print(f"Wrote the report to {json_path}", highlight=False)
    n_errors, n_warnings = len(report.errors), len(report.warnings)
    if n_errors:
        fail(f"{data_dir} failed validation: {n_errors} error{'s' if n_errors != 1 else ''}, "
             f"{n_warnings} warning{'s' if n_warnings != 1 else ''}", EXIT_REFUSED)
    out.print(f"[bold green]OK:[/] {data_dir} passed validation "
              f"({n_warnings} warning{'s' if n_warnings != 1 else ''})" + ("; stamped (validated.json)" if stamp else ""),
              highlight=False)


def _print_report(report) -> None:
    counts = Table(show_edge=False, box=None, pad_edge=False)
    counts.add_column("table")
    counts.add_column("rows", justify="right")
    counts.add_column("dropped", justify="right")
    for name, n in report.row_counts.items():
        dropped = report.dropped.get(name, 0)
        counts.add_row(name, f"{n:,}", f"{dropped:,}" if dropped else "")
    out.print(counts)
    if not report.issues:
        out.print("No issues found.")
        return
    issues = Table(show_edge=False, box=None, pad_edge=False, show_lines=False)
    issues.add_column("severity")
    issues.add_column("table")
    issues.add_column("column")
    issues.add_column("rows", justify="right")
    issues.add_column("message", overflow="fold")
    for issue in report.issues:
        colour = "red" if issue.severity == "error" else "yellow"
        issues.add_row(f"[{colour}]{issue.severity}[/]", issue.table, issue.column or "",
                       f"{issue.n_rows:,}", issue.message)
    out.print()
    out.print(issues, highlight=False)
