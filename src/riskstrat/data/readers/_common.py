"""The plumbing the format readers share: :class:`ImportSummary` (what a reader read, made and dropped),
reading source CSV files, dates, numbers and amounts read with their unreadable values counted by shape,
source person ids, and the canonical tables' final tidying. The readers (:mod:`.synthea`, :mod:`.omop`,
:mod:`.hes`) import it; it imports none of them.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.data.data_end import combine_months, month_counts, volume_end
from riskstrat.data.io import DataFileError
from riskstrat.data.privacy import pseudonymise
from riskstrat.data.schema import TABLES

__all__ = ["CURRENCY_SYMBOLS", "ImportSummary", "MAX_SHAPE", "MissingSourceFileError", "value_shape"]


class MissingSourceFileError(DataFileError):
    """A file or column the reader cannot do without is missing; the message names it."""


@dataclass
class ImportSummary:
    """What a reader read, produced and dropped (counts only, never rows).

    ``dropped`` maps a plain-English reason to a row count, e.g.
    ``{"visits with unmapped visit_concept_id 0": 3}``; ``notes`` lists optional files or columns
    that were absent and what the reader did instead. After
    :func:`riskstrat.pipelines.imports.import_dataset`, ``people``, ``output_rows`` and ``date_range``
    describe the validated tables that were written.
    """

    source: str
    people: int = 0
    source_rows: dict[str, int] = field(default_factory=dict)
    output_rows: dict[str, int] = field(default_factory=dict)
    date_range: tuple[str | None, str | None] = (None, None)
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # ISO 4217 code of every cost the reader wrote (Synthea and US OMOP exports: USD).
    currency: str = "GBP"
    # Source file -> canonical table -> rows the reader made from it (before validation).
    routes: dict[str, dict[str, int]] = field(default_factory=dict)
    # Reason -> up to 3 example source values (codes or classes, never person ids or dates of birth).
    drop_examples: dict[str, list[str]] = field(default_factory=dict)
    # Source field -> value -> rows: codes outside the data dictionary, mapped to unknown/missing.
    unknown_codes: dict[str, dict[str, int]] = field(default_factory=dict)
    # Person field -> people whose records disagree (the most recent record's value was kept).
    conflicts: dict[str, int] = field(default_factory=dict)
    # Last day the extract covers, when the reader knows it (else it is read from where the monthly
    # event volume stops: ``data_end``, with ``events_after_data_end`` events after it left out of it).
    extract_end: str | None = None
    data_end: str | None = None
    events_after_data_end: int = 0
    # OMOP: cycles found in the vocabulary's hierarchy and broken (riskstrat.data.readers.vocab), by kind.
    vocabulary_cycles: dict[str, int] = field(default_factory=dict)
    # "file: COLUMN" -> {"kind": "cost" | "number" | "date", "present": values present in the rows read,
    # "unreadable": present values that are not a number (or date) and were stored as missing,
    # "shapes": {shape: rows}} (:func:`value_shape`: digits N, letters c; never the values).
    unreadable: dict[str, dict] = field(default_factory=dict)
    # Practices from primary care only: {"hospitals_excluded": candidate care sites / organisations /
    # providers not taken as practices because they are hospitals, "people_whose_only_candidate_was_a_hospital":
    # people left without a practice for that reason}. Empty when the reader did not look.
    practice_exclusions: dict[str, int] = field(default_factory=dict)
    # OMOP (empty for other formats): register condition -> {"people": n, "by_path": {path: people}};
    # the most frequent unmatched condition codes ({"concept_id", "concept_name", "source_value", "rows",
    # "people"}); DRUG_EXPOSURE rows by kind and domain and how their BNF chapters were found; and the
    # observation-period rule applied with its counts (see riskstrat.data.readers.omop).
    condition_matches: dict[str, dict] = field(default_factory=dict)
    unmatched_conditions: list[dict] = field(default_factory=list)
    drug_domains: dict = field(default_factory=dict)
    observation_periods: dict = field(default_factory=dict)

    def drop(self, reason: str, n: int, examples=()) -> None:
        """Record ``n`` rows dropped for ``reason`` (zero counts are not recorded).

        ``examples``: source values that explain the drop (codes, never person ids or birth dates);
        the first three distinct ones are kept.
        """
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)
            shown = self.drop_examples.setdefault(reason, [])
            for value in examples:
                value = str(value)
                if len(shown) >= 3:
                    break
                if value not in shown:
                    shown.append(value)
            if not shown:
                del self.drop_examples[reason]

    def route(self, source_file: str, table: str, n: int) -> None:
        """Record that ``n`` rows of canonical ``table`` came from ``source_file``."""
        if n:
            counts = self.routes.setdefault(source_file, {})
            counts[table] = counts.get(table, 0) + int(n)

    def unknown_code(self, source_field: str, counts: "pd.Series | dict") -> None:
        """Count values of ``source_field`` that the reader could not map (value -> rows)."""
        for value, n in dict(counts).items():
            if n:
                field_counts = self.unknown_codes.setdefault(source_field, {})
                field_counts[str(value)] = field_counts.get(str(value), 0) + int(n)

    def unreadable_values(self, source_file: "str | pd.Series", column: str, kind: str, raw: pd.Series,
                          unreadable: pd.Series) -> None:
        """Count the values of ``column`` present in ``raw`` and those of them that could not be read
        (``unreadable``, a boolean mask), per source file (``source_file``: a name, or one per row).

        Only columns with an unreadable value are kept; their values are kept as shapes only.
        """
        text = raw.astype("string").str.strip()
        present = text.notna() & (text != "")
        unreadable = unreadable.fillna(False).astype(bool) & present
        files = (source_file if isinstance(source_file, pd.Series)
                 else pd.Series(source_file, index=raw.index))
        for name in sorted(files[present].dropna().unique()):
            in_file = files == name
            key = f"{name}: {column}"
            bad = unreadable & in_file
            if not bad.any() and key not in self.unreadable:
                continue
            entry = self.unreadable.setdefault(key, {"kind": kind, "present": 0, "unreadable": 0, "shapes": {}})
            entry["present"] += int((present & in_file).sum())
            entry["unreadable"] += int(bad.sum())
            for shape, n in value_shape(raw[bad]).value_counts().items():
                entry["shapes"][shape] = entry["shapes"].get(shape, 0) + int(n)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def finish(self, tables: dict[str, pd.DataFrame]) -> None:
        """Fill ``people``, ``output_rows``, ``date_range`` and ``data_end`` from the canonical tables."""
        self.people = len(tables["persons"])
        self.output_rows = {name: len(df) for name, df in tables.items()}
        lows, highs, months = [], [], []
        for name, df in tables.items():
            col = TABLES[name].event_date
            if col and len(df):
                dates = pd.to_datetime(df[col], errors="coerce").dropna()
                if len(dates):
                    lows.append(dates.min())
                    highs.append(dates.max())
                    months.append(month_counts(dates))
        self.date_range = (
            min(lows).date().isoformat() if lows else None,
            max(highs).date().isoformat() if highs else None,
        )
        # Where the event volume stops, not the latest date: one mistyped date must not become the
        # extract end written to dataset.json (riskstrat.data.data_end).
        found = volume_end(combine_months(months))
        self.data_end = found.end.date().isoformat() if found.end is not None else None
        self.events_after_data_end = found.events_after
        if found.warning and self.extract_end is None:
            self.note(found.warning)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["date_range"] = list(self.date_range)
        return d


def _read_source_csv(path: Path, *, sep: str = ",") -> pd.DataFrame:
    """Read a source CSV as text (a byte-order mark is stripped; empty cells become missing)."""
    try:
        return pd.read_csv(path, dtype=str, sep=sep, keep_default_na=False, na_values=[""],
                           encoding="utf-8-sig")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # before OSError: BadGzipFile is one
        raise DataFileError(f"{path}: the compressed file is truncated or corrupt ({exc}); copy it again from "
                            f"the source") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot be read ({exc})") from exc


def _find_file(src_dir: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    """``src_dir/<stem><suffix>``, matching the file name case-insensitively."""
    wanted = {f"{stem}{s}".lower() for s in suffixes}
    for path in sorted(src_dir.iterdir()):
        if path.is_file() and path.name.lower() in wanted:
            return path
    return None


MAX_SHAPE = 24


def value_shape(values: pd.Series) -> pd.Series:
    """What a value looks like, not what it is: letters -> ``c``, digits -> ``N``, the rest as written,
    cut to :data:`MAX_SHAPE` characters. Reports hold shapes of unreadable values, never the values
    (a date of birth or a name pasted into the wrong column is personal).

    >>> value_shape(pd.Series(['=cmd|"/c calc"!A0', "31/02/2021", "1,234.50"])).tolist()
    ['=ccc|"/c cccc"!cN', 'NN/NN/NNNN', 'N,NNN.NN']
    """
    text = values.astype("string").str.strip()
    shape = text.str.replace(r"[^\W\d_]", "c", regex=True).str.replace(r"\d", "N", regex=True)
    return shape.where(shape.str.len() <= MAX_SHAPE, shape.str.slice(0, MAX_SHAPE - 1) + "\u2026")


def _to_date(values: pd.Series, *, summary: "ImportSummary | None" = None, source_file: "str | pd.Series | None" = None,
             column: str | None = None) -> pd.Series:
    """ISO dates or timestamps (``2020-05-01``, ``2020-05-01T10:00:00Z``) to midnight ``datetime64[s]``.

    The date is the calendar date as written (the first ten characters), so a UTC timestamp is
    not shifted into another day. ``20200501`` is accepted too; anything else becomes missing and,
    given a ``summary``, is counted there by its shape under ``source_file`` and ``column``
    (:meth:`ImportSummary.unreadable_values`).
    """
    text = values.astype("string").str.strip()
    dates = pd.to_datetime(text.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    compact = dates.isna() & text.str.fullmatch(r"\d{8}").fillna(False)
    if compact.any():
        dates = dates.where(~compact, pd.to_datetime(text.where(compact), format="%Y%m%d", errors="coerce"))
    dates = dates.astype("datetime64[s]")
    if summary is not None:
        summary.unreadable_values(source_file, column or str(values.name), "date", values, dates.isna())
    return dates


# Currency symbol -> the ISO 4217 codes it is read for (a symbol of another currency is unreadable:
# a pound amount in a dollar extract cannot be converted here).
CURRENCY_SYMBOLS = {"$": ("USD", "CAD", "AUD", "NZD"), "\u00a3": ("GBP",), "\u20ac": ("EUR",)}
# An amount as a spreadsheet writes it: a sign, a currency symbol, thousands separators.
_AMOUNT = (r"^(?P<sign>[+-]?)(?P<symbol>[$\u00a3\u20ac]?)"
           r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)$")


def _to_float(values: pd.Series, *, summary: "ImportSummary | None" = None,
              source_file: "str | pd.Series | None" = None, column: str | None = None, kind: str = "number",
              currency: str | None = None) -> pd.Series:
    """Numbers as ``float64``; a value that is not a finite number (``inf``, ``NaN``, ``=cmd|...``,
    ``12 units``) becomes missing and, given a ``summary``, is counted there by its shape under
    ``source_file`` and ``column`` (:meth:`ImportSummary.unreadable_values`).

    With a ``currency`` (costs and incomes) amounts written by spreadsheets are read too: thousands
    separators (``1,234.50``) and the currency's own symbol (``$120`` for USD, ``\u00a3120`` for GBP), noted
    in the summary; a symbol of another currency stays unreadable.

    >>> _to_float(pd.Series(["12.5", "inf", "NaN", "$1,200", "\u00a35"]), currency="USD").tolist()
    [12.5, nan, nan, 1200.0, nan]
    """
    text = values.astype("string").str.strip()
    text = text.where(text != "")
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    numbers = numbers.where(np.isfinite(numbers))  # "inf", "nan" and 1e999 are not amounts
    failed = text.notna() & numbers.isna()
    if currency is not None and failed.any():
        parts = text[failed].str.extract(_AMOUNT)
        symbol_ok = parts["symbol"].fillna("").map(
            lambda s: s == "" or currency.upper() in CURRENCY_SYMBOLS.get(s, ())).astype(bool)
        ok = parts["number"].notna() & symbol_ok
        if ok.any():
            amount = pd.to_numeric(parts.loc[ok, "sign"] + parts.loc[ok, "number"].str.replace(",", "", regex=False),
                                   errors="coerce").astype("float64")
            numbers.loc[amount.index] = amount
            failed = text.notna() & numbers.isna()
            if summary is not None:
                where = column or str(values.name)
                where = f"{source_file}: {where}" if isinstance(source_file, str) else where
                summary.note(f"{where}: {int(ok.sum()):,} amounts written with thousands separators or a currency "
                             f"symbol ({currency.upper()}) were read as numbers (1,234.50 -> 1234.5)")
    if summary is not None:
        summary.unreadable_values(source_file, column or str(values.name), kind, values, failed)
    return numbers


def _first_number(df: pd.DataFrame, columns: "list[str] | tuple[str, ...]", **options) -> pd.Series:
    """Per row, the first of ``columns`` with a value, read by :func:`_to_float` (``options``).

    Every present value of every column is read and counted (an unreadable one in a fallback column
    too, though a row uses it only when the columns before it are blank); an unreadable value stays
    missing and is not replaced by a later column's, which may mean something else.
    """
    out = pd.Series(np.nan, index=df.index, dtype="float64")
    taken = pd.Series(False, index=df.index)
    for column in columns:
        text = df[column].astype("string").str.strip()
        has = (text.notna() & (text != "")).fillna(False)
        out = out.where(~has | taken, _to_float(df[column], column=column, **options))
        taken |= has
    return out


def _first_present(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that is a column of ``df``."""
    return next((n for n in names if n in df.columns), None)


