"""A practice's workbook put together from its parts: the same bytes as xlsxwriter writes, in a tenth of the time.

:func:`riskstrat.scoring.sheets.xlsx_bytes` builds a list's workbook cell by cell with xlsxwriter, whose
Python per cell was most of the month's writing. Here only what depends on the table is made per
workbook: the List sheet's XML, the About sheet's, the shared strings, ``workbook.xml`` (the filter
range) and ``core.xml`` (the title). Everything else (styles, theme, content types, relationships,
``app.xml``) is taken from a small workbook that xlsxwriter itself writes once per sheet name and
order of formats (:func:`_skeleton`), and the parts are zipped exactly as xlsxwriter zips them.

The XML reproduces xlsxwriter's own (its escaping functions are called, not copied) for the set-up
:func:`riskstrat.scoring.sheets._build_xlsx` uses. :func:`workbook_bytes` returns None for a table it does
not handle the same way (a cell of an unusual type, an infinite number, text xlsxwriter truncates
or takes for rich text, a header Excel would refuse, no columns...): the caller then uses
xlsxwriter. :func:`riskstrat.scoring.sheets.parts_agree_with_xlsxwriter` compares both on awkward hand-made tables once per
process; if the installed xlsxwriter writes anything else, the fast route is not used at all.
Tests check byte identity on many more tables (tests/test_sheets.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import itertools
import math
import re
import zipfile
from collections.abc import Sequence

__all__ = ["FORMULA_TRIGGERS", "workbook_bytes"]

# Text starting with one of these is read by a spreadsheet as a formula (riskstrat.scoring.sheets neutralises
# it in CSV files and writes it as plain text in workbooks). Here, the lowest module that needs it.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
TRIGGERS = FORMULA_TRIGGERS

DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
WORKSHEET = ('<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
             'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">')
# The List sheet around its variable parts, for the set-up in sheets._build_xlsx (frozen header row,
# filter, A4 landscape one page wide, margins, header and footer).
LIST_VIEW = ('<sheetViews><sheetView tabSelected="1" workbookViewId="0"><pane ySplit="1" topLeftCell="A2" '
             'activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft"/></sheetView></sheetViews>'
             '<sheetFormatPr defaultRowHeight="15"/>')
LIST_PAGE = ('<pageMargins left="0.4" right="0.4" top="0.6" bottom="0.6" header="0.3" footer="0.3"/>'
             '<pageSetup paperSize="9" fitToHeight="0" orientation="landscape"/>')
LIST_FOOTER = "<oddFooter>&amp;LPage &amp;P of &amp;N</oddFooter>"
ABOUT_HEAD = ('<sheetViews><sheetView workbookViewId="0"/></sheetViews><sheetFormatPr defaultRowHeight="15"/>'
              '<cols><col min="1" max="1" width="120.7109375" customWidth="1"/></cols>')
ABOUT_PAGE = '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
CORE = ('<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">')
SST = '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
# The zip members in xlsxwriter's order; (1980, 1, 1) is the date xlsxwriter gives every member.
PARTS = ("[Content_Types].xml", "_rels/.rels", "xl/_rels/workbook.xml.rels", "xl/worksheets/sheet1.xml",
         "xl/worksheets/sheet2.xml", "xl/workbook.xml", "xl/sharedStrings.xml", "xl/styles.xml",
         "xl/theme/theme1.xml", "docProps/core.xml", "docProps/app.xml")
FIXED_PARTS = ("[Content_Types].xml", "_rels/.rels", "xl/_rels/workbook.xml.rels", "xl/styles.xml",
               "xl/theme/theme1.xml", "docProps/app.xml")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# The skeleton's filter range (two cells of column A), where each workbook's own range goes.
SKELETON_AREA = "$A$1:$A$2"
SEPARATOR = "\ue000"  # joins the shared strings to escape them in one pass (private use: not in real text)
# Formats by name, as sheets._build_xlsx adds them; a cell's style index is the order of first use.
FORMATS = {
    "header": {"bold": True, "font_color": "#FFFFFF", "bg_color": "#1F4E79", "text_wrap": True, "valign": "vcenter"},
    "percent": {"num_format": "0.0%"},
    "wrap": {"text_wrap": True, "valign": "top"},
    "quoted": {"quote_prefix": True},
    "quoted_wrap": {"quote_prefix": True, "text_wrap": True, "valign": "top"},
    "title": {"bold": True, "font_size": 14},
}
_SPACE = re.compile(r"\s")  # the white space of xlsxwriter's _preserve_whitespace
_SPACE_AFTER_SEPARATOR = re.compile(SEPARATOR + r"\s")


def _column_name(col: int) -> str:
    name = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        name = chr(65 + rest) + name
    return name


def _xml_text(text: str) -> str:
    """Element text as xlsxwriter's ``_xml_data_element`` writes it."""
    from xlsxwriter.xmlwriter import XMLwriter

    return XMLwriter._escape_control_characters(XMLwriter()._escape_data(text))


