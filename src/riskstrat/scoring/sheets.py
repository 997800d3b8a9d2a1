"""Spreadsheet files people open in Excel: CSV and XLSX writers that cannot run a formula.

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is taken by
Excel and LibreOffice as a formula when a CSV is opened (OWASP "CSV injection"). Practice names,
reasons and identifiers come from data files, so every text cell goes through
:func:`neutralise_formula`: in a CSV it gets a leading apostrophe (shown by spreadsheets as the
text itself); in a workbook text is written as a string cell (never a formula) and hostile text
also carries Excel's "quote prefix", so editing the cell cannot turn it into a formula either.

Workbooks are written with xlsxwriter with a fixed creation date, so the same table gives the same
bytes (a rerun of a month does not change its files or their hashes in the manifest).

>>> neutralise_formula("=HYPERLINK(\\"http://x\\")")
'\\'=HYPERLINK("http://x")'
>>> neutralise_formula("3 emergency admissions"), neutralise_formula(-2)
('3 emergency admissions', -2)
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FORMULA_TRIGGERS", "PRINT_SHEET", "csv_bytes", "csv_bytes_many", "is_formula_like", "neutralise_formula",
           "python_values", "python_values_many", "write_csv", "write_xlsx", "xlsx_bytes"]

# Text starting with one of these is read by a spreadsheet as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# A workbook's creation date when none is given: fixed, so that reruns give identical bytes.
FIXED_CREATED = dt.datetime(2000, 1, 1)


def is_formula_like(value) -> bool:
    """True for text a spreadsheet would read as a formula (numbers never are)."""
    return isinstance(value, str) and value.startswith(FORMULA_TRIGGERS)


def neutralise_formula(value):
    """Text that starts like a formula gets a leading apostrophe; anything else is returned as it is."""
    return "'" + value if is_formula_like(value) else value


def _text_columns(table: pd.DataFrame) -> list[str]:
    # Numbers and booleans (NumPy or nullable) are never formulas; everything else may hold text.
    return [c for c, dtype in table.dtypes.items() if dtype.kind not in "iufcb"]


def _csv_text(value):
    value = neutralise_formula(value)
    # A bare carriage return is not quoted when lines end in "\n" and would split the row in a reader.
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


def _needs_csv_text(values: pd.Series) -> bool:
    """Whether any cell of ``values`` is text that :func:`_csv_text` changes."""
    cells = python_values(values)
    text = [v for v in cells if type(v) is str]
    if len(text) < len(cells) and any(v is not None and type(v) is not str for v in cells):
        return any(isinstance(v, str) and (v.startswith(FORMULA_TRIGGERS) or "\r" in v) for v in cells)
    # Plain text (and missing values), as a column of a list holds: one pass in C for each test.
    return any(map(str.startswith, text, itertools.repeat(FORMULA_TRIGGERS))) or "\r" in "".join(text)


def csv_bytes(table: pd.DataFrame) -> bytes:
    """The bytes :func:`write_csv` writes for ``table`` (to hash or write them without reading them back)."""
    # Most columns, and the headings, hold nothing to change: look first, and copy only to change.
    changed = [column for column in _text_columns(table) if _needs_csv_text(table[column])]
    headings = [_csv_text(str(c)) for c in table.columns]
    safe = table
    if changed or any(type(c) is not str or c != h for c, h in zip(table.columns, headings)):
        safe = table.copy(deep=False)
        for column in changed:
            safe[column] = safe[column].map(_csv_text, na_action="ignore")
        safe.columns = headings
    return b"\xef\xbb\xbf" + safe.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _rows_stand_alone(dtype) -> bool:
    """Whether pandas writes each CSV cell of a column of ``dtype`` on its own (dates and times
    are not: one format for the whole column, picked from all its values)."""
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    return dtype.kind not in "mM" and not isinstance(dtype, pd.PeriodDtype)


def csv_bytes_many(tables: Sequence[pd.DataFrame]) -> list[bytes]:
    """:func:`csv_bytes` of each table, from one pandas ``to_csv`` for each group of tables with the
    same columns and dtypes (the practices' lists and changes): their rows written together, then
    cut apart at the line ends. The same bytes, for much less work per table.

    Tables whose cells are written from the whole column (dates), whose text holds line breaks
    (a row over several lines) or with repeated column names get :func:`csv_bytes` one by one.
    """
    out: list[bytes | None] = [None] * len(tables)
    groups: dict[tuple, list[int]] = {}
    for k, table in enumerate(tables):
        if table.columns.has_duplicates or not all(_rows_stand_alone(d) for d in table.dtypes):
            out[k] = csv_bytes(table)
        else:
            groups.setdefault(tuple(zip(table.columns, table.dtypes)), []).append(k)
    for members in groups.values():
        if len(members) == 1:
            out[members[0]] = csv_bytes(tables[members[0]])
            continue
        both = pd.concat([tables[k] for k in members], ignore_index=True)
        text = csv_bytes(both)[3:].decode("utf-8")
        lines = text.split("\n")
        if len(lines) != len(both) + 2:  # a line break inside a cell: cut table by table instead
            for k in members:
                out[k] = csv_bytes(tables[k])
            continue
        head = "\ufeff" + lines[0] + "\n"
        start = 1
        for k in members:
            stop = start + len(tables[k])
            out[k] = (head + "".join(line + "\n" for line in lines[start:stop])).encode("utf-8")
            start = stop
    return out


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as CSV with every text cell (and heading) neutralised.

    UTF-8 with a byte-order mark so that Excel shows £ and – correctly; ``\\n`` line ends; no
    timestamps: the same table gives the same bytes (:func:`csv_bytes`).
    """
    Path(path).write_bytes(csv_bytes(table))
    return Path(path)


def _cell(value):
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


# Above this many rows a workbook streams its rows to disk as they are written (xlsxwriter's
# constant_memory); smaller ones are built in memory, which is faster for a practice's list.
STREAM_ROWS = 5_000


def write_xlsx(table: pd.DataFrame, path: str | Path, *, title: str, notes: Sequence[str] = (),
               sheet: str = "List", wide_columns: Sequence[str] = (), created: dt.datetime | None = None,
               print_cells: Mapping[str, Sequence] | None = None) -> Path:
    """A formatted workbook: ``table`` on ``sheet``, then an "About this list" sheet with ``title`` and ``notes``.

    Header row bold on dark blue, frozen, with filters; columns ending in ``(%)`` hold the numbers
    as written (90.6, not 0.906), with a plain number format of the decimals they have, so that a
    filter such as "greater than 50" finds what the cells show; ``wide_columns`` wrap. Printing is
    set up for A4 landscape, fitted to the page width, with the header row repeated on every page
    and the title and page numbers in the page header and footer. Text is always written as text
    (:func:`neutralise_formula`).
    ``print_cells`` (optional: columns by heading, each a list of values in the table's row order)
    adds a :data:`PRINT_SHEET` sheet between the two, laid out for paper (:func:`_add_print_sheet`),
    and a sentence on the About sheet saying to print it.
    ``created`` (default a fixed date) is the workbook's creation date: same inputs, same bytes.
    Tables longer than :data:`STREAM_ROWS` rows are streamed (row by row to disk, bounded memory).
    """
    if len(table) > STREAM_ROWS:
        _build_xlsx(str(path), table, title=title, notes=notes, sheet=sheet, wide_columns=wide_columns,
                    created=created, print_cells=print_cells)
    else:
        Path(path).write_bytes(xlsx_bytes(table, title=title, notes=notes, sheet=sheet, wide_columns=wide_columns,
                                          created=created, print_cells=print_cells))
    return Path(path)


def xlsx_bytes(table: pd.DataFrame, *, title: str, notes: Sequence[str] = (), sheet: str = "List",
               wide_columns: Sequence[str] = (), created: dt.datetime | None = None,
               cells: Sequence[list] | None = None, print_cells: Mapping[str, Sequence] | None = None) -> bytes:
    """The bytes :func:`write_xlsx` writes for ``table``, built in memory (for a practice's list).

    ``cells`` (optional) are ``table``'s columns as :func:`python_values` already gives them
    (:func:`python_values_many` for many tables at once), not made again.
    """
    buffer = io.BytesIO()
    _build_xlsx(buffer, table, title=title, notes=notes, sheet=sheet, wide_columns=wide_columns, created=created,
                cells=cells, print_cells=print_cells)
    return buffer.getvalue()


def python_values(values: pd.Series) -> list:
    """A column's cells as plain Python values (str, int, float, bool, ...), None for missing.

    Through Arrow for Arrow-backed columns (pandas' own conversion of a short string column costs
    about 15 times more per call), ``tolist`` for NumPy ones.
    """
    to_arrow = getattr(values.array, "__arrow_array__", None)
    if to_arrow is not None:
        arrow = to_arrow()
        cells = arrow.to_pylist()
        if str(arrow.type) in ("string", "large_string", "string_view"):
            return cells  # Arrow text is str or None already
    elif values.dtype.kind in "iub":
        return values.tolist()
    elif values.dtype.kind == "f":
        return [None if v != v else v for v in values.tolist()]  # NaN is missing
    else:
        cells = values.to_numpy(dtype=object, na_value=None).tolist()
    if any(v is not None and (type(v) not in (str, int, float, bool) or v != v) for v in cells):
        cells = [_cell(v) for v in cells]  # numpy scalars, NaN, NaT and the like: rare
    return cells


def python_values_many(tables: Sequence[pd.DataFrame]) -> list[dict]:
    """Each table's columns as :func:`python_values` (a dict by column name, in the table's order),
    from one call per column for each group of tables with the same columns and dtypes (the
    practices' lists): their rows put together, converted, then cut apart. The same values as
    table by table (the conversion is cell by cell), for much less work per table.
    """
    out: list[dict | None] = [None] * len(tables)
    groups: dict[tuple, list[int]] = {}
    for k, table in enumerate(tables):
        if table.columns.has_duplicates:
            out[k] = {c: python_values(v) for c, v in table.items()}
        else:
            groups.setdefault(tuple(zip(table.columns, table.dtypes)), []).append(k)
    for signature, members in groups.items():
        both = pd.concat([tables[k] for k in members], ignore_index=True) if len(members) > 1 else tables[members[0]]
        if tuple(zip(both.columns, both.dtypes)) != signature:  # concat changed a dtype: table by table
            for k in members:
                out[k] = {c: python_values(v) for c, v in tables[k].items()}
            continue
        columns = {c: python_values(v) for c, v in both.items()}
        start = 0
        for k in members:
            stop = start + len(tables[k])
            out[k] = {c: values[start:stop] for c, values in columns.items()}
            start = stop
    return out


def _widest_shown(values: list) -> int:
    """The width (in characters, :func:`_width_for`) of the widest value as text, missing values left
    out (0 for none). Only the values long enough to be the widest are measured."""
    shown = sorted({str(v) for v in values if v is not None}, key=len, reverse=True)
    widest = 0.0
    for text in shown:
        if len(text) * _OTHER_UNITS * _PX_PER_UNIT < widest:
            break  # no shorter text can be wider
        widest = max(widest, _text_pixels(text))
    return _width_for_pixels(widest) if shown else 0


def _longest_shown(values: list) -> int:
    """The length of the longest value as text, missing values left out (0 for none)."""
    if None in values:
        values = [v for v in values if v is not None]
    return max(map(len, map(str, values)), default=0)


# Printing a List sheet on A4 landscape, fitted to one page wide: the columns' widths (in characters
# of the default 11 pt font) must add to no more than the printable width at the scale that keeps
# text at 8 pt or more (8/11 of full size). Excel draws a column of w characters 7w + 5 pixels wide;
# LibreOffice about 7.43w + 5.2 (Calibri's digit, 0.507 em, unrounded), and prints at a whole percent
# a point or two under the exact fit: the print scale is reckoned on LibreOffice's wider columns,
# with that much to spare, so that both print at 8 pt or more.
A4_LANDSCAPE_PRINTABLE_PX = (297 / 25.4 - 2 * 0.4) * 96  # margins of 0.4 inch (set_margins below)
MIN_PRINT_POINTS = 8
PRINT_SPARE = 0.03  # LibreOffice's fit to width prints up to 2 points of scale under the exact fit
COLUMN_CAP = 22  # a longer text column wraps at this width
WIDE_WIDTH = 46  # the wrapped wide columns (a list's reasons), narrowed to fit at 8 pt
WIDE_MIN = 30  # the wide columns are not narrowed below this, the other wrapped ones below WRAP_MIN
WRAP_MIN = 16
LINE_POINTS = 15  # a line of the default font in a wrapped row: Excel's 20 pixels (LibreOffice needs 11)

# Calibri's advance widths (1/2048 em; bold, a little wider than regular) for the printable ASCII
# characters, from its metric-compatible twin Carlito: a wrapped cell's lines are worked out from the
# text's width in pixels, as Excel and LibreOffice lay it out, not from a count of characters.
_CALIBRI_UNITS = (
    463, 667, 898, 1020, 1038, 1493, 1443, 478, 638, 638, 1020, 1020, 528, 627, 547, 880, 1038, 1038, 1038,
    1038, 1038, 1038, 1038, 1038, 1038, 1038, 565, 565, 1020, 1020, 1020, 949, 1840, 1241, 1148, 1084, 1291,
    999, 940, 1305, 1292, 546, 678, 1120, 866, 1790, 1349, 1385, 1090, 1405, 1153, 968, 1014, 1337, 1211, 1856,
    1128, 1064, 979, 665, 880, 665, 1020, 1020, 615, 1011, 1099, 857, 1099, 1031, 648, 971, 1099, 503, 523, 983,
    503, 1666, 1099, 1101, 1099, 1099, 728, 817, 710, 1099, 969, 1526, 941, 970, 814, 704, 973, 704, 1020)
_OTHER_UNITS = 1856  # any other character (…, £, é): as wide as Calibri's widest (W)
_PX_PER_UNIT = 11 / 72 * 96 / 2048  # 11 pt at 96 pixels an inch
CELL_PADDING_PX = 8  # the room a wrapped cell leaves beside its text (Excel's 5 of the column, and 3 more)


def column_pixels(width: float) -> int:
    """A column of ``width`` characters in Excel's pixels (the default font: 7 pixels a character)."""
    return int(width * 7 + 5)


def _printed_pixels(width: float) -> float:
    """A column of ``width`` characters as LibreOffice draws it (wider than Excel's :func:`column_pixels`)."""
    return width * 7.43 + 5.2


def print_scale(widths: Sequence[float]) -> float:
    """The scale "fit to one page wide" prints columns of ``widths`` at on A4 landscape (at most 1),
    reckoned on the wider of Excel's and LibreOffice's columns, less the scale LibreOffice rounds off."""
    return min(1.0, A4_LANDSCAPE_PRINTABLE_PX / max(1.0, sum(map(_printed_pixels, widths))) - PRINT_SPARE)


_CALIBRI_BY_CHARACTER = {chr(32 + k): u for k, u in enumerate(_CALIBRI_UNITS)}


def _text_pixels(text: str) -> float:
    """The width of ``text`` in the default font (11 pt Calibri, as bold), in pixels."""
    units = _CALIBRI_BY_CHARACTER
    try:
        return sum(map(units.__getitem__, text)) * _PX_PER_UNIT
    except KeyError:  # a character beyond printable ASCII: rare
        return sum(units.get(c, _OTHER_UNITS) for c in text) * _PX_PER_UNIT


def _width_for(text: str) -> int:
    """The narrowest column (in characters) that shows ``text`` on one line."""
    return _width_for_pixels(_text_pixels(text))


def _width_for_pixels(pixels: float) -> int:
    return max(1, math.ceil((pixels + CELL_PADDING_PX - 5) / 7))


# Each word's width, and each line's count of wrapped lines at a width, worked out once per process
# (and per measure): the same words, conditions, group names and reasons fill every practice's
# lists. Bounded, as words may be names.
_MEASURED: dict = {}
_MEASURED_MAX = 100_000


def _memo(measure) -> tuple[dict[str, float], dict[tuple[str, int], int]]:
    """``measure``'s memo: widths by word and lines by (line of text, room in pixels); emptied when
    it grows past :data:`_MEASURED_MAX`."""
    memo = _MEASURED.get(measure)
    if memo is None or len(memo[0]) + len(memo[1]) > _MEASURED_MAX:
        if len(_MEASURED) > 8:  # measures made on the fly (a test's lambda) are not kept for ever
            _MEASURED.clear()
        memo = _MEASURED[measure] = ({}, {})
    return memo


def _lines(value, width: float, *, measure=None) -> int:
    """Lines a wrapped cell ``width`` characters wide takes for ``value``: its text wrapped at spaces
    (a word too long for a line is cut), measured in pixels of the default font (or by ``measure``,
    a function of the text giving its width in pixels)."""
    if value is None:
        return 1
    measure = measure or _text_pixels
    sizes, wrapped = _memo(measure)
    room = column_pixels(width) - CELL_PADDING_PX
    lines = 0
    for part in str(value).split("\n"):
        known = wrapped.get((part, room))
        if known is None:
            known = wrapped[part, room] = _part_lines(part, room, sizes, measure)
        lines += known
    return lines


def _part_lines(part: str, room: int, sizes: dict[str, float], measure) -> int:
    """Lines one line of text (no line breaks) takes wrapped at spaces in ``room`` pixels."""
    space = measure(" ")
    lines = 1
    used = 0.0
    for word in part.split(" "):
        size = sizes.get(word)
        if size is None:
            size = sizes[word] = measure(word)
        if used and used + space + size <= room:
            used += space + size
            continue
        if used:  # the word starts a new line
            lines += 1
        while size > room:  # a word longer than a line runs on over the next lines
            lines += 1
            size -= room
        used = size
    return lines


def _prepared(table: pd.DataFrame, wide_columns: Sequence[str], *, cells: Sequence[list] | None = None
              ) -> tuple[list[str], list[list], list[int], set[int], set[int]]:
    """A workbook's List sheet as plain data: column names, each column's cells as Python values
    (None for missing), column widths, the percent columns (by position: their decimals) and the wide
    columns. ``cells``: the columns' :func:`python_values` when already made (left unchanged here)."""
    columns = [str(c) for c in table.columns]
    wide = {j for j, c in enumerate(columns) if c in set(wide_columns)}
    if cells is None:
        cells = [python_values(values) for _, values in table.items()]
    elif len(cells) != len(columns) or any(len(c) != len(table) for c in cells):
        raise ValueError(f"cells must be {len(columns)} columns of {len(table)} values, as the table")
    percents = {j: _decimals(cells[j]) for j, c in enumerate(columns) if c.endswith("(%)")}
    # Widths from the values as shown (the first 500 rows), measured in the default font; a heading
    # wraps at its words (the header row wraps), so only its longest word counts. Text longer than
    # COLUMN_CAP wraps too, and the wrapped columns give up room (in proportion) so that the sheet
    # prints one page wide at 8 pt or more, as far as WIDE_MIN and WRAP_MIN let them (a list of many
    # columns then prints smaller: narrower still, its rows grow taller than the pages saved).
    longest = [_longest_shown(cells[j][:500]) for j in range(len(columns))]
    wide = wide | {j for j in range(len(columns)) if longest[j] > COLUMN_CAP and j not in percents}
    heading = [max(map(_width_for, name.split()), default=1) for name in columns]
    widths = [WIDE_WIDTH if name in set(wide_columns) else COLUMN_CAP if j in wide
              else max(4, heading[j], _widest_shown(cells[j][:500]))
              for j, name in enumerate(columns)]
    wrapped = sorted(wide)
    budget = A4_LANDSCAPE_PRINTABLE_PX / (MIN_PRINT_POINTS / 11 + PRINT_SPARE)
    if wrapped and sum(map(_printed_pixels, widths)) > budget:
        # Too wide for 8 pt: the wrapped columns share the room left, each in proportion to the text
        # it holds (so that their rows' lines come out alike), none narrower than WRAP_MIN nor its
        # heading's longest word, none wider than it was.
        room = (budget - sum(_printed_pixels(w) for j, w in enumerate(widths) if j not in wide)) / 7.43
        room -= 5.2 / 7.43 * len(wrapped)
        text = {j: 1 + sum(len(str(v)) for v in cells[j][:500] if v is not None) for j in wrapped}
        settled: dict[int, int] = {}
        while len(settled) < len(wrapped):
            free = [j for j in wrapped if j not in settled]
            share = (room - sum(settled.values())) / sum(text[j] for j in free)
            clamped = {j: min(widths[j], max(WIDE_MIN if columns[j] in set(wide_columns) else WRAP_MIN, heading[j])) for j in free
                       if not max(WIDE_MIN if columns[j] in set(wide_columns) else WRAP_MIN, heading[j]) <= share * text[j] <= widths[j]}
            if not clamped:
                settled.update({j: int(share * text[j]) for j in free})
            settled.update(clamped)
        widths = [settled.get(j, w) for j, w in enumerate(widths)]
    return columns, list(cells), widths, percents, wide


MAX_PERCENT_DECIMALS = 3


def _decimals(values: list) -> int:
    """The decimals (1 to :data:`MAX_PERCENT_DECIMALS`) that show every number of ``values`` as it is."""
    numbers = [v for v in values if type(v) in (int, float) and math.isfinite(v)]
    return next((d for d in range(1, MAX_PERCENT_DECIMALS) if all(round(v, d) == v for v in numbers)),
                MAX_PERCENT_DECIMALS)


# Each format of a workbook by name (xlsxwriter numbers the formats in the order cells first use them).
FORMATS = {
    "header": {"bold": True, "font_color": "#FFFFFF", "bg_color": "#1F4E79", "text_wrap": True, "valign": "vcenter"},
    # Every cell of the list sits at the top of its row, as wrapped text does: a row's cells read
    # across on one line (at the bottom, a tall row's numbers look like the next row's).
    "top": {"valign": "top"},
    # Percent columns hold 90.6 (not 0.906) in a plain number format, so that filters compare what is shown.
    **{f"number {d}": {"num_format": "0." + "0" * d, "valign": "top"} for d in range(1, MAX_PERCENT_DECIMALS + 1)},
    "wrap": {"text_wrap": True, "valign": "top"},
    "quoted": {"quote_prefix": True, "valign": "top"},
    "quoted_wrap": {"quote_prefix": True, "text_wrap": True, "valign": "top"},
    "title": {"bold": True, "font_size": 14},
}


def _build_xlsx(target, table: pd.DataFrame, *, title: str, notes: Sequence[str], sheet: str,
                wide_columns: Sequence[str], created: dt.datetime | None,
                cells: Sequence[list] | None = None, print_cells: Mapping[str, Sequence] | None = None) -> None:
    """Write the workbook of :func:`write_xlsx` to ``target`` (a path, or a BytesIO) through
    xlsxwriter's public API: streamed row by row (``constant_memory``) for a long table written to
    a file, in memory otherwise."""
    import xlsxwriter

    streamed = len(table) > STREAM_ROWS and not isinstance(target, io.BytesIO)
    workbook = xlsxwriter.Workbook(target, {"strings_to_formulas": False, "strings_to_urls": False,
                                            "strings_to_numbers": False, "in_memory": not streamed,
                                            "constant_memory": streamed})
    try:
        # A fixed creation date (the month's scoring date, else FIXED_CREATED): same inputs, same bytes.
        workbook.set_properties({"title": title, "author": "riskstrat", "created": created or FIXED_CREATED})
        formats = {name: workbook.add_format(options) for name, options in FORMATS.items()}
        ws = workbook.add_worksheet(sheet)
        columns, cells, widths, percents, wide = _prepared(table, wide_columns, cells=cells)
        if not streamed:  # a streamed sheet writes each row once; its rows keep Excel's own heights
            _set_row_heights(ws, columns, cells, widths, wide)
        _write_list_cells(ws, columns, cells, percents=percents, wide=wide, formats=formats)
        _set_up_list_sheet(ws, widths, rows=len(table), title=title)
        if print_cells is not None:
            points = _add_print_sheet(workbook, print_cells, title=title)
            notes = [print_sheet_sentence(points, list_sheet=sheet), *notes]
        about = workbook.add_worksheet("About this list")
        about.set_column(0, 0, 120)
        about.set_landscape()  # the About sheet prints on A4 landscape too, one page wide
        about.set_paper(9)
        about.fit_to_pages(1, 0)
        about.write_string(0, 0, title, formats["title"])
        for i, line in enumerate(notes, start=1):
            about.write_string(i, 0, str(line), formats["quoted_wrap" if is_formula_like(str(line)) else "wrap"])
    finally:
        workbook.close()


def _write_list_cells(ws, columns: Sequence[str], cells: Sequence[list], *, percents: Mapping[int, int], wide: set[int],
                      formats: Mapping) -> None:
    """The List sheet's header row and cells: text always as text (hostile text with a quote
    prefix), numbers as numbers (percent columns formatted), blanks only where a format shows."""
    for j, name in enumerate(columns):
        ws.write_string(0, j, name, formats["header"])
    # Cells written row by row (the order a streamed sheet needs, and the order of the shared
    # strings); how a cell is written depends only on its value.
    top = formats["top"]
    plain = [formats["wrap"] if j in wide else top for j in range(len(columns))]
    hostile = [formats["quoted_wrap" if j in wide else "quoted"] for j in range(len(columns))]
    number_format = [formats[f"number {percents[j]}"] if j in percents else top for j in range(len(columns))]
    write_string, write_number, write_boolean, write_blank = (ws.write_string, ws.write_number, ws.write_boolean,
                                                              ws.write_blank)
    for i, row in enumerate(zip(*cells), start=1):
        for j, value in enumerate(row):
            kind = type(value)
            if kind is str:
                write_string(i, j, value, hostile[j] if value.startswith(FORMULA_TRIGGERS) else plain[j])
            elif kind is int or kind is float:
                write_number(i, j, value, number_format[j])
            elif value is None:
                if j in wide:  # a blank cell shows nothing: written only where the column wraps, as before
                    write_blank(i, j, None, plain[j])
            elif kind is bool:
                write_boolean(i, j, value, top)
            elif isinstance(value, (int, float)):
                write_number(i, j, value, number_format[j])
            elif isinstance(value, str):
                write_string(i, j, str(value), hostile[j] if value.startswith(FORMULA_TRIGGERS) else plain[j])
            else:
                write_string(i, j, str(value), plain[j])


def _set_row_heights(ws, columns: Sequence[str], cells: Sequence[list], widths: Sequence[float],
                     wide: set[int]) -> None:
    """Each row as tall as its longest wrapped cell (and the header as its longest heading), so that
    printed wrapped text never runs into the next row (a program that does not fit rows itself):
    :data:`LINE_POINTS` a line, the lines as :func:`_lines` lays the text out."""
    heading_lines = max((_lines(name, widths[j]) for j, name in enumerate(columns)), default=1)
    ws.set_row(0, LINE_POINTS * heading_lines)
    for i, row in enumerate(zip(*(cells[j] for j in sorted(wide))), start=1):
        lines = max((_lines(v, widths[j]) for j, v in zip(sorted(wide), row)), default=1)
        if lines > 1:
            ws.set_row(i, LINE_POINTS * lines)


def _set_up_list_sheet(ws, widths: Sequence[float], *, rows: int, title: str) -> None:
    """Column widths, the frozen and filtered header row, and printing: A4 landscape, one page
    wide, the header row on every page, the title and page numbers in the page header and footer."""
    for j, width in enumerate(widths):
        ws.set_column(j, j, width)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(rows, 1), max(len(widths) - 1, 0))
    ws.set_landscape()
    ws.set_paper(9)  # A4
    ws.fit_to_pages(1, 0)  # as wide as one page, as many pages down as needed
    ws.repeat_rows(0)
    ws.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    ws.set_header("&L&B" + title.replace("&", "&&"))
    ws.set_footer("&LPage &P of &N")


