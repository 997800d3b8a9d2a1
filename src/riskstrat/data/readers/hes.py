"""Read Hospital Episode Statistics (HES) / SUS+ extracts into canonical linked-records tables.

An English analyst's hospital extract is one or more flat files per data set: admitted patient care
(APC, one row per consultant episode), A&E (one row per attendance) and outpatients (OP, one row per
appointment), each as CSV, TSV or pipe-separated text (``.gz`` too). Files are recognised by their
columns (``ADMIDATE``/``EPISTART`` -> APC, ``ARRIVALDATE`` -> A&E, ``APPTDATE`` -> OP), else by a
name token (``apc``/``inpatient``; ``ae``/``aae``/``ecds``; ``op``/``outpatient``); several files of one
kind (e.g. one per financial year) are read together. Headers are matched case-insensitively. Codes
are mapped by NHS England's HES Data Dictionary (APC, A&E, OP): a value outside it is counted per
field and value in the summary's ``unknown_codes`` and mapped to unknown/missing, never guessed.
HES dates before 1890 (``1800-01-01`` null, ``1801-01-01`` invalid, ``1600``/``1582`` placeholders) are
missing dates.

Mappings
--------
person key
    The first of ``PSEUDO_HESID``, ``HESID``, ``TOKEN_PERSON_ID``, ``PERSON_ID`` present, replaced by a
    keyed pseudonym (:func:`riskstrat.data.privacy.pseudonymise`); rows without one are dropped (counted).
persons (the union of the people seen in any file)
    ``birth_date``: ``MYDOB`` (``mmyyyy``) -> the 1st of that month. Where no record of a person has a
    readable ``MYDOB`` (HES A&E and OP extracts often have none), the birth date is estimated from
    the age at the event (``STARTAGE``/``ARRIVALAGE``/``APPTAGE``; 7001-7007 = under one year) as
    the 1st of the month half a year before ``event date - age`` (counted in ``notes``); people with
    neither are dropped with their events (counted).
    ``sex``: ``SEX`` 1 -> male, 2 -> female, 0 (not known), 9 (not specified) -> unknown.
    ``ethnicity_group``: ``ETHNOS`` A-C -> white, D-G -> mixed, H-L -> asian, M-P -> black,
    R (Chinese) -> asian (the 2011/2021 ONS groups place Chinese under Asian), S -> other,
    Z/X/99 (not stated / not known) -> unknown; the pre-2001 codes 0 white, 1-3 black, 4-6 asian,
    7 Chinese -> asian, 8 other, 9 not given -> unknown are read too.
    ``practice_id``: ``GPPRAC``; the dictionary's dummy codes (V81997 no registered practice, V81998
    not applicable, V81999 not known), ``&`` (not known) and blanks leave the practice missing:
    such people are counted and listed apart, never given a practice called UNKNOWN.
    ``deprivation_decile``: a column named like ``IMD04_DECILE``/``IMD_DECILE`` (1 = most deprived),
    either a number 1-10 or HES's text bands ("Most deprived 10%", "More deprived 10-20%", ...,
    "Least deprived 10%"); missing when the extract has none.
    ``death_date``: a linked date of death (``DOD``, ``DATE_OF_DEATH``, ``REG_DATE_OF_DEATH``) when
    present; otherwise ``DISDATE`` of an APC episode with ``DISMETH`` 4 (patient died).
    A person whose records disagree takes the most recent record's known value (by event date);
    the number of people with disagreeing records is counted per field in ``conflicts``.
inpatient_spells (APC episodes -> spells)
    Episodes are grouped into spells by person + provider (``PROCODE3``, else ``PROCODE5``/
    ``PROCODE``/``PROCODET``) + spell id (``SUSSPELLID``/``SPELL_ID``) where the extract has one, else
    + ``ADMIDATE`` (every episode of a spell carries its admission date). The episodes of a spell are
    ordered by ``EPIORDER``, ``EPISTART``, ``EPIKEY``; the spell takes ``ADMIDATE``, ``ADMIMETH`` and
    ``DIAG_4_01`` (primary diagnosis, ICD-10 without the dot; ``-`` filler removed) from its first
    episode and ``DISDATE`` from its last (the latest ``DISDATE`` of the spell's episodes; blank if
    the spell has not ended). ``record_id`` is the keyed hash of the first episode's ``EPIKEY``.
    Unfinished episodes (``EPISTAT`` 1) are kept: they join the spell they belong to. A repeated
    ``EPIKEY`` is dropped (first kept).
    ``admission_method`` from ``ADMIMETH``: 11-13 elective; 21-28 and 2A-2D emergency; 31-32
    maternity, and 82/83 (the birth of a baby, in or outside the provider) maternity too; 81
    (transfer from another provider, not in an emergency) transfer; 98/99 (not known) and any other
    value -> unknown, counted. Births and transfers count as neither emergency nor elective.
ae_attendances (A&E)
    ``arrival_date`` = ``ARRIVALDATE``; ``admitted``: ``AEATTENDDISP`` 01 (admitted to a bed in the
    same provider) -> True, the other dictionary codes (02-07, 10-14: discharged, referred,
    transferred, died, left, other) -> False, 99 (not known) and blank -> missing, other values ->
    missing and counted. ``record_id`` = keyed hash of ``AEKEY``.
    ``department_type`` from ``AEDEPTTYPE`` (else ECDS ``EC_DEPARTMENT_TYPE``/``DEPARTMENT_TYPE``), by the
    HES A&E data dictionary: 01 (consultant-led 24-hour emergency department with resuscitation
    facilities) -> emergency_department; 02 (consultant-led single-specialty A&E, e.g. eye or dental)
    -> single_specialty; 03 (other A&E / minor injury unit; urgent treatment centres since 2019) ->
    urgent_care; 04 (NHS walk-in centre) -> walk_in; 99 (not known), blank, or no such column ->
    unknown; any other value -> unknown, counted in ``unknown_codes``.
outpatient_appointments (OP)
    ``appointment_date`` = ``APPTDATE``; ``attended`` from ``ATTENDED``: 5 (seen) and 6 (arrived
    late, seen) -> True; 3 (did not attend, no warning) and 7 (arrived late, could not be seen) ->
    False (did not attend); 2 (cancelled by the patient) and 4 (cancelled or postponed by the
    provider) are not appointments that took place or were missed and are dropped (counted); 0
    (future appointment), 9/X (not known) and other values are dropped as unknown (counted).
    ``specialty`` = ``TRETSPEF`` (treatment specialty), else ``MAINSPEF``; ``&``/blank -> missing.
    ``record_id`` = keyed hash of ``ATTENDKEY``.
Costs
    HES carries no costs (national tariff and reference costs are applied outside it); a column
    ``COST``/``TOTAL_COST``/``SPELL_COST`` is used where an extract adds one (SUS+ costed extracts),
    else costs stay missing and the summary says so. Currency: GBP.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.data.io import DataFileError
from riskstrat.data.privacy import pseudonymise
from riskstrat.data.readers._common import (
    ImportSummary,
    MissingSourceFileError,
    _end_at_death,
    _first_present,
    _tidy_table,
    _to_date,
    _to_float,
    value_shape,
)

__all__ = ["read_hes", "admission_method", "ae_admitted", "ae_department_type", "op_attended", "ethnicity_group",
           "practice_code", "birth_date_from_mydob", "ADMISSION_METHOD_CODES", "AE_DEPARTMENT_TYPE_CODES",
           "DUMMY_PRACTICES"]

PERSON_KEYS = ("PSEUDO_HESID", "HESID", "TOKEN_PERSON_ID", "PERSON_ID")
PROVIDER_COLUMNS = ("PROCODE3", "PROCODE5", "PROCODE", "PROCODET")
SPELL_ID_COLUMNS = ("SUSSPELLID", "SPELL_ID", "SPELLID")
DEATH_COLUMNS = ("DOD", "DATE_OF_DEATH", "REG_DATE_OF_DEATH", "DEATH_DATE")
COST_COLUMNS = ("COST", "TOTAL_COST", "SPELL_COST")
AGE_COLUMNS = ("STARTAGE", "ARRIVALAGE", "APPTAGE")

# ADMIMETH (HES APC data dictionary) -> canonical admission method; anything else is "unknown".
ADMISSION_METHOD_CODES: dict[str, str] = {
    **{c: "elective" for c in ("11", "12", "13")},
    **{c: "emergency" for c in ("21", "22", "23", "24", "25", "26", "27", "28", "2A", "2B", "2C", "2D")},
    **{c: "maternity" for c in ("31", "32", "82", "83")},  # 82/83: births
    "81": "transfer",
}
_ADMIMETH_NOT_KNOWN = ("98", "99")

# AEATTENDDISP (HES A&E): 01 admitted; the other defined disposals are not admissions.
_AE_NOT_ADMITTED = ("02", "03", "04", "05", "06", "07", "10", "11", "12", "13", "14")
_AE_NOT_KNOWN = ("99",)

# AEDEPTTYPE (HES A&E; ECDS EMERGENCY CARE DEPARTMENT TYPE) -> canonical department_type; 99 not known.
AE_DEPARTMENT_TYPE_CODES: dict[str, str] = {"01": "emergency_department", "02": "single_specialty",
                                            "03": "urgent_care", "04": "walk_in"}
_AE_DEPT_NOT_KNOWN = ("99",)
AE_DEPARTMENT_COLUMNS = ("AEDEPTTYPE", "EC_DEPARTMENT_TYPE", "DEPARTMENT_TYPE")

# ATTENDED (HES OP).
_OP_ATTENDED = ("5", "6")
_OP_DNA = ("3", "7")
_OP_CANCELLED = ("2", "4")

_ETHNOS = {
    **{c: "white" for c in "ABC"}, **{c: "mixed" for c in "DEFG"}, **{c: "asian" for c in "HJKLR"},
    **{c: "black" for c in "MNP"}, "S": "other",
    # Codes used before 2001-02.
    "0": "white", "1": "black", "2": "black", "3": "black", "4": "asian", "5": "asian", "6": "asian",
    "7": "asian", "8": "other",
}
_ETHNOS_NOT_KNOWN = ("Z", "X", "99", "9")

_SEX = {"1": "male", "2": "female"}
_SEX_NOT_KNOWN = ("0", "9", "X")

# GPPRAC codes that are not a practice (HES data dictionary): no registered practice, not applicable,
# not known; "&" is HES's own "not known".
DUMMY_PRACTICES = ("V81997", "V81998", "V81999", "&")

_NULL_CODES = ("&", "-", "99", "X")  # fillers HES uses for "not known" in free code fields


def read_hes(src_dir: str | Path, *, pseudonym_key: bytes) -> tuple[dict[str, pd.DataFrame], ImportSummary]:
    """Read the HES / SUS+ files in ``src_dir`` into canonical tables (see the module docstring).

    Needs at least one APC, A&E or OP file. Returns ``(tables, summary)``; persons are the union of
    the people seen in any file.
    """
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise MissingSourceFileError(f"{src_dir}: no such folder")
    summary = ImportSummary(source="hes", currency="GBP")
    files = find_hes_files(src_dir, summary)
    if not any(files.values()):
        raise MissingSourceFileError(
            f"{src_dir}: no HES file found (expected CSV/TSV files of admitted patient care, A&E or outpatients, "
            "with ADMIDATE, ARRIVALDATE or APPTDATE columns, or apc/ae/op in their names)")

    people: list[pd.DataFrame] = []
    tables: dict[str, pd.DataFrame] = {}
    kinds = (("apc", "inpatient_spells", _spells), ("ae", "ae_attendances", _attendances),
             ("op", "outpatient_appointments", _appointments))
    for kind, table, mapper in kinds:
        parts = []
        for path in files[kind]:
            df = _read(path, summary)
            df = _with_person_key(df, path.name, summary)
            people.append(_person_rows(df, kind, path.name, summary))
            parts.append(df.assign(source_file=path.name))
        if not parts:
            continue
        # Files of one kind are read as one: yearly APC files share the spells (and the unfinished
        # episodes) open at 31 March, and a record repeated in two files is one record.
        df = _unique_records(pd.concat(parts, ignore_index=True), kind, summary)
        label = files[kind][0].name if len(files[kind]) == 1 else f"{len(files[kind])} {kind.upper()} files"
        out = mapper(df, label, summary, pseudonym_key)
        for source_file, n in out["source_file"].value_counts().sort_index().items():
            summary.route(source_file, table, int(n))
        tables[table] = out.drop(columns="source_file")
    if all(df["cost"].isna().all() for df in tables.values()):
        summary.note("HES carries no costs: costs left missing (high-cost outcomes need a costed extract)")

    persons = _persons(pd.concat(people, ignore_index=True), summary)
    known = set(persons["source_id"])
    for name in list(tables):
        df = tables[name]
        keep = df["source_id"].isin(known)
        summary.drop(f"{name} rows of people with no birth date (no MYDOB and no age)", int((~keep).sum()))
        df = df[keep]
        df["person_id"] = _pseudonyms(df["source_id"], pseudonym_key)
        tables[name] = df.drop(columns="source_id")
    # A person is routed to the first file they were seen in.
    for source_file, n in persons["source_file"].value_counts().sort_index().items():
        summary.route(source_file, "persons", int(n))
    persons["person_id"] = _pseudonyms(persons["source_id"], pseudonym_key)
    tables = {"persons": persons.drop(columns=["source_id", "source_file"]), **tables}

    _end_at_death(tables, summary)
    tables = {name: _tidy_table(name, df) for name, df in tables.items()}
    summary.finish(tables)
    return tables, summary


# --- finding and reading files ---------------------------------------------------------------

_SUFFIXES = (".csv", ".tsv", ".txt", ".psv", ".dat")
_NAME_TOKENS = {"apc": ("apc", "inpatient", "inpatients", "admitted"),
                "ae": ("ae", "aae", "ecds", "emergency"),
                "op": ("op", "outpatient", "outpatients")}
_CONTENT = (("ae", "ARRIVALDATE"), ("ae", "ARRIVAL_DATE"), ("op", "APPTDATE"), ("apc", "ADMIDATE"),
            ("apc", "EPISTART"))
# The only columns read (HES files have hundreds): everything else is never loaded.
_USED_COLUMNS = frozenset({
    *PERSON_KEYS, *PROVIDER_COLUMNS, *SPELL_ID_COLUMNS, *DEATH_COLUMNS, *COST_COLUMNS, *AGE_COLUMNS,
    "EPIKEY", "EPISTAT", "ADMIDATE", "EPISTART", "EPIORDER", "DISDATE", "DISMETH", "ADMIMETH", "DIAG_4_01",
    "AEKEY", "ARRIVALDATE", "ARRIVAL_DATE", "AEATTENDDISP", *AE_DEPARTMENT_COLUMNS,
    "ATTENDKEY", "APPTDATE", "ATTENDED", "TRETSPEF", "MAINSPEF",
    "MYDOB", "SEX", "ETHNOS", "GPPRAC",
})
_IMD_DECILE = re.compile(r"IMD\d*_?DECILE")


def find_hes_files(src_dir: Path, summary: ImportSummary | None = None) -> dict[str, list[Path]]:
    """HES files in ``src_dir`` by kind (``apc``, ``ae``, ``op``): by header columns, else name tokens."""
    found: dict[str, list[Path]] = {"apc": [], "ae": [], "op": []}
    for path in sorted(src_dir.iterdir()):
        name = path.name.lower()
        stem = name[:-3] if name.endswith(".gz") else name
        if not path.is_file() or not stem.endswith(_SUFFIXES):
            continue
        columns = {c.strip().upper() for c in _split(_header(path), _sniff(_header(path)))}
        kind = next((k for k, column in _CONTENT if column in columns), None)
        if kind is None:
            tokens = set(re.split(r"[^a-z0-9&]+", stem))
            kind = next((k for k, words in _NAME_TOKENS.items() if tokens & set(words)), None)
        if kind is None:
            if summary is not None:
                summary.note(f"{path.name}: not recognised as APC, A&E or outpatient data; not read")
            continue
        found[kind].append(path)
    return found


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")


def _header(path: Path) -> str:
    with _open_text(path) as fh:
        return fh.readline().rstrip("\r\n")


_SEPARATORS = {"|": "pipe", "\t": "tab", ",": "comma", ";": "semicolon"}


def _sniff(header: str) -> str:
    """The separator of a header line: pipe, tab, comma or semicolon (as a spreadsheet in a
    continental locale saves CSV), whichever occurs most; a comma when the line has none.

    >>> _sniff("PSEUDO_HESID;EPIKEY;ADMIDATE"), _sniff("A|B,C|D")
    (';', '|')
    """
    best = max(_SEPARATORS, key=header.count)
    return best if header.count(best) else ","


def _split(header: str, sep: str) -> list[str]:
    return [c.strip().strip('"') for c in header.split(sep)]


def _used(column: str) -> bool:
    name = str(column).strip().strip('"').upper()
    return name in _USED_COLUMNS or bool(_IMD_DECILE.fullmatch(name))


def _read(path: Path, summary: ImportSummary) -> pd.DataFrame:
    """The columns this reader uses, as text; the row count of the whole file goes to the summary."""
    try:
        df = pd.read_csv(path, dtype=str, sep=_sniff(_header(path)), keep_default_na=False, na_values=[""],
                         encoding="utf-8-sig", usecols=_used)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # before OSError: BadGzipFile is one
        raise DataFileError(f"{path}: the compressed file is truncated or corrupt ({exc}); copy it again from "
                            f"the source (gzip -t {path.name} checks a copy)") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot be read ({exc})") from exc
    df.columns = [str(c).strip().strip('"').upper() for c in df.columns]
    for column in df.columns:
        df[column] = df[column].str.strip()
    df = df.replace("", np.nan) if len(df) else df
    summary.source_rows[path.name] = len(df)
    return df


def _with_person_key(df: pd.DataFrame, file_name: str, summary: ImportSummary) -> pd.DataFrame:
    key = _first_present(df, PERSON_KEYS)
    if key is None:
        raise MissingSourceFileError(f"{file_name}: no person key column (one of {', '.join(PERSON_KEYS)})")
    df = df.assign(source_id=df[key])
    missing = df["source_id"].isna()
    summary.drop(f"{file_name}: rows without a person key ({key})", int(missing.sum()))
    return df[~missing]


_KEYS = {"apc": "EPIKEY", "ae": "AEKEY", "op": "ATTENDKEY"}


def _unique_records(df: pd.DataFrame, kind: str, summary: ImportSummary) -> pd.DataFrame:
    """One row per record key (EPIKEY, AEKEY, ATTENDKEY) over all files of a kind.

    An APC episode repeated in two yearly files is unfinished (``EPISTAT`` 1) in the first and
    finished (3) in the next: the finished one is kept, else the last file's.
    """
    key = _KEYS[kind]
    if key not in df:
        return df
    order = pd.to_numeric(df["EPISTAT"], errors="coerce").fillna(0) if "EPISTAT" in df else 0
    ranked = df.assign(_order=order, _row=np.arange(len(df))).sort_values(["_order", "_row"], kind="stable")
    repeated = ranked[key].notna() & ranked[key].duplicated(keep="last")
    summary.drop(f"{kind.upper()} records with a repeated {key} (the finished or latest kept)", int(repeated.sum()))
    return ranked[~repeated].sort_values("_row").drop(columns=["_order", "_row"])


def parse_hes_date(values: pd.Series) -> pd.Series:
    """HES dates as written (``2001-04-03``, ``20010403``, ``03/04/2001``) to ``datetime64[s]``.

    >>> parse_hes_date(pd.Series(["2001-04-03", "03/04/2001", "20010403", "x"])).dt.strftime("%Y-%m-%d").tolist()
    ['2001-04-03', '2001-04-03', '2001-04-03', nan]
    """
    dates = _to_date(values)
    text = values.astype("string").str.strip()
    dmy = dates.isna() & text.str.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}").fillna(False)
    if dmy.any():
        dates = dates.where(~dmy, pd.to_datetime(text.where(dmy), format="%d/%m/%Y", errors="coerce"))
    return dates.astype("datetime64[s]")


def _shape(values: pd.Series) -> pd.Series:
    """A value's shape, not its value (``31/02/2021`` -> ``NN/NN/NNNN``): reports never hold dates."""
    return value_shape(values)


