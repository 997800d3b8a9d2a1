"""Workbooks and CSVs read back: the cells, the notes and the title as written, formulas never run."""

from __future__ import annotations

import datetime as dt
import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrat.scoring import sheets


def hand_made() -> pd.DataFrame:
    return pd.DataFrame({
        "Rank": np.array([1, 2, 3], dtype="int64"),
        "Person ID": pd.array(["a1", "=2+3", None], dtype="str"),
        "Age": pd.array([81, pd.NA, 40], dtype="Int64"),
        "Risk (%)": [41.5, 12.0, np.nan],
        "Top reasons": ["3 emergency admissions", "@SUM(A1)", ""],
        "Flag": [True, False, True],
    })


EXPECTED = [  # what a reader of the workbook sees, row by row
    ["Rank", "Person ID", "Age", "Risk (%)", "Top reasons", "Flag"],
    [1, "a1", 81, 41.5, "3 emergency admissions", True],  # percent as written: a filter "> 40" finds it
    [2, "=2+3", None, 12.0, "@SUM(A1)", False],
    [3, None, 40, None, "", True],  # missing values are blank cells; empty text stays text
]


@pytest.fixture(params=["in memory", "streamed"])
def workbook(request, tmp_path, monkeypatch):
    if request.param == "streamed":
        monkeypatch.setattr(sheets, "STREAM_ROWS", 0)  # every table streams row by row
    path = sheets.write_xlsx(hand_made(), tmp_path / "list.xlsx", title="Case-finding list: practice P001",
                             notes=["First note.", "-2 is not a formula"], wide_columns=("Top reasons",),
                             created=dt.datetime(2026, 11, 1))
    return path


def test_workbook_reads_back_with_the_same_cells_notes_and_title(workbook):
    import openpyxl

    wb = openpyxl.load_workbook(workbook)
    assert wb.sheetnames == ["List", "About this list"]
    rows = [list(r) for r in wb["List"].iter_rows(values_only=True)]
    assert rows == EXPECTED
    ws = wb["List"]
    hostile = [ws.cell(3, 2), ws.cell(3, 5)]
    assert all(c.data_type == "s" and c.quotePrefix for c in hostile)  # text, and editing keeps it text
    assert not ws.cell(2, 2).quotePrefix
    assert ws.cell(2, 4).number_format == "0.0"
    assert ws.cell(2, 5).alignment.wrap_text and ws.column_dimensions["E"].width == pytest.approx(sheets.WIDE_WIDTH, abs=1)
    about = [r[0] for r in wb["About this list"].iter_rows(values_only=True)]
    assert about == ["Case-finding list: practice P001", "First note.", "-2 is not a formula"]
    assert wb["About this list"].cell(3, 1).quotePrefix
    assert wb.properties.title == "Case-finding list: practice P001"
    assert wb.properties.created == dt.datetime(2026, 11, 1)
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:F4" and ws.print_title_rows == "$1:$1"


def test_workbook_bytes_repeat(workbook, tmp_path):
    again = tmp_path / "again.xlsx"  # written the fixture's way (in memory or streamed)
    sheets.write_xlsx(hand_made(), again, title="Case-finding list: practice P001",
                      notes=["First note.", "-2 is not a formula"], wide_columns=("Top reasons",),
                      created=dt.datetime(2026, 11, 1))
    assert again.read_bytes() == workbook.read_bytes()


def test_streamed_and_in_memory_workbooks_hold_the_same_cells(tmp_path, monkeypatch):
    import openpyxl

    def cells(path):
        wb = openpyxl.load_workbook(path)
        return [[(c.value, c.data_type, bool(c.quotePrefix), c.number_format) for c in row]
                for ws in wb for row in ws.iter_rows()]

    small = sheets.write_xlsx(hand_made(), tmp_path / "a.xlsx", title="T", notes=["n"], wide_columns=("Top reasons",))
    monkeypatch.setattr(sheets, "STREAM_ROWS", 0)
    streamed = sheets.write_xlsx(hand_made(), tmp_path / "b.xlsx", title="T", notes=["n"],
                                 wide_columns=("Top reasons",))
    assert cells(streamed) == cells(small)