def _width(width: float) -> tuple[int, str]:
    """(pixels, the <col> width attribute) of a column ``width`` characters wide, as xlsxwriter's set_column."""
    pixels = int(width * 7 + 0.5) + 5 if width >= 1 else int(width * 12 + 0.5)
    return pixels, f"{(pixels * 256 // 7) / 256.0:.16g}"


def _cols(widths: Sequence[float]) -> str:
    out = []
    first = 0
    for j in range(1, len(widths) + 1):
        if j < len(widths) and _width(widths[j])[0] == _width(widths[first])[0]:
            continue  # adjacent columns of one width are one <col> range
        pixels, attribute = _width(widths[first])
        custom = ' customWidth="1"' if pixels != 64 else ""
        out.append(f'<col min="{first + 1}" max="{j}" width="{attribute}"{custom}/>')
        first = j
    return "<cols>" + "".join(out) + "</cols>" if out else ""


def _ref(row_min: int, col_min: int, row_max: int, col_max: int) -> str:
    first = f"{_column_name(col_min)}{row_min + 1}"
    last = f"{_column_name(col_max)}{row_max + 1}"
    return first if first == last else f"{first}:{last}"


@functools.lru_cache(maxsize=64)
def _skeleton(sheet: str, order: tuple[str, ...]) -> dict[str, str]:
    """The parts that do not depend on the table, written by xlsxwriter itself: a workbook with the
    same sheets, properties and formats, the formats given their style index in ``order``."""
    import xlsxwriter

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"strings_to_formulas": False, "strings_to_urls": False,
                                            "strings_to_numbers": False, "in_memory": True})
    workbook.set_properties({"title": "T", "author": "riskstrat", "created": dt.datetime(2000, 1, 1)})
    formats = {name: workbook.add_format(options) for name, options in FORMATS.items()}
    ws = workbook.add_worksheet(sheet)
    ws.write_string(0, 0, "x")
    ws.autofilter(0, 0, 1, 0)
    ws.repeat_rows(0)
    about = workbook.add_worksheet("About this list")
    about.write_string(0, 0, "y")
    for name in order:
        formats[name]._get_xf_index()
    workbook.close()
    with zipfile.ZipFile(buffer) as package:
        parts = {name: package.read(name).decode("utf-8") for name in package.namelist()}
    if tuple(parts) != PARTS or parts["xl/workbook.xml"].count(SKELETON_AREA) != 1:
        raise ValueError("xlsxwriter wrote a workbook of other parts than expected")
    return parts


def _strings_xml(strings: list[str], count: int) -> str:
    """sharedStrings.xml as xlsxwriter writes it: escaped in one pass over all strings when possible."""
    from xlsxwriter.utility import _preserve_whitespace
    from xlsxwriter.xmlwriter import XMLwriter

    head = DECLARATION + SST + f' count="{count}" uniqueCount="{len(strings)}">'
    if not strings:
        return head + "</sst>"
    joined = SEPARATOR.join(strings)
    if joined.count(SEPARATOR) == len(strings) - 1:
        escaped = XMLwriter._escape_control_characters(joined)
        pieces = None
        # A string that starts or ends in white space gets xml:space="preserve": look for white
        # space after a separator, and (in the reversed text) before one.
        if (_SPACE.match(escaped) or _SPACE.match(escaped[-1:]) or _SPACE_AFTER_SEPARATOR.search(escaped)
                or _SPACE_AFTER_SEPARATOR.search(escaped[::-1])):
            pieces = escaped.split(SEPARATOR)
        else:
            escaped = escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            return head + "<si><t>" + escaped.replace(SEPARATOR, "</t></si><si><t>") + "</t></si></sst>"
    else:
        pieces = [XMLwriter._escape_control_characters(s) for s in strings]
    writer = XMLwriter()
    preserve = ' xml:space="preserve"'
    body = [f"<si><t{preserve if _preserve_whitespace(s) else ''}>{writer._escape_data(s)}</t></si>" for s in pieces]
    return head + "".join(body) + "</sst>"