def _hes_date(values: pd.Series, field: str, summary: ImportSummary, source_file: "str | pd.Series") -> pd.Series:
    """:func:`parse_hes_date`, with HES null dates (before 1890) missing and unreadable dates counted
    by their shape (never their value) per ``source_file`` (a name, or one per row)."""
    dates = parse_hes_date(values)
    placeholder = dates < pd.Timestamp("1890-01-01")
    if placeholder.any():
        # HES's own null dates (1800-01-01, 1801-01-01, ...): fixed codes, not anybody's date.
        summary.unknown_code(field, values[placeholder].str.slice(0, 10).value_counts())
        dates = dates.where(~placeholder)
    summary.unreadable_values(source_file, field, "date", values, dates.isna() & ~placeholder)
    _note_day_first(values, field, summary)
    return dates


def _note_day_first(values: pd.Series, field: str, summary: ImportSummary) -> None:
    """Say that dates written with slashes were read day first (the HES data dictionary's
    DD/MM/YYYY), and how many would also have been valid dates read month first."""
    parts = values.astype("string").str.strip().str.extract(r"^(\d{1,2})/(\d{1,2})/\d{4}$")
    slashed = parts[0].notna()
    if not slashed.any():
        return
    day, month = parts[0][slashed].astype(int), parts[1][slashed].astype(int)
    either = int(((day <= 12) & (month <= 12) & (day != month)).sum())
    summary.note(f"{field}: {int(slashed.sum()):,} dates written with slashes were read day first, DD/MM/YYYY "
                 f"(12/1/2001 is 12 January 2001), as the HES data dictionary writes them; {either:,} of them would "
                 f"be another valid date read month first: if the extract was made in the US style (MM/DD/YYYY), "
                 f"convert its dates to YYYY-MM-DD before importing")


