"""Keyed pseudonyms, the pseudonymisation key, and matching ids (opt-outs, lookups) to them.

Source identifiers (Synthea or OMOP person ids, NHS numbers) are replaced by
HMAC-SHA256(key, id) truncated to 16 hex characters. Without the key nobody can link a pseudonym
back to a source id, and the same key gives the same pseudonyms on every run (reruns identical).

A key is created only on request (:func:`init_pseudonym_key`, ``riskstrat key init``): a key made
silently would give next month's data other pseudonyms, and every opt-out list and practice lookup
would stop matching without a word. Data sets record the key's fingerprint (never the key) in
dataset.json, so that data pseudonymised under another key are refused (:func:`check_key_matches`).

Ids from outside (opt-out files, practice lookups, last month's lists) and the data's own ids are
compared in one canonical form, :func:`canonical_ids`, applied to both sides: Unicode NFKC
(fullwidth digits and letters become plain ones, a non-breaking space a space), invisible characters
removed (format characters, Unicode category Cf: zero-width spaces, byte-order marks, word joiners,
soft hyphens; and the other default-ignorable code points: variation selectors, the combining
grapheme joiner, Hangul fillers), the braille blank taken as a space, surrounding whitespace
removed, lower case (pseudonyms are hex). Ids that still match no one are shown masked
(:func:`mask_id`), never in full; when the data's ids are all pseudonyms, an opt-out id that is not
one is a refusal (:func:`check_opt_out_match`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import os
import re
import secrets
import stat
import unicodedata
import warnings
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from riskstrat.errors import RiskstratError
from riskstrat.data.io import NotAFileError, dataset_metadata, read_user_bytes

KEY_ENV = "RISKSTRAT_PSEUDONYM_KEY"
DEFAULT_KEY_FILE = Path(".riskstrat") / "pseudonym.key"
FINGERPRINT_FIELD = "pseudonym_key_fingerprint"
ID_COLUMNS = ("person_id", "pseudonym", "id")
PSEUDONYM_LENGTH = 16  # hex characters of HMAC-SHA256 kept (:func:`pseudonymise`)
PSEUDONYM_PATTERN = f"^[0-9a-f]{{{PSEUDONYM_LENGTH}}}$"  # a pseudonym in canonical form


class PseudonymKeyError(RiskstratError):
    """No usable pseudonymisation key, or data pseudonymised under another key."""


class OptOutError(RiskstratError):
    """An opt-out file that cannot be used as it is; the message says what to do."""


class ReidentificationLookupError(RiskstratError):
    """A practice's re-identification look-up file that cannot be used; the message names it."""


class PseudonymKeyWarning(UserWarning):
    """The key file can be read by others than its owner (the CLI shows riskstrat's own warnings)."""


# ----------------------------------------------------------------------------- canonical ids


def canonical_ids(ids) -> pd.Series:
    """Ids in the one form they are compared in (:func:`canonical_id`, value by value); missing and
    empty stay missing. Plain ASCII ids already in that form (the data's own pseudonyms) are
    recognised at once by Arrow and kept as they are: only the others go through Python.

    >>> canonical_ids(pd.Series(["\\ufeff AB12cd\\u200b ", "\\uff21\\uff22\\u00a0", None])).tolist()
    ['ab12cd', 'ab', nan]
    """
    ids = ids if isinstance(ids, pd.Series) else pd.Series(list(ids), dtype=object)
    text = ids.astype(object).where(ids.notna())
    done = _already_canonical(text)  # most ids (the data's own pseudonyms): checked at once, kept as they are
    out = text.copy()
    rest = ~done & text.notna().to_numpy()
    out[rest] = text[rest].map(canonical_id)
    return out.where(out.notna() & (out != ""))


def canonical_id(value) -> str:
    """One id in canonical form: NFKC, invisible characters removed (format characters, category
    Cf: zero-width spaces, BOM, word joiner, soft hyphen; and the other default-ignorable code
    points: variation selectors, the combining grapheme joiner, Hangul fillers), the braille blank
    taken as a space, surrounding whitespace removed, lower case.

    >>> canonical_id("\\u00a0\\uff10A\\u200bB\\u00ad\\ufe0f\\u2800")
    '0ab'
    """
    # Invisible characters go before NFKC (one between two letters would stop them composing) and
    # after it (NFKC turns the Hangul filler U+3164 into U+1160); lower case can leave text NFKC
    # would change, so it is normalised once more.
    text = unicodedata.normalize("NFKC", _without_invisible_characters(str(value)))
    text = unicodedata.normalize("NFKC", _without_invisible_characters(text).lower())
    return text.strip()


def _without_invisible_characters(text: str) -> str:
    """``text`` without invisible characters (:func:`_invisible_characters`), the braille blank
    as a space; ASCII holds none."""
    if text.isascii() or _invisible_characters().isdisjoint(text):  # most ids: a check in C, no copy
        return text
    return text.translate(_invisible_table())