def test_bytes_in_memory_are_the_files_written(tmp_path):
    table = hand_made()
    sheets.write_csv(table, tmp_path / "list.csv")
    assert sheets.csv_bytes(table) == (tmp_path / "list.csv").read_bytes()
    options = dict(title="T & co", notes=["=1+1", "plain"], wide_columns=("Top reasons",),
                   created=dt.datetime(2026, 11, 1))
    sheets.write_xlsx(table, tmp_path / "list.xlsx", **options)
    assert sheets.xlsx_bytes(table, **options) == (tmp_path / "list.xlsx").read_bytes()


def test_csv_matches_pandas_on_awkward_cells():
    """The CSV is pandas' own (quoting, missing values, numbers), neutralised: a reference check."""
    table = pd.DataFrame({
        "n": pd.array([1, pd.NA, -3], dtype="Int64"), "x": [0.1 + 0.2, np.nan, 1e-7],
        "text": pd.array(['say "hi", then\nleave', None, "£5–10"], dtype="str"), "ok": [True, False, True]})
    expected = "\ufeff" + table.to_csv(index=False, lineterminator="\n")
    assert sheets.csv_bytes(table).decode("utf-8") == expected


@pytest.mark.parametrize(("values", "expected"), [
    (pd.array(["a", None], dtype="str"), ["a", None]),
    (pd.array([1, None], dtype="Int64"), [1, None]),
    (np.array([1.5, np.nan]), [1.5, None]),
    (np.array([1, 2], dtype="int64"), [1, 2]),
    (np.array([True, False]), [True, False]),
    (pd.array(["a", None, np.nan, 3], dtype=object), ["a", None, None, 3]),
    (pd.Categorical(["low", None]), ["low", None]),
    (pd.array([1.0, None], dtype="Float64"), [1.0, None]),
])
def test_python_values_are_plain_with_none_for_missing(values, expected):
    got = sheets.python_values(pd.Series(values))
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


# ---------------------------------------------------------------- what Excel shows, against the old writer

def _awkward_tables() -> dict[str, pd.DataFrame]:
    """Hand-made tables with every kind of cell, escape and format a workbook meets."""
    text = pd.array(["=HYPERLINK(\"x\")", "+44 20", "-minus", "@SUM(A1)", "\ttab", "\rreturn", "plain", None],
                    dtype="str")
    specials = ["a & b <c> \"d\" 'e'", "bell\x07 and \x1f unit", "_x0041_ looks escaped", "\ufffe\uffff",
                "trailing space ", "\nleading newline", "\u00a0no-break space", ""]
    unicode = ["£5–10", "Zoë Ångström", "🙂 above the BMP", "中文", "Ελληνικά", "ﬁ ligature", "a\u0301", "×"]
    numbers = [1.5e300, 1e-300, -0.5, 0.1 + 0.2, 1e16, 12345678901234567.0, -0.0, 2 / 3]
    return {
        "hand made": hand_made(),
        "everything": pd.DataFrame({
            "Rank": np.arange(1, 9, dtype="int64"),
            "Person ID": text,
            "Age": pd.array([81, pd.NA, 40, 0, -3, 10**15, 12345678901234567, 7], dtype="Int64"),
            "Risk (%)": [41.5, np.nan, 0.04, 100.0, 1e-9, 33.333333, -2.5, 99.99],
            "Notes": specials,
            "Script": unicode,
            "Number": numbers,
            "Top reasons": ["=1+1", None, "wrapped & long " * 40, "  spaced  ", "x" * 10_000, "@a", "", "ok"],
            "Flag": [True, False, True, False, True, True, False, False],
            "Share (%)": pd.array([1, None, 3, 4, 5, 6, 7, 8], dtype="Int64"),
        }),
        "percent before wrap": pd.DataFrame({"Top reasons": [None, "late", "=late"], "Risk (%)": [5.0, 6.0, 7.0],
                                             "Id": ["-1", "a", "b"]}),
        "hostile first": pd.DataFrame({"Id": ["=x", "y"], "Top reasons": ["=wrap", "w"], "Risk (%)": [1.0, 2.0]}),
        "empty": hand_made().iloc[:0],
        "one column": pd.DataFrame({"Only": ["a"]}),
        # rows 17-32 (one block of row spans) have cells in the middle column only
        "missing at the edges": pd.DataFrame({"First": pd.array([None] * 40 + ["a"], dtype="str"),
                                              "Middle": np.arange(41.0),
                                              "Last": pd.array(["z"] + [None] * 40, dtype="str")}),
        "blank rows": pd.DataFrame({"A": pd.array([None, "a", None], dtype="str"),
                                    "B": pd.array([None, None, None], dtype="Float64")}),
        "27 columns": pd.DataFrame({f"c{j}": [j, j + 0.5] for j in range(27)}),
    }


