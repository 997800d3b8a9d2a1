"""Pages and text of a PDF that headless Chromium printed (Skia's output: Flate streams, fonts with
ToUnicode maps, text as hex glyph strings), enough for tests to read what a printed page says."""

from __future__ import annotations

import re
import zlib

def pdf_pages(data: bytes) -> int:
    """How many pages the PDF has."""
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", data))


def pdf_text(data: bytes) -> str:
    """The text on each page (pages end with a form feed); glyphs may come out spaced apart."""
    objs = {}
    for m in re.finditer(rb"(\d+) 0 obj(.*?)endobj", data, re.S):
        body = m.group(2)
        s = re.search(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S)
        stream = None
        if s:
            stream = s.group(1)
            if b"/FlateDecode" in body[:s.start()]:
                try:
                    stream = zlib.decompress(stream)
                except zlib.error:
                    stream = None
        objs[int(m.group(1))] = (body[:s.start()] if s else body, stream)
    def cmap(num):
        table = {}
        text = objs[num][1].decode("latin-1")
        for block in re.findall(r"beginbfchar(.*?)endbfchar", text, re.S):
            for src, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                table[int(src, 16)] = bytes.fromhex(dst).decode("utf-16-be", "replace")
        for block in re.findall(r"beginbfrange(.*?)endbfrange", text, re.S):
            for a, b, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                start = int(dst, 16)
                for k, code in enumerate(range(int(a, 16), int(b, 16) + 1)):
                    table[code] = chr(start + k)
        return table
    fonts = {}
    for num, (head, _) in objs.items():
        tu = re.search(rb"/ToUnicode (\d+) 0 R", head)
        if tu:
            fonts[num] = cmap(int(tu.group(1)))
    out = []
    for num, (head, _) in objs.items():
        if not re.search(rb"/Type\s*/Page\b(?!s)", head):
            continue
        names = {}
        res = head
        r = re.search(rb"/Resources (\d+) 0 R", head)
        if r:
            res = objs[int(r.group(1))][0]
        f = re.search(rb"/Font\s*<<(.*?)>>", res, re.S)
        if f:
            names = {n: fonts.get(int(o), {}) for n, o in re.findall(rb"/(\w+) (\d+) 0 R", f.group(1))}
        contents = re.search(rb"/Contents (\d+) 0 R", head)
        stream = objs[int(contents.group(1))][1] or b""
        font = {}
        for tok in re.finditer(rb"/(\w+) [\d.]+ Tf|<([0-9A-Fa-f]*)>|(T\*|Td|TD|Tm|ET)", stream):
            if tok.group(1):
                font = names.get(tok.group(1), {})
            elif tok.group(2) is not None:
                h = tok.group(2).decode()
                out.append("".join(font.get(int(h[i:i + 4], 16), "") for i in range(0, len(h) - 3, 4)))
            else:
                out.append(" ")
        out.append("\n\f")
    return "".join(out)
