"""`riskstrat import synthea|omop`: turn a Synthea or OMOP export into a canonical linked folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from riskstrat.cli.app import app, console, fail, out

import_app = typer.Typer(
    help=(
        "Import a public data format into a validated, pseudonymised canonical data folder.\n\n"
        "Person ids are replaced by keyed pseudonyms (key from $RISKSTRAT_PSEUDONYM_KEY or "
        ".riskstrat/pseudonym.key, created on first use: keep it to get the same pseudonyms next "
        "month). Nothing is written unless the data pass validation.\n\n"
        "Example: riskstrat import synthea synthea/output/csv --out riskstrat-data/synthea"
    ),
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")

_KEY_FILE_HELP = "Pseudonymisation key file (default: $RISKSTRAT_PSEUDONYM_KEY, else .riskstrat/pseudonym.key)."


@import_app.command("synthea")
def import_synthea(
    src_dir: Path = typer.Argument(..., help="Folder of a Synthea CSV export (patients.csv, encounters.csv, ...)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Canonical data folder to write (replaced as a whole)."),
    practice_from: str = typer.Option(
        "organization", help="Source of practice_id: 'organization' (the usual primary-care organisation) "
                             "or 'provider' (the usual clinician)."),
    key_file: Path | None = typer.Option(None, "--key-file", help=_KEY_FILE_HELP),
) -> None:
    """Import a Synthea CSV export (v2/v3); a BOM, lower-case headers or missing optional files are fine.

    Encounters become A&E attendances, inpatient spells, outpatient appointments, GP contacts and nursing care.

    Conditions feed the long-term-condition register; medications become prescriptions by BNF chapter.

    Example: riskstrat import synthea synthea/output/csv --out riskstrat-data/synthea
    """
    _run("synthea", src_dir, out_dir, key_file, {"practice_from": practice_from})


@import_app.command("omop")
def import_omop(
    src_dir: Path = typer.Argument(..., help="Folder of OMOP CDM v5.3/5.4 tables as CSV or TSV "
                                              "(person, visit_occurrence, ...)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Canonical data folder to write (replaced as a whole)."),
    primary_care: str = typer.Option(
        "auto", "--primary-care",
        help="Outpatient visits (9202) as GP contacts: 'auto' (when the provider's specialty or the care site "
             "says general practice), 'gp' (all) or 'outpatient' (none)."),
    practice_from: str = typer.Option(
        "primary_care_site", "--practice-from",
        help="person.care_site_id as the practice: 'primary_care_site' (only when the care site is an office) "
             "or 'care_site' (any care site)."),
    currency: str | None = typer.Option(
        None, "--currency", help="ISO 4217 code of the costs when the COST table does not say (default GBP)."),
    key_file: Path | None = typer.Option(None, "--key-file", help=_KEY_FILE_HELP),
) -> None:
    """Import OMOP common data model (v5.3/v5.4) tables saved as CSV or TSV.

    Needs person and visit_occurrence; uses death, observation_period, conditions, drugs, cost, provider,
    care_site and the vocabulary (concept, concept_ancestor, concept_relationship) if present.

    Example: riskstrat import omop extracts/omop-2026-10 --out riskstrat-data/omop-2026-10
    """
    _run("omop", src_dir, out_dir, key_file,
         {"primary_care": primary_care, "practice_from": practice_from, "currency": currency})


def _run(kind: str, src_dir: Path, out_dir: Path, key_file: Path | None, options: dict) -> None:
    from riskstrat.io import DataFileError
    from riskstrat.privacy import load_pseudonym_key
    from riskstrat.readers import import_dataset
    from riskstrat.validate import ValidationError

    if not src_dir.is_dir():
        fail(f"{src_dir}: no such folder")
    try:
        key = load_pseudonym_key(key_file)
        summary, report = import_dataset(kind, src_dir, out_dir, pseudonym_key=key, reader_options=options)
    except ValidationError as exc:
        console.print(exc.report.format(), highlight=False)
        fail(f"the {kind} data failed validation; nothing was written to {out_dir}")
    except (DataFileError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    _print_summary(summary)
    warnings = [i for i in report.issues if getattr(i, "severity", "") != "error"]
    if warnings:
        out.print(f"\n[bold]Validation[/] ({len(warnings)} warning{'s' if len(warnings) != 1 else ''}):")
        for issue in warnings:
            out.print(f"  [yellow]-[/] {issue.message}", highlight=False)
    out.print(f"\nWrote {summary.people:,} people to {out_dir}")


def _print_summary(summary) -> None:
    first, last = summary.date_range
    out.print(f"[bold]{summary.source}[/] import: {summary.people:,} people, events {first or '?'} to {last or '?'}")
    sections = [("source file", summary.source_rows), ("canonical table", summary.output_rows),
                ("dropped rows (reason)", summary.dropped)]
    for heading, counts in sections:
        if not counts:
            continue
        table = Table(show_edge=False, box=None, pad_edge=False)
        table.add_column(heading)
        table.add_column("rows", justify="right")
        for name, n in counts.items():
            table.add_row(name, f"{n:,}")
        out.print()
        out.print(table)
    if summary.notes:
        out.print()
    for note in summary.notes:
        out.print(f"[dim]note:[/] {note}", highlight=False)