OPTIONS = [
    {"title": "Case-finding list: P & Q <1>, November 2026", "notes": ["First note.", "-2 is not a formula"],
     "wide_columns": ("Top reasons",), "created": dt.datetime(2026, 11, 1)},
    {"title": "T", "notes": [], "wide_columns": (), "created": None},
    {"title": "  Title \x07 with control ", "notes": ["=1+1", "a & <b>", " leading", "\ttab note", 42],
     "wide_columns": ("Top reasons", "Notes"), "created": dt.datetime(2031, 2, 3, 4, 5, 6), "sheet": "My list"},
]

# Workbooks the hand-written writer (riskstrat.workbook_parts, removed in issue 23) wrote
# for these tables and options: what Excel showed then.
OLD_WORKBOOKS = Path(__file__).with_name("workbooks")
OLD_CASES = {"everything-usual": ("everything", 0), "everything-odd": ("everything", 2),
             "edges-bare": ("missing at the edges", 1), "hostile-first-usual": ("hostile first", 0)}


def _shown(data: bytes) -> dict:
    """Everything a reader of the workbook sees, as openpyxl reads it: sheets, each cell's value,
    type, number format, font, fill, alignment and quote prefix, column widths, frozen panes, the
    filter, print titles and set-up, page header and footer, and the document's properties."""
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(data))
    shown = {"sheets": wb.sheetnames, "active": wb.active.title,
             "properties": {k: getattr(wb.properties, k) for k in ("title", "creator", "lastModifiedBy", "created",
                                                                    "modified", "subject", "keywords")}}
    for ws in wb:
        widths = {}
        for dim in ws.column_dimensions.values():
            if dim.min is not None:
                widths.update({j: (round(dim.width, 4), dim.customWidth) for j in range(dim.min, dim.max + 1)})
        setup = ws.page_setup
        shown[ws.title] = {
            "dimensions": ws.dimensions,
            "cells": {c.coordinate: (c.value, c.data_type, c.number_format, c.quotePrefix, c.font.b, c.font.sz,
                                     c.font.color.rgb if c.font.color is not None else None, c.fill.fill_type,
                                     c.fill.fgColor.rgb, c.alignment.wrap_text, c.alignment.vertical)
                      for row in ws.iter_rows() for c in row},
            "widths": widths, "freeze": ws.freeze_panes, "filter": ws.auto_filter.ref,
            "print titles": (ws.print_title_rows, ws.print_title_cols), "print area": ws.print_area,
            "setup": (setup.orientation, setup.paperSize, setup.fitToWidth, setup.fitToHeight,
                      ws.sheet_properties.pageSetUpPr.fitToPage if ws.sheet_properties.pageSetUpPr else None),
            "margins": tuple(getattr(ws.page_margins, k) for k in ("left", "right", "top", "bottom", "header",
                                                                   "footer")),
            "header": (ws.oddHeader.left.text, ws.oddHeader.center.text, ws.oddHeader.right.text),
            "footer": (ws.oddFooter.left.text, ws.oddFooter.center.text, ws.oddFooter.right.text),
            "selected": ws.sheet_view.tabSelected,
        }
    return shown


def _percents_as_written(shown: dict, table: pd.DataFrame, sheet: str) -> dict:
    """What the old writer showed, with its percent columns as workbooks now hold them (issue 24): the
    table's own numbers (41.5, not 0.415) in a plain number format of the decimals they have."""
    import openpyxl.utils

    cells = dict(shown[sheet]["cells"])
    for j, name in enumerate(table.columns, start=1):
        if not str(name).endswith("(%)"):
            continue
        decimals = sheets._decimals(sheets.python_values(table[name]))
        letter = openpyxl.utils.get_column_letter(j)
        for i, value in enumerate(sheets.python_values(table[name]), start=2):
            old = cells[f"{letter}{i}"]
            cells[f"{letter}{i}"] = (value, old[1], "0." + "0" * decimals if value is not None else old[2], *old[3:])
    return {**shown, sheet: {**shown[sheet], "cells": cells}}