def _code(values: pd.Series) -> pd.Series:
    """Codes as text without spaces, upper-case; ``1`` and ``01`` stay as written."""
    return values.astype("string").str.strip().str.upper()


def _record_ids(prefix: str, values: pd.Series | None, index: pd.Index, key: bytes) -> pd.Series:
    if values is None:
        return pd.Series(pd.NA, index=index, dtype="string")
    return _pseudonyms(prefix + values.astype("string"), key)


def _pseudonyms(values: pd.Series, key: bytes) -> pd.Series:
    return pseudonymise(values, key)


def _cost(df: pd.DataFrame, summary: ImportSummary) -> pd.Series:
    column = _first_present(df, COST_COLUMNS)
    if column is None:
        return pd.Series(np.nan, index=df.index)
    return _to_float(df[column], summary=summary, source_file=df["source_file"], column=column, kind="cost",
                     currency=summary.currency)


# --- code mappings (pure, vectorised) ----------------------------------------------------------

def admission_method(admimeth: pd.Series) -> pd.Series:
    """ADMIMETH codes -> canonical admission method ("unknown" for 98/99, blanks and other codes).

    >>> admission_method(pd.Series(["11", "21", "2A", "31", "81", "99", "ZZ"])).tolist()
    ['elective', 'emergency', 'emergency', 'maternity', 'transfer', 'unknown', 'unknown']
    """
    return _code(admimeth).map(ADMISSION_METHOD_CODES).fillna("unknown").astype(object)


