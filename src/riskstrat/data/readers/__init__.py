"""Readers that turn public data formats into canonical linked-records tables.

A reader is a pure function ``read_<kind>(src_dir, *, pseudonym_key, ...)`` that returns
``(tables, summary)``: canonical tables (see :mod:`riskstrat.data.schema`) with pseudonymised person ids
and an :class:`ImportSummary` that says what was read, what was made and what was dropped and why
(everything the import report needs). :data:`READERS` names them by source format;
:func:`riskstrat.pipelines.imports.import_dataset` adds validation, the import report and writes the
canonical folder.

>>> from riskstrat.pipelines.imports import import_dataset           # doctest: +SKIP
>>> summary, report = import_dataset("synthea", "synthea/csv", "data/linked")  # doctest: +SKIP

Readers never copy names, addresses, identity numbers or free text about a person into the output:
``persons`` holds only the schema columns.
"""

from __future__ import annotations

from collections.abc import Callable

from riskstrat.data.readers._common import ImportSummary, MissingSourceFileError, value_shape
from riskstrat.data.readers.hes import read_hes
from riskstrat.data.readers.omop import read_omop
from riskstrat.data.readers.synthea import read_synthea
from riskstrat.errors import InvalidInputError

__all__ = [
    "ImportSummary",
    "MissingSourceFileError",
    "READERS",
    "read_hes",
    "read_omop",
    "read_synthea",
    "reader",
    "value_shape",
]

# Source format -> its reader, ``read(src_dir, *, pseudonym_key, **options) -> (tables, summary)``.
READERS: dict[str, Callable] = {"synthea": read_synthea, "omop": read_omop, "hes": read_hes}


def reader(kind: str) -> Callable:
    """The reader of source format ``kind`` (a key of :data:`READERS`)."""
    if kind not in READERS:
        raise InvalidInputError(f"unknown source format {kind!r}; choose one of {', '.join(READERS)}")
    return READERS[kind]
