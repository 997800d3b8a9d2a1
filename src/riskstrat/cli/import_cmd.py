"""`riskstrat import synthea|omop|hes`: turn a Synthea, OMOP or HES export into a canonical linked folder."""

from __future__ import annotations

from pathlib import Path

import typer

from riskstrat.cli.app import EXIT_REFUSED, App, app, console, fail, out

import_app = App(
    help=(
        "Import a public data format into a validated, pseudonymised canonical data folder.\n\n"
        "Person ids are replaced by keyed pseudonyms (key from $RISKSTRAT_PSEUDONYM_KEY or "
        ".riskstrat/pseudonym.key; create it once with `riskstrat key init` and keep it to get the "
        "same pseudonyms next month). Nothing is written unless the data pass validation.\n\n"
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
    emergency_window_hours: float = typer.Option(
        24.0, help="An inpatient stay starting within this many hours after an emergency or urgent-care "
                   "encounter is an emergency admission (and that attendance 'admitted')."),
    key_file: Path | None = typer.Option(None, "--key-file", help=_KEY_FILE_HELP),
) -> None:
    """Import a Synthea CSV export (v2/v3); a BOM, lower-case headers or missing optional files are fine.

    Encounters become A&E attendances, inpatient spells, outpatient appointments, GP contacts and nursing care.

    Conditions feed the long-term-condition register; medications become prescriptions by BNF chapter.

    Example: riskstrat import synthea synthea/output/csv --out riskstrat-data/synthea
    """
    _run("synthea", src_dir, out_dir, key_file,
         {"practice_from": practice_from, "emergency_window_hours": emergency_window_hours})


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
             "or 'care_site' (any care site that is not a hospital)."),
    currency: str | None = typer.Option(
        None, "--currency", help="ISO 4217 code of the costs when the COST table does not say (default GBP)."),
    observation_periods: str = typer.Option(
        "auto", "--observation-periods",
        help="'auto' (the last-record rule when most early period ends fall on the person's last record, an ETL "
             "artefact; else 'censor'), 'censor' (the CDM's meaning: a person whose observation ends early is "
             "censored then), 'last_record' (followed to the extract end if seen in the last "
             "--observation-gap-years, else censored that long after the last record) or 'ignore' (follow "
             "everyone to the extract end)."),
    observation_gap_years: float = typer.Option(
        2.0, "--observation-gap-years",
        help="Under the last-record rule: years without a record after which a person is taken to have left."),
    key_file: Path | None = typer.Option(None, "--key-file", help=_KEY_FILE_HELP),
) -> None:
    """Import OMOP common data model (v5.3/v5.4) tables saved as CSV or TSV.

    Needs person and visit_occurrence; uses death, observation_period, conditions, drugs, cost, provider,
    care_site and the vocabulary (concept, concept_ancestor, concept_relationship) if present.

    Example: riskstrat import omop extracts/omop-2026-10 --out riskstrat-data/omop-2026-10
    """
    _run("omop", src_dir, out_dir, key_file,
         {"primary_care": primary_care, "practice_from": practice_from, "currency": currency,
          "observation_periods": observation_periods, "observation_gap_years": observation_gap_years})


@import_app.command("hes")
def import_hes(
    src_dir: Path = typer.Argument(..., help="Folder of HES / SUS+ extract files (APC, A&E, outpatients) as "
                                              "CSV, TSV or pipe-separated text."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Canonical data folder to write (replaced as a whole)."),
    key_file: Path | None = typer.Option(None, "--key-file", help=_KEY_FILE_HELP),
) -> None:
    """Import Hospital Episode Statistics (HES) or SUS+ extracts: admitted patient care, A&E and outpatients.

    Files are recognised by their columns (ADMIDATE, ARRIVALDATE, APPTDATE) or names (apc, ae, op).

    APC episodes become spells (ADMIMETH to admission method); unknown codes are counted, never guessed.

    Example: riskstrat import hes extracts/hes-2025 --out riskstrat-data/hes-2025
    """
    _run("hes", src_dir, out_dir, key_file, {})


def _run(kind: str, src_dir: Path, out_dir: Path, key_file: Path | None, options: dict) -> None:
    from riskstrat.pipelines.imports import ValidationError, import_dataset, load_pseudonym_key

    if not src_dir.is_dir():
        fail(f"{src_dir}: no such folder", EXIT_REFUSED)
    try:
        key = load_pseudonym_key(key_file)
        summary, report = import_dataset(kind, src_dir, out_dir, pseudonym_key=key, reader_options=options)
    except ValidationError as exc:
        console.print(exc.report.format(), highlight=False)
        fail(f"the {kind} data failed validation; nothing was written to {out_dir}", EXIT_REFUSED)
    _print_report(out_dir)
    warnings = [i for i in report.issues if getattr(i, "severity", "") != "error"]
    if warnings:
        out.print(f"\n[bold]Validation[/] ({len(warnings)} warning{'s' if len(warnings) != 1 else ''}):")
        for issue in warnings:
            out.print(f"  [yellow]-[/] {issue.message}", highlight=False)
    out.print(f"\nWrote {summary.people:,} people to {out_dir} (report: {out_dir / 'import_report.json'})")


def _print_report(out_dir: Path) -> None:
    from riskstrat.pipelines.imports import import_report_text

    out.print(import_report_text(out_dir), highlight=False, markup=False)