def ae_admitted(disposal: pd.Series) -> pd.Series:
    """AEATTENDDISP -> admitted (True for 01, False for the other defined codes, missing otherwise).

    >>> ae_admitted(pd.Series(["01", "1", "03", "99", None, "77"])).tolist()
    [True, True, False, <NA>, <NA>, <NA>]
    """
    code = _code(disposal).str.zfill(2)
    out = pd.Series(pd.NA, index=disposal.index, dtype="boolean")
    out[code == "01"] = True
    out[code.isin(_AE_NOT_ADMITTED).fillna(False)] = False
    return out


def ae_department_type(code: pd.Series) -> pd.Series:
    """AEDEPTTYPE -> department_type (01-04 by the HES A&E data dictionary; 99, blank and other
    values unknown).

    >>> ae_department_type(pd.Series(["01", "2", "03", "04", "99", None, "07"])).tolist()
    ['emergency_department', 'single_specialty', 'urgent_care', 'walk_in', 'unknown', 'unknown', 'unknown']
    """
    return _code(code).str.zfill(2).map(AE_DEPARTMENT_TYPE_CODES).fillna("unknown").astype(object)


def op_attended(attended: pd.Series) -> pd.Series:
    """ATTENDED -> True (5, 6 seen), False (3 did not attend, 7 too late to be seen), missing otherwise.

    >>> op_attended(pd.Series(["5", "6", "3", "7", "2", "4", "9"])).tolist()
    [True, True, False, False, <NA>, <NA>, <NA>]
    """
    code = _code(attended)
    out = pd.Series(pd.NA, index=attended.index, dtype="boolean")
    out[code.isin(_OP_ATTENDED).fillna(False)] = True
    out[code.isin(_OP_DNA).fillna(False)] = False
    return out