# Default-ignorable code points that are not format characters (Cf): Unicode's
# DerivedCoreProperties.txt, property Default_Ignorable_Code_Point (Unicode 15.1/16.0;
# https://www.unicode.org/Public/UCD/latest/ucd/DerivedCoreProperties.txt). They show as nothing,
# so an id pasted from a web page, an emoji keyboard or a chat can carry them unseen. (The rest of
# that list is Cf, all removed anyway; so are the few visible Cf characters, such as U+0600, which
# no id holds.) Reserved (Cn) ranges are included: Unicode keeps them default-ignorable for good.
_IGNORABLE_NOT_FORMAT = (
    (0x034F, 0x034F),  # combining grapheme joiner (Mn)
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers (Lo)
    (0x17B4, 0x17B5),  # Khmer inherent vowels aq, aa (Mn)
    (0x180B, 0x180D),  # Mongolian free variation selectors one to three (Mn)
    (0x180F, 0x180F),  # Mongolian free variation selector four (Mn)
    (0x2065, 0x2065),  # reserved (Cn)
    (0x3164, 0x3164),  # Hangul filler (Lo)
    (0xFE00, 0xFE0F),  # variation selectors 1-16 (Mn; U+FE0F asks for emoji style)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler (Lo)
    (0xFFF0, 0xFFF8),  # reserved (Cn)
    (0xE0000, 0xE0000), (0xE0002, 0xE001F), (0xE0080, 0xE00FF),  # reserved in the tags block (Cn)
    (0xE0100, 0xE01EF),  # variation selectors 17-256 (Mn)
    (0xE01F0, 0xE0FFF),  # reserved (Cn)
)
# Looks blank, but is neither whitespace (str.strip keeps it) nor default-ignorable: taken as a space,
# so it is stripped around an id and is "a space inside it" within one.
_BLANK_LOOKING = {0x2800: " "}  # braille pattern blank

# The planes that hold format characters: the Basic Multilingual Plane, the Supplementary
# Multilingual Plane and the tags (plane 14); the rest hold ideographs, private use or nothing yet.
# Scanning these three takes a tenth of the time of all 1.1 million code points (a test holds them equal).
_FORMAT_PLANES = (range(0x0, 0x20000), range(0xE0000, 0xE1000))


@functools.cache
def _format_characters() -> frozenset[str]:
    """Every format character (Unicode category Cf)."""
    return frozenset(chr(c) for plane in _FORMAT_PLANES for c in plane if unicodedata.category(chr(c)) == "Cf")


@functools.cache
def _invisible_characters() -> frozenset[str]:
    """What :func:`canonical_id` removes or turns into a space: format characters (Cf), the other
    default-ignorable code points, and the braille blank."""
    others = (chr(c) for first, last in _IGNORABLE_NOT_FORMAT for c in range(first, last + 1))
    return _format_characters() | frozenset(others) | frozenset(map(chr, _BLANK_LOOKING))


@functools.cache
def _invisible_table() -> dict[int, str | None]:
    """:meth:`str.translate`'s table for :func:`_without_invisible_characters`."""
    return {**dict.fromkeys(map(ord, _invisible_characters())), **_BLANK_LOOKING}


# Characters Python's str.strip() removes from ASCII text (str.isspace), as a pattern for Arrow.
_ASCII_SPACE = r"[\t\n\x0b\x0c\r \x1c-\x1f]"