def _unique_persons(df: pd.DataFrame, id_column: str, summary: "ImportSummary", what: str,
                    key: bytes) -> tuple[pd.DataFrame, dict, pd.Index]:
    """Source persons with an id, first row per id kept; their pseudonyms and the known ids."""
    df = df[df[id_column].notna()]
    repeated = df[id_column].duplicated()
    summary.drop(f"{what} with a repeated {id_column} (first kept)", int(repeated.sum()))
    df = df[~repeated]
    return df, dict(zip(df[id_column], pseudonymise(df[id_column], key))), pd.Index(df[id_column])


def _keep_known_persons(df: pd.DataFrame, column: str, known: pd.Index, summary: ImportSummary,
                        what: str) -> pd.DataFrame:
    """Rows whose source person id is in ``known``; the rest are dropped and counted."""
    known_mask = df[column].isin(known)
    summary.drop(f"{what} with a person id not in the person table", int((~known_mask).sum()))
    return df[known_mask]


def _nearest_within(left: pd.DataFrame, right: pd.DataFrame, *, by: str, on: str, direction: str,
                    tolerance: pd.Timedelta) -> pd.Series:
    """For each ``left`` row, the ``on`` time of a ``right`` row with the same ``by`` key at most
    ``tolerance`` after (``direction="forward"``) or before (``"backward"``) it, else NaT.

    Equal times match. Rows with a missing ``on`` never match.
    """
    result = pd.Series(pd.NaT, index=left.index, dtype="datetime64[us]")
    lhs = left[[by, on]].reset_index(names="_row")
    lhs = lhs[lhs[on].notna()]
    rhs = right[[by, on]].rename(columns={on: "_match"})
    rhs = rhs[rhs["_match"].notna()]
    if lhs.empty or rhs.empty:
        return result
    lhs[on] = lhs[on].astype("datetime64[us]")
    rhs["_match"] = rhs["_match"].astype("datetime64[us]")
    merged = pd.merge_asof(lhs.sort_values(on, kind="stable"), rhs.sort_values("_match", kind="stable"),
                           left_on=on, right_on="_match", by=by, direction=direction,
                           tolerance=tolerance, allow_exact_matches=True)
    result.loc[merged["_row"].to_numpy()] = merged["_match"].to_numpy()
    return result


