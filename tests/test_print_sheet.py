"""The workbook's Print sheet: the list laid out for an A4 landscape page at a meeting, legible when printed.

The set-up is read back with openpyxl; the printing itself is checked by rendering the sheet through
LibreOffice (skipped where ``soffice`` is not installed) and reading the PDF's words and their sizes.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrat.modeling.tiers import DEFAULT_GROUP_PAGE_NAMES
from riskstrat.scoring import lists, sheets

TITLE = "Case-finding list: practice P81000, November 2026"

# Rows as the demo's lists hold them (3,000 synthetic people): the longest reasons, groups and conditions.
ROWS = [
    ("care provision 85+; high-cost individuals; frequent users", "care home", "2026-10-22", "skin",
     "much use of services: 7 outpatient appointments, social care; 5 long-term conditions: high blood pressure, "
     "COPD, atrial fibrillation, …; 40 GP contacts in the last 12 months",
     "high blood pressure; COPD; atrial fibrillation; chronic kidney disease; dementia"),
    ("care provision 85+; high-cost individuals; frequent users", "", "2026-08-30",
     "endocrine, nutritional and metabolic",
     "much use of services: 2 planned admissions, 20 outpatient appointments; 6 long-term conditions: high blood "
     "pressure, diabetes, atrial fibrillation, …; 37 GP contacts in the last 12 months",
     "high blood pressure; diabetes; atrial fibrillation; stroke or TIA; chronic kidney disease; cancer"),
    ("high-cost individuals", "palliative care; moved since the data end", "2026-08-31", "skin",
     "1 planned admission, social care in the last 12 months; 4 long-term conditions: high blood pressure, "
     "diabetes, stroke or TIA, …; 11 outpatient appointments in the last 12 months",
     "high blood pressure; diabetes; stroke or TIA; depression"),
    ("high-cost individuals", "", "2026-10-07", "digestive system",
     "1 planned admission, 22 GP contacts, social care in the last 12 months; 3 long-term conditions: high blood "
     "pressure, diabetes, epilepsy; 2 emergency admissions in the last 12 months, the last 25 days ago "
     "(8 days in hospital)", "high blood pressure; diabetes; epilepsy"),
    ("", "", "", "", "1 planned admission, 10 GP contacts in the last 12 months; 4 outpatient appointments in the "
     "last 12 months", ""),
]


def demo_like(n: int = 40) -> pd.DataFrame:
    """A list of ``n`` people with the columns and text of a demo practice's list (every optional column)."""
    rows = [ROWS[i % len(ROWS)] for i in range(n)]
    return pd.DataFrame({
        "Rank": np.arange(1, n + 1, dtype="int64"),
        "Person ID": [f"{i * 7919 % 16**16:016x}" for i in range(1, n + 1)],
        "Age": np.full(n, 88, dtype="int64"), "Sex": ["female"] * n,
        "Risk (%)": np.round(np.linspace(87.974, 40.25, n), 3),
        "Tier": ["very high" if i < 5 else "high" for i in range(n)],
        "Priority groups": [r[0] for r in rows], "Predicted cost": ["£20k+"] * n,
        "High-cost risk (%)": np.full(n, 88.0), "Emergency admissions (12m)": np.full(n, 5, dtype="int64"),
        "A&E visits (12m)": np.full(n, 6, dtype="int64"), "Bed days (12m)": np.full(n, 69, dtype="int64"),
        "Flags": [r[1] for r in rows], "Last emergency admission": [r[2] for r in rows],
        "Last emergency admission: diagnosis chapter": [r[3] for r in rows],
        "Outpatient specialties (12m)": np.full(n, 6, dtype="int64"), "Long-term conditions": [r[5] for r in rows],
        "Top reasons": [r[4] for r in rows], "New this month": [""] * n,
    })


def workbook(path: Path, table: pd.DataFrame) -> Path:
    cells = {c: sheets.python_values(v) for c, v in table.items()}
    return sheets.write_xlsx(table, path, title=TITLE, notes=["The 40 people of 1,000 registered adults."],
                             wide_columns=("Top reasons",), created=dt.datetime(2026, 11, 1),
                             print_cells=lists._print_cells(cells, DEFAULT_GROUP_PAGE_NAMES))


def print_widths_of(ws) -> list[float]:
    widths = {}
    for dim in ws.column_dimensions.values():  # xlsxwriter writes runs of equal columns as one range
        for j in range(dim.min, dim.max + 1):
            widths[j] = dim.width - 5 / 7  # the stored width holds the 5 pixels of padding
    return [widths[j] for j in range(1, ws.max_column + 1)]


