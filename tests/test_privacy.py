"""Pseudonyms, the key, and ids from outside (opt-out files) matched in one canonical form."""

from __future__ import annotations

import json
import stat
import unicodedata

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.errors import RiskstratError
from riskstrat.privacy import (KEY_ENV, OptOutError, PseudonymKeyError, canonical_ids, check_key_matches,
                               init_pseudonym_key, key_fingerprint, load_pseudonym_key, match_opt_outs,
                               read_opt_outs)

IDS = ["0a1b2c3d4e5f6071", "ffeeddccbbaa9988", "1234567890abcdef"]


@pytest.mark.parametrize(("written", "expected"), [
    ("0A1B2C3D4E5F6071", "0a1b2c3d4e5f6071"),       # upper case
    ("  0a1b2c3d4e5f6071\t", "0a1b2c3d4e5f6071"),   # surrounding whitespace
    ("\ufeff0a1b2c3d4e5f6071", "0a1b2c3d4e5f6071"), # a byte-order mark
    ("   ", None),
])
def test_ids_have_one_canonical_form(written, expected):
    got = canonical_ids(pd.Series([written], dtype=object)).iloc[0]
    assert (None if pd.isna(got) else got) == expected


HOSTILE_IDS = ["ab12", "AB12", " ab12", "ab12\x1f", "\x1cab", "ab\x0b", "\ufeffab", "\u0130x", "\u00df", "", "  ",
               None, float("nan"), 12, "a b", "ab\u00a0", "\u2028ab", "\u03a9mega", "abc\n", "\tq", "0A1b",
               "ab\u200b", "\uff21\uff42", "a\u00adb", "\u2060ab\u3000", "e\u200b\u0301", "\u2160"]


def _canonical_one_by_one(ids: pd.Series) -> list:
    """The canonical form written out per value, as the documentation says it: NFKC, format
    characters (Cf) removed, lower case, surrounding whitespace removed."""
    out = []
    for v in ids.tolist():
        if v is None or v != v:
            out.append(None)
            continue
        text = "".join(c for c in unicodedata.normalize("NFKC", "".join(c for c in str(v)
                                                                       if unicodedata.category(c) != "Cf"))
                       if unicodedata.category(c) != "Cf")
        out.append(unicodedata.normalize("NFKC", text.lower()).strip() or None)
    return out


@pytest.mark.parametrize("dtype", [object, "str"])
def test_the_canonical_form_checked_at_once_equals_the_form_value_by_value(dtype):
    # Most ids are checked by Arrow and kept as they are; the rest go through Python's strip and
    # lower. Any id, ASCII or not, must come out as the one-by-one rule gives it.
    ids = HOSTILE_IDS if dtype is object else [v for v in HOSTILE_IDS if isinstance(v, str)]
    series = pd.Series(ids, dtype=dtype)
    got = [None if pd.isna(v) else v for v in canonical_ids(series).tolist()]
    assert got == _canonical_one_by_one(series)


def test_an_upper_case_opt_out_file_removes_the_people_it_names(tmp_path):
    # The defect: 300 valid ids in upper case matched nobody (exact string comparison).
    path = tmp_path / "opt_out.txt"
    path.write_text("\n".join(i.upper() for i in IDS[:2]) + "\n\n")
    matched, unmatched = match_opt_outs(IDS, read_opt_outs(path))
    assert matched == set(IDS[:2]) and unmatched == []


def test_opt_out_ids_that_match_nobody_are_counted(tmp_path):
    path = tmp_path / "opt_out.csv"
    path.write_text("\ufeffPerson_ID,date\n 0A1B2C3D4E5F6071 ,2025-10-20\n0000000000000000,2025-10-21\n")
    assert match_opt_outs(IDS, read_opt_outs(path)) == ({IDS[0]}, ["0000000000000000"])


def test_an_opt_out_path_that_is_a_folder_is_a_refusal_saying_what_to_give(tmp_path):
    with pytest.raises(OptOutError, match="is a folder; give the file inside it"):
        read_opt_outs(tmp_path)
    with pytest.raises(OptOutError, match="not found"):
        read_opt_outs(tmp_path / "missing.txt")


def test_ids_differing_only_in_case_in_the_data_are_refused():
    with pytest.raises(RiskstratError, match="differ only in case"):
        match_opt_outs(["abc", "ABC"], {"abc"})
    with pytest.raises(RiskstratError, match="differ only in case"):  # refused with no opt-outs too
        match_opt_outs(["abc", " abc"], set())


# ----------------------------------------------------------------------------- the key


def test_an_empty_key_variable_is_an_error_naming_where_keys_are_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV, "")
    with pytest.raises(PseudonymKeyError, match=rf"\${KEY_ENV} is set but empty.*pseudonym.key"):
        load_pseudonym_key()
    assert not (tmp_path / ".riskstrat").exists()  # the defect: a new random key was created silently


def test_a_missing_key_is_an_error_and_none_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(PseudonymKeyError, match=rf"looked for \${KEY_ENV}, else the key file .*pseudonym.key.*key init"):
        load_pseudonym_key()
    assert not (tmp_path / ".riskstrat").exists()


def test_key_init_creates_a_private_key_once_and_refuses_to_overwrite(tmp_path, monkeypatch):
    from riskstrat.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(KEY_ENV, raising=False)
    result = CliRunner().invoke(app, ["key", "init"])
    assert result.exit_code == 0, result.output
    path = tmp_path / ".riskstrat" / "pseudonym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_pseudonym_key()
    assert len(key) == 64 and key_fingerprint(key) in result.output and key.decode() not in result.output
    again = CliRunner().invoke(app, ["key", "init"])
    assert again.exit_code == 2 and "already exists" in again.output
    assert load_pseudonym_key() == key
    with pytest.raises(PseudonymKeyError, match="already exists"):
        init_pseudonym_key(path)


def test_a_fingerprint_tells_keys_apart_without_showing_them():
    a, b = key_fingerprint(b"key-a"), key_fingerprint(b"key-b")
    assert a != b and len(a) == 16 and "key-a" not in a
    assert key_fingerprint(b"key-a") == a


def test_data_pseudonymised_under_another_key_are_refused(tmp_path, monkeypatch):
    (tmp_path / "dataset.json").write_text(json.dumps({"pseudonym_key_fingerprint": key_fingerprint(b"old-key")}))
    monkeypatch.setenv(KEY_ENV, "old-key")
    assert check_key_matches(tmp_path) == key_fingerprint(b"old-key")
    monkeypatch.setenv(KEY_ENV, "new-key")
    with pytest.raises(PseudonymKeyError, match=key_fingerprint(b"old-key")):
        check_key_matches(tmp_path)
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.chdir(tmp_path)
    assert check_key_matches(tmp_path) == key_fingerprint(b"old-key")  # no key configured: nothing to compare


def test_an_import_records_the_key_fingerprint_not_the_key(tmp_path):
    from test_readers import _tiny_synthea

    from riskstrat.readers import import_dataset

    import_dataset("synthea", _tiny_synthea(tmp_path), tmp_path / "linked", pseudonym_key=b"secret-key-123")
    meta = json.loads((tmp_path / "linked" / "dataset.json").read_text())
    assert meta["pseudonym_key_fingerprint"] == key_fingerprint(b"secret-key-123")
    assert "secret-key-123" not in (tmp_path / "linked" / "dataset.json").read_text()