def ethnicity_group(ethnos: pd.Series) -> pd.Series:
    """ETHNOS -> canonical ethnicity group; not stated/not known and unknown codes -> missing."""
    return _code(ethnos).map(_ETHNOS).astype(object)


def practice_code(gpprac: pd.Series) -> pd.Series:
    """GPPRAC -> practice code; the dictionary's dummy codes and blanks -> missing.

    >>> practice_code(pd.Series(["A81001", "V81999", "&", None])).isna().tolist()
    [False, True, True, True]
    """
    code = _code(gpprac)
    return code.where(~code.isin(DUMMY_PRACTICES)).astype(object)


def birth_date_from_mydob(mydob: pd.Series) -> pd.Series:
    """MYDOB (``mmyyyy``) -> the 1st of that month; anything else -> missing. Years before 1890 are
    HES's null and invalid dates (``011800``, ``011801``), as in every other HES date field.

    >>> birth_date_from_mydob(pd.Series(["041968", "5/1950", "132001", "011801", None])).dt.strftime("%Y-%m-%d").tolist()
    ['1968-04-01', nan, nan, nan, nan]
    """
    text = _code(mydob)
    ok = text.str.fullmatch(r"(0[1-9]|1[0-2])(189\d|19\d\d|20\d\d)").fillna(False)
    dates = pd.to_datetime("01" + text.where(ok), format="%d%m%Y", errors="coerce")
    return dates.astype("datetime64[s]")