# ----------------------------------------------------------------------------- the Print sheet

# The Print sheet is the list laid out for paper (a practice's multidisciplinary meeting): the
# columns a clinician reads there, every cell wrapped at the top of its row, 9 pt text on A4
# landscape with narrow margins, one page wide at full size. Its font is Arial, not the workbook's
# Calibri: every spreadsheet program has Arial or its metric twin (Liberation Sans, which
# LibreOffice prints with on Linux), so the widths and line breaks worked out here are the printed ones.
PRINT_SHEET = "Print"
PRINT_FONT = "Arial"
PRINT_POINTS = 9
PRINT_LINE_POINTS = 12  # a line of 9 pt Arial in a wrapped row: Excel's 16 pixels (LibreOffice needs 10.4)
PRINT_SIDE_MARGIN = 0.25  # inches, left and right (Excel's "narrow" margins)
PRINT_PRINTABLE_PX = (297 / 25.4 - 2 * PRINT_SIDE_MARGIN) * 96
PRINT_FILL = 0.98  # the columns take at most this share of the width: printed at full size, with room to spare
PRINT_FIXED_MAX = 18  # a column whose values fit on one line this wide (characters) is that wide, never wrapped
PRINT_WRAP_MIN = 12  # the wrapped columns share the rest, none narrower than this (or its heading's longest word)