def _end_at_death(tables: dict[str, pd.DataFrame], summary: ImportSummary) -> None:
    """Set discharge / service end dates that fall after the person's death to the death date.

    Someone who dies in hospital is discharged dead on the day of death (as in HES); without this
    the whole spell, which is itself an outcome, would be dropped as an event after death.
    """
    died = tables["persons"].set_index("person_id")["death_date"]
    died = died[died.notna()]
    for name, column in (("inpatient_spells", "discharge_date"), ("social_care", "end_date")):
        if name not in tables or died.empty:
            continue
        df = tables[name]
        death = df["person_id"].map(died).astype("datetime64[s]")
        start = df[TABLES[name].event_date]
        late = (df[column] > death) & (start <= death)
        if late.any():
            df.loc[late, column] = death[late]
            n = int(late.sum())
            what = "inpatient spell" if name == "inpatient_spells" else "social care service"
            summary.note(f"{n} {what}{'s' if n != 1 else ''} ended after the person's death: "
                         f"{column} set to the death date")


def _register_once(register: pd.DataFrame, summary: ImportSummary, *, records: int, rows: int,
                   source: str) -> pd.DataFrame:
    """The long-term-condition register (person_id, condition, diagnosis_date) with each person's condition
    once, at its first date; ``records`` condition matches from ``rows`` rows of ``source`` gave it, and a
    note says how many later records were left out, so that the report's rows in add up to rows out."""
    register = register.sort_values(["person_id", "condition", "diagnosis_date"], kind="stable")
    first = register.drop_duplicates(["person_id", "condition"], keep="first")
    if len(first) < len(register):
        summary.note(f"{records:,} register condition records ({rows:,} rows of {source}) give {len(first):,} "
                     f"register entries: each person's condition is kept once, at its first date "
                     f"({len(register) - len(first):,} later records of it left out)")
    return first


def _tidy_table(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Schema column order and a deterministic row order (same input -> same output bytes)."""
    columns = [c for c in TABLES[name].column_names if c in df.columns]
    df = df[columns]
    return df.sort_values(columns, kind="stable", na_position="last").reset_index(drop=True)
