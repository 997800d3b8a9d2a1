"""`riskstrat workbook`: a practice's workbook (list.xlsx) from a published month, when the run left it out."""

from __future__ import annotations

from pathlib import Path

import typer

from riskstrat.cli.app import app, out, refuse
from riskstrat.data.io import write_bytes


@app.command()
def workbook(
    lists: Path = typer.Option(..., "--lists", help="The folder of published months (`riskstrat score`'s lists "
                                                     "folder; for the demo riskstrat-output/lists)."),
    month: str = typer.Option(..., "--month", help="The month, YYYY-MM (a folder under --lists)."),
    practice: str = typer.Option(..., "--practice", help="The practice id whose list's workbook to write."),
    out_path: Path = typer.Option(None, "--out", help="Where to write it (default: PRACTICE-MONTH.xlsx in the "
                                                       "current folder). An existing file is not replaced."),
) -> None:
    """Write a practice's workbook (List, Print and About sheets) from a published month.

    A month scored with `lists.workbooks: none` (or a list of practices) publishes, for every other
    list, the workbook's contents (workbook.json) instead of the workbook: this builds it, byte for
    byte what the run would have written. Every file read is checked against the month's manifest.

    Example: riskstrat workbook --lists riskstrat-output/lists --month 2026-11 --practice P81000
    """
    from riskstrat.pipelines.workbook import month_workbook

    target = out_path or Path(f"{practice}-{month}.xlsx")
    if target.exists() or target.is_symlink():
        refuse(f"{target} exists already: give another --out, or move it away first")
    data = month_workbook(lists, month=month, practice=practice)
    write_bytes(data, target)  # atomic; a link planted at the target is replaced, never followed
    out.print(f"Wrote {target} ({len(data):,} bytes): {practice}'s workbook for {month}", highlight=False)