# Arial's advance widths (1/2048 em) for the printable ASCII characters, regular and bold, from its
# metric-compatible twin Liberation Sans.
_ARIAL_UNITS = (
    569, 569, 727, 1139, 1139, 1821, 1366, 391, 682, 682, 797, 1196, 569, 682, 569, 569, 1139, 1139, 1139, 1139,
    1139, 1139, 1139, 1139, 1139, 1139, 569, 569, 1196, 1196, 1196, 1139, 2079, 1366, 1366, 1479, 1479, 1366, 1251,
    1593, 1479, 569, 1024, 1366, 1139, 1706, 1479, 1593, 1366, 1593, 1479, 1366, 1251, 1479, 1366, 1933, 1366, 1366,
    1251, 569, 569, 569, 961, 1139, 682, 1139, 1139, 1024, 1139, 1139, 569, 1139, 1139, 455, 455, 1024, 455, 1706,
    1139, 1139, 1139, 1139, 682, 1024, 569, 1139, 1024, 1479, 1024, 1024, 1024, 684, 532, 684, 1196)
_ARIAL_BOLD_UNITS = (
    569, 682, 971, 1139, 1139, 1821, 1479, 487, 682, 682, 797, 1196, 569, 682, 569, 569, 1139, 1139, 1139, 1139,
    1139, 1139, 1139, 1139, 1139, 1139, 682, 682, 1196, 1196, 1196, 1251, 1997, 1479, 1479, 1479, 1479, 1366, 1251,
    1593, 1479, 569, 1139, 1479, 1251, 1706, 1479, 1593, 1366, 1593, 1479, 1366, 1251, 1479, 1366, 1933, 1366, 1366,
    1251, 682, 569, 682, 1196, 1139, 682, 1139, 1251, 1139, 1251, 1139, 682, 1251, 1251, 569, 569, 1139, 569, 1821,
    1251, 1251, 1251, 1251, 797, 1139, 682, 1251, 1139, 1593, 1139, 1139, 1024, 797, 573, 797, 1196)
