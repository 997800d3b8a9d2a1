"""Finding OMOP CDM table files and their delimiter (shared by :mod:`.omop` and :mod:`.vocab`)."""

from __future__ import annotations

import gzip
from pathlib import Path

from riskstrat.data.readers._common import _find_file

SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")


def find_table(src_dir: Path, name: str) -> Path | None:
    """``src_dir/<name>.<suffix>`` for a CDM table, the file name matched case-insensitively."""
    return _find_file(src_dir, name, SUFFIXES)


def delimiter(path: Path) -> str:
    """The delimiter of a CDM file: tab for ``.tsv``, else the most frequent of , TAB | ; in the header."""
    if ".tsv" in path.suffixes:
        return "\t"
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    counts = {sep: header.count(sep) for sep in (",", "\t", "|", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","
