"""Keyed pseudonyms, the pseudonymisation key, and matching ids (opt-outs, lookups) to them.

Source identifiers (Synthea or OMOP person ids, NHS numbers) are replaced by
HMAC-SHA256(key, id) truncated to 16 hex characters. Without the key nobody can link a pseudonym
back to a source id, and the same key gives the same pseudonyms on every run (reruns identical).

A key is created only on request (:func:`init_pseudonym_key`, ``riskstrat key init``): a key made
silently would give next month's data other pseudonyms, and every opt-out list and practice lookup
would stop matching without a word. Data sets record the key's fingerprint (never the key) in
dataset.json, so that data pseudonymised under another key are refused (:func:`check_key_matches`).

Ids from outside (opt-out files, practice lookups, last month's lists) are compared in one
canonical form, :func:`canonical_ids`: surrounding whitespace and byte-order marks removed, lower
case (pseudonyms are hex).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.errors import RiskstratError

KEY_ENV = "RISKSTRAT_PSEUDONYM_KEY"
DEFAULT_KEY_FILE = Path(".riskstrat") / "pseudonym.key"
FINGERPRINT_FIELD = "pseudonym_key_fingerprint"
ID_COLUMNS = ("person_id", "pseudonym", "id")


class PseudonymKeyError(RiskstratError):
    """No usable pseudonymisation key, or data pseudonymised under another key."""


class OptOutError(RiskstratError):
    """An opt-out file that cannot be used as it is; the message says what to do."""


# ----------------------------------------------------------------------------- canonical ids


def canonical_ids(ids) -> pd.Series:
    """Ids in the one form they are compared in: text, no byte-order mark or surrounding
    whitespace, lower case. Missing stays missing.

    >>> canonical_ids(pd.Series(["\\ufeff AB12cd ", None])).tolist()
    ['ab12cd', nan]
    """
    ids = ids if isinstance(ids, pd.Series) else pd.Series(list(ids), dtype=object)
    text = ids.astype(object).where(ids.notna())
    done = _already_canonical(text)  # most ids (the data's own pseudonyms): checked at once, kept as they are
    out = text.copy()
    rest = ~done & text.notna().to_numpy()
    out[rest] = text[rest].map(lambda v: str(v).replace("\ufeff", "").strip().lower())
    return out.where(out.notna() & (out != ""))


# Characters Python's str.strip() removes from ASCII text (str.isspace), as a pattern for Arrow.
_ASCII_SPACE = r"[\t\n\x0b\x0c\r \x1c-\x1f]"


def _already_canonical(text: pd.Series) -> np.ndarray:
    """True where a value is text that :func:`canonical_ids` leaves as it is: ASCII, no capital
    letter, nothing for ``strip`` to remove, not empty (checked by Arrow, not per value in Python)."""
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
    differ only in case or spaces (they would be the same person to an opt-out)."""
    ids = pd.Series(pd.unique(pd.Series(ids).dropna().astype(str)), dtype=object)
    canon = canonical_ids(ids)
    if canon.equals(ids):  # every id already canonical (a pseudonymised data set): distinct, no clash
        return ids, canon
    clash = canon.duplicated(keep=False) & canon.notna()
    if clash.any():
        raise PseudonymKeyError(f"{int(clash.sum())} person ids in the data differ only in case or spaces "
                                f"(e.g. {', '.join(ids[clash].head(3))}); opt-outs cannot be matched safely")
    return ids, canon


def canonical_lookup(ids) -> dict[str, str]:
    """Canonical id -> the id as written in the data, for matching outside ids to ``ids``.

    Refuses ids that differ only in case or spaces (they would be the same person to an opt-out).
    """
    ids, canon = _checked_canonical(ids)
    return dict(zip(canon, ids))


def match_opt_outs(person_ids, opt_out_ids) -> tuple[set[str], int]:
    """The data's ids (as written there) that an opt-out file names, and how many of the file's
    ids matched nobody, both compared in canonical form. Refuses data whose ids differ only in
    case or spaces, as :func:`canonical_lookup` does.

    >>> match_opt_outs(["ab12", "cd34"], {"AB12 ", "ffff"})
    ({'ab12'}, 1)
    """
    ids, canon = _checked_canonical(person_ids)
    wanted = set(canonical_ids(pd.Series(sorted(map(str, opt_out_ids)), dtype=object)).dropna())
    hit = canon.isin(wanted).to_numpy() if wanted else np.zeros(len(ids), dtype=bool)
    matched = set(ids[hit])
    return matched, len(wanted) - len(matched)