_ARIAL_OTHER_UNITS = 2079  # any other character (…, £, é): as wide as Arial's widest (@)
_ARIAL_PX_PER_UNIT = PRINT_POINTS / 72 * 96 / 2048

PRINT_FORMATS = {
    "header": {"bold": True, "font_name": PRINT_FONT, "font_size": PRINT_POINTS, "font_color": "#FFFFFF",
               "bg_color": "#1F4E79", "text_wrap": True, "valign": "top"},
    # A light rule under each person, so that a row's wrapped lines read as one person's.
    "text": {"font_name": PRINT_FONT, "font_size": PRINT_POINTS, "text_wrap": True, "valign": "top",
             "bottom": 1, "bottom_color": "#BFBFBF"},
    "quoted": {"font_name": PRINT_FONT, "font_size": PRINT_POINTS, "text_wrap": True, "valign": "top",
               "bottom": 1, "bottom_color": "#BFBFBF", "quote_prefix": True},
    **{f"number {d}": {"font_name": PRINT_FONT, "font_size": PRINT_POINTS, "valign": "top", "bottom": 1,
                       "bottom_color": "#BFBFBF", "num_format": "0." + "0" * d}
       for d in range(1, MAX_PERCENT_DECIMALS + 1)},
    # Whole numbers (the rank) at the left, under their heading: right-aligned, "1" ran into the
    # pseudonym beside it and read as part of it.
    "whole": {"font_name": PRINT_FONT, "font_size": PRINT_POINTS, "align": "left", "valign": "top", "bottom": 1,
              "bottom_color": "#BFBFBF"},
}