def workbook_bytes(columns: Sequence[str], cells: Sequence[list], widths: Sequence[float], *, percents: set[int],
                   wide: set[int], title: str, notes: Sequence[str], sheet: str,
                   created: dt.datetime) -> bytes | None:
    """The workbook :func:`riskstrat.scoring.sheets._build_xlsx` writes, from its prepared columns (names,
    each column's cells as plain Python values with fractions for percentages, widths); None when
    this table needs xlsxwriter itself (see the module's docstring)."""
    header = "&L&B" + title.replace("&", "&&")
    if (not columns or type(created) is not dt.datetime or "&G" in header.replace("&[Picture]", "&G")
            or len(header.encode("utf-16-le", "surrogatepass")) > 510):
        return None  # xlsxwriter would stamp the time, or refuse the page header with a warning
    ncols = len(columns)
    letters = [_column_name(j) for j in range(ncols)]
    nrows = len(cells[0]) if cells else 0
    # Shared strings are numbered in the order xlsxwriter meets them: the header, then row by row.
    in_rows = [v for v in itertools.chain.from_iterable(zip(*cells)) if type(v) is str]
    ids = {text: i for i, text in enumerate(dict.fromkeys(itertools.chain(columns, in_rows)))}
    count = ncols + len(in_rows)
    plain = ["wrap" if j in wide else None for j in range(ncols)]
    hostile = ["quoted_wrap" if j in wide else "quoted" for j in range(ncols)]
    # Each column's format per row (None: no format), and whether a cell is written at all (a
    # missing value without a format is not).
    formats: list[list] = []
    written: list[list[bool] | None] = []  # None: every row
    for j, column in enumerate(cells):
        kinds = set(map(type, column))
        if kinds <= {str}:
            formats.append([hostile[j] if v.startswith(TRIGGERS) else plain[j] for v in column])
            written.append(None)
        elif kinds <= {int, float}:
            try:
                if not all(map(math.isfinite, column)):
                    return None  # infinite: xlsxwriter refuses it
            except OverflowError:
                return None
            formats.append(["percent" if j in percents else None] * nrows)
            written.append(None)
        elif kinds <= {str, int, float, bool, type(None)}:
            fmts = []
            for v in column:
                kind = type(v)
                if kind is str:
                    fmts.append(hostile[j] if v.startswith(TRIGGERS) else plain[j])
                elif kind is int or kind is float:
                    if not math.isfinite(v):
                        return None
                    fmts.append("percent" if j in percents else None)
                elif v is None:
                    fmts.append(plain[j])
                else:
                    fmts.append(None)  # booleans are written without a format
            formats.append(fmts)
            written.append(None if plain[j] is not None else [v is not None for v in column])
        else:
            return None  # numpy scalars, dates, subclasses...: xlsxwriter's own way
    # Style indices in order of first use: the header row, then row by row, then the About sheet.
    first_use = {}
    for j, fmts in enumerate(formats):
        for name in set(fmts) - {None}:
            key = (fmts.index(name), j)
            if key < first_use.get(name, (nrows, ncols)):
                first_use[name] = key
    xf = {"header": 1}
    for name in sorted(first_use, key=first_use.__getitem__):
        xf[name] = len(xf) + 1
    attribute = {None: "", **{name: f' s="{index}"' for name, index in xf.items()}}
    numbers = [str(i + 2) for i in range(nrows)]
    columns_xml = []
    for j, column in enumerate(cells):
        ref = letters[j]
        fmts = formats[j]
        if written[j] is None and set(map(type, column)) <= {str}:
            columns_xml.append([f'<c r="{ref}{r}"{attribute[f]} t="s"><v>{ids[v]}</v></c>'
                                for r, v, f in zip(numbers, column, fmts)])
        elif written[j] is None and set(map(type, column)) <= {int, float}:
            s = attribute[fmts[0]] if fmts else ""
            if set(map(type, column)) == {int} and max(map(abs, column)) < 10**15:
                values = map(str, column)  # what "%.16G" writes for a whole number of up to 15 digits
            else:
                values = (f"{v:.16G}" for v in column)
            columns_xml.append([f'<c r="{ref}{r}"{s}><v>{v}</v></c>' for r, v in zip(numbers, values)])
        else:
            xml = []
            for r, v, f in zip(numbers, column, fmts):
                kind = type(v)
                if kind is str:
                    xml.append(f'<c r="{ref}{r}"{attribute[f]} t="s"><v>{ids[v]}</v></c>')
                elif kind is bool:
                    xml.append(f'<c r="{ref}{r}" t="b"><v>{int(v)}</v></c>')
                elif v is None:
                    xml.append(f'<c r="{ref}{r}"{attribute[f]}/>' if f else "")
                else:
                    xml.append(f'<c r="{ref}{r}"{attribute[f]}><v>{v:.16G}</v></c>')
            columns_xml.append(xml)
    header_xml = "".join(f'<c r="{letters[j]}1" s="1" t="s"><v>{ids[name]}</v></c>' for j, name in enumerate(columns))
    rows = [(0, 0, ncols - 1, header_xml)]  # (row, first column, last column, cells' XML)
    if all(w is None for w in written):
        rows += [(i, 0, ncols - 1, "".join(parts)) for i, parts in enumerate(zip(*columns_xml), start=1)]
    else:
        flags = [w or [True] * nrows for w in written]
        for i, (parts, used) in enumerate(zip(zip(*columns_xml), zip(*flags)), start=1):
            if any(used):
                rows.append((i, used.index(True), ncols - 1 - used[::-1].index(True), "".join(parts)))
    # Each block of 16 rows gets the span of the columns its cells use (xlsxwriter's row spans).
    spans = {}
    for i, first, last, _ in rows:
        block = spans.get(i // 16)
        spans[i // 16] = (first, last) if block is None else (min(block[0], first), max(block[1], last))
    data = "".join(f'<row r="{i + 1}" spans="{spans[i // 16][0] + 1}:{spans[i // 16][1] + 1}">{xml}</row>'
                   for i, _, _, xml in rows)
    row_max = rows[-1][0]
    filter_rows = max(len(cells[0]) if cells else 0, 1)
    list_xml = (DECLARATION + WORKSHEET + '<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>'
                f'<dimension ref="{_ref(0, 0, row_max, ncols - 1)}"/>' + LIST_VIEW + _cols(widths)
                + f"<sheetData>{data}</sheetData>" + f'<autoFilter ref="{_ref(0, 0, filter_rows, ncols - 1)}"/>'
                + LIST_PAGE + f"<headerFooter><oddHeader>{_xml_text(header)}</oddHeader>{LIST_FOOTER}"
                "</headerFooter></worksheet>")

    about = [(title, "title")] + [(str(line), "quoted_wrap" if str(line).startswith(TRIGGERS) else "wrap")
                                  for line in notes]
    about_rows = []
    for i, (text, fmt) in enumerate(about):
        index = xf.get(fmt)
        if index is None:
            index = xf[fmt] = len(xf) + 1
        index_of_text = ids.get(text)
        if index_of_text is None:
            index_of_text = ids[text] = len(ids)
        about_rows.append(f'<row r="{i + 1}" spans="1:1"><c r="A{i + 1}" s="{index}" t="s">'
                          f"<v>{index_of_text}</v></c></row>")
    count += len(about)
    strings = list(ids)
    if any(len(text) > 16383 for text in strings) or any(
            text.startswith("<r>") and text.endswith("</r>") for text in strings if "<r>" in text):
        return None  # xlsxwriter truncates this text, or writes it as rich text
    about_xml = (DECLARATION + WORKSHEET + f'<dimension ref="{_ref(0, 0, len(about) - 1, 0)}"/>' + ABOUT_HEAD
                 + "<sheetData>" + "".join(about_rows) + "</sheetData>" + ABOUT_PAGE + "</worksheet>")

    skeleton = _skeleton(sheet, tuple(xf))
    book_head, book_tail = skeleton["xl/workbook.xml"].split(SKELETON_AREA)
    area = f"${letters[0]}$1:${letters[-1]}${filter_rows + 1}"
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    core = (DECLARATION + CORE + f"<dc:title>{_xml_text(title)}</dc:title><dc:creator>riskstrat</dc:creator>"
            "<cp:lastModifiedBy>riskstrat</cp:lastModifiedBy>"
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
            f'<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified></cp:coreProperties>')
    made = {"xl/worksheets/sheet1.xml": list_xml, "xl/worksheets/sheet2.xml": about_xml,
            "xl/workbook.xml": book_head + area + book_tail, "xl/sharedStrings.xml": _strings_xml(strings, count),
            "docProps/core.xml": core}
    buffer = io.BytesIO()
    # As xlsxwriter's Workbook._store_workbook zips an in-memory workbook.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=False) as package:
        for name in PARTS:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = package.compression
            package.writestr(info, (made[name] if name in made else skeleton[name]).encode("utf-8"))
    return buffer.getvalue()