@pytest.mark.parametrize("case", list(OLD_CASES))
def test_workbook_shows_what_the_old_hand_written_writer_showed(case):
    name, k = OLD_CASES[case]
    table = _awkward_tables()[name]
    new = sheets.xlsx_bytes(table, **OPTIONS[k])
    old = (OLD_WORKBOOKS / f"{case}.xlsx").read_bytes()
    # Changed on purpose since (issue 24): the columns' widths, sized to print one A4 landscape page
    # wide, the About sheet's print set-up (tests/test_scoring_lists.py checks both), and every cell
    # of the list at the top of its row.
    sheet = OPTIONS[k].get("sheet", "List")
    assert _without_print_sizes(_shown(new)) == _without_print_sizes(
        _top_aligned(_percents_as_written(_shown(old), table, sheet), sheet))


def _top_aligned(shown: dict, sheet: str) -> dict:
    """``shown`` with the cells written under the header row of ``sheet`` (a value, or a wrapped
    blank) aligned to the top of their rows."""
    cells = {ref: (*cell[:10], "top") if int(ref.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) > 1
             and (cell[0] is not None or cell[9]) else cell
             for ref, cell in shown[sheet]["cells"].items()}
    return {**shown, sheet: {**shown[sheet], "cells": cells}}


def _without_print_sizes(shown: dict) -> dict:
    dropped = {"About this list": ("widths", "setup")}
    return {name: ({k: v for k, v in sheet.items() if k not in dropped.get(name, ("widths",))}
                   if isinstance(sheet, dict) and "widths" in sheet else sheet) for name, sheet in shown.items()}


def test_percent_columns_filter_as_they_read(tmp_path):
    """Excel's filter compares a cell's value: a risk that reads 90.6 must be stored as 90.6, so that
    "greater than 50" finds it (it was 0.906 shown as 90.6%, and the filter found nobody)."""
    import openpyxl

    table = pd.DataFrame({"Rank": [1, 2, 3], "Risk (%)": [90.613, 55.5, 12.25], "High-cost risk (%)": [3.5, 1.0, 0.2]})
    path = sheets.write_xlsx(table, tmp_path / "list.xlsx", title="T")
    ws = openpyxl.load_workbook(path)["List"]
    risk = [ws.cell(i, 2) for i in range(2, 5)]
    assert [c.value for c in risk if c.value > 50] == [90.613, 55.5]  # what "greater than 50" keeps
    assert {c.number_format for c in risk} == {"0.000"} and "%" not in ws.cell(2, 3).number_format
    assert [ws.cell(i, 3).value for i in range(2, 5)] == [3.5, 1.0, 0.2] and ws.cell(2, 3).number_format == "0.0"
    assert pd.read_csv(io.BytesIO(sheets.csv_bytes(table)), encoding="utf-8-sig")["Risk (%)"].tolist() == [
        c.value for c in risk]  # the CSV holds the same numbers


def test_what_the_comparison_sees():
    """The comparison notices a changed cell, format, width, title and creation date."""
    table, options = _awkward_tables()["hostile first"], OPTIONS[0]
    old = _shown((OLD_WORKBOOKS / "hostile-first-usual.xlsx").read_bytes())
    changed = table.assign(Id=["x", "y"])
    assert _shown(sheets.xlsx_bytes(changed, **options))["List"]["cells"] != old["List"]["cells"]
    for other in ({"wide_columns": ()}, {"title": "Other"}, {"created": dt.datetime(2026, 12, 1)}):
        assert _shown(sheets.xlsx_bytes(table, **{**options, **other})) != old
    shown = old["List"]
    assert shown["freeze"] == "A2" and shown["filter"] == "A1:C3" and shown["print titles"] == ("$1:$1", None)
    assert shown["setup"] == ("landscape", 9, None, 0, True) and shown["header"][0].startswith("&BCase-finding")
    assert shown["cells"]["B2"][:4] == ("=wrap", "s", "General", True) and shown["widths"][2][0] > 80