def test_print_sheet_holds_the_meeting_columns_in_list_order(tmp_path):
    import openpyxl

    table = demo_like()
    wb = openpyxl.load_workbook(workbook(tmp_path / "list.xlsx", table))
    assert wb.sheetnames == ["List", "Print", "About this list"]
    ws = wb["Print"]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    assert rows[0] == ["Rank", "Person ID", "Risk (%)", "Tier", "Priority groups", "Flags",
                       "Last emergency admission", "Top reasons", "Long-term conditions"]
    assert len(rows[0]) <= 9 and [r[0] for r in rows[1:]] == table["Rank"].tolist()
    assert [r[1] for r in rows[1:]] == table["Person ID"].tolist()
    # Risk as the List sheet holds it: 87.974, so that a filter "greater than 50" finds what is shown.
    assert [r[2] for r in rows[1:]] == table["Risk (%)"].tolist() == [r[4] for r in wb["List"].iter_rows(
        min_row=2, values_only=True)]
    assert {ws.cell(i, 3).number_format for i in range(2, ws.max_row + 1)} == {"0.000"}
    first = dict(zip(rows[0], rows[1]))
    assert first["Last emergency admission"] == "2026-10-22 (skin)"
    assert first["Top reasons"].split("\n") == table["Top reasons"][0].split("; ")  # one reason a line
    assert first["Priority groups"].startswith(DEFAULT_GROUP_PAGE_NAMES["care provision 85+"])  # the page's words
    assert first["Long-term conditions"] == table["Long-term conditions"][0]  # the full list
    assert dict(zip(rows[0], rows[5]))["Last emergency admission"] is None  # none: a blank cell


def test_print_sheet_is_set_up_for_a4_landscape_at_8_points_or_more(tmp_path):
    import openpyxl

    wb = openpyxl.load_workbook(workbook(tmp_path / "list.xlsx", demo_like()))
    ws = wb["Print"]
    setup = ws.page_setup
    assert setup.orientation == "landscape" and setup.paperSize == 9  # A4
    assert ws.sheet_properties.pageSetUpPr.fitToPage and setup.fitToWidth in (None, 1) and setup.fitToHeight == 0
    assert ws.print_title_rows == "$1:$1"  # the heading row on every page
    assert ws.page_margins.left == ws.page_margins.right == 0.25
    assert TITLE in ws.oddHeader.left.text and ws.oddFooter.left.text == "Page &P of &N"
    cells = [c for row in ws.iter_rows() for c in row]
    assert {(c.font.name, c.font.sz) for c in cells} == {("Arial", 9)}
    assert all(c.alignment.wrap_text and c.alignment.vertical == "top" for c in cells if c.data_type == "s")
    assert {c.alignment.vertical for c in cells} == {"top"}
    # The rank at the left of its column, so it does not run into the pseudonym beside it.
    ranks = [row[0] for row in ws.iter_rows(min_row=2) if isinstance(row[0].value, int)]
    assert ranks and {c.alignment.horizontal for c in ranks} == {"left"}
    # The printed size: the font times the scale "one page wide" prints at.
    widths = print_widths_of(ws)
    points = 9 * sheets.print_sheet_scale(widths)
    assert points >= 8 and sum(map(sheets._printed_pixels, widths)) <= sheets.PRINT_PRINTABLE_PX
    reasons = widths[[c.value for c in ws[1]].index("Top reasons")]
    assert reasons == max(widths) and reasons >= 30  # the reasons in a column of their own width
    # Every row as tall as its lines.
    for i in range(2, ws.max_row + 1):
        lines = max(sheets._print_lines(ws.cell(i, j).value, widths[j - 1]) for j in range(1, ws.max_column + 1))
        assert ws.row_dimensions[i].height == sheets.PRINT_LINE_POINTS * lines, i
    about = [r[0] for r in wb["About this list"].iter_rows(values_only=True)]
    assert about[1] == sheets.print_sheet_sentence(points) and "print the Print sheet" in about[1]
    # The List sheet prints on A4 landscape too, one page wide, its heading on every page.
    full = wb["List"]
    assert full.page_setup.orientation == "landscape" and full.page_setup.paperSize == 9
    assert full.sheet_properties.pageSetUpPr.fitToPage and full.print_title_rows == "$1:$1"


def test_without_print_cells_the_workbook_has_no_print_sheet(tmp_path):
    import openpyxl

    table = demo_like(3)
    path = sheets.write_xlsx(table, tmp_path / "list.xlsx", title=TITLE, notes=["n"])
    assert openpyxl.load_workbook(path).sheetnames == ["List", "About this list"]