def read_opt_outs(path) -> set[str]:
    """Pseudonymised ids from a file, in canonical form: one per line, or a CSV with a
    ``person_id`` (or ``pseudonym`` / ``id``) column. Blank lines are ignored."""
    path = Path(path)
    if path.is_dir():
        raise OptOutError(f"{path}: the opt-out file is a folder; give the file inside it (one pseudonymised "
                          f"id per line, or a CSV with a person_id column)")
    if not path.exists():
        raise OptOutError(f"{path}: opt-out file not found")
    try:
        text = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise OptOutError(f"{path}: the opt-out file is not UTF-8 text ({exc}); save it as UTF-8 or plain text")
    first = text[0].strip().lower() if text else ""
    if first in ID_COLUMNS or "," in first:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
        column = next((c for c in frame.columns if c.strip().lstrip("\ufeff").lower() in ID_COLUMNS), None)
        if column is None:
            raise OptOutError(f"{path}: a CSV opt-out file needs a person_id column; found {list(frame.columns)}")
        values = frame[column]
    else:
        values = pd.Series(text, dtype=object)
    return set(canonical_ids(values).dropna())


# ----------------------------------------------------------------------------- the key


def _key_places(key_file) -> str:
    path = Path(key_file) if key_file else DEFAULT_KEY_FILE
    return f"${KEY_ENV}, else the key file {path.absolute()}"


def load_pseudonym_key(key_file: str | Path | None = None) -> bytes:
    """The pseudonymisation key: ``$RISKSTRAT_PSEUDONYM_KEY``, else ``key_file`` (default
    ``.riskstrat/pseudonym.key`` under the working directory).

    Raises :class:`PseudonymKeyError`, saying where the key is looked for, when the variable is set
    but empty, the file is empty, or there is no key: create one with ``riskstrat key init`` (once;
    keep it secret and keep it: the same key gives the same pseudonyms next month).
    """
    env = os.environ.get(KEY_ENV)
    if env is not None:
        if not env.strip():
            raise PseudonymKeyError(f"${KEY_ENV} is set but empty: set it to the key, or unset it to use the key "
                                    f"file {(Path(key_file) if key_file else DEFAULT_KEY_FILE).absolute()}")
        return env.encode()
    path = Path(key_file) if key_file else DEFAULT_KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        if not key:
            raise PseudonymKeyError(f"{path.absolute()}: the key file is empty (keys are looked for in "
                                    f"{_key_places(key_file)})")
        return key.encode()
    raise PseudonymKeyError(f"no pseudonymisation key: looked for {_key_places(key_file)}. Create one once with "
                            f"`riskstrat key init` (or set {KEY_ENV}); use the same key every month")


def configured_key(key_file: str | Path | None = None) -> bytes | None:
    """The key if one is configured (see :func:`load_pseudonym_key`), None if none is; a key set
    but empty is still an error."""
    if os.environ.get(KEY_ENV) is None and not (Path(key_file) if key_file else DEFAULT_KEY_FILE).exists():
        return None
    return load_pseudonym_key(key_file)


def init_pseudonym_key(key_file: str | Path | None = None) -> Path:
    """Create a random key file readable by its owner only (mode 0600); never overwrites one."""
    path = Path(key_file) if key_file else DEFAULT_KEY_FILE
    if path.exists():
        raise PseudonymKeyError(f"{path.absolute()} already exists: a new key would change every pseudonym; "
                                f"keep the key you have (delete the file yourself only if you mean to start over)")
    path.parent.mkdir(parents=True, exist_ok=True)
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


def check_key_matches(data_dir, *, key_file: str | Path | None = None) -> str | None:
    """Refuse a data set pseudonymised under another key than the configured one.

    Compares dataset.json's ``pseudonym_key_fingerprint`` with the configured key's (when both
    exist) and returns the data set's fingerprint (None when it has none).
    """
    from riskstrat.io import dataset_metadata

    recorded = dataset_metadata(data_dir).get(FINGERPRINT_FIELD)
    if not recorded:
        return None
    key = configured_key(key_file)
    if key is not None and key_fingerprint(key) != recorded:
        raise PseudonymKeyError(
            f"{data_dir} was pseudonymised under another key (fingerprint {recorded}) than the one configured "
            f"(fingerprint {key_fingerprint(key)}, from {_key_places(key_file)}): its ids would not match opt-out "
            f"files or practice lookups made with this key. Use the key the data were imported with, or re-import")
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
