"""Validate raw linked-records tables and coerce them to the canonical data model.

:func:`validate_tables` takes the tables as read (CSV as text, or Parquet with its own types),
checks them against :mod:`riskstrat.data.schema`, and returns a :class:`~riskstrat.data.records.LinkedRecords`
in canonical dtypes together with a :class:`ValidationReport`. Problems are collected as
:class:`ValidationIssue` rather than raised, so an analyst sees every problem in one pass.

>>> from riskstrat.data.validate import load_records                    # doctest: +SKIP
>>> records = load_records("riskstrat-data/synthetic")              # doctest: +SKIP

Rules (``ValidationIssue.rule``), errors unless noted:

- ``missing_table`` (persons), ``missing_column``; ``unknown_table``, ``unknown_column`` and
  ``empty_table`` are warnings (unknown ones are ignored).
- ``unparseable_date`` (ISO ``YYYY-MM-DD``, or an ISO timestamp whose date part is kept),
  ``wrong_type`` (numbers, whole numbers, true/false), ``missing_value`` (non-nullable column). A
  column with a default for blanks (the schema's ``missing_as``: A&E ``department_type`` "unknown")
  takes it where blank or absent, so data written before the column existed still load.
- ``negative_cost``, ``out_of_range`` (the schema's min/max).
- ``unknown_code``: a code outside the reference list after normalising case and spaces
  (BNF chapter ``"1"`` is read as ``"01"``); error, or rows dropped with a warning.
- ``end_before_start`` for the schema's ordered date pairs.
- ``duplicate_rows`` (exact repeats; dropped with a warning by default), ``duplicate_person``
  (a person_id twice in persons, always an error), ``unknown_person``.
- ``implausible_birth_date`` (warning): born after the latest date or before 1900; ``future_event``:
  an event dated after the data's end (dataset.json ``extract_end``, else today), dropped with a
  warning by default (``out_of_life_events``), so that a typo such as 2099 cannot move the extract end.
- ``unsafe_practice_id``: a practice id that cannot be a folder name (path separators, ``..``,
  spaces, control characters, over 64 characters); ``unsafe_value``: ids and codes holding control
  characters or longer than 256 characters (outputs and file names cannot hold them).
- ``practice_id_case_collision``: practice ids written differently that are one id once case and
  Unicode form are set aside (``P001`` and ``p001``; compared after outer white space is removed, NFKC
  normalisation and ``casefold()``): on a case-insensitive file system (macOS, Windows, SMB shares)
  their folders and look-ups would be one, so one practice's list could reach another. Named in the
  message (practice ids are not personal).
- ``practice_id_trimmed`` (warning): one practice id written with and without outer white space
  (``"P001\n"`` and ``"P001"``): the white space is removed, as from every id, and the rows are one
  practice; the message names the spellings and their rows.
- ``event_before_birth``, ``event_after_death``: any date of an event row outside the person's
  life; dropped with a warning by default, except end dates (discharge, end of a service) after
  death, which are set to the date of death so that the stay or service is kept.
- ``blank_cost`` (warning): a cost column (``cost``, ``weekly_cost``) absent or blank in every row
  of a table that has rows: its costs are unknown, not zero (:func:`blank_costs`; a high-cost model
  on data without any health-care cost is refused, :func:`riskstrat.outcomes.check_costs_known`).

Row numbers in examples count data rows from 1 in the order of the input (the header is not a
row). Examples show only the offending values and row numbers, never whole rows; person ids and
other pseudonymised keys (``person_id``, ``record_id``) only masked (``6d…1a (16 chars)``,
:func:`riskstrat.data.privacy.mask_id`), in messages and in ``examples`` alike.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from riskstrat.errors import InvalidInputError, RiskstratError
from riskstrat.data.io import LazyTables, dataset_metadata, table_files
from riskstrat.data.privacy import mask_id
from riskstrat.data.records import LinkedRecords
from riskstrat.data.stamp import STAMP, Trust, verify_stamp, write_stamp
from riskstrat.data.schema import (COST_COLUMNS, EVENT_TABLES, NO_PRACTICE, SAFE_PRACTICE_ID, TABLES, Column, Table,
                                   pandas_dtype)

__all__ = [
    "COST_COLUMNS",
    "ValidationError",
    "ValidationIssue",
    "ValidationReport",
    "blank_cost_message",
    "blank_costs",
    "data_latest_date",
    "load_records",
    "stamp_data_dir",
    "validate_data_dir",
    "validate_tables",
]

Severity = Literal["error", "warning"]
Policy = Literal["drop", "keep", "error"]

MAX_EXAMPLES = 5
# Rows of an event table checked at a time when only a report is wanted (validate, --stamp): about
# 100 bytes a row while checked, so some 400 MB a piece, whatever the table's size.
CHUNK_ROWS = 4_000_000
EARLIEST_BIRTH = np.datetime64("1900-01-01", "s")
MAX_ID_LENGTH = 256
MAX_PRACTICE_ID_LENGTH = 64
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
_STR = pd.StringDtype(na_value=np.nan)
# A date, optionally followed by an ISO time and zone; only the date part is kept.
_ISO_DATE = r"^(\d{4}-\d{2}-\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"
_TRUE = ("true", "t", "yes", "y", "1", "1.0")
_FALSE = ("false", "f", "no", "n", "0", "0.0")
_OPTIONS = {
    "out_of_life_events": ("drop", "keep", "error"),
    "duplicate_rows": ("drop", "keep", "error"),
    "unknown_codes": ("drop", "error"),
}


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in one table (and column), with a count and a few example values."""

    table: str
    column: str | None
    rule: str
    severity: Severity
    n_rows: int
    examples: tuple[str, ...]
    file: str | None
    message: str
    action: str | None = None


@dataclass
class ValidationReport:
    """Everything validation found, the rows per table after cleaning and the rows dropped."""

    issues: list[ValidationIssue] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    trust: Trust | None = None  # what a validation stamp proved (validate_data_dir(trust_stamp=True))

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings are allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    def format(self, *, severity: Severity | None = None) -> str:
        """Human-readable text, one line per issue (only ``severity`` issues when given)."""
        issues = [i for i in self.issues if severity is None or i.severity == severity]
        if not issues:
            return "no issues found"
        return "\n".join(f"{i.severity:<7} [{i.rule}] {i.message}" for i in issues)

    def to_dict(self, *, examples: bool = True) -> dict:
        """A JSON-able summary for manifests; ``examples=False`` leaves out the example values."""
        issues = []
        for issue in self.issues:
            item = asdict(issue)
            item["examples"] = list(issue.examples) if examples else []
            issues.append(item)
        return {
            "ok": self.ok,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "row_counts": dict(self.row_counts),
            "dropped": dict(self.dropped),
            "issues": issues,
        }