def test_print_widths_fit_the_page_and_give_room_where_it_saves_lines():
    columns = ["Rank", "Person ID", "Top reasons", "Long-term conditions"]
    reasons = ["a long reason " * 12] * 20
    widths = sheets.print_widths(columns, [list(range(20)), ["0123456789abcdef"] * 20, reasons, ["asthma"] * 20])
    assert widths[:2] == [sheets._heading_width("Rank"), sheets._width_for_pixels(
        sheets._arial_pixels("0123456789abcdef"))]
    assert widths[3] == sheets._heading_width("Long-term conditions")  # short values: as wide as the heading
    assert sum(map(sheets._printed_pixels, widths)) <= sheets.PRINT_PRINTABLE_PX * sheets.PRINT_FILL
    # The reasons take the rest: not narrower than they were to save a line.
    assert sheets._lines(reasons[0], widths[2] - 1, measure=sheets._arial_pixels) >= sheets._lines(
        reasons[0], widths[2], measure=sheets._arial_pixels)


# ----------------------------------------------------------------------------- printed through LibreOffice


def _calibri_twin() -> bool:
    """Whether LibreOffice finds Calibri or its metric twin Carlito: the workbook's column widths are in
    Calibri's characters, and another font (DejaVu Sans) makes every column a third wider."""
    if not shutil.which("fc-match"):
        return False
    found = subprocess.run(["fc-match", "Calibri"], capture_output=True, text=True).stdout
    return "Carlito" in found or "Calibri" in found


needs_soffice = pytest.mark.skipif(not shutil.which("soffice") or not shutil.which("pdftotext"),
                                   reason="LibreOffice (soffice) and poppler-utils (pdftotext) render the sheet")
needs_carlito = pytest.mark.skipif(not _calibri_twin(), reason="LibreOffice sizes the columns in Calibri or Carlito "
                                   "(apt-get install fonts-crosextra-carlito); with another font they print wider")


def _words(pdf: Path, page: int) -> list[tuple[float, float, float, float, str]]:
    """The words of a PDF page with their boxes (points), as pdftotext reads them."""
    out = subprocess.run(["pdftotext", "-bbox", "-f", str(page), "-l", str(page), str(pdf), "-"],
                         capture_output=True, text=True, check=True).stdout
    return [(float(a), float(b), float(c), float(d), word) for a, b, c, d, word in re.findall(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', out)]


@needs_soffice
@needs_carlito
def test_print_sheet_prints_one_page_wide_at_8_points_or_more(tmp_path):
    import html

    import openpyxl

    table = demo_like()
    path = workbook(tmp_path / "list.xlsx", table)
    wb = openpyxl.load_workbook(path)
    for name in ("List", "About this list"):  # LibreOffice prints every sheet: keep only the Print sheet
        del wb[name]
    wb.save(tmp_path / "print.xlsx")
    subprocess.run(["soffice", "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path),
                    str(tmp_path / "print.xlsx")], capture_output=True, check=True, timeout=120,
                   env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    pdf = tmp_path / "print.pdf"
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    width, height = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", info).groups())
    assert (round(width), round(height)) == (842, 595)  # A4 landscape
    pages = int(re.search(r"Pages:\s+(\d+)", info)[1])
    first = _words(pdf, 1)
    text = [html.unescape(w[4]) for w in first]
    # One page wide: every heading, the last column's too, on page 1, and no word past the margins.
    for heading in ("Rank", "Person", "Risk", "Tier", "Priority", "Flags", "emergency", "reasons", "Long-term"):
        assert heading in text, heading
    margin = 0.25 * 72
    assert all(margin - 1 <= w[0] and w[2] <= width - margin + 1 for p in range(1, pages + 1) for w in _words(pdf, p))
    assert TITLE.split(":")[0].split()[0] in text and "Page" in text and f"{pages}" in text  # header and footer
    # The heading row repeated on the last page, and the last person printed.
    last = [html.unescape(w[4]) for w in _words(pdf, pages)]
    assert "Long-term" in last and table["Person ID"].iloc[-1] in last
    # The text's size: a word's printed width over its width in Arial at 1 pt.
    sizes = [(w[2] - w[0]) / (sheets._arial_pixels(word) / sheets._ARIAL_PX_PER_UNIT / 2048)
             for w, word in zip(first, text) if len(word) >= 6 and word.isascii() and w[1] > 80]
    assert len(sizes) > 100
    assert statistics.median(sizes) >= 8.5 and min(sizes) >= 8.0, (statistics.median(sizes), min(sizes))
    assert pages <= 10, pages