def _deprivation(values: pd.Series) -> pd.Series:
    """IMD decile as a number 1-10 or HES's text band ("Most deprived 10%", "Less deprived 10-20%")."""
    text = values.astype("string").str.strip().str.lower()
    number = pd.to_numeric(text, errors="coerce")
    out = number.where(number.between(1, 10) & (number == number.round()))
    band = text.str.extract(r"^(most|more|less|least) deprived\s*(?:\d+\s*-\s*)?(\d+)%$")
    upper = pd.to_numeric(band[1], errors="coerce") / 10
    from_band = np.select([band[0].eq("most").fillna(False), band[0].eq("least").fillna(False),
                           band[0].eq("more").fillna(False), band[0].eq("less").fillna(False)],
                          [1, 10, upper, 11 - upper], default=np.nan)
    out = out.fillna(pd.Series(from_band, index=values.index))
    return out.where(out.between(1, 10))


def _count_unmapped(summary: ImportSummary, field: str, raw: pd.Series, mapped: pd.Series,
                    not_known: tuple[str, ...] = ()) -> None:
    """Count values that are present, not a dictionary 'not known' code and still unmapped."""
    code = _code(raw)
    bad = raw.notna() & mapped.isna() & ~code.isin(not_known).fillna(False)
    if bad.any():
        summary.unknown_code(field, code[bad].value_counts())


# --- APC: episodes to spells -----------------------------------------------------------------

def _spells(df: pd.DataFrame, file_name: str, summary: ImportSummary, key: bytes) -> pd.DataFrame:
    if "ADMIDATE" not in df and "EPISTART" not in df:
        raise MissingSourceFileError(f"{file_name}: APC file without ADMIDATE or EPISTART")
    ep = pd.DataFrame({"source_id": df["source_id"], "source_file": df["source_file"]}, index=df.index)
    files = df["source_file"]
    admidate = _hes_date(df["ADMIDATE"], "ADMIDATE", summary, files) if "ADMIDATE" in df else None
    epistart = _hes_date(df["EPISTART"], "EPISTART", summary, files) if "EPISTART" in df else None
    if admidate is None:
        summary.note(f"{file_name}: no ADMIDATE column: the admission date is the first EPISTART of the spell")
        admidate = epistart
    ep["admission_date"] = admidate
    ep["epistart"] = epistart if epistart is not None else admidate
    no_date = ep["admission_date"].isna()
    summary.drop(f"{file_name}: episodes without a readable admission date", int(no_date.sum()))
    ep, df = ep[~no_date], df[~no_date]

    provider = _first_present(df, PROVIDER_COLUMNS)
    ep["provider"] = df[provider].fillna("") if provider else ""
    spell_col = _first_present(df, SPELL_ID_COLUMNS)
    date_key = "A" + ep["admission_date"].dt.strftime("%Y%m%d")
    ep["spell"] = ("S" + df[spell_col]).fillna(date_key) if spell_col else date_key
    ep["order"] = pd.to_numeric(df["EPIORDER"], errors="coerce") if "EPIORDER" in df else np.nan
    ep["epikey"] = df["EPIKEY"] if "EPIKEY" in df else pd.NA
    ep["admimeth"] = df["ADMIMETH"] if "ADMIMETH" in df else pd.NA
    ep["diagnosis"] = (_code(df["DIAG_4_01"]).str.replace(r"[^A-Z0-9]", "", regex=True)
                       .replace("", pd.NA)) if "DIAG_4_01" in df else pd.NA
    ep["discharge_date"] = (_hes_date(df["DISDATE"], "DISDATE", summary, df["source_file"]) if "DISDATE" in df
                            else pd.NaT)
    ep["cost"] = _cost(df, summary)
    if "ADMIMETH" not in df:
        summary.note(f"{file_name}: no ADMIMETH column: every admission method is unknown")

    ep = ep.sort_values(["source_id", "provider", "spell", "order", "epistart", "epikey"],
                        kind="stable", na_position="last")
    groups = ep.groupby(["source_id", "provider", "spell"], sort=False, dropna=False)
    first = groups.head(1).set_index(["source_id", "provider", "spell"])
    spells = pd.DataFrame({
        "source_id": first.index.get_level_values("source_id"),
        "admission_date": first["admission_date"].to_numpy(),
        "discharge_date": groups["discharge_date"].max().reindex(first.index).to_numpy(),
        "admimeth": first["admimeth"].to_numpy(),
        "primary_diagnosis": first["diagnosis"].to_numpy(),
        "cost": groups["cost"].sum(min_count=1).reindex(first.index).to_numpy(),
        "epikey": first["epikey"].to_numpy(),
        "source_file": first["source_file"].to_numpy(),
    })
    summary.note(f"{file_name}: {len(ep):,} episodes grouped into {len(spells):,} spells "
                 f"(by person, provider and {'spell id' if spell_col else 'admission date'})")
    method = admission_method(spells["admimeth"])
    _count_unmapped(summary, "ADMIMETH", spells["admimeth"], method.where(method != "unknown"),
                    not_known=_ADMIMETH_NOT_KNOWN)
    not_known = _code(spells["admimeth"]).isin(_ADMIMETH_NOT_KNOWN).fillna(False) | spells["admimeth"].isna()
    if not_known.any():
        summary.note(f"{file_name}: {int(not_known.sum()):,} spells with ADMIMETH 98/99 or blank "
                     "(not known): admission method unknown")
    return pd.DataFrame({
        "source_id": spells["source_id"], "admission_date": spells["admission_date"],
        "discharge_date": spells["discharge_date"], "admission_method": method,
        "primary_diagnosis": spells["primary_diagnosis"].astype("string"), "cost": spells["cost"],
        "record_id": _record_ids("apc:", spells["epikey"] if "EPIKEY" in df else None, spells.index, key),
        "source_file": spells["source_file"],
    })