_ARIAL_BY_CHARACTER = {False: {chr(32 + k): u for k, u in enumerate(_ARIAL_UNITS)},
                       True: {chr(32 + k): u for k, u in enumerate(_ARIAL_BOLD_UNITS)}}


def _arial_pixels(text: str, *, bold: bool = False) -> float:
    """The width of ``text`` in :data:`PRINT_POINTS` Arial (bold for headings), in pixels."""
    units = _ARIAL_BY_CHARACTER[bold]
    try:
        return sum(map(units.__getitem__, text)) * _ARIAL_PX_PER_UNIT
    except KeyError:  # a character beyond printable ASCII: rare
        return sum(units.get(c, _ARIAL_OTHER_UNITS) for c in text) * _ARIAL_PX_PER_UNIT


def _arial_bold_pixels(text: str) -> float:
    return _arial_pixels(text, bold=True)


def print_widths(columns: Sequence[str], cells: Sequence[Sequence]) -> list[int]:
    """The Print sheet's column widths (characters of the default font) for ``columns`` holding
    ``cells`` (each column's values, the first 500 rows looked at).

    A column whose values (each line of them) and heading (on two lines) fit in :data:`PRINT_FIXED_MAX`
    is as wide as they need. The others wrap and share the room left on the page: each starts at
    :data:`PRINT_WRAP_MIN` (or as wide as its heading needs on two lines), and the room goes, a few characters at a
    time, to the column where it takes the most lines off the printed rows (a row is as tall as its
    tallest cell), never past a column's longest line. Reckoned on LibreOffice's wider columns and
    filling :data:`PRINT_FILL` of the width, so that it prints at full size in LibreOffice and Excel.
    """
    heading = [_heading_width(name) for name in columns]
    # Each distinct line measured once per process (conditions, groups and reasons repeat across lists).
    pixels = _memo(_arial_pixels)[0]
    paragraphs = []
    for column in cells:
        lines = [str(v).split("\n") for v in column[:500] if v is not None]
        paragraphs.append([[pixels[t] if t in pixels else pixels.setdefault(t, _arial_pixels(t)) for t in cell]
                           for cell in lines])
    # The widest line's width (_width_for_pixels never falls as the pixels grow).
    longest = [max(heading[j], _width_for_pixels(max(map(max, paragraphs[j]))) if paragraphs[j] else 0)
               for j in range(len(columns))]
    flexible = [j for j in range(len(columns)) if longest[j] > PRINT_FIXED_MAX]
    widths = list(longest)
    if not flexible:
        return widths
    for j in flexible:
        widths[j] = min(longest[j], max(PRINT_WRAP_MIN, heading[j]))
    room = int((PRINT_PRINTABLE_PX * PRINT_FILL - sum(map(_printed_pixels, widths))) / 7.43)
    if room <= 0:
        return widths
    # Each wrapped column's lines at every width it may take (rows by widths), estimated from the
    # lines' lengths in pixels: a line wrapped at spaces holds about half a word less than its room.
    n = len(cells[0][:500])
    tables = {}
    for j in flexible:
        rows = [cell for cell in paragraphs[j]]
        shown = [k for k, v in enumerate(cells[j][:500]) if v is not None]
        k_most = max((len(c) for c in rows), default=1)
        lengths = np.full((n, k_most), np.nan)
        counts = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
        words = list(itertools.chain.from_iterable(rows))
        if words:  # each cell's lines into its row, all at once
            lengths[np.repeat(np.asarray(shown, dtype=np.intp), counts),
                    np.arange(len(words)) - np.repeat(np.cumsum(counts) - counts, counts)] = words
        slack = 0.5 * (sum(words) / max(1, sum(len(str(v).split()) for v in cells[j][:500] if v is not None))
                       if words else 0)
        span = np.arange(widths[j], longest[j] + 1)
        space = np.maximum(1.0, span * 7 + 5 - CELL_PADDING_PX - slack)[:, None, None]
        lines = np.where(np.isnan(lengths)[None], 0, np.maximum(1, np.ceil(lengths[None] / space))).sum(axis=2)
        tables[j] = np.maximum(lines, 1)  # (widths, rows): an empty cell is one line
    at = {j: 0 for j in flexible}  # each column's width, as a step into its table
    while room > 0:
        now = {j: tables[j][at[j]] for j in flexible}
        best, best_rate, best_step = None, 0.0, 0
        for j in flexible:
            steps = tables[j][at[j] + 1:at[j] + 1 + room]
            if not len(steps):
                continue
            others = np.max([now[k] for k in flexible if k != j], axis=0) if len(flexible) > 1 else 1
            taller = np.maximum(now[j], others).sum() - np.maximum(steps, others).sum(axis=1)
            fewer = now[j].sum() - steps.sum(axis=1)
            rate = (taller + 1e-3 * fewer) / np.arange(1, len(steps) + 1)  # lines saved per character given
            k = int(np.argmax(rate))
            if rate[k] > best_rate:
                best, best_rate, best_step = j, float(rate[k]), k + 1
        if best is None:
            break  # no more room takes a line off: what is left stays blank
        at[best] += best_step
        room -= best_step
    # Giving room greedily serves the many short rows first; then a few characters at a time move
    # from one column to another while that takes lines off the rows (the tall rows' long groups).
    def height(steps: Mapping[int, int]) -> float:
        lines = [tables[j][steps[j]] for j in flexible]
        return float(np.max(lines, axis=0).sum() + 1e-3 * np.sum(lines))

    best_height = height(at)
    for _ in range(200):  # a bound, never reached in practice: each move takes lines off
        moves = [{**at, giver: at[giver] - k, taker: at[taker] + k}
                 for giver in flexible for taker in flexible if giver != taker for k in (1, 2, 4, 8, 16)
                 if at[giver] - k >= 0 and at[taker] + k < len(tables[taker])]
        if not moves:
            break
        # Every move's height at once (moves by columns by rows): the counts are whole numbers, so the
        # sums are exact and the same as :func:`height`'s move by move, and argmin takes the first lowest.
        lines = np.stack([np.stack([tables[j][m[j]] for j in flexible]) for m in moves])
        heights = lines.max(axis=1).sum(axis=1) + 1e-3 * lines.sum(axis=(1, 2))
        k = int(np.argmin(heights))
        if heights[k] >= best_height - 1e-9:
            break
        best_height = float(heights[k])
        at = moves[k]
    return [widths[j] + at.get(j, 0) for j in range(len(columns))]


