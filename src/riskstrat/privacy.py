"""Keyed pseudonyms and the pseudonymisation key.

Source identifiers (Synthea or OMOP person ids, NHS numbers) are replaced by
HMAC-SHA256(key, id) truncated to 16 hex characters. Without the key nobody can link a pseudonym
back to a source id, and the same key gives the same pseudonyms on every run (reruns identical).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

KEY_ENV = "RISKSTRAT_PSEUDONYM_KEY"
DEFAULT_KEY_FILE = Path(".riskstrat") / "pseudonym.key"


def load_pseudonym_key(key_file: str | Path | None = None, *, create: bool = True) -> bytes:
    """The pseudonymisation key: ``$RISKSTRAT_PSEUDONYM_KEY``, else a key file.

    When neither exists and ``create`` is true, a random key is written to
    ``.riskstrat/pseudonym.key`` under the working directory (keep it secret and keep it: the same
    key is needed to get the same pseudonyms next month).
    """
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = Path(key_file) if key_file else DEFAULT_KEY_FILE
    if path.exists():
        return path.read_text().strip().encode()
    if not create:
        raise FileNotFoundError(f"no pseudonymisation key: set {KEY_ENV} or create {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key.encode()


def pseudonymise(ids: pd.Series, key: bytes) -> pd.Series:
    """Replace each id by its keyed pseudonym (16 hex characters); missing ids stay missing.

    >>> pseudonymise(pd.Series(["a", "a", "b"]), b"k").nunique()
    2
    """
    if not key:
        raise ValueError("the pseudonymisation key is empty")
    uniques = pd.unique(ids.dropna().astype(str))
    mapping = {u: hmac.new(key, u.encode(), hashlib.sha256).hexdigest()[:16] for u in uniques}
    return ids.map(mapping).astype("string")