@pytest.mark.parametrize("name", list(_awkward_tables()))
@pytest.mark.parametrize("options", OPTIONS, ids=["usual", "bare", "odd"])
def test_workbook_bytes_are_the_same_for_the_same_table(name, options):
    table = _awkward_tables()[name]
    first = sheets.xlsx_bytes(table, **options)
    assert sheets.xlsx_bytes(table.copy(), **options) == first
    assert _shown(first)["List" if "sheet" not in options else options["sheet"]]["cells"]


@pytest.mark.parametrize(("case", "table", "options"), [
    ("truncated text", pd.DataFrame({"A": ["x" * 40_000]}), {}),
    ("rich-text look-alike", pd.DataFrame({"A": ["<r>bold?</r>"]}), {}),
    ("a date", pd.DataFrame({"A": pd.array([dt.date(2026, 1, 1), "x"], dtype=object)}), {}),
    ("a header too long for Excel", hand_made(), {"title": "x" * 300}),
    ("no columns", pd.DataFrame(index=range(2)), {}),
])
def test_awkward_tables_still_make_a_workbook(case, table, options):
    options = {"title": "T", "notes": ["n"], "created": dt.datetime(2026, 11, 1), **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # xlsxwriter warns about the text or header it leaves out
        data = sheets.xlsx_bytes(table, **options)
    assert _shown(data)["sheets"] == ["List", "About this list"]


def test_an_infinite_number_is_refused_as_xlsxwriter_refuses_it():
    table = pd.DataFrame({"x": [1.0, np.inf]})
    with pytest.raises(TypeError, match="NAN/INF"):
        sheets.xlsx_bytes(table, title="T")


@pytest.mark.parametrize("table", [
    pd.DataFrame({"=SUM(A1)": pd.array(["=1+1", "-x", None, "a\rb", "c\r\nd"], dtype="str"),
                  "ok": pd.array(["a", "b", "c", "d", "e"], dtype="str"), "n": [1, -2, 3, 4, 5]}),
    pd.DataFrame({0: pd.array(["+44", 3, None, "@x", "fine"], dtype=object), 1: [0.5, -1.0, np.nan, 2.0, 3.0]}),
    pd.DataFrame({"tier": pd.Categorical(["-high", "low", None, "low", "\ttab"]), "x": [True] * 5}),
    pd.DataFrame({"clean": pd.array(["a", None, "b"], dtype="str"), "m": pd.array([1, None, 3], dtype="Int64")}),
], ids=["formulas and carriage returns", "mixed objects, int headings", "categories", "nothing to change"])
def test_csv_is_pandas_csv_of_the_neutralised_cells(table):
    """The CSV against pandas' own CSV of the table with every text cell and heading neutralised one by one."""
    neutral = pd.DataFrame({sheets._csv_text(str(c)): table[c].map(sheets._csv_text, na_action="ignore")
                            if table[c].dtype.kind not in "iufcb" else table[c] for c in table.columns})
    expected = "\ufeff" + neutral.to_csv(index=False, lineterminator="\n")
    assert sheets.csv_bytes(table).decode("utf-8") == expected


def test_csvs_made_together_are_each_tables_own_csv():
    """csv_bytes_many against csv_bytes table by table: tables of one kind written together (some
    with text to neutralise, some empty), and the tables it leaves to csv_bytes (a line break in a
    cell, dates written from the whole column, a kind of table on its own)."""
    def table(text, number, flag):
        return pd.DataFrame({"id": pd.array(text, dtype="str"), "risk (%)": np.array(number, dtype="float64"),
                             "n": pd.array([None if x is None else 1 for x in text], dtype="Int64"),
                             "new": np.array(flag, dtype=bool)})

    tables = [
        table(["a", "b"], [0.1 + 0.2, 1e-7], [True, False]),
        table(["=1+1", None], [np.nan, 3.0], [False, False]),
        table([], [], []),
        table(["it's, \"quoted\"", "£5–10"], [1e16, -0.0], [True, True]),
        table(["two\nlines", "c"], [1.0, 2.0], [True, False]),  # with a line break: its group one by one
        pd.DataFrame({"id": ["x"], "risk (%)": [1], "n": [1], "new": [True]}),  # other dtypes: its own group
        pd.DataFrame({"when": pd.to_datetime(["2026-01-01", "2026-01-01"])}),
        pd.DataFrame({"when": pd.to_datetime(["2026-01-01", "2026-01-01 12:30"], format="ISO8601")}),  # one format per column
    ]
    assert sheets.csv_bytes_many(tables) == [sheets.csv_bytes(t) for t in tables]
    assert sheets.csv_bytes_many(tables[:4] + tables[:4]) == [sheets.csv_bytes(t) for t in tables[:4] * 2]
    assert sheets.csv_bytes_many([]) == []


def test_python_values_of_many_tables_are_each_tables_own():
    """python_values_many against python_values column by column, table by table: tables of one kind
    put together (missing values, NaN, text, whole numbers with gaps, an empty one), a table whose
    dtypes set it apart, categoricals, mixed Python objects and repeated column names."""
    def table(text, risk, n):
        return pd.DataFrame({"Person ID": pd.array(text, dtype="str"), "Risk (%)": np.array(risk, dtype="float64"),
                             "Age": pd.array(n, dtype="Int64"), "Rank": np.arange(1, len(text) + 1, dtype="int64")})

    tables = [
        table(["a", "=1+1"], [41.5, np.nan], [81, None]),
        table([], [], []),
        table([None, "£–", "x\x00y"], [0.1 + 0.2, -0.0, 1e300], [None, None, 3]),
        pd.DataFrame({"Person ID": ["x"], "Risk (%)": [1], "Age": [2.5], "Rank": [1]}),  # other dtypes
        pd.DataFrame({"tier": pd.Categorical(["low", None, "high"]), "obj": pd.array([1, "a", None], dtype=object)}),
        pd.DataFrame({"tier": pd.Categorical(["high"], categories=["low", "high"]),
                      "obj": pd.array([2.5], dtype=object)}),
        pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"]),
        hand_made(),
    ]
    expected = [{c: sheets.python_values(v) for c, v in t.items()} for t in tables]
    got = sheets.python_values_many(tables)
    assert got == expected
    assert [[type(v) for col in g.values() for v in col] for g in got] == \
        [[type(v) for col in e.values() for v in col] for e in expected]
    assert sheets.python_values_many(tables[:3] * 2) == expected[:3] * 2
    assert sheets.python_values_many([]) == []


@pytest.mark.parametrize("name", ["hand made", "everything", "percent before wrap", "empty", "blank rows"])
def test_workbook_from_cells_already_made_is_the_tables(name):
    """The cells a caller already holds (python_values_many) give the same workbook as the table,
    and are not changed (percentages become fractions in the workbook's own copy)."""
    table = _awkward_tables()[name]
    options = OPTIONS[0]
    cells = [sheets.python_values(v) for _, v in table.items()]
    before = [list(c) for c in cells]
    assert sheets.xlsx_bytes(table, cells=cells, **options) == sheets.xlsx_bytes(table, **options)
    assert cells == before
    with pytest.raises(ValueError, match="cells must be"):
        sheets.xlsx_bytes(table, cells=cells[:-1], **options)


# ---------------------------------------------------------------- printing: alignment, row heights

def _long_list(rows: int = 12) -> pd.DataFrame:
    """A list like a practice's: numbers, short text, text that wraps, and long reasons."""
    reasons = ["much use of services: 7 outpatient appointments, social care; 5 long-term conditions: high "
               "blood pressure, COPD, atrial fibrillation, …; 40 GP contacts in the last 12 months", "few", None]
    return pd.DataFrame({
        "Rank": np.arange(1, rows + 1, dtype="int64"),
        "Person ID": pd.array([f"{k:016x}" for k in range(rows)], dtype="str"),
        "Risk (%)": np.linspace(90.6, 10.2, rows).round(1),
        "Long-term conditions": pd.array(["high blood pressure; COPD; atrial fibrillation; chronic kidney disease",
                                          "asthma", None] * (rows // 3) + ["x"] * (rows % 3), dtype="str"),
        "Top reasons": pd.array((reasons * rows)[:rows], dtype="str"),
        "New": [True, False] * (rows // 2) + [True] * (rows % 2),
    })


def test_every_cell_of_the_list_sits_at_the_top_of_its_row(tmp_path):
    """Wrapped text sits at the top of a row; so must the numbers beside it, or a tall row's numbers
    read as the next row's (and the first row looked cut under the header)."""
    import openpyxl

    table = _long_list()
    ws = openpyxl.load_workbook(sheets.write_xlsx(table, tmp_path / "list.xlsx", title="T",
                                                  wide_columns=("Top reasons",)))["List"]
    written = [c for row in ws.iter_rows(min_row=2) for c in row if c.value is not None]
    assert len(written) > 5 * len(table) and {c.alignment.vertical for c in written} == {"top"}
    assert ws.cell(2, 3).number_format == "0.0" and ws.cell(2, 3).value == 90.6  # the number as it was
    assert ws.cell(1, 1).alignment.vertical == "center"  # the header row as it was


@pytest.mark.parametrize(("text", "width", "lines"), [
    (None, 10, 1), ("", 10, 1), ("short", 10, 1), ("a\nb", 30, 2), ("a\n\nb", 30, 3),
    ("word " * 20, 30, 4),  # 35 pixels a word, 207 a line: 5 words a line
    ("x" * 100, 10, 11),  # no spaces: 674 pixels cut into lines of 67
])
def test_lines_of_a_wrapped_cell(text, width, lines):
    assert sheets._lines(text, width) == lines


def test_rows_are_as_tall_as_their_wrapped_text_and_no_taller(tmp_path):
    """Each row (the first under the header too) is LINE_POINTS a line of its tallest wrapped cell,
    and the lines are what the text needs: a line's worth of characters fit a line, more do not."""
    import openpyxl

    table = _long_list()
    ws = openpyxl.load_workbook(sheets.write_xlsx(table, tmp_path / "list.xlsx", title="T",
                                                  wide_columns=("Top reasons",)))["List"]
    width = {name: ws.column_dimensions[letter].width - 5 / 7 for name, letter in
             (("Top reasons", "E"), ("Long-term conditions", "D"))}
    for i in range(2, len(table) + 2):
        need = max(sheets._lines(ws.cell(i, j).value, width[name]) for j, name in ((4, "Long-term conditions"),
                                                                                    (5, "Top reasons")))
        assert (ws.row_dimensions[i].height or 15) == sheets.LINE_POINTS * need, i
    long = table["Top reasons"][0]
    lines = sheets._lines(long, width["Top reasons"])
    assert 2 <= lines <= 1 + len(long) * 6.5 / (width["Top reasons"] * 7)  # about 6 pixels a character
    assert ws.row_dimensions[2].height == sheets.LINE_POINTS * lines  # the first data row: all its lines
    assert ws.row_dimensions[1].height >= sheets.LINE_POINTS  # the header row's own lines


@pytest.mark.slow
def test_libreoffice_prints_the_list_one_page_wide_with_every_person_and_the_first_under_the_header(tmp_path):
    """A LibreOffice render (skipped without soffice): one page wide, every Person ID printed, the
    first person's row starting on page 1 right under the header, its rank and id on one line."""
    import shutil
    import subprocess

    soffice, pdftotext = shutil.which("soffice"), shutil.which("pdftotext")
    if not soffice or not pdftotext:
        pytest.skip("LibreOffice (soffice) and pdftotext are needed")
    table = _long_list(30)
    path = sheets.write_xlsx(table, tmp_path / "list.xlsx", title="T", wide_columns=("Top reasons",))
    subprocess.run([soffice, f"-env:UserInstallation=file://{tmp_path}/profile", "--headless", "--convert-to",
                    "pdf", "--outdir", str(tmp_path), str(path)], check=True, capture_output=True, timeout=120)
    text = subprocess.run([pdftotext, "-layout", str(tmp_path / "list.pdf"), "-"], check=True, capture_output=True,
                          text=True).stdout
    pages = text.split("\f")
    assert all(pid in text for pid in table["Person ID"])
    people = [line.split() for line in pages[0].splitlines() if any(pid in line for pid in table["Person ID"])]
    # rank 1's cells start on one line: its number, id and risk beside the first words of its text
    assert people[0][:5] == ["1", table["Person ID"][0], "90.6", "high", "blood"] and "much" in people[0], people[:2]
    assert "Person ID" in pages[1]  # the header row repeated