@functools.lru_cache(maxsize=1024)  # the same few headings on every list
def _heading_width(name: str) -> int:
    """The narrowest column (characters) holding the heading ``name`` (bold) on two lines at most."""
    width = max((_width_for_pixels(_arial_bold_pixels(w)) for w in name.split()), default=1)
    while _lines(name, width, measure=_arial_bold_pixels) > 2:
        width += 1
    return width


def print_sheet_scale(widths: Sequence[float]) -> float:
    """The scale the Print sheet, ``widths`` wide, prints at fitted to one A4 landscape page wide
    (at most 1; below 1, less the scale LibreOffice rounds off)."""
    fit = PRINT_PRINTABLE_PX / max(1.0, sum(map(_printed_pixels, widths)))
    return 1.0 if fit >= 1 else fit - PRINT_SPARE


def print_sheet_sentence(points: float, *, list_sheet: str = "List") -> str:
    """The About sheet's sentence on which sheet to print (``points``: the text's printed size)."""
    size = f"{math.floor(points * 10) / 10:g}"
    return (f"To print this list (for a meeting, say), print the {PRINT_SHEET} sheet: the same people in the same "
            f"order, with the columns needed there, on A4 landscape with text at about {size} pt; the {list_sheet} "
            "sheet holds every column, to sort and filter on screen.")