# --- A&E and outpatients ---------------------------------------------------------------------

def _attendances(df: pd.DataFrame, file_name: str, summary: ImportSummary, key: bytes) -> pd.DataFrame:
    date_col = _first_present(df, ("ARRIVALDATE", "ARRIVAL_DATE"))
    if date_col is None:
        raise MissingSourceFileError(f"{file_name}: A&E file without ARRIVALDATE")
    arrival = _hes_date(df[date_col], date_col, summary, df["source_file"])
    no_date = arrival.isna()
    summary.drop(f"{file_name}: attendances without a readable {date_col}", int(no_date.sum()))
    df, arrival = df[~no_date], arrival[~no_date]
    if "AEATTENDDISP" in df:
        admitted = ae_admitted(df["AEATTENDDISP"])
        _count_unmapped(summary, "AEATTENDDISP", df["AEATTENDDISP"], admitted,
                        not_known=_AE_NOT_KNOWN)
    else:
        summary.note(f"{file_name}: no AEATTENDDISP column: whether attendances ended in admission is missing")
        admitted = pd.Series(pd.NA, index=df.index, dtype="boolean")
    dept_col = _first_present(df, AE_DEPARTMENT_COLUMNS)
    if dept_col is not None:
        department = ae_department_type(df[dept_col])
        known = department.where(department != "unknown")
        _count_unmapped(summary, dept_col, df[dept_col], known, not_known=_AE_DEPT_NOT_KNOWN)
    else:
        summary.note(f"{file_name}: no AEDEPTTYPE column: the A&E department type of every attendance is unknown")
        department = pd.Series("unknown", index=df.index, dtype=object)
    return pd.DataFrame({
        "source_id": df["source_id"], "arrival_date": arrival, "admitted": admitted,
        "department_type": department, "cost": _cost(df, summary),
        "record_id": _record_ids("ae:", df["AEKEY"] if "AEKEY" in df else None, df.index, key),
        "source_file": df["source_file"],
    })


def _appointments(df: pd.DataFrame, file_name: str, summary: ImportSummary, key: bytes) -> pd.DataFrame:
    if "APPTDATE" not in df:
        raise MissingSourceFileError(f"{file_name}: outpatient file without APPTDATE")
    if "ATTENDED" not in df:
        raise MissingSourceFileError(f"{file_name}: outpatient file without ATTENDED (attended or did not attend)")
    date = _hes_date(df["APPTDATE"], "APPTDATE", summary, df["source_file"])
    no_date = date.isna()
    summary.drop(f"{file_name}: appointments without a readable APPTDATE", int(no_date.sum()))
    df, date = df[~no_date], date[~no_date]
    code = _code(df["ATTENDED"])
    attended = op_attended(df["ATTENDED"])
    cancelled = code.isin(_OP_CANCELLED).fillna(False)
    summary.drop(f"{file_name}: cancelled appointments (ATTENDED 2 by the patient, 4 by the provider)",
                 int(cancelled.sum()), code[cancelled].value_counts().index)
    unknown = attended.isna() & ~cancelled
    summary.drop(f"{file_name}: appointments whose ATTENDED is 0 (future), not known or not a dictionary code",
                 int(unknown.sum()), code[unknown].fillna("blank").value_counts().index)
    _count_unmapped(summary, "ATTENDED", df["ATTENDED"], attended.where(~cancelled, True), not_known=("9", "X", "0"))
    keep = attended.notna()
    df, date, attended = df[keep], date[keep], attended[keep]
    specialty_col = _first_present(df, ("TRETSPEF", "MAINSPEF"))
    specialty = pd.Series(pd.NA, index=df.index, dtype="string")
    for column in ("TRETSPEF", "MAINSPEF"):
        if column in df:
            value = _code(df[column])
            specialty = specialty.fillna(value.where(~value.isin(_NULL_CODES)))
    if specialty_col is None:
        summary.note(f"{file_name}: no TRETSPEF or MAINSPEF column: specialty left missing")
    return pd.DataFrame({
        "source_id": df["source_id"], "appointment_date": date, "specialty": specialty,
        "attended": attended.astype(bool), "cost": _cost(df, summary),
        "record_id": _record_ids("op:", df["ATTENDKEY"] if "ATTENDKEY" in df else None, df.index, key),
        "source_file": df["source_file"],
    })


# --- persons ---------------------------------------------------------------------------------

_EVENT_DATE = {"apc": ("EPISTART", "ADMIDATE"), "ae": ("ARRIVALDATE", "ARRIVAL_DATE"), "op": ("APPTDATE",)}