def _already_canonical(text: pd.Series) -> np.ndarray:
    """True where a value is text that :func:`canonical_ids` leaves as it is: ASCII (which NFKC
    keeps and which holds no format character), no capital letter, nothing for ``strip`` to
    remove, not empty (checked by Arrow, not per value in Python)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values = pa.array(text, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text (numbers): the careful path for all
        return np.zeros(len(text), dtype=bool)
    changed = pc.match_substring_regex(values, f"[A-Z]|^{_ASCII_SPACE}|{_ASCII_SPACE}$")
    same = pc.and_(pc.and_(pc.string_is_ascii(values), pc.invert(changed)), pc.greater(pc.binary_length(values), 0))
    return same.fill_null(False).to_numpy(zero_copy_only=False)


def _checked_canonical(ids) -> tuple[pd.Series, pd.Series]:
    """The distinct ids as text and their canonical forms (same positions); refuses ids that
    differ only in case, spaces or invisible characters (they would be the same person to an opt-out)."""
    ids = pd.Series(pd.unique(pd.Series(ids).dropna().astype(str)), dtype=object)
    canon = canonical_ids(ids)
    if canon.equals(ids):  # every id already canonical (a pseudonymised data set): distinct, no clash
        return ids, canon
    clash = canon.duplicated(keep=False) & canon.notna()
    if clash.any():
        raise PseudonymKeyError(
            f"{int(clash.sum())} person ids in the data differ only in case, spaces or invisible characters "
            f"(e.g. {', '.join(mask_id(i) for i in ids[clash].head(3))}); opt-outs cannot be matched safely. "
            f"Re-import the data with one form of each id")
    return ids, canon


def canonical_lookup(ids) -> dict[str, str]:
    """Canonical id -> the id as written in the data, for matching outside ids to ``ids``.

    Refuses ids that differ only in case, spaces or invisible characters (they would be the same
    person to an opt-out).
    """
    ids, canon = _checked_canonical(ids)
    return dict(zip(canon, ids))


def mask_id(value) -> str:
    """An id shown without giving it away: its first and last two characters (one each when it
    has fewer than 10, none below 5) and its length. Characters that would not print are shown
    as their code point.

    >>> mask_id("0a1b2c3d4e5f6071")
    '0a…71 (16 chars)'
    """
    text = str(value)
    keep = 2 if len(text) >= 10 else 1 if len(text) >= 5 else 0
    shown = "".join(c if c.isprintable() else f"<U+{ord(c):04X}>"
                    for c in (text[:keep] + "…" + text[len(text) - keep:] if keep else "…"))
    return f"{shown} ({len(text)} chars)"


# Characters that an id never holds and a paste often brings: quotes and separators, and brackets.
_PASTE_MARKS = set("\"'`;|\u2018\u2019\u201c\u201d")
_BRACKETS = set("()[]{}<>")


def paste_error(canonical: str) -> str | None:
    """What in an id (in canonical form) suggests a paste error, or None: whitespace inside it,
    characters that do not print (controls, line separators, private-use or unassigned code
    points), quotes, separators (a comma: several ids on one line), brackets, or punctuation at
    its start or end (a full stop typed after it).

    >>> paste_error("ab12 cd34"), paste_error("ab12cd34"), paste_error("ab12,cd34"), paste_error("ab12cd34.")
    ('a space inside it', None, 'a comma inside it (several ids on one line?)', 'punctuation at its end (.)')
    """
    for c in canonical:
        if c.isspace():
            return "a space inside it" if c == " " else f"whitespace inside it (U+{ord(c):04X})"
        if not c.isprintable():
            return f"a character that does not print (U+{ord(c):04X})"
        if c == ",":
            return "a comma inside it (several ids on one line?)"
        if c in _PASTE_MARKS:
            return f"a quote or separator ({c})"
        if c in _BRACKETS:
            return f"a bracket ({c})"
    for at, end in ((-1, "end"), (0, "start")):
        if canonical and unicodedata.category(canonical[at])[0] in "PS":  # punctuation or a symbol
            return f"punctuation at its {end} ({canonical[at]})"
    return None


_SOURCE_ID = re.compile(r"[0-9a-z]+(?:-[0-9a-z]+)*")  # digits (an NHS number), a UUID, a record number


def opt_out_id_error(canonical: str, *, pseudonyms: bool) -> str | None:
    """Why an opt-out id (in canonical form) that matched no one cannot be right as written, or
    None: a paste error (:func:`paste_error`), or, when the data's ids are all pseudonyms
    (``pseudonyms``), not a pseudonym's shape (16 lower-case hex characters).

    >>> opt_out_id_error("9434765919", pseudonyms=True)
    'looks like a source id (10 characters), not a pseudonym'
    """
    why = paste_error(canonical)
    if why or not pseudonyms or re.fullmatch(PSEUDONYM_PATTERN, canonical):
        return why
    if re.fullmatch("[0-9a-f]+", canonical) and not canonical.isdigit():
        return f"{len(canonical)} hex characters where a pseudonym has {PSEUDONYM_LENGTH} (one lost or added?)"
    if _SOURCE_ID.fullmatch(canonical):
        return f"looks like a source id ({len(canonical)} characters), not a pseudonym"
    return f"not a pseudonym ({PSEUDONYM_LENGTH} hex characters)"


def are_pseudonyms(ids: pd.Series) -> bool:
    """True when every id (text, none missing) has a pseudonym's form: 16 lower-case hex
    characters, as :func:`pseudonymise` writes them (checked by Arrow: 0.07 s for 1M ids held as
    ``str``, 0.2 s as objects)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(ids.dtype, pd.CategoricalDtype):  # each distinct id once
        ids = pd.Series(ids.cat.remove_unused_categories().cat.categories)
    if not len(ids):
        return False
    for part in (ids.iloc[:1000], ids):  # a data set of other ids usually shows it in its first rows
        try:
            values = pa.array(part, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text
            return False
        if not pc.all(pc.match_substring_regex(values, PSEUDONYM_PATTERN)).as_py():
            return False
    return True


class OptOutMatch(NamedTuple):
    """Opt-out ids matched to the data: the data's ids they name (as written there), the ids
    (canonical, sorted) that matched no one, and whether every id in the data is a pseudonym
    (:func:`are_pseudonyms`; only looked at when some id matched no one, else False)."""

    matched: set[str]
    unmatched: list[str]
    pseudonyms: bool = False


def match_opt_outs(person_ids, opt_out_ids) -> OptOutMatch:
    """The data's ids (as written there) that an opt-out file names, and the file's ids that
    matched nobody, both sides in canonical form (:func:`canonical_ids`). Refuses data whose ids
    differ only in case, spaces or invisible characters, as :func:`canonical_lookup` does.

    >>> match_opt_outs(["ab12", "cd34"], {"AB12\\u200b ", "ffff"})
    OptOutMatch(matched={'ab12'}, unmatched=['ffff'], pseudonyms=False)
    """
    ids, canon = _checked_canonical(person_ids)
    wanted = set(canonical_ids(pd.Series(sorted(map(str, opt_out_ids)), dtype=object)).dropna())
    hit = canon.isin(wanted).to_numpy() if wanted else np.zeros(len(ids), dtype=bool)
    found = set(canon[hit])
    unmatched = sorted(wanted - found)
    # The ids as the data hold them (a str column is read by Arrow without a copy): pseudonyms are
    # already in canonical form, so a data set of pseudonyms passes either way.
    written = person_ids if isinstance(person_ids, pd.Series) else pd.Series(list(person_ids), dtype=object)
    return OptOutMatch(set(ids[hit]), unmatched, bool(unmatched) and are_pseudonyms(written.dropna()))


def check_opt_out_match(match: OptOutMatch, n_ids: int, *, file, lines: Mapping[str, Sequence[int]] | None = None,
                        allow_unmatched: bool = False, examples: int = 3) -> str | None:
    """Apply the rule for opt-out ids that match no one; returns a warning to show (None if every
    id matched) or raises :class:`OptOutError`.

    The rule: people who opted out may since have left the population (moved, died, deregistered),
    so some ids matching no one is normal and only a warning. It is a refusal, unless
    ``allow_unmatched``, when

    - an id that matches no one cannot be right as written (:func:`opt_out_id_error`): it still
      looks mis-pasted after normalisation (whitespace inside it, a character that does not print,
      quotes, a comma: several ids on one line, brackets, punctuation at its end), or the data's
      ids are all pseudonyms and it is not one (a source id such as an NHS number, or a pseudonym
      cut short): that person is most likely in the data and would be scored and listed; or
    - none of the ``n_ids`` ids matches anyone (a file pseudonymised with another key, or the
      wrong file).

    Messages name the file, the lines (``lines``: canonical id -> line numbers, as
    :meth:`OptOutIds.line_numbers` gives them) and the first ``examples`` ids, masked
    (:func:`mask_id`), never in full.
    """
    if not match.unmatched:
        return None
    lines = lines or {}
    wrong = [(i, why) for i in match.unmatched if (why := opt_out_id_error(i, pseudonyms=match.pseudonyms))]
    allow = "If the file is right, publish with allow_unmatched_opt_outs=true (--allow-unmatched-opt-outs)"
    if wrong and not allow_unmatched:
        wrong.sort(key=lambda w: min(lines.get(w[0]) or [float("inf")]))  # in file order where known
        on = sorted({n for i, _ in wrong for n in lines.get(i, ())})
        shown = "; ".join(f"{_on_lines(lines.get(i))}{mask_id(i)}: {why}" for i, why in wrong[:examples])
        source = [i for i, why in wrong if "source id" in why]
        what = ("are not pseudonyms" if len(source) == len(wrong) else
                "look mis-pasted or are not pseudonyms" if source else "look mis-pasted")
        correct = (f"Correct line{'s' if len(on) > 1 else ''} {_numbers(on)} (one id per line, nothing else on it)"
                   if on else "Correct them (one id per line, nothing else on it)")
        pseudonymise_them = (
            " Ids that look like source ids (NHS numbers, the source system's ids) must be pseudonymised with the "
            "key the data were imported with (the one `riskstrat key fingerprint` shows; each id becomes "
            "HMAC-SHA256(key, id), its first 16 hex characters, as riskstrat.data.privacy.pseudonymise makes them: "
            "riskstrat has no command for it yet)." if source else "")
        raise OptOutError(
            f"{len(wrong):,} of the {n_ids:,} ids in the opt-out file {file} match no one and {what} (e.g. {shown}): "
            f"the people they were meant to name would be scored and listed. Nothing was published. {correct} and "
            f"run again.{pseudonymise_them} {allow}")
    shown = ", ".join(mask_id(i) for i in match.unmatched[:examples])
    more = f" and {len(match.unmatched) - examples:,} more" if len(match.unmatched) > examples else ""
    if not match.matched and not allow_unmatched:
        raise OptOutError(
            f"none of the {n_ids:,} ids in the opt-out file {file} matches anyone in the data (e.g. {shown}{more}): "
            f"usually the file was pseudonymised with another key, or it is the wrong file. Nothing was "
            f"published. {allow}")
    allowed = (f"; {len(wrong):,} of them look mis-pasted or are not pseudonyms (kept out of the match, as "
               f"allow_unmatched_opt_outs allows)" if wrong else "")
    return (f"{len(match.unmatched):,} of {n_ids:,} opt-out ids in {file} match no one in the data "
            f"({shown}{more}); usually people who have left the population since they opted out{allowed}")


def _numbers(numbers: Sequence[int], most: int = 10) -> str:
    """'2, 3, 9' (and how many more beyond ``most``)."""
    more = f" and {len(numbers) - most:,} more" if len(numbers) > most else ""
    return ", ".join(map(str, numbers[:most])) + more


def _on_lines(numbers: Sequence[int] | None) -> str:
    return f"line{'s' if len(numbers) > 1 else ''} {_numbers(list(numbers), 3)}: " if numbers else ""


class OptOutIds(frozenset):
    """The ids of an opt-out file in canonical form (a frozenset of text), remembering the lines
    they were read from (:meth:`line_numbers`)."""

    def __new__(cls, by_line: pd.Series | Iterable[str] = ()):
        """``by_line``: canonical ids (missing where a line holds none) indexed by line number; or
        just ids (their lines not known)."""
        if not isinstance(by_line, pd.Series):
            ids = list(by_line)
            by_line = pd.Series(ids, index=np.zeros(len(ids), dtype=int), dtype=object)
        self = super().__new__(cls, by_line.dropna())
        self._by_line = by_line.dropna()
        return self

    def __reduce__(self):  # pickled with its lines
        return type(self), (self._by_line,)

    def line_numbers(self, ids: Iterable[str]) -> dict[str, list[int]]:
        """The lines (counted from 1; for a CSV, the physical lines of its rows) holding each of ``ids``."""
        ids = set(ids)
        held = self._by_line[self._by_line.isin(ids) & (self._by_line.index > 0)] if ids else self._by_line.iloc[:0]
        return {i: [int(n) for n in numbers] for i, numbers in held.index.groupby(held.to_numpy()).items()}


def read_opt_outs(path, *, allow_empty: bool = False) -> OptOutIds:
    """Pseudonymised ids from a file, in canonical form (an :class:`OptOutIds`, which remembers
    their line numbers): one per line, or a CSV with a ``person_id`` (or ``pseudonym`` / ``id``)
    column. Blank lines and lines starting with ``#`` are ignored. UTF-8 (with or without a
    byte-order mark) or UTF-16 with a byte-order mark.

    A one-column file holds one id per line: a line with a comma is not read as two ids but kept
    as one, which matches no one and is refused as mis-pasted (:func:`check_opt_out_match`, naming
    the line). A CSV row with more fields than its header is refused here, naming the lines.

    A file with no id at all (0 bytes, or only blank or comment lines, or a CSV header only) is
    refused (:class:`OptOutError`) unless ``allow_empty``: an opt-out list that was truncated or
    never written must not publish lists as if no one had opted out.
    """
    path = Path(path)
    if path.is_dir():
        raise OptOutError(f"{path}: the opt-out file is a folder; give the file inside it (one pseudonymised "
                          f"id per line, or a CSV with a person_id column)")
    if not path.exists():
        raise OptOutError(f"{path}: opt-out file not found; check opt_out_file in the configuration")
    text = _read_text(path, what="opt-out file", error=OptOutError)
    lines = text.splitlines()
    canon = canonical_ids(pd.Series(lines, dtype=object))
    canon.index = pd.RangeIndex(1, len(lines) + 1)  # line numbers
    kept = canon.notna() & ~canon.fillna("").str.startswith("#")  # blank lines are missing in canon
    first = next(iter(canon[kept]), "")
    if first in ID_COLUMNS or "," in first:
        by_line = _csv_opt_outs(path, lines, canon.index[kept])
    else:
        by_line = canon[kept]
    ids = OptOutIds(by_line)
    if not ids and not allow_empty:
        holds = "it is empty" if not text.strip() else "only blank lines, comments or a header"
        raise OptOutError(
            f"{path}: the opt-out file holds no ids ({holds}). "
            f"An opt-out list that was cut short or never written would publish lists as if no one had opted "
            f"out; nothing was published. Use the complete file, or if no one has opted out, set "
            f"allow_empty_opt_out=true (--set allow_empty_opt_out=true)")
    return ids


def _csv_opt_outs(path: Path, lines: list[str], numbers: pd.Index) -> pd.Series:
    """The canonical ids of a CSV opt-out file's id column, indexed by line number; ``numbers``
    are the lines holding the header and rows (not blank, not comments)."""
    import csv

    def unreadable(why: str) -> OptOutError:
        return OptOutError(f"{path}: the opt-out file looks like a CSV but cannot be read as one ({why}); save it as "
                           f"one id per line, or as a CSV with a person_id column")

    held = [lines[n - 1] for n in numbers]
    try:  # pandas would read a first row with one field more than the header as an index and a value
        widths = [len(row) for row in csv.reader(held)]
    except csv.Error as exc:
        raise unreadable(str(exc)) from None
    longer = [int(numbers[at]) for at, width in enumerate(widths) if at and width > widths[0]]
    if longer:
        raise OptOutError(
            f"{path}: line{'s' if len(longer) > 1 else ''} {_numbers(longer)} of the opt-out file "
            f"{'hold' if len(longer) > 1 else 'holds'} more fields "
            f"than its header ({widths[0]}): several ids on one line? Nothing was published. Put one id per row "
            f"and run again")
    try:
        frame = pd.read_csv(io.StringIO("\n".join(held)), dtype=str, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise unreadable(str(exc).strip()) from None
    column = next((c for c in frame.columns if canonical_id(c) in ID_COLUMNS), None)
    if column is None:
        header = [_column_shown(c) for c in frame.columns]
        looks = (": the first line looks like ids, not a header; give one id per line" if
                 not all(c.replace("_", "").replace(" ", "").isalpha() for c in map(str, frame.columns)) else "")
        raise OptOutError(f"{path}: a CSV opt-out file needs a person_id column; found {header}{looks}")
    ids = canonical_ids(frame[column])
    # Rows are the lines after the header, one each, unless a quoted field spans lines (then: 0, not known).
    ids.index = numbers[1:] if len(frame) == len(numbers) - 1 else np.zeros(len(frame), dtype=int)
    return ids


def _column_shown(name) -> str:
    """A column name for a message: as it is when it is a word, masked when it may be an id."""
    text = str(name)
    return text if text.replace("_", "").replace(" ", "").isalpha() else mask_id(text)


def _read_text(path: Path, *, what: str, error: type[RiskstratError], todo: str = "") -> str:
    """A text file's content: UTF-16 when it starts with a UTF-16 byte-order mark (Excel's
    "Unicode text"), else UTF-8 with or without one; refusals name the file and what to do
    (``todo`` added)."""
    try:
        raw = read_user_bytes(path, what=what)
    except NotAFileError as exc:
        raise error(f"{exc}{todo and '; or ' + todo}") from None
    except OSError as exc:
        raise error(f"{path}: the {what} cannot be read ({exc.strerror or exc}); make it readable by the user "
                    f"running riskstrat{todo and '; or ' + todo}") from None
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return raw.decode("utf-16")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 "
                    f"(CSV UTF-8 in Excel) or plain text{todo and '; or ' + todo}") from None


def read_reidentification_lookup(path) -> pd.DataFrame:
    """A practice's re-identification look-up (a CSV with ``person_id`` or ``pseudonym``, and
    ``local_id``): columns ``person_id`` and ``local_id`` as text, ids as written in the file; rows
    with a blank id are left out.

    Every refusal (:class:`ReidentificationLookupError`) names the file and what to do: unreadable,
    not UTF-8, empty, not a CSV, missing columns, or one pseudonym twice (in canonical form).
    """
    path = Path(path)
    todo = (f"ask the practice for a corrected file, or move {path.name} out of {path.parent} (its list is then "
            f"published without local ids)")
    if path.is_dir():
        raise ReidentificationLookupError(f"{path}: a re-identification look-up is a folder, not a CSV file; {todo}")
    text = _read_text(path, what="re-identification look-up", error=ReidentificationLookupError, todo=todo)
    if not text.strip():
        raise ReidentificationLookupError(f"{path}: the re-identification look-up is empty; {todo}")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ReidentificationLookupError(f"{path}: the re-identification look-up is not a readable CSV "
                                          f"({str(exc).strip()}); {todo}") from None
    names = {canonical_id(c): c for c in frame.columns}
    key = next((names[c] for c in ("person_id", "pseudonym") if c in names), None)
    if key is None or "local_id" not in names:
        raise ReidentificationLookupError(
            f"{path}: the re-identification look-up needs columns person_id (or pseudonym) and local_id; found "
            f"{[_column_shown(c) for c in frame.columns]}; {todo}")
    out = pd.DataFrame({"person_id": frame[key].astype(object), "local_id": frame[names["local_id"]].astype(object)})
    out = out.loc[canonical_ids(out["person_id"]).notna()].reset_index(drop=True)  # rows naming no one (blank ids)
    twice = canonical_ids(out["person_id"])
    twice = twice.notna() & twice.duplicated(keep=False)
    if twice.any():
        rows = ", ".join(str(r + 1) for r in np.flatnonzero(twice.to_numpy())[:5])
        raise ReidentificationLookupError(
            f"{path}: the re-identification look-up has one pseudonym on more than one row ({int(twice.sum())} "
            f"rows: data rows {rows}{', ...' if twice.sum() > 5 else ''} below the header; case, spaces and "
            f"invisible characters do not count): which local id is right cannot be known; {todo}")
    return out


# ----------------------------------------------------------------------------- the key


def _key_places(key_file) -> str:
    path = Path(key_file) if key_file else DEFAULT_KEY_FILE
    return f"${KEY_ENV}, else the key file {path.absolute()}"


def load_pseudonym_key(key_file: str | Path | None = None) -> bytes:
    """The pseudonymisation key: ``$RISKSTRAT_PSEUDONYM_KEY``, else ``key_file`` (default
    ``.riskstrat/pseudonym.key`` under the working directory).

    Raises :class:`PseudonymKeyError`, saying where the key is looked for, when the variable is set
    but empty, the file is empty, or there is no key: create one with ``riskstrat key init`` (once;
    keep it secret and keep it: the same key gives the same pseudonyms next month). The key file's
    permissions are checked first (:func:`check_key_file_permissions`).
    """
    env = os.environ.get(KEY_ENV)
    if env is not None:
        if not env.strip():
            raise PseudonymKeyError(f"${KEY_ENV} is set but empty: set it to the key, or unset it to use the key "
                                    f"file {(Path(key_file) if key_file else DEFAULT_KEY_FILE).absolute()}")
        # Surrounding whitespace (a secret mounted with a trailing newline) is dropped, as from a key file:
        # one key, wherever it is kept, gives the same pseudonyms.
        return env.strip().encode()
    path = Path(key_file) if key_file else DEFAULT_KEY_FILE
    if path.is_file():
        check_key_file_permissions(path)
        try:
            key = path.read_bytes().decode("utf-8").strip()
        except OSError as exc:
            raise PseudonymKeyError(f"{path.absolute()}: the key file cannot be read ({exc.strerror or exc}); make it "
                                    f"readable by the user running riskstrat (and by no one else: chmod 600)") from None
        except UnicodeDecodeError as exc:
            raise PseudonymKeyError(
                f"{path.absolute()}: the key file is not text (byte {exc.start} is not UTF-8): a key made by "
                f"`riskstrat key init` is 64 hex characters on one line. Restore the key file from its backup (its "
                f"fingerprint must match dataset.json's pseudonym_key_fingerprint)") from None
        if not key:
            raise PseudonymKeyError(f"{path.absolute()}: the key file is empty (keys are looked for in "
                                    f"{_key_places(key_file)})")
        return key.encode()
    raise PseudonymKeyError(f"no pseudonymisation key: looked for {_key_places(key_file)}. Create one once with "
                            f"`riskstrat key init` (or set {KEY_ENV}); use the same key every month")


def check_key_file_permissions(path) -> None:
    """Refuse a key file others could replace, warn about one others can read (POSIX only).

    The file's real place is checked (links resolved, :func:`os.path.realpath`). Refuses
    (:class:`PseudonymKeyError`) a key file anyone may write to, or one reached through a folder
    anyone may write to without the sticky bit: the folder holding it, any folder above it, or a
    folder holding a link on the way (anyone could put another key, or another link, in its place,
    and every pseudonym would silently change). Warns (:class:`PseudonymKeyWarning`) when the
    group or others can read or write it: whoever reads the key can link pseudonyms back to the
    source ids. The fix either way: ``chmod 600 FILE``, as ``riskstrat key init`` creates it.
    """
    if os.name != "posix":  # Windows' ACLs are not mode bits
        return
    path = Path(path)
    real = Path(os.path.realpath(path))
    shown = _shown_key_path(path, real)
    mode = stat.S_IMODE(real.stat().st_mode)
    fix = f"chmod 600 {real}"
    if mode & stat.S_IWOTH:
        raise PseudonymKeyError(
            f"{shown}: the pseudonymisation key file can be written by everyone (mode {mode:04o}): anyone "
            f"could replace the key and change every pseudonym. Make it private with `{fix}` and check it is the "
            f"key you made (`riskstrat key fingerprint` against dataset.json's pseudonym_key_fingerprint)")
    _check_key_folder(path)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(PseudonymKeyWarning(
            f"{shown}: the pseudonymisation key file can be read or written by others than its owner "
            f"(mode {mode:04o}); whoever reads the key can link pseudonyms back to the source ids. Run `{fix}`"),
            stacklevel=3)


def _shown_key_path(path: Path, real: Path) -> str:
    return f"{path.absolute()}" if real == path.absolute() else f"{path.absolute()} (a link to {real})"


def _check_key_folder(path: Path) -> None:
    """Refuse a key file reached through a folder anyone may write to without the sticky bit
    (POSIX only): every folder from the file's real place up to /, and every folder on the path as
    written (a link in one of them could be replaced)."""
    if os.name != "posix":
        return
    path = Path(path)
    real = Path(os.path.realpath(path))
    # The written path's folders are followed by stat (a link on the way shows its target's mode);
    # the real path's folders are what the file sits in. Both up to /.
    folders = dict.fromkeys([*real.parents, *path.absolute().parents, *Path(os.path.realpath(path.parent)).parents,
                             Path(os.path.realpath(path.parent))])
    for folder in folders:
        try:
            folder_mode = folder.stat().st_mode
        except OSError:  # not there (yet: init makes it): nothing can be planted in it by others
            continue
        if folder_mode & stat.S_IWOTH and not folder_mode & stat.S_ISVTX:
            held = "holding" if folder == real.parent else "on the way to"
            raise PseudonymKeyError(
                f"{_shown_key_path(path, real)}: the folder {held} the pseudonymisation key, {folder}, can be "
                f"written by everyone (mode {stat.S_IMODE(folder_mode):04o}, no sticky bit): anyone could put another "
                f"key in its place. "
                f"Run `chmod o-w {folder}` (or move the key to a private folder) and `chmod 600 {real}`")


def configured_key(key_file: str | Path | None = None) -> bytes | None:
    """The key if one is configured (see :func:`load_pseudonym_key`), None if none is; a key set
    but empty is still an error."""
    if os.environ.get(KEY_ENV) is None and not (Path(key_file) if key_file else DEFAULT_KEY_FILE).exists():
        return None
    return load_pseudonym_key(key_file)


def init_pseudonym_key(key_file: str | Path | None = None) -> Path:
    """Create a random key file readable by its owner only (mode 0600; a folder it makes, 0700);
    never overwrites one, and refuses a folder anyone may write to (:func:`check_key_file_permissions`)."""
    path = Path(key_file) if key_file else DEFAULT_KEY_FILE
    if path.exists():
        raise PseudonymKeyError(f"{path.absolute()} already exists: a new key would change every pseudonym; "
                                f"keep the key you have (delete the file yourself only if you mean to start over)")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a folder it makes: its owner's only
    _check_key_folder(path)  # a key others could replace would not be used: do not make one
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PseudonymKeyError(f"{path.absolute()} already exists; keep the key you have") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    os.chmod(path, 0o600)  # whatever the umask
    return path


def key_fingerprint(key: bytes) -> str:
    """A fingerprint that tells keys apart without revealing them: 16 hex of SHA-256 of
    HMAC(key, "riskstrat-fingerprint")."""
    mac = hmac.new(key, b"riskstrat-fingerprint", hashlib.sha256).digest()
    return hashlib.sha256(mac).hexdigest()[:16]


def check_key_matches(data_dir, *, key_file: str | Path | None = None, matches_ids: bool = False) -> str | None:
    """Refuse a data set pseudonymised under another key than the configured one.

    Compares dataset.json's ``pseudonym_key_fingerprint`` with the configured key's (when both
    exist) and returns the data set's fingerprint (None when it has none).

    A data set that records no fingerprint (made by hand, or by an older version) cannot be checked.
    When ids made with the key will be matched against it (``matches_ids``: an opt-out file or
    practice look-ups), that is a refusal (:class:`PseudonymKeyError`): an opt-out list that matched
    nobody because of another key would publish the people who opted out. Otherwise a warning. The
    built-in synthetic population (``generator: riskstrat.data.synth``) has no key: nothing to check.
    """
    meta = dataset_metadata(data_dir)
    recorded = meta.get(FINGERPRINT_FIELD)
    if not recorded:
        if meta.get("generator") == "riskstrat.synth" or not Path(data_dir).is_dir():
            # Synthetic: no key. No folder: nothing to check (reading the data says so, naming it).
            return None
        said = (f"{data_dir} records no pseudonymisation key fingerprint ({FINGERPRINT_FIELD} in its "
                f"dataset.json: made by hand or by an older version), so riskstrat cannot check that its ids were "
                f"made with the configured key")
        if matches_ids:
            raise PseudonymKeyError(
                f"{said}, and opt-out or look-up ids made with that key are to be matched against them. Import the "
                f"data with `riskstrat import` (which records it), or, if you know they were pseudonymised with this "
                f"key, add \"{FINGERPRINT_FIELD}\": \"<the output of riskstrat key fingerprint>\" to its dataset.json")
        warnings.warn(f"{said}; `riskstrat import` records it", PseudonymKeyWarning, stacklevel=2)
        return None
    key = configured_key(key_file)
    if key is not None and key_fingerprint(key) != recorded:
        raise PseudonymKeyError(
            f"{data_dir} was pseudonymised under another key (fingerprint {recorded}) than the one configured "
            f"(fingerprint {key_fingerprint(key)}, from {_key_places(key_file)}): its ids would not match opt-out "
            f"files or practice lookups made with this key. Use the key the data were imported with, or re-import "
            f"(a key is used without surrounding spaces or newlines, from ${KEY_ENV} and from a file alike)")
    return recorded


def pseudonymise(ids: pd.Series, key: bytes) -> pd.Series:
    """Replace each id by its keyed pseudonym (16 hex characters); missing ids stay missing.

    >>> pseudonymise(pd.Series(["a", "a", "b"]), b"k").nunique()
    2
    """
    if not key:
        raise PseudonymKeyError("the pseudonymisation key is empty")
    uniques = pd.unique(ids.dropna().astype(str))
    mapping = {u: hmac.new(key, u.encode(), hashlib.sha256).hexdigest()[:16] for u in uniques}
    return ids.map(mapping).astype("string")