class ValidationError(RiskstratError):
    """The data failed validation; ``report`` holds every issue found."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.report.errors)
        return (f"the data failed validation with {n} error{'s' if n != 1 else ''}:\n"
                + self.report.format(severity="error"))


# ----------------------------------------------------------------------------- public functions


def validate_tables(
    raw: Mapping[str, pd.DataFrame],
    *,
    files: dict[str, Path] | None = None,
    out_of_life_events: Policy = "drop",
    duplicate_rows: Policy = "drop",
    unknown_codes: Literal["drop", "error"] = "error",
    on_table: Callable[[str, int], None] | None = None,
    keep_records: bool = True,
    latest_date=None,
    trusted: Mapping[str, bool] | None = None,
    chunk_rows: int | None = None,
) -> tuple[LinkedRecords | None, ValidationReport]:
    """Check raw tables against the schema and coerce them to canonical dtypes.

    ``raw`` maps table names to DataFrames as read (all text, or typed from Parquet); ``files``
    maps table names to the files they came from, so that messages can name them. The options say
    what to do with events dated outside a person's life, exact duplicate rows and codes outside
    the reference lists: ``"drop"`` the rows (a warning), ``"keep"`` them (a warning) or make
    them an ``"error"``. The inputs are not modified. ``on_table(name, rows)`` is called as each
    table is done (progress for long loads). ``raw`` may be any mapping, e.g. one that reads each
    table from disk when it is looked up (:class:`riskstrat.data.io.LazyTables`): tables are looked up one
    at a time, persons first, and let go once checked. ``keep_records=False`` keeps no table once
    checked, for a report alone (``records`` is then None). ``latest_date`` is the last day the data
    can hold (default today): later events are ``future_event`` rows, later births implausible.
    ``trusted`` (:class:`riskstrat.data.stamp.Trust`'s ``tables``) names tables whose files a validation
    stamp proves passed these checks unchanged: they are coerced, and only the checks that drop or
    change rows run (none when the value is True: the stamp says none were dropped or changed); the
    checks that can only refuse (ranges, safe text, date order, unique persons, links) do not.
    ``chunk_rows`` (a report alone, ``raw`` a :class:`~riskstrat.data.io.LazyTables`): an event table whose
    Parquet file has more rows is checked in pieces of that many rows (:func:`_check_in_chunks`: the
    same findings and counts, memory bounded by a piece and the rows that break a rule).

    Returns ``(records, report)``; ``records`` is None when the report has any error.

    >>> import pandas as pd
    >>> persons = pd.DataFrame({"person_id": ["p1"], "birth_date": ["1950-02-01"],
    ...                         "sex": ["Female"], "practice_id": ["A81001"]})
    >>> records, report = validate_tables({"persons": persons})
    >>> report.ok, str(records.persons["birth_date"].dtype), records.persons["sex"].iloc[0]
    (True, 'datetime64[s]', 'female')
    """
    for option, value in (("out_of_life_events", out_of_life_events), ("duplicate_rows", duplicate_rows),
                          ("unknown_codes", unknown_codes)):
        if value not in _OPTIONS[option]:
            raise InvalidInputError(f"{option} must be one of {', '.join(_OPTIONS[option])}, not {value!r}")
    latest = np.datetime64(pd.Timestamp(latest_date if latest_date is not None else pd.Timestamp.today()).normalize()
                           .to_datetime64(), "s")
    log = _IssueLog(files)
    for name in raw:
        if name not in TABLES:
            log.add(name, None, "unknown_table", "warning", 0,
                    f"{log.where(name)} is not a riskstrat table and was ignored "
                    f"(tables: {', '.join(TABLES)}).", action="ignored")
    if "persons" not in raw:
        log.add("persons", None, "missing_table", "error", 0,
                "The required table persons is missing: add persons.parquet or persons.csv "
                "to the data folder.")

    # One table at a time, persons first: each raw table is looked up once and let go once it is
    # checked (``raw`` may read from disk on lookup), so memory holds one raw table at most.
    final: dict[str, pd.DataFrame] = {}
    report = ValidationReport(issues=log.issues)
    persons = None
    for name, table in TABLES.items():
        if name not in raw:
            continue
        trust = (trusted or {}).get(name)  # None: every check; False: those that drop or change rows; True: none
        if (chunk_rows and not keep_records and trust is None and name != "persons" and isinstance(raw, LazyTables)
                and (raw.parquet_rows(name) or 0) > chunk_rows):
            n_read, n_kept = _check_in_chunks(table, raw, log, persons, rows=chunk_rows, duplicate_rows=duplicate_rows,
                                              unknown_codes=unknown_codes, latest=latest,
                                              out_of_life_events=out_of_life_events)
            report.row_counts[name] = n_kept
            if n_read > n_kept:
                report.dropped[name] = n_read - n_kept
            if on_table is not None:
                on_table(name, n_kept)
            continue
        checked = _check_table(table, raw[name], log, duplicate_rows=duplicate_rows, unknown_codes=unknown_codes,
                               trusted=trust)
        if name == "persons":
            persons = checked if "person_id" not in checked.absent else None
            if trust is None:
                _check_birth_dates(log, checked, latest)
        elif trust is not True:
            _check_future_events(log, table, checked, latest, out_of_life_events)
            if persons is not None and "person_id" not in checked.absent:
                _check_people(table, checked, persons, log, out_of_life_events)
        report.row_counts[name] = len(checked.df)
        if checked.n_raw > len(checked.df):
            report.dropped[name] = checked.n_raw - len(checked.df)
        if keep_records and not log.errors:  # after an error only the report is wanted
            final[name] = _finalise(table, checked.df)
        del checked
        if on_table is not None:
            on_table(name, report.row_counts[name])
    if not report.ok or not keep_records:
        return None, report
    return LinkedRecords(final), report


def data_latest_date(data_dir: str | Path) -> pd.Timestamp:
    """The last day a data folder can hold, as validation takes it: dataset.json's extract end, never
    later than today."""
    end = dataset_metadata(data_dir).get("extract_end")
    today = pd.Timestamp.today().normalize()
    return min(pd.Timestamp(end), today) if end else today


def _stamp_options(options: Mapping) -> dict[str, str]:
    """Validation's options that decide what it finds, as a stamp records them (defaults filled in)."""
    return {name: str(options.get(name, default)) for name, default in
            (("out_of_life_events", "drop"), ("duplicate_rows", "drop"), ("unknown_codes", "error"))}


def validate_data_dir(data_dir: str | Path, *, exclude_sources: Iterable[str] = (), trust_stamp: bool = False,
                      **options) -> tuple[LinkedRecords | None, ValidationReport]:
    """Read every table file in ``data_dir`` and validate it (see :func:`validate_tables`).

    Each file is read when validation reaches it. The tables named in ``exclude_sources`` (e.g.
    social care where there is no legal basis to use it) are never read. With ``trust_stamp`` the
    folder's validation stamp (:mod:`riskstrat.data.stamp`) is verified and the tables it proves are
    not checked row by row again (``report.trust`` says which and why the others are).
    Raises :class:`riskstrat.data.io.DataFileError` when the folder or a file cannot be read.
    """
    exclude = set(exclude_sources)
    if "persons" in exclude:
        raise InvalidInputError("persons cannot be excluded: every other table links to it")
    files = {name: path for name, path in table_files(data_dir).items() if name not in exclude}
    if "latest_date" not in options:  # the data set's own end, never later than today
        options["latest_date"] = data_latest_date(data_dir)
    trust = None
    if trust_stamp:
        trust = verify_stamp(data_dir, files, options=_stamp_options(options), latest_date=options["latest_date"])
        options["trusted"] = trust.tables
    records, report = validate_tables(LazyTables(files), files=files, **options)
    report.trust = trust
    return records, report


def stamp_data_dir(data_dir: str | Path, *, on_table: Callable[[str, int], None] | None = None,
                   **options) -> tuple[ValidationReport, Path | None]:
    """Validate every table of ``data_dir`` (every row: no stamp is trusted) and, when it passes, stamp
    the folder (:func:`riskstrat.data.stamp.write_stamp`); returns the report and the stamp's path (None
    when validation found errors: then nothing is stamped and an older stamp is removed)."""
    options.setdefault("latest_date", data_latest_date(data_dir))
    options.setdefault("chunk_rows", CHUNK_ROWS)
    files = table_files(data_dir)
    _, report = validate_tables(LazyTables(files), files=files, keep_records=False, on_table=on_table, **options)
    if not report.ok:
        (Path(data_dir) / STAMP).unlink(missing_ok=True)
        return report, None
    return report, write_stamp(data_dir, report, files, options=_stamp_options(options),
                               latest_date=options["latest_date"])


def load_records(data_dir: str | Path, **options) -> LinkedRecords:
    """Read and validate a linked data folder; raises :class:`ValidationError` if it has errors.

    Takes the options of :func:`validate_data_dir` and :func:`validate_tables`.

    >>> records = load_records("riskstrat-data/synthetic")              # doctest: +SKIP
    """
    records, report = validate_data_dir(data_dir, **options)
    if records is None or not report.ok:
        raise ValidationError(report)
    return records


# ----------------------------------------------------------------------------- issue collection


class _IssueLog:
    def __init__(self, files: dict[str, Path] | None):
        self.files = {name: Path(path).name for name, path in (files or {}).items()}
        self.issues: list[ValidationIssue] = []

    @property
    def errors(self) -> bool:
        return any(i.severity == "error" for i in self.issues)

    def where(self, table: str, column: str | None = None) -> str:
        place = self.files.get(table) or f"table {table}"
        return f"{place}, column {column}" if column else place

    def add(self, table: str, column: str | None, rule: str, severity: Severity, n_rows: int, message: str,
            examples: tuple[str, ...] = (), action: str | None = None) -> None:
        self.issues.append(ValidationIssue(table, column, rule, severity, int(n_rows), tuple(examples),
                                           self.files.get(table), message, action))


def _rows(n: int, what: str = "row") -> str:
    return f"{n:,} {what}{'s' if n != 1 else ''}"


def _agree(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _eg(examples: tuple[str, ...]) -> str:
    return f" (e.g. {'; '.join(examples)})" if examples else ""


def _show(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _person(value) -> str:
    """A person id (or another pseudonymised key) as examples show it: masked, never in full
    (:func:`riskstrat.data.privacy.mask_id`), since reports are printed, logged and kept."""
    return mask_id(value)


def _day(value) -> str:
    return np.datetime_as_string(np.datetime64(value, "D"), unit="D")


# While a table is checked in pieces (:func:`_check_in_chunks`): the positions of every row any check
# names, gathered for the exact second look at those rows. Every rule that names rows goes through
# :func:`_row_examples` (unknown codes through :func:`_note`), so nothing a rule finds is missed.
_named_rows: list[np.ndarray] | None = None


def _note(mask: np.ndarray, rows: np.ndarray) -> None:
    if _named_rows is not None:
        _named_rows.append(np.asarray(rows)[np.asarray(mask, bool)])


def _row_examples(mask: np.ndarray, rows: np.ndarray, shown=None) -> tuple[str, ...]:
    """'row N: value' for the first offending rows; ``rows`` holds 0-based input positions."""
    _note(mask, rows)
    hits = np.flatnonzero(mask)[:MAX_EXAMPLES]
    if shown is None:
        return tuple(f"row {rows[i] + 1}" for i in hits)
    return tuple(f"row {rows[i] + 1}: {shown(i)}" for i in hits)


# ----------------------------------------------------------------------------- coercion


def _text(values: pd.Series) -> pd.Series:
    """Values as stripped text; blank text counts as missing."""
    text = (values if values.dtype == _STR else values.astype(_STR)).str.strip()
    return text.mask(text == "")


def _factorized(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Each row's position in the distinct values as written, and those values."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # already factorised: keep its compact codes
        return values.cat.codes.to_numpy(), values.cat.categories
    codes, uniques = pd.factorize(values)
    return codes, pd.Index(uniques)


def _factorized_text(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    # Parse each distinct value once: codes and dates repeat a lot in tens of millions of rows.
    codes, uniques = _factorized(values)
    return codes, _text(pd.Series(np.asarray(uniques, dtype=object), dtype=object))


def _spread(per_unique: np.ndarray, codes: np.ndarray, fill) -> np.ndarray:
    """Map per-distinct-value results back to rows; ``fill`` where the row is missing (code -1)."""
    per_unique = np.asarray(per_unique)
    if len(per_unique) == 0:
        return np.full(len(codes), fill, dtype=per_unique.dtype)
    # One extra slot holds the fill, so code -1 picks it: a single take, no temporaries per row.
    # The fill is cast to the values' dtype, so it must be representable in it (e.g. NaT for dates).
    return np.append(per_unique, np.asarray(fill, dtype=per_unique.dtype))[codes]


def _clean_categorical(values: pd.Series) -> pd.Series:
    """Text as a categorical over its distinct cleaned values (stripped; blank = missing), each
    value cleaned once: the cheap form for tens of millions of rows of repeating text."""
    codes, uniques = _factorized_text(values)
    merged, distinct = pd.factorize(uniques)  # values equal once stripped share a category
    row_codes = _spread(merged, codes, -1)
    return pd.Series(pd.Categorical.from_codes(row_codes, categories=pd.Index(distinct, dtype=_STR)))


def _coerce_text(values: pd.Series, column: Column):
    if isinstance(values.dtype, pd.CategoricalDtype):  # Parquet text is read dictionary-encoded
        cleaned = _clean_categorical(values).cat
        # A take from the categories builds the text column without a per-row object array.
        text = pd.Series(cleaned.categories.array.take(cleaned.codes.to_numpy(), allow_fill=True))
    else:
        text = _text(values)
    return text, np.zeros(len(values), bool), text.isna().to_numpy()


def _coerce_person_key(values: pd.Series, column: Column):
    # Event tables key people by a categorical over the table's own ids (LinkedRecords then maps
    # it onto the persons' ids): 4 bytes a row instead of a string, and the checks that follow
    # work on integer codes.
    keys = _clean_categorical(values)
    return keys, np.zeros(len(values), bool), (keys.cat.codes < 0).to_numpy()


def _coerce_category(values: pd.Series, column: Column):
    codes, uniques = _factorized_text(values)
    norm = uniques.str.lower().str.replace(r"[\s\-]+", "_", regex=True)
    if column.name == "bnf_chapter":
        # 1 -> "01", "1.0" -> "01": chapters 1-15 are often stored as numbers.
        number = norm.str.extract(r"^0*(\d{1,2})(?:\.0+)?$")[0]
        norm = norm.where(number.isna(), number.str.zfill(2))
    known = pd.Index(column.categories or ()).get_indexer(norm)
    unknown = _spread((norm.notna() & (known < 0)).to_numpy(), codes, False)
    missing = _spread(norm.isna().to_numpy(), codes, True)
    series = pd.Series(pd.Categorical.from_codes(_spread(known, codes, -1), dtype=pandas_dtype(column)))
    return series, unknown, missing


def _coerce_date(values: pd.Series, column: Column):
    n = len(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_localize(None)  # keep the local calendar date
    if pd.api.types.is_datetime64_dtype(values.dtype):
        dates = values.dt.floor("D").astype("datetime64[s]").reset_index(drop=True)
        return dates, np.zeros(n, bool), dates.isna().to_numpy()
    codes, uniques = _factorized_text(values)
    day = uniques.str.extract(_ISO_DATE)[0]
    parsed = pd.to_datetime(day, format="%Y-%m-%d", errors="coerce").astype("datetime64[s]").to_numpy()
    bad = _spread((uniques.notna() & pd.isna(parsed)).to_numpy(), codes, False)
    out = _spread(parsed, codes, np.datetime64("NaT", "s"))
    return pd.Series(out, dtype="datetime64[s]"), bad, _spread(uniques.isna().to_numpy(), codes, True)


def _as_float(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(numbers, missing): numbers as float64 with NaN where missing or unparseable."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        return numbers, np.isnan(numbers)
    text = _text(values)
    try:  # Arrow parses clean text about 20 times faster than pandas
        numbers = pa.array(text).cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowException, TypeError, ValueError):
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return numbers, text.isna().to_numpy()


def _coerce_float(values: pd.Series, column: Column):
    numbers, missing = _as_float(values)
    bad = ~missing & ~np.isfinite(numbers)
    return pd.Series(np.where(bad, np.nan, numbers), dtype="float64"), bad, missing


def _coerce_int(values: pd.Series, column: Column):
    numbers, missing = _as_float(values)
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) <= 32767)
    bad = ~missing & ~whole
    ints = pd.arrays.IntegerArray(np.where(whole, numbers, 0).astype("int16"), ~whole)
    return pd.Series(ints, dtype="Int16"), bad, missing


def _coerce_bool(values: pd.Series, column: Column):
    codes, uniques = _factorized_text(values)
    lower = uniques.str.lower()
    truth = np.where(lower.isin(_TRUE), 1, np.where(lower.isin(_FALSE), 0, -1))
    flag = _spread(truth, codes, -1)
    flags = pd.Series(pd.arrays.BooleanArray(flag == 1, flag < 0), dtype="boolean")
    return flags, _spread((lower.notna() & (truth < 0)).to_numpy(), codes, False), _spread(
        lower.isna().to_numpy(), codes, True)


_COERCE = {
    "id": _coerce_text,
    "str": _coerce_text,
    "category": _coerce_category,
    "date": _coerce_date,
    "float": _coerce_float,
    "int": _coerce_int,
    "bool": _coerce_bool,
}
_BAD_VALUE = {
    "date": ("unparseable_date", "values are not dates in YYYY-MM-DD form",
             "correct them to YYYY-MM-DD (ISO timestamps are also accepted)"),
    "float": ("wrong_type", "values are not numbers", "correct them to plain numbers such as 1234.5"),
    "int": ("wrong_type", "values are not whole numbers", "correct them to whole numbers"),
    "bool": ("wrong_type", "values are not true/false",
             "use true/false, yes/no, y/n, t/f or 1/0"),
}


def _all_missing(column: Column, n: int) -> pd.Series:
    dtype = "boolean" if column.kind == "bool" else pandas_dtype(column)
    return pd.Series(pd.array([None] * n, dtype=dtype))


# ----------------------------------------------------------------------------- one table


@dataclass
class _Checked:
    df: pd.DataFrame  # canonical columns (nullable bools); index = 0-based input row positions
    absent: set[str]  # required columns missing from the input
    n_raw: int
    keys: tuple[pd.Series, pd.Index] | None = None  # persons: the ids once each and their look-up, made once
    costs_filled: set[str] = field(default_factory=set)  # cost columns with a value in some row (before any drop)


def _normalise_headers(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Match headers to schema names ignoring case, spaces and a stray byte-order mark."""
    names = set(table.column_names)
    rename = {}
    for col in frame.columns:
        key = str(col).strip().lstrip("\ufeff").strip().lower()
        if key != col and key in names and key not in frame.columns and key not in rename.values():
            rename[col] = key
    return frame.rename(columns=rename) if rename else frame


def _check_table(table: Table, raw: pd.DataFrame, log: _IssueLog, *, duplicate_rows: Policy,
                 unknown_codes: str, trusted: bool | None = None, positions: np.ndarray | None = None,
                 whole: tuple[int, set[str]] | None = None, hashes: "_RepeatedRows | None" = None) -> _Checked:
    """One table's own checks (not its links to persons). ``positions``: the rows' 0-based places in the
    file (default 0, 1, ...), as messages number them, and the result's index. A piece of a table
    (:func:`_check_in_chunks`): ``whole`` gives the whole table's rows and the cost columns with a value in
    any row (for the empty-table, missing-column and blank-cost findings), and ``hashes``, when given,
    takes the rows' content hashes instead of the repeats being looked for here."""
    name = table.name
    frame = _normalise_headers(raw, table).reset_index(drop=True)
    del raw  # a table read for this call is then held only through ``frame``, let go below
    n = len(frame)
    rows = np.arange(n) if positions is None else np.asarray(positions, dtype=np.int64)
    n_whole, costs_filled = whole if whole is not None else (n, None)
    if n_whole == 0:
        log.add(name, None, "empty_table", "warning", 0,
                f"{log.where(name)} has no rows, so the {name} table contributes nothing.")
    absent = {c.name for c in table.columns if c.required and c.name not in frame.columns}
    for col in table.columns:
        if col.name in absent:
            found = ", ".join(map(str, frame.columns)) or "none"
            log.add(name, col.name, "missing_column", "error", n_whole,
                    f"{log.where(name)} has no column {col.name}, which is required "
                    f"(columns found: {found}); add it or rename the matching column.")
    extras = [c for c in frame.columns if c not in table.column_names]
    for extra in extras:
        log.add(name, str(extra), "unknown_column", "warning", 0,
                f"{log.where(name)} has a column {extra} that is not in the {name} schema; it was ignored.",
                action="dropped column")

    columns: dict[str, pd.Series] = {}
    drop = np.zeros(n, bool)
    values = None
    for col in table.columns:
        if col.name not in frame.columns:
            if col.missing_as is not None:  # an optional column added later: absent means its default
                columns[col.name] = _all_missing(col, n).fillna(col.missing_as)
            elif col.name != "record_id":  # only distinguishes repeats; not worth a column of blanks
                columns[col.name] = _all_missing(col, n)
            continue
        values = frame[col.name]
        coerce = _coerce_person_key if col.kind == "id" and name in EVENT_TABLES else _COERCE[col.kind]
        coerced, bad, missing = coerce(values, col)
        columns[col.name] = coerced
        where = log.where(name, col.name)
        if bad.any():
            if col.kind == "category":
                _note(bad, rows)
                drop |= _report_unknown_codes(log, table, col, values, bad, unknown_codes)
            elif col.kind in _BAD_VALUE:
                rule, what, todo = _BAD_VALUE[col.kind]
                examples = _row_examples(bad, rows, lambda i: _show(values.iloc[i]))
                log.add(name, col.name, rule, "error", bad.sum(),
                        f"{where}: {_rows(int(bad.sum()))} with {what}{_eg(examples)}; {todo}.", examples)
        if col.kind in ("id", "str") and trusted is None:
            _check_safe_text(log, table, col, values, coerced, rows)
        if not col.nullable and missing.any():
            examples = _row_examples(missing, rows)
            log.add(name, col.name, "missing_value", "error", missing.sum(),
                    f"{where}: {_rows(int(missing.sum()))} with no value{_eg(examples)}, but the column is "
                    f"required; fill them in or remove the rows.", examples)
        if (col.min_value is not None or col.max_value is not None) and trusted is None:
            _check_range(log, table, col, coerced, values, rows)
        if col.missing_as is not None and missing.any():
            # A blank says no more than an absent column (codes outside the list stay for unknown_code).
            columns[col.name] = coerced.mask(missing, col.missing_as)

    df = pd.DataFrame(columns, copy=False)
    extra = frame[extras]
    if positions is not None:
        df.index = extra.index = pd.Index(rows)
    frame_columns = set(frame.columns)
    del frame, columns, values
    for start, end in table.ordered_dates:
        if start in absent or end in absent or trusted is not None:
            continue
        first, last = df[start].to_numpy(), df[end].to_numpy()
        wrong = last < first  # False where either is missing
        if wrong.any():
            examples = _row_examples(wrong, rows, lambda i: f"{end} {_day(last[i])} < {start} {_day(first[i])}")
            log.add(name, end, "end_before_start", "error", wrong.sum(),
                    f"{log.where(name, end)}: {_rows(int(wrong.sum()))} with {end} before {start}"
                    f"{_eg(examples)}; correct the dates or remove the rows.", examples)
    filled = {c for c in table.column_names if c in COST_COLUMNS and c in frame_columns and df[c].notna().any()}
    for column in (c for c in table.column_names if c in COST_COLUMNS):
        absent_cost = column not in frame_columns
        blank = column not in (filled if costs_filled is None else costs_filled)
        if n_whole and (absent_cost or blank):
            where = log.where(name) if absent_cost else log.where(name, column)
            log.add(name, column, "blank_cost", "warning", n_whole,
                    blank_cost_message(where, name, column, n_whole, absent=absent_cost), action="kept as unknown")
    if drop.any():
        df = _without_rows(df, drop)
    if hashes is not None:
        hashes.add(df, extra)
    elif trusted is not True:
        df = _check_duplicates(log, table, df, extra, duplicate_rows)
    if name == "persons" and "person_id" not in absent and trusted is None:
        _check_unique_persons(log, df)
    return _Checked(df, absent, n, costs_filled=filled)


def _check_in_chunks(table: Table, source: LazyTables, log: _IssueLog, persons: _Checked | None, *, rows: int,
                     duplicate_rows: Policy, unknown_codes: str, latest: np.datetime64,
                     out_of_life_events: Policy) -> tuple[int, int]:
    """One event table of a Parquet file checked in pieces of ``rows`` rows, memory bounded by a piece and the
    rows that break a rule, with the findings, messages and counts of checking it whole: a first pass runs
    every check on each piece (findings set aside, only the positions of the rows they name kept) and spills
    each row's content hash (:class:`_RepeatedRows`); a second checks, as one table, exactly the rows named
    or sharing a hash, numbered by their places in the file. A row no rule names and no other row repeats
    changes no finding, so leaving it out of the second pass changes nothing but the counts of rows and
    which cost columns have a value, both carried from the first. Returns (rows read, rows kept)."""
    global _named_rows
    name, named, n_read = table.name, [], 0
    filled: set[str] = set()
    repeats = _RepeatedRows()
    try:
        _named_rows = named
        for first, piece in source.chunks(name, rows):
            aside = _IssueLog(log.files)  # the second pass words the findings
            checked = _check_table(table, piece, aside, duplicate_rows=duplicate_rows, unknown_codes=unknown_codes,
                                   positions=np.arange(first, first + len(piece)), hashes=repeats)
            del piece
            filled |= checked.costs_filled
            _check_future_events(aside, table, checked, latest, out_of_life_events)
            if persons is not None and "person_id" not in checked.absent:
                _check_people(table, checked, persons, aside, out_of_life_events)
            n_read += checked.n_raw
            del checked
        _named_rows = None
        look_again = np.unique(np.concatenate([*named, repeats.positions()]))
    finally:
        _named_rows = None
        repeats.close()
    checked = _check_table(table, source.rows_at(name, look_again), log, duplicate_rows=duplicate_rows,
                           unknown_codes=unknown_codes, positions=look_again, whole=(n_read, filled))
    _check_future_events(log, table, checked, latest, out_of_life_events)
    if persons is not None and "person_id" not in checked.absent:
        _check_people(table, checked, persons, log, out_of_life_events)
    return n_read, n_read - (checked.n_raw - len(checked.df))


def blank_cost_message(where: str, table: str, column: str, n: int, *, absent: bool) -> str:
    """The ``blank_cost`` warning's words (validation and the folder engines word it alike)."""
    found = f"has no {column} column" if absent else f"is blank in all {_rows(n)}"
    return (f"{where} {found}: the {table} costs are unknown, not zero; cost features and a high-cost outcome "
            f"would count them as nothing. Fill in the costs in the source (or leave the table out of "
            f"cost models).")


def blank_costs(records: LinkedRecords) -> list[tuple[str, str]]:
    """The ``(table, column)`` cost columns blank in every row of an event table that has rows."""
    return [(name, column) for name in records.sources for column in COST_COLUMNS
            if column in records.tables[name] and len(records.tables[name]) and records.tables[name][column].isna().all()]


def _practice_spellings(log: _IssueLog, table: Table, codes: np.ndarray, raw: pd.Index) -> None:
    """``practice_id_case_collision`` and ``practice_id_trimmed`` over the distinct practice ids as
    written (``raw``, with each row's position in it: ``codes``)."""
    import unicodedata

    written = pd.Series([None if pd.isna(v) else str(v) for v in raw], dtype=object)
    # pd.isna, not "is None": pandas 3 infers the string dtype for a mapped column, which holds a
    # missing value as NaN, so the next map sees a float.
    stripped = written.map(lambda v: None if pd.isna(v) or not v.strip() else v.strip())
    folded = stripped.map(lambda v: None if pd.isna(v) else unicodedata.normalize("NFKC", v).casefold())
    per_value = np.bincount(codes[codes >= 0], minlength=len(raw)) if len(raw) else np.zeros(0, int)

    def spellings(group: pd.Index) -> str:
        # Most rows first; repr shows white space and control characters as escapes.
        order = sorted(group, key=lambda i: (-per_value[i], written[i]))
        return ", ".join(f"{written[i]!r} ({_rows(int(per_value[i]))})" for i in order)

    where = log.where(table.name, "practice_id")
    # Spellings one id apart by case or Unicode form (an error), then by outer white space alone (a warning).
    for rule, key, variants in (("practice_id_case_collision", folded, stripped),
                                ("practice_id_trimmed", stripped, written)):
        frame = pd.DataFrame({"key": key, "variant": variants}).dropna()
        n_variants = frame.groupby("key")["variant"].nunique()
        clashing = n_variants[n_variants > 1].index
        if not len(clashing):
            continue
        by_key = frame.groupby("key").groups  # key -> labels, i.e. positions in ``raw``
        groups = [by_key[k] for k in sorted(clashing)]
        hit = np.zeros(len(raw), bool)
        for group in groups:
            hit[group] = True
        n = int(per_value[hit].sum())
        examples = tuple(spellings(g) for g in groups[:MAX_EXAMPLES])
        if rule == "practice_id_case_collision":
            log.add(table.name, "practice_id", rule, "error", n,
                    f"{where}: {_rows(n)} hold practice ids that differ only in upper and lower case or Unicode form"
                    f"{_eg(examples)}; on a case-insensitive file system (macOS, Windows, SMB shares) their lists "
                    f"would share one folder. Write each practice's id one way in the source, or give different "
                    f"practices ids that differ by more than case.", examples)
        else:
            log.add(table.name, "practice_id", rule, "warning", n,
                    f"{where}: {_rows(n)} hold practice ids written with and without outer white space{_eg(examples)}"
                    f"; the white space was removed and each is read as one practice. Correct the source if they "
                    f"are different practices.", examples, action="merged")


def _check_safe_text(log: _IssueLog, table: Table, col: Column, values: pd.Series, cleaned: pd.Series,
                     rows: np.ndarray) -> None:
    """Ids and codes the outputs can hold: no control characters, not absurdly long; practice ids
    usable as folder names. ``values`` are the column as read, ``cleaned`` as coerced (shown in
    examples): the rules look at each distinct value once, cleaned as coercion cleans it, through the
    codes of text read dictionary-encoded (no per-row array unless a value breaks a rule)."""
    codes, raw = _factorized(values)
    uniques = _text(pd.Series(np.asarray(raw, dtype=object), dtype=object))
    if not len(uniques):
        return
    if col.name == "practice_id":
        _practice_spellings(log, table, codes, raw)
    text = uniques.astype(object).where(uniques.notna(), "")
    text = pd.Series(text.to_numpy(), dtype=_STR)
    bad = (text.str.contains(_CONTROL, regex=True) | (text.str.len() > MAX_ID_LENGTH)).fillna(False).to_numpy()
    rule, what = "unsafe_value", (f"control characters or more than {MAX_ID_LENGTH} characters, which lists and "
                                  f"files cannot hold")
    if col.name == "practice_id":
        unsafe = (~text.str.match(SAFE_PRACTICE_ID) | (text.str.len() > MAX_PRACTICE_ID_LENGTH)
                  | (text == NO_PRACTICE)).fillna(False).to_numpy() & uniques.notna().to_numpy()
        bad = bad | unsafe
        rule, what = "unsafe_practice_id", (f"practice ids that cannot be folder names (only letters, digits, '_', "
                                            f"'.' and '-', starting with a letter or digit, at most "
                                            f"{MAX_PRACTICE_ID_LENGTH} characters, not {NO_PRACTICE!r})")
    if not bad.any():  # the usual case: no per-row array at all
        return
    hit = _spread(bad, codes, False)
    if not hit.any():
        return
    n = int(hit.sum())
    shown = (lambda i: _person(cleaned.iloc[i])) if col.kind == "id" else (lambda i: repr(_show(cleaned.iloc[i])))
    examples = _row_examples(hit, rows, shown)
    log.add(table.name, col.name, rule, "error", n,
            f"{log.where(table.name, col.name)}: {_rows(n)} with {what}{_eg(examples)}; correct them in the "
            f"source or remove the rows.", examples)


def _check_birth_dates(log: _IssueLog, persons: _Checked, latest: np.datetime64) -> None:
    if "birth_date" in persons.absent:
        return
    born = persons.df["birth_date"].to_numpy()
    rows = persons.df.index.to_numpy()
    for hit, what in ((born > latest, f"in the future (after {_day(latest)})"),
                      (born < EARLIEST_BIRTH, "before 1900")):
        if hit.any():
            n = int(hit.sum())
            examples = _row_examples(hit, rows, lambda i: _day(born[i]))
            log.add("persons", "birth_date", "implausible_birth_date", "warning", n,
                    f"{log.where('persons', 'birth_date')}: {_rows(n)} born {what}{_eg(examples)}; these people "
                    f"fall outside every cohort until corrected.", examples, action="kept")


def _check_future_events(log: _IssueLog, table: Table, checked: _Checked, latest: np.datetime64,
                         policy: Policy) -> None:
    col = table.event_date
    if col is None or col in checked.absent:
        return
    dates = checked.df[col].to_numpy()
    hit = dates > latest  # False where missing
    if not hit.any():
        return
    n = int(hit.sum())
    rows = checked.df.index.to_numpy()
    examples = _row_examples(hit, rows, lambda i: _day(dates[i]))
    head = (f"{log.where(table.name, col)}: {_rows(n)} dated after the end of the data ({_day(latest)}){_eg(examples)}"
            f", so {_agree(n, 'it', 'they')} cannot have happened yet")
    if policy == "error":
        log.add(table.name, col, "future_event", "error", n, f"{head}; correct the dates or remove the rows.",
                examples)
    elif policy == "keep":
        log.add(table.name, col, "future_event", "warning", n, f"{head}; the rows were kept.", examples,
                action="kept")
    else:
        log.add(table.name, col, "future_event", "warning", n, f"{head}; the rows were dropped.", examples,
                action=f"dropped {_rows(n)}")
        del dates
        checked.df = _without_rows(checked.df, hit)


def _report_unknown_codes(log: _IssueLog, table: Table, col: Column, values: pd.Series, bad: np.ndarray,
                          policy: str) -> np.ndarray:
    counts = values[bad].astype(object).map(_show).value_counts()
    examples = tuple(f'"{code}" ({_rows(int(k))})' for code, k in counts.head(MAX_EXAMPLES).items())
    n = int(bad.sum())
    listed = ", ".join(col.categories or ())
    head = f"{log.where(table.name, col.name)}: {_rows(n)} with codes outside the reference list{_eg(examples)}"
    if policy == "drop":
        log.add(table.name, col.name, "unknown_code", "warning", n,
                f"{head}; these rows were dropped (known codes: {listed}).", examples,
                action=f"dropped {_rows(n)}")
        return bad
    log.add(table.name, col.name, "unknown_code", "error", n,
            f"{head}; map them to one of {listed}, or drop them (unknown_codes='drop').", examples)
    return np.zeros(len(bad), bool)


def _check_range(log: _IssueLog, table: Table, col: Column, coerced: pd.Series, values: pd.Series,
                 rows: np.ndarray) -> None:
    numbers = coerced.to_numpy(dtype="float64", na_value=np.nan)
    where = log.where(table.name, col.name)
    low = numbers < col.min_value if col.min_value is not None else np.zeros(len(numbers), bool)
    high = numbers > col.max_value if col.max_value is not None else np.zeros(len(numbers), bool)
    if col.name in COST_COLUMNS and col.min_value == 0 and low.any():
        examples = _row_examples(low, rows, lambda i: _show(values.iloc[i]))
        log.add(table.name, col.name, "negative_cost", "error", low.sum(),
                f"{where}: {_rows(int(low.sum()))} with a negative cost{_eg(examples)}; costs must be 0 or more "
                f"(record refunds elsewhere, or blank unknown costs).", examples)
        low = np.zeros(len(numbers), bool)
    outside = low | high
    if outside.any():
        bounds = " to ".join(f"{b:g}" for b in (col.min_value, col.max_value) if b is not None)
        span = (f"from {bounds}" if col.min_value is not None and col.max_value is not None
                else f"at least {col.min_value:g}" if col.min_value is not None else f"at most {col.max_value:g}")
        examples = _row_examples(outside, rows, lambda i: _show(values.iloc[i]))
        log.add(table.name, col.name, "out_of_range", "error", outside.sum(),
                f"{where}: {_rows(int(outside.sum()))} with values outside the allowed range{_eg(examples)}; "
                f"values must be {span}.", examples)


def _check_duplicates(log: _IssueLog, table: Table, df: pd.DataFrame, extra: pd.DataFrame,
                      policy: Policy) -> pd.DataFrame:
    # Exact repeats over every input column, extra columns included (a row id keeps rows apart).
    key = pd.concat([df, extra.loc[df.index]], axis=1) if len(extra.columns) else df
    # Hash each row first (8 bytes a row), then compare only the rows whose hashes repeat: far less
    # memory and time than DataFrame.duplicated over every column of tens of millions of rows.
    hashed = _row_hashes(key)
    ordered = np.sort(hashed)
    repeated_hashes = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])  # sorted
    del ordered
    repeat = np.zeros(len(key), bool)
    if len(repeated_hashes):
        # Binary search in the sorted repeats: no per-row temporaries beyond one index array,
        # however many rows repeat (np.isin sorts a concatenated copy when there are many).
        at = np.searchsorted(repeated_hashes, hashed)
        at[at == len(repeated_hashes)] = 0
        candidates = repeated_hashes[at] == hashed
        del at
        repeat[candidates] = key[candidates].duplicated(keep="first").to_numpy()
    if not repeat.any():
        return df
    n = int(repeat.sum())
    examples = _row_examples(repeat, df.index.to_numpy())
    head = (f"{log.where(table.name)}: {_rows(n)} {_agree(n, 'repeats', 'repeat')} an earlier row exactly"
            f"{_eg(examples)}")
    if policy == "error":
        log.add(table.name, None, "duplicate_rows", "error", n,
                f"{head}; remove the repeats, or drop them (duplicate_rows='drop').", examples)
        return df
    if policy == "keep":
        log.add(table.name, None, "duplicate_rows", "warning", n, f"{head}; they were kept.", examples,
                action="kept")
        return df
    log.add(table.name, None, "duplicate_rows", "warning", n, f"{head}; the repeats were dropped.", examples,
            action=f"dropped {_rows(n)}")
    del key
    return _without_rows(df, repeat)


def _without_rows(df: pd.DataFrame, drop: np.ndarray) -> pd.DataFrame:
    """``df`` without the rows where ``drop`` is True (index kept), built one column at a time while
    ``df`` is emptied: dropping a few rows then holds one column twice, never the whole table
    (a whole-table copy to drop 107 repeats was the peak of loading 100k people)."""
    keep = ~drop
    index = df.index[keep]
    columns = {}
    for name in list(df.columns):
        columns[name] = df.pop(name).array[keep]
    return pd.DataFrame(columns, index=index, copy=False)


def _row_hashes(frame: pd.DataFrame, words: Callable[[pd.Series], np.ndarray] | None = None) -> np.ndarray:
    """A 64-bit hash of each row, equal for equal rows, combined column by column in place: three
    arrays of 8 bytes a row are alive at once (the running hash, one column's words and a scratch
    array). Text is hashed through its factorised codes (categorical codes as they are), never as
    a per-row array of Python strings. Rows whose hashes repeat are compared exactly afterwards."""
    combined = np.zeros(len(frame), dtype=np.uint64)
    scratch = np.empty(len(frame), dtype=np.uint64)
    for _, column in frame.items():  # by position: extra columns may share a name
        column_words = (words or _column_words)(column)
        _mix64(column_words, scratch)
        combined *= np.uint64(1_000_003)  # uint64 arithmetic wraps around
        combined ^= column_words
        del column_words
    return combined


def _content_words(column: pd.Series) -> np.ndarray:
    """As :func:`_column_words`, but text by its content, not by its place among one frame's values: equal
    in every piece of a table read in pieces (each piece factorises its own text)."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        per_value = pd.util.hash_array(np.asarray(column.cat.categories, dtype=object))
        return _spread(per_value, column.cat.codes.to_numpy(), np.uint64(0x9E3779B97F4A7C15))
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        return pd.util.hash_pandas_object(column, index=False).to_numpy().copy()
    return _column_words(column)


class _RepeatedRows:
    """Rows whose content hash repeats anywhere in a table checked in pieces: each piece's hashes and
    positions are spilled to disk in buckets by their top bits, and :meth:`positions` reads back one
    bucket at a time (memory holds a bucket, not the table's hashes). The rows found are compared
    exactly afterwards (:func:`_check_duplicates`), so a hash shared by chance costs a look, nothing else."""

    _BUCKET_BITS = 5
    _ENTRY = np.dtype([("hash", "<u8"), ("row", "<i8")])

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="riskstrat-repeats-")
        self._files = [Path(self._dir.name) / f"{b:02d}.bin" for b in range(1 << self._BUCKET_BITS)]

    def add(self, df: pd.DataFrame, extra: pd.DataFrame) -> None:
        key = pd.concat([df, extra.loc[df.index]], axis=1) if len(extra.columns) else df
        entries = np.empty(len(key), self._ENTRY)
        entries["hash"] = _row_hashes(key, _content_words)
        entries["row"] = key.index.to_numpy()
        bucket = (entries["hash"] >> np.uint64(64 - self._BUCKET_BITS)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        entries, bucket = entries[order], bucket[order]
        bounds = np.searchsorted(bucket, np.arange((1 << self._BUCKET_BITS) + 1))
        for b, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if hi > lo:
                with open(self._files[b], "ab") as handle:
                    entries[lo:hi].tofile(handle)

    def positions(self) -> np.ndarray:
        """The positions of the rows whose hash another row shares, ascending."""
        found = []
        for path in self._files:
            if not path.exists():
                continue
            entries = np.fromfile(path, self._ENTRY)
            hashes = entries["hash"]
            order = np.argsort(hashes, kind="stable")
            ordered = hashes[order]
            same = ordered[1:] == ordered[:-1]
            shared = np.zeros(len(ordered), bool)
            shared[1:] |= same
            shared[:-1] |= same
            found.append(entries["row"][order[shared]])
            del entries, hashes, order, ordered
        return np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)

    def close(self) -> None:
        self._dir.cleanup()


def _column_words(column: pd.Series) -> np.ndarray:
    """One uint64 per row, equal for equal values (missing values equal each other), in a new array."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy().astype(np.uint64)  # -1 (missing) wraps around
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        return pd.factorize(column)[0].astype(np.int64, copy=False).view(np.uint64)
    if isinstance(dtype, np.dtype) and dtype.kind in "mM":
        return column.to_numpy().view("i8").astype(np.uint64)
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        values = column.to_numpy(dtype="float64", copy=True)
        values[np.isnan(values)] = np.nan  # one NaN, and 0.0 for -0.0: equal values, equal words
        values[values == 0] = 0.0
        return values.view(np.uint64)
    if isinstance(dtype, np.dtype) and dtype.kind in "biu":
        return column.to_numpy().astype(np.uint64)
    return pd.util.hash_pandas_object(column, index=False).to_numpy().copy()  # nullable extension types


def _mix64(words: np.ndarray, scratch: np.ndarray) -> None:
    """SplitMix64's finaliser, in place (``scratch`` is overwritten): close words spread apart."""
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        np.right_shift(words, np.uint64(shift), out=scratch)
        words ^= scratch
        if factor is not None:
            words *= np.uint64(factor)


def _check_unique_persons(log: _IssueLog, persons: pd.DataFrame) -> None:
    ids = persons["person_id"]
    shared = (ids.duplicated(keep=False) & ids.notna()).to_numpy()
    if not shared.any():
        return
    rows = persons.index.to_numpy()[shared]
    by_id = pd.Series(rows + 1, index=ids.to_numpy()[shared])
    examples = tuple(f"{_person(pid)} at rows {', '.join(map(str, by_id[[pid]].head(3)))}"
                     for pid in by_id.index.unique()[:MAX_EXAMPLES])
    n_ids = by_id.index.nunique()
    n = int(shared.sum())
    log.add("persons", "person_id", "duplicate_person", "error", n,
            f"{log.where('persons', 'person_id')}: {_rows(n)} share {_rows(n_ids, 'person id')} with another "
            f"row{_eg(examples)}; each person must appear once in persons.", examples)


# ----------------------------------------------------------------------------- links to persons


def _check_people(table: Table, checked: _Checked, persons: _Checked, log: _IssueLog, policy: Policy) -> None:
    """Unknown person ids, and event dates before birth or after death."""
    name, events = table.name, checked.df
    if persons.keys is None:  # hashed once for every table (and every piece of one)
        keys = persons.df["person_id"].dropna().drop_duplicates()
        persons.keys = keys, pd.Index(keys)
    keys, lookup = persons.keys
    ids = events["person_id"]  # a categorical (_coerce_person_key)
    codes, ids_u = ids.cat.codes.to_numpy(), ids.cat.categories
    at = _spread(lookup.get_indexer(ids_u), codes, -1)  # position in keys, -1 if unknown
    rows = events.index.to_numpy()
    unknown = (at < 0) & (codes >= 0)
    if unknown.any():
        examples = _row_examples(unknown, rows, lambda i: _person(ids.iloc[i]))
        n = int(unknown.sum())
        log.add(name, "person_id", "unknown_person", "error", n,
                f"{log.where(name, 'person_id')}: {_rows(n)} {_agree(n, 'refers', 'refer')} to person ids that "
                f"are not in persons{_eg(examples)}; add the people to persons or remove the rows.", examples)

    limits = [("birth_date", "event_before_birth", "before the person's birth", "born", np.less),
              ("death_date", "event_after_death", "after the person's death", "died", np.greater)]
    out_of_life = np.zeros(len(events), bool)
    end_columns = {end for _, end in table.ordered_dates}
    for limit_col, rule, what, verb, beyond in limits:
        if limit_col in persons.absent:
            continue
        lifetime = persons.df.loc[keys.index, limit_col].to_numpy()
        limit = _spread(lifetime, at, np.datetime64("NaT", "s"))
        for col in table.date_columns:
            if col in checked.absent:
                continue
            dates = events[col].to_numpy()
            hit = beyond(dates, limit)  # False where either date is missing
            if not hit.any():
                continue
            n = int(hit.sum())
            examples = _row_examples(hit, rows, lambda i: f"{_day(dates[i])}, {verb} {_day(limit[i])}")
            head = f"{log.where(name, col)}: {_rows(n)} dated {what}{_eg(examples)}"
            if policy == "drop" and rule == "event_after_death" and col in end_columns:
                # An end recorded after death (a discharge or care package closed late) is
                # administrative lag: keep the stay or service and end it on the date of death.
                # A shallow copy: copy-on-write then copies only the column set (each column is its own block).
                events = events.copy(deep=False) if events is checked.df else events
                events.loc[hit, col] = limit[hit]
                log.add(name, col, rule, "warning", n, f"{head}; those end dates were set to the date of death.",
                        examples, action=f"cut back {_rows(n)}")
                continue
            out_of_life |= hit
            if policy == "error":
                log.add(name, col, rule, "error", n, f"{head}; correct the dates or remove the rows "
                        f"(or drop them with out_of_life_events='drop').", examples)
            elif policy == "keep":
                log.add(name, col, rule, "warning", n, f"{head}; the rows were kept.", examples, action="kept")
            else:
                log.add(name, col, rule, "warning", n, f"{head}; the rows were dropped.", examples,
                        action=f"dropped {_rows(n)}")
    checked.df = _without_rows(events, out_of_life) if policy == "drop" and out_of_life.any() else events


# ----------------------------------------------------------------------------- output


def _finalise(table: Table, df: pd.DataFrame) -> pd.DataFrame:
    """Canonical column order and dtypes, rows numbered from 0."""
    out = df[[c for c in table.column_names if c in df.columns]].reset_index(drop=True)
    for col in table.columns:
        if col.kind == "bool" and not col.nullable:
            out[col.name] = out[col.name].astype("bool")
    return out