def _print_lines(value, width: float) -> int:
    """Lines a Print sheet cell ``width`` characters wide takes for ``value`` (:func:`_lines` in Arial)."""
    if value is None or not isinstance(value, str) and isinstance(value, (int, float)):
        return 1
    text = str(value)
    if "\n" not in text and len(text) * _ARIAL_OTHER_UNITS * _ARIAL_PX_PER_UNIT <= column_pixels(width) - CELL_PADDING_PX:
        return 1  # short enough for one line whatever its letters
    return _lines(text, width, measure=_arial_pixels)


def _add_print_sheet(workbook, print_cells: Mapping[str, Sequence], *, title: str) -> float:
    """Add the :data:`PRINT_SHEET` sheet holding ``print_cells`` (columns by heading): every cell in
    :data:`PRINT_POINTS` Arial, wrapped at the top of its row, each row as tall as its lines; numbers
    as numbers (percent columns as the List sheet holds them: 90.6 in a plain number format, so that
    a filter compares what is shown); frozen, filtered header row; A4 landscape, narrow margins, one
    page wide, the header row on every page, the title (practice and month) in the page header and
    "Page N of M" in the footer. Returns the size the text prints at (points: font times scale)."""
    formats = {name: workbook.add_format(options) for name, options in PRINT_FORMATS.items()}
    columns = [str(c) for c in print_cells]
    cells = [list(values) for values in print_cells.values()]
    rows = len(cells[0]) if cells else 0
    if any(len(values) != rows for values in cells):
        raise ValueError(f"print_cells must be columns of one length, not {[len(v) for v in cells]}")
    widths = print_widths(columns, cells)
    percents = {j: _decimals(cells[j]) for j, c in enumerate(columns) if c.endswith("(%)")}
    numbers = [formats[f"number {percents[j]}"] if j in percents else formats["whole"] for j in range(len(columns))]
    ws = workbook.add_worksheet(PRINT_SHEET)
    heading_lines = max((_lines(name, w, measure=_arial_bold_pixels) for name, w in zip(columns, widths)), default=1)
    ws.set_row(0, PRINT_LINE_POINTS * heading_lines)
    for j, name in enumerate(columns):
        ws.write_string(0, j, name, formats["header"])
    for i, row in enumerate(zip(*cells), start=1):
        # Set before the row's cells are written (the order a streamed sheet needs).
        ws.set_row(i, PRINT_LINE_POINTS * max(map(_print_lines, row, widths)))
        for j, value in enumerate(row):
            if value is None or value == "":
                ws.write_blank(i, j, None, formats["text"])  # nothing to print; the rule under the row runs on
            elif isinstance(value, bool):
                ws.write_string(i, j, "yes" if value else "no", formats["text"])
            elif isinstance(value, (int, float)):
                ws.write_number(i, j, value, numbers[j])
            else:
                text = str(value)
                ws.write_string(i, j, text, formats["quoted" if is_formula_like(text) else "text"])
    for j, width in enumerate(widths):
        ws.set_column(j, j, width)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(rows, 1), max(len(columns) - 1, 0))
    ws.set_landscape()
    ws.set_paper(9)  # A4
    ws.fit_to_pages(1, 0)  # one page wide (at full size: the widths are made to fit), as many pages down as needed
    ws.repeat_rows(0)
    ws.set_margins(left=PRINT_SIDE_MARGIN, right=PRINT_SIDE_MARGIN, top=0.6, bottom=0.6)
    ws.set_header("&L&B" + title.replace("&", "&&"), margin=0.25)
    ws.set_footer("&LPage &P of &N", margin=0.25)
    return PRINT_POINTS * print_sheet_scale(widths)