def _person_rows(df: pd.DataFrame, kind: str, file_name: str, summary: ImportSummary) -> pd.DataFrame:
    """One row per source row: the person fields it carries, mapped, with the date it was recorded."""
    def col(name):
        return df[name] if name in df else pd.Series(pd.NA, index=df.index, dtype="object")

    date_col = _first_present(df, _EVENT_DATE[kind])
    when = parse_hes_date(df[date_col]) if date_col else pd.Series(pd.NaT, index=df.index, dtype="datetime64[s]")
    sex = _code(col("SEX")).map(_SEX).astype(object)
    _count_unmapped(summary, "SEX", col("SEX"), sex, not_known=_SEX_NOT_KNOWN)
    ethnicity = ethnicity_group(col("ETHNOS"))
    _count_unmapped(summary, "ETHNOS", col("ETHNOS"), ethnicity, not_known=_ETHNOS_NOT_KNOWN)
    birth = birth_date_from_mydob(col("MYDOB"))
    _count_unmapped(summary, "MYDOB", _shape(col("MYDOB")), birth)  # shapes: a birth date is never reported
    practice = practice_code(col("GPPRAC"))
    imd_col = next((c for c in df.columns if _IMD_DECILE.fullmatch(c)), None)
    deprivation = _deprivation(df[imd_col]) if imd_col else pd.Series(np.nan, index=df.index)
    if imd_col:
        _count_unmapped(summary, imd_col, df[imd_col], deprivation)
    death_col = _first_present(df, DEATH_COLUMNS)
    death = (_hes_date(df[death_col], death_col, summary, file_name) if death_col
             else pd.Series(pd.NaT, index=df.index, dtype="datetime64[s]"))
    if kind == "apc" and "DISMETH" in df and "DISDATE" in df:
        died = _code(df["DISMETH"]).eq("4").fillna(False)
        discharged = parse_hes_date(df["DISDATE"])
        death = death.fillna(discharged.where(died & (discharged >= pd.Timestamp("1890-01-01"))))
    age_col = _first_present(df, AGE_COLUMNS)
    age = (_to_float(df[age_col], summary=summary, source_file=file_name, column=age_col) if age_col
           else pd.Series(np.nan, index=df.index))
    age = age.where(~age.between(7001, 7007), 0).where(age.between(0, 120) | age.between(7001, 7007))
    return pd.DataFrame({
        "source_id": df["source_id"], "source_file": file_name, "when": when, "birth_date": birth,
        "sex": sex, "ethnicity_group": ethnicity, "practice_id": practice,
        "deprivation_decile": deprivation, "death_date": death, "age": age,
    })


def _most_recent(rows: pd.DataFrame, column: str, summary: ImportSummary) -> pd.Series:
    """Per person, the value of the most recent row where ``column`` is known; counts disagreements."""
    known = rows[rows[column].notna()]
    distinct = known.groupby("source_id")[column].nunique()
    if (distinct > 1).any():
        summary.conflicts[column] = int((distinct > 1).sum())
    # rows are sorted by (source_id, when); the last known value is the most recent one.
    return known.groupby("source_id")[column].last()


def _persons(rows: pd.DataFrame, summary: ImportSummary) -> pd.DataFrame:
    rows = rows.sort_values(["source_id", "when"], kind="stable", na_position="first")
    people = pd.DataFrame(index=pd.Index(rows["source_id"].unique(), name="source_id"))
    first_file = rows.groupby("source_id")["source_file"].first()
    for column in ("birth_date", "sex", "ethnicity_group", "practice_id", "deprivation_decile", "death_date"):
        people[column] = _most_recent(rows, column, summary).reindex(people.index)
    # No MYDOB: estimate from the age at the most recent event with one.
    aged = rows[rows["age"].notna() & rows["when"].notna()]
    aged = aged.groupby("source_id").last()
    estimate = (aged["when"] - pd.to_timedelta((aged["age"] * 365.25 + 182).round(), unit="D"))
    estimate = estimate.dt.to_period("M").dt.to_timestamp().astype("datetime64[s]")
    needs = people["birth_date"].isna()
    filled = needs & people.index.isin(estimate.index)
    people.loc[filled, "birth_date"] = estimate.reindex(people.index)[filled]
    if filled.any():
        summary.note(f"{int(filled.sum()):,} people without a readable MYDOB: birth date estimated from the age at "
                     "their most recent attendance (to the month)")
    impossible = people["death_date"] < people["birth_date"]
    if impossible.any():
        # Records that disagree this much cannot both be right; the events stay, the death goes.
        summary.conflicts["death_date before birth_date (death left blank)"] = int(impossible.sum())
        people.loc[impossible, "death_date"] = pd.NaT
    no_birth = people["birth_date"].isna()
    summary.drop("people with no MYDOB and no age (no birth date)", int(no_birth.sum()))
    people = people[~no_birth]
    no_practice = int(people["practice_id"].isna().sum())
    if no_practice:
        summary.note(f"{no_practice:,} people with no registered practice (GPPRAC blank or a dummy code "
                     f"{'/'.join(DUMMY_PRACTICES[:3])}): practice_id left blank")
    out = pd.DataFrame({
        "source_id": people.index.to_numpy(),
        "source_file": first_file.reindex(people.index).to_numpy(),
        "birth_date": people["birth_date"].astype("datetime64[s]").to_numpy(),
        "sex": people["sex"].fillna("unknown").to_numpy(),
        "deprivation_decile": pd.array(people["deprivation_decile"].to_numpy(dtype=float), dtype="Float64"
                                       ).astype("Int16"),
        "ethnicity_group": people["ethnicity_group"].fillna("unknown").to_numpy(),
        "practice_id": people["practice_id"].astype("string").to_numpy(),
        "death_date": people["death_date"].astype("datetime64[s]").to_numpy(),
    })
    return out
