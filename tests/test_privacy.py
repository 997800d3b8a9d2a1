"""Pseudonyms, the key, and ids from outside (opt-out files) matched in one canonical form."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import unicodedata
import warnings

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from riskstrat.errors import RiskstratError
from riskstrat.data.privacy import (KEY_ENV, OptOutError, PseudonymKeyError, PseudonymKeyWarning, canonical_id,
                               canonical_ids, check_key_matches, check_opt_out_match, init_pseudonym_key,
                               key_fingerprint, load_pseudonym_key, mask_id, match_opt_outs, read_opt_outs)

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
               "ab\u200b", "\uff21\uff42", "a\u00adb", "\u2060ab\u3000", "e\u200b\u0301", "\u2160",
               "ab\ufe0f", "\u2800ab", "a\u2800b", "a\u3164b", "\U000e0100ab", "a\u034fB", "\uffa0ab\u1160"]


# Unicode's DerivedCoreProperties.txt (16.0), Default_Ignorable_Code_Point, as published: an
# independent transcription of the list privacy.py's comment cites.
DEFAULT_IGNORABLE = """
00AD Cf; 034F Mn; 061C Cf; 115F..1160 Lo; 17B4..17B5 Mn; 180B..180D Mn; 180E Cf; 180F Mn; 200B..200F Cf;
202A..202E Cf; 2060..2064 Cf; 2065 Cn; 2066..206F Cf; 3164 Lo; FE00..FE0F Mn; FEFF Cf; FFA0 Lo; FFF0..FFF8 Cn;
1BCA0..1BCA3 Cf; 1D173..1D17A Cf; E0000 Cn; E0001 Cf; E0002..E001F Cn; E0020..E007F Cf; E0080..E00FF Cn;
E0100..E01EF Mn; E01F0..E0FFF Cn"""


def _code_points(listing: str) -> set[int]:
    out = set()
    for entry in listing.replace("\n", " ").split(";"):
        first, _, last = entry.split()[0].partition("..")
        out.update(range(int(first, 16), int(last or first, 16) + 1))
    return out


IGNORABLE = {chr(c) for c in _code_points(DEFAULT_IGNORABLE)}


def _invisible(c: str) -> bool:
    return unicodedata.category(c) == "Cf" or c in IGNORABLE


def _canonical_one_by_one(ids: pd.Series) -> list:
    """The canonical form written out per value, as the documentation says it: NFKC, format
    characters (Cf) and default-ignorable code points removed, the braille blank a space, lower
    case, surrounding whitespace removed."""
    out = []
    for v in ids.tolist():
        if v is None or v != v:
            out.append(None)
            continue
        text = "".join(c for c in unicodedata.normalize("NFKC", "".join(c for c in str(v) if not _invisible(c)))
                       if not _invisible(c))
        out.append(unicodedata.normalize("NFKC", text.lower()).replace("\u2800", " ").strip() or None)
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
    matched, unmatched, _ = match_opt_outs(IDS, read_opt_outs(path))
    assert matched == set(IDS[:2]) and unmatched == []


def test_opt_out_ids_that_match_nobody_are_counted(tmp_path):
    path = tmp_path / "opt_out.csv"
    path.write_text("\ufeffPerson_ID,date\n 0A1B2C3D4E5F6071 ,2025-10-20\n0000000000000000,2025-10-21\n")
    assert match_opt_outs(IDS, read_opt_outs(path))[:2] == ({IDS[0]}, ["0000000000000000"])


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

    from riskstrat.pipelines.imports import import_dataset

    import_dataset("synthea", _tiny_synthea(tmp_path), tmp_path / "linked", pseudonym_key=b"secret-key-123")
    meta = json.loads((tmp_path / "linked" / "dataset.json").read_text())
    assert meta["pseudonym_key_fingerprint"] == key_fingerprint(b"secret-key-123")
    assert "secret-key-123" not in (tmp_path / "linked" / "dataset.json").read_text()


# ----------------------------------------------------------------------------- opt-outs in every pasted form

# Characters a paste from a web page or Word brings along: format characters (Cf) inside the id,
# whitespace around it. NFKC turns fullwidth letters and digits into plain ones.
FORMAT_CHARS = ["\u200b", "\ufeff", "\u2060", "\u00ad", "\u200c", "\u200d", "\u200e",
                # invisible but not Cf: variation selectors, grapheme joiner, Hangul fillers, Khmer, Mongolian
                "\ufe0f", "\ufe00", "\U000e0100", "\u034f", "\u115f", "\u1160", "\u3164", "\uffa0", "\u17b4",
                "\u180b", "\u180f"]
SURROUNDING = [" ", "\t", "\u00a0", "\u3000", "\u2009", "\u202f", "\r", "\u2800"]


@st.composite
def pasted(draw, ident: str) -> str:
    """``ident`` written as someone might paste it: each character as is, upper case or fullwidth,
    format characters between any two, whitespace (NBSP included) around it."""
    out = []
    for c in ident:
        form = draw(st.sampled_from(["as is", "upper", "fullwidth"]))
        c = c.upper() if form == "upper" else chr(ord(c) + 0xFEE0) if form == "fullwidth" else c
        out.append(draw(st.lists(st.sampled_from(FORMAT_CHARS), max_size=2)) + [c])
    inside = "".join("".join(part) for part in out)
    around = st.text(alphabet=st.sampled_from(SURROUNDING + FORMAT_CHARS), max_size=3)
    return draw(around) + inside + draw(around)


IDENT = st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=8, max_size=20)


@given(data=st.data(), ident=IDENT, others=st.lists(IDENT, max_size=4))
@settings(max_examples=100, deadline=None)
def test_an_opt_out_id_in_any_pasted_form_matches_the_same_person(data, ident, others):
    # The defect: ids ending in a zero-width space (pasted from a web page) matched no one, and
    # the people they named stayed on the lists.
    written_in_data = data.draw(st.sampled_from([ident, ident.upper(), " " + ident]))
    people = [written_in_data] + [o for o in others if o != ident]
    opt_out = data.draw(pasted(ident))
    assert match_opt_outs(people, {opt_out})[:2] == ({written_in_data}, [])


@given(st.text(max_size=12))
@settings(max_examples=300, deadline=None)
def test_the_canonical_form_is_one_form(text):
    # Both sides go through it: it must give the same answer checked at once and value by value,
    # and be its own canonical form (an id read from a file is matched again).
    once = canonical_ids(pd.Series([text, text.upper()], dtype=object)).tolist()
    assert once[0] == (canonical_id(text) or float("nan")) or (pd.isna(once[0]) and not canonical_id(text))
    if canonical_id(text):
        assert canonical_id(canonical_id(text)) == canonical_id(text)


def test_the_red_team_file_of_ids_ending_in_a_zero_width_space_matches_everyone(tmp_path):
    people = [f"{i:016x}" for i in range(1000, 1040)]
    path = tmp_path / "opt_out.txt"
    # Half end in U+200B, as pasted from a web page; some in fullwidth digits with a non-breaking space.
    lines = [p + "\u200b" if i % 2 else "\u00a0" + p.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
             for i, p in enumerate(people)]
    path.write_text("\ufeff# opt-outs received in October\n" + "\r\n".join(lines) + "\r\n")
    matched, unmatched, _ = match_opt_outs(people + ["ffffffffffffffff"], read_opt_outs(path))
    assert matched == set(people) and unmatched == []


def test_an_opt_out_file_saved_as_utf16_is_read(tmp_path):
    path = tmp_path / "opt_out.txt"
    path.write_bytes("\n".join(IDS).encode("utf-16"))  # Excel's "Unicode text" (with a byte-order mark)
    assert read_opt_outs(path) == set(IDS)


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf", "# opt-outs for November\n\n# none yet\n".encode(),
                                     b"person_id,date_received\n", "\u200b\u00a0\n".encode()])
def test_an_opt_out_file_with_no_ids_is_refused_unless_allowed(tmp_path, content):
    # The defect: an empty file (a list cut short, or never written) was accepted without a word.
    path = tmp_path / "opt_out.txt"
    path.write_bytes(content)
    with pytest.raises(OptOutError, match=rf"{path}: the opt-out file holds no ids.*allow_empty_opt_out=true"):
        read_opt_outs(path)
    assert read_opt_outs(path, allow_empty=True) == set()


def test_the_empty_opt_out_setting_sits_beside_the_opt_out_file():
    from riskstrat.modeling.config import ScoringConfig, load_config

    assert load_config(None, ["allow_empty_opt_out=true"], model=ScoringConfig).allow_empty_opt_out is True
    assert ScoringConfig().allow_empty_opt_out is False


def test_comment_lines_are_not_ids(tmp_path):
    path = tmp_path / "opt_out.txt"
    path.write_text("# received 2025-10-20\n" + IDS[0] + "\n  # another comment\n")
    assert read_opt_outs(path) == {IDS[0]}


# ----------------------------------------------------------------------------- ids that match no one


def test_unmatched_ids_are_listed_masked_and_a_few_are_only_a_warning():
    people = [f"{i:016x}" for i in range(100)]
    gone = ["9a9b9c9d9e9f9091", "8a8b8c8d8e8f8081", "7a7b7c7d7e7f7071", "6a6b6c6d6e6f6061"]
    match = match_opt_outs(people, set(people[:20]) | set(gone))
    warning = check_opt_out_match(match, 24, file="opt_out.txt")
    assert "4 of 24 opt-out ids in opt_out.txt match no one" in warning
    assert "6a…61 (16 chars)" in warning and "1 more" in warning
    assert not any(g in warning for g in gone)


def test_an_opt_out_file_matching_no_one_is_refused_listing_the_ids_masked():
    gone = ["9a9b9c9d9e9f9091", "8a8b8c8d8e8f8081"]
    with pytest.raises(OptOutError, match=r"none of the 2 ids .* \(e\.g\. 8a…81 \(16 chars\), 9a…91") as refused:
        check_opt_out_match(match_opt_outs(IDS, gone), 2, file="opt_out.txt")
    assert not any(g in str(refused.value) for g in gone)
    assert "match no one" in check_opt_out_match(match_opt_outs(IDS, gone), 2, file="f", allow_unmatched=True)


@pytest.mark.parametrize(("line", "why"), [
    ("0a1b2c3d 4e5f6071", "a space inside it"),            # two ids run together, or a space typed
    ("0a1b2c3d4e5f6071\x07", r"does not print \(U\+0007\)"),
    ("0a1b2c3d4e5f6071\u2028", None),                     # a line separator ends the line: the id matches
    ('"0a1b2c3d4e5f6071"', r"a quote or separator"),
])
def test_an_unmatched_id_that_looks_mis_pasted_is_refused_even_when_others_match(tmp_path, line, why):
    path = tmp_path / "opt_out.txt"
    path.write_text(f"{IDS[1]}\n{line}\n")
    match = match_opt_outs(IDS, read_opt_outs(path))
    if why is None:
        assert match[:2] == ({IDS[0], IDS[1]}, [])
        return
    with pytest.raises(OptOutError, match=rf"1 of the 2 ids in the opt-out file {path} match no one and look "
                                          rf"mis-pasted \(e\.g\. .*{why}"):
        check_opt_out_match(match, 2, file=path)
    assert check_opt_out_match(match, 2, file=path, allow_unmatched=True)


@st.composite
def unmatched_id(draw) -> str:
    """A realistic id, sometimes with a paste error inside it (a space, a control character, a quote)."""
    ident = draw(st.text(alphabet="0123456789abcdef", min_size=8, max_size=20))
    at = draw(st.integers(0, len(ident)))
    extra = draw(st.sampled_from(["", "", " ", "\x07", '"', "\t", "\ue000", "\u0378", "ë"]))
    return canonical_id(ident[:at] + extra + ident[at:])


@given(ids=st.lists(unmatched_id(), min_size=1, max_size=6, unique=True))
@settings(max_examples=150, deadline=None)
def test_no_message_about_unmatched_ids_holds_one_in_full(ids):
    for allow in (False, True):
        try:
            said = check_opt_out_match(match_opt_outs(["zz"], ids), len(ids), file="f", allow_unmatched=allow)
        except OptOutError as exc:
            said = str(exc)
        assert not [i for i in ids if i in said]
    assert all(i not in mask_id(i) for i in ids)


PEOPLE = [f"{i:016x}" for i in range(0xA0A0A0A0A0A0A000, 0xA0A0A0A0A0A0A040)]  # pseudonyms' shape


def _opt_out_file(tmp_path, text: str):
    path = tmp_path / "opt_out.txt"
    path.write_text(text)
    return path, read_opt_outs(path)


def _check(ids, path, opted_out, **options):
    match = match_opt_outs(ids, opted_out)
    return match, check_opt_out_match(match, len(opted_out), file=path, lines=opted_out.line_numbers(match.unmatched),
                                      **options)


def test_the_red_team_opt_out_file_removes_everyone_it_can_and_refuses_the_rest_naming_the_lines(tmp_path):
    # The defect: of these five lines only the first removed anyone; the rest were "people who have left"
    # (a warning, exit 0), and four people who had opted out were scored and listed.
    a, b, c, d, e, f = PEOPLE[:6]
    path, opted_out = _opt_out_file(tmp_path, f"{a}\n{b},{c}\n{d}.\n{e}\ufe0f\n\u2800{f}\n")
    with pytest.raises(OptOutError) as refused:
        _check(PEOPLE, path, opted_out)
    said = str(refused.value)
    assert said.startswith(f"2 of the 5 ids in the opt-out file {path} match no one and look mis-pasted (e.g. line 2: ")
    assert "a comma inside it (several ids on one line?)" in said and "line 3: " in said
    assert "punctuation at its end (.)" in said and "Correct lines 2, 3 " in said
    assert mask_id(f"{d}.") in said and not [i for i in (a, b, c, d, e, f) if i in said]
    match, warning = _check(PEOPLE, path, opted_out, allow_unmatched=True)
    assert match.matched == {a, e, f}  # the variation selector and the braille blank are invisible, not the id
    assert "2 of 5 opt-out ids" in warning and "2 of them look mis-pasted or are not pseudonyms" in warning


@pytest.mark.parametrize(("line", "why"), [
    ("9434765919", r"94…19 \(10 chars\): looks like a source id \(10 characters\), not a pseudonym"),  # an NHS number
    ("943 476 5919", "a space inside it"),
    ("6f0d3c1a-5f4e-4b8e-9d61-2c7a8e0e3b1f", "looks like a source id"),  # a Synthea patient id
    (PEOPLE[0][:-1], "15 hex characters where a pseudonym has 16"),
    (PEOPLE[0] + "0", "17 hex characters where a pseudonym has 16"),
    ("a0a0a0a0a0a0a0g0", "looks like a source id"),
    ("(" + PEOPLE[0] + ")", r"a bracket \(\(\)"),
    (PEOPLE[0] + ";", r"a quote or separator \(;\)"),
    ("\u00e9" * 16, r"not a pseudonym \(16 hex characters\)"),
])
def test_an_opt_out_id_that_is_not_a_pseudonym_is_refused_when_the_data_hold_only_pseudonyms(tmp_path, line, why):
    path, opted_out = _opt_out_file(tmp_path, f"# received in October\n{PEOPLE[1]}\n{line}\n")
    with pytest.raises(OptOutError, match=rf"1 of the 2 ids in the opt-out file {path} match no one .*\(e\.g\. line 3: "
                                          rf".*{why}.*Correct line 3 ") as refused:
        _check(PEOPLE, path, opted_out)
    said = str(refused.value)
    assert line not in said and ("source id" not in why or "pseudonymised with the key" in said)
    assert "look mis-pasted" not in said or "source id" not in why


def test_without_a_common_shape_only_paste_errors_are_refused_and_other_unmatched_ids_are_a_warning(tmp_path):
    people = ["P-1001", "P-1002", "X9"]  # not pseudonyms: no shape to hold opt-out ids to
    path, opted_out = _opt_out_file(tmp_path, "p-1001\nP-2002\n9434765919\n")
    match, warning = _check(people, path, opted_out)
    assert match.matched == {"P-1001"} and not match.pseudonyms and "2 of 3 opt-out ids" in warning
    for pasted, why in [("p-1002,x9", "a comma inside it"), ("P-1002.", r"punctuation at its end \(\.\)"),
                        ("P-1002\t", None), ("[x9]", "a bracket")]:
        path, opted_out = _opt_out_file(tmp_path, f"p-1001\n{pasted}\n")
        if why is None:  # surrounding whitespace is not an error: the id matches
            assert _check(people, path, opted_out)[0].matched == {"P-1001", "P-1002"}
            continue
        with pytest.raises(OptOutError, match=rf"line 2: .*{why}"):
            _check(people, path, opted_out)


def test_a_csv_row_with_more_fields_than_its_header_is_refused_naming_the_lines(tmp_path):
    # The defect: pandas read "b,c" under a one-column header as index b and id c, and the next row's
    # id as an index with no id: both people stayed on the lists without a word.
    path, _ = _opt_out_file(tmp_path, "person_id\n" + PEOPLE[0])
    for text, lines in [(f"person_id\n{PEOPLE[1]},{PEOPLE[2]}\n{PEOPLE[0]}\n", "line 2 of the opt-out file holds"),
                        (f"person_id,date\n{PEOPLE[0]},2025-10-01\n\n{PEOPLE[1]},{PEOPLE[2]},2025-10-02\n",
                         "line 4 of the opt-out file holds more fields than its header \\(2\\)")]:
        path.write_text(text)
        with pytest.raises(OptOutError, match=rf"{path}: {lines}.*several ids on one line\?") as refused:
            read_opt_outs(path)
        assert PEOPLE[1] not in str(refused.value)


def test_a_first_line_of_ids_separated_by_commas_is_not_taken_for_a_header(tmp_path):
    path, _ = _opt_out_file(tmp_path, "person_id\n" + PEOPLE[0])
    path.write_text(f"{PEOPLE[1]},{PEOPLE[2]}\n{PEOPLE[0]}\n")
    with pytest.raises(OptOutError, match="needs a person_id column.*the first line looks like ids, not a header"):
        read_opt_outs(path)


def test_the_lines_of_a_csv_opt_out_file_are_its_physical_lines(tmp_path):
    path, opted_out = _opt_out_file(tmp_path, f"# October\n\ufeffPerson_ID,date\n\n {PEOPLE[0].upper()} ,1\n"
                                              f"{PEOPLE[1]}0,2\n")
    assert opted_out.line_numbers([PEOPLE[0], PEOPLE[1] + "0", "nobody"]) == {PEOPLE[0]: [4], PEOPLE[1] + "0": [5]}
    with pytest.raises(OptOutError, match=r"\(e\.g\. line 5: a0…10 \(17 chars\): 17 hex characters"):
        _check(PEOPLE, path, opted_out)


def test_whether_the_data_hold_only_pseudonyms_is_decided_from_every_id():
    from riskstrat.data.privacy import are_pseudonyms

    assert are_pseudonyms(pd.Series(PEOPLE * 40, dtype="str"))
    assert not are_pseudonyms(pd.Series(PEOPLE * 40 + ["P1"], dtype=object))  # one id past the first 1,000
    assert not are_pseudonyms(pd.Series([PEOPLE[0].upper()])) and not are_pseudonyms(pd.Series([], dtype=object))


def test_ids_differing_only_in_form_in_the_data_are_refused_without_showing_them():
    with pytest.raises(RiskstratError, match="differ only in case, spaces or invisible") as refused:
        match_opt_outs(["0a1b2c3d4e5f6071", "0a1b2c3d4e5f6071\u200b"], set())
    assert "0a1b2c3d4e5f6071" not in str(refused.value)


# ----------------------------------------------------------------------------- the key file's permissions


def _key_file(folder, mode: int, folder_mode: int = 0o700):
    folder.mkdir(exist_ok=True)
    path = folder / "pseudonym.key"
    path.write_text("0123456789abcdef" * 4 + "\n")
    os.chmod(path, mode)
    os.chmod(folder, folder_mode)
    return path


def test_a_private_key_file_is_read_without_a_word(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = _key_file(tmp_path / "keys", 0o600, 0o1777)  # a sticky shared folder (like /tmp) is fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_pseudonym_key(path).startswith(b"0123")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_used_with_a_warning_saying_the_fix(tmp_path, monkeypatch, mode):
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = _key_file(tmp_path / "keys", mode)
    with pytest.warns(PseudonymKeyWarning, match=rf"{path.absolute()}.*mode 0{mode:o}.*`chmod 600 {path.absolute()}`"):
        assert load_pseudonym_key(path).startswith(b"0123")


@pytest.mark.parametrize(("mode", "folder_mode", "says"), [
    (0o666, 0o700, "can be written by everyone"),
    (0o602, 0o755, "can be written by everyone"),
    (0o644, 0o777, "folder holding the pseudonymisation key"),  # the red team's case: 0644 in a 0777 folder
    (0o600, 0o777, "folder holding the pseudonymisation key"),
])
def test_a_key_file_anyone_could_replace_is_refused(tmp_path, monkeypatch, mode, folder_mode, says):
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = _key_file(tmp_path / "keys", mode, folder_mode)
    with pytest.raises(PseudonymKeyError, match=rf"{says}.*chmod 600 {path.absolute()}"):
        load_pseudonym_key(path)
    monkeypatch.chdir(tmp_path / "keys")
    with pytest.raises(PseudonymKeyError, match=says):  # also when only consulted, to compare fingerprints
        check_key_matches(_dataset_with_fingerprint(tmp_path), key_file=path)


def test_a_key_file_linked_from_a_private_folder_into_one_anyone_can_write_is_refused(tmp_path, monkeypatch):
    # The defect: priv/key.link -> ww/key (0600, in a 0777 folder) was read without a word, so anyone
    # could swap the key behind the link and change every pseudonym.
    from riskstrat.cli import app

    monkeypatch.delenv(KEY_ENV, raising=False)
    key = _key_file(tmp_path / "ww", 0o600, 0o777)
    (tmp_path / "priv").mkdir(mode=0o700)
    link = tmp_path / "priv" / "key.link"
    link.symlink_to(key)
    with pytest.raises(PseudonymKeyError, match=rf"{link} \(a link to {key}\): the folder holding the pseudonymisation "
                                                rf"key, {tmp_path / 'ww'}, can be written by everyone"):
        load_pseudonym_key(link)
    done = CliRunner().invoke(app, ["key", "fingerprint", "--key-file", str(link)])
    assert done.exit_code == 2 and "can be written by everyone" in " ".join(done.output.split())
    os.chmod(tmp_path / "ww", 0o1777)  # sticky, as /tmp: others cannot replace what they do not own
    assert load_pseudonym_key(link).startswith(b"0123")


def test_a_key_file_below_a_folder_anyone_can_write_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    (tmp_path / "shared").mkdir()
    key = _key_file(tmp_path / "shared" / "keys", 0o600, 0o700)  # private, but its parent can be renamed away
    os.chmod(tmp_path / "shared", 0o777)
    with pytest.raises(PseudonymKeyError, match=rf"on the way to the pseudonymisation key, {tmp_path / 'shared'}, "
                                                rf"can be written by everyone.*chmod o-w {tmp_path / 'shared'}"):
        load_pseudonym_key(key)
    os.chmod(tmp_path / "shared", 0o755)
    assert load_pseudonym_key(key).startswith(b"0123")


def test_a_key_file_that_is_not_text_is_a_refusal_naming_it(tmp_path, monkeypatch):
    # The defect: a UnicodeDecodeError traceback.
    monkeypatch.delenv(KEY_ENV, raising=False)
    key = _key_file(tmp_path / "keys", 0o600)
    key.write_bytes(b"\x8b\x1f\x00\xffbinary")
    with pytest.raises(PseudonymKeyError, match=rf"{key}: the key file is not text \(byte 0 is not UTF-8\).*backup"):
        load_pseudonym_key(key)


def test_key_init_makes_a_key_that_is_used_without_a_word_and_refuses_a_folder_anyone_can_write(tmp_path,
                                                                                                   monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    before = os.umask(0)  # the loosest umask: what init makes must still be private
    try:
        path = init_pseudonym_key(tmp_path / "new" / "pseudonym.key")
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_pseudonym_key(path)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(PseudonymKeyError, match="can be written by everyone"):
        init_pseudonym_key(shared / "pseudonym.key")
    assert not (shared / "pseudonym.key").exists()


def _dataset_with_fingerprint(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"pseudonym_key_fingerprint": "0000000000000000"}))
    return data


def test_the_cli_shows_the_key_file_warning(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = _key_file(tmp_path / "keys", 0o644)
    done = subprocess.run([sys.executable, "-m", "riskstrat.cli", "key", "fingerprint", "--key-file", str(path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    said = " ".join(done.stderr.split())
    assert done.returncode == 0 and said.startswith("warning: ") and f"chmod 600 {path.absolute()}" in said
    assert "PseudonymKeyWarning" not in said and ".py:" not in said  # one line in riskstrat's words


# ----------------------------------------------------------------------------- re-identification look-ups


@pytest.mark.parametrize(("content", "says"), [
    (b"", "is empty"),
    (b"person_id,local_id\n\xff\xfe\xfa,1\n", "is not UTF-8 text"),
    (b"pseudo,nhs_number\n0a1b2c3d4e5f6071,1\n", r"needs columns person_id \(or pseudonym\) and local_id"),
    (b"person_id,local_id\n0a1b2c3d4e5f6071,1\n0A1B2C3D4E5F6071\xe2\x80\x8b,2\n", "one pseudonym on more than one row"),
    (b'person_id,local_id\n"0a1b,1\n', "not a readable CSV"),
])
def test_every_error_reading_a_lookup_names_the_file_and_what_to_do(tmp_path, content, says):
    from riskstrat.scoring.inputs import read_reidentification

    (tmp_path / "P001.csv").write_bytes(content)
    with pytest.raises(RiskstratError, match=rf"{tmp_path / 'P001.csv'}: .*{says}.*ask the practice for a corrected "
                                             rf"file, or move P001.csv out of"):
        read_reidentification(tmp_path, ["P001"])


def test_a_lookup_folder_that_is_not_there_is_a_refusal_saying_what_to_set(tmp_path):
    from riskstrat.scoring.inputs import read_reidentification

    with pytest.raises(RiskstratError, match=rf"{tmp_path / 'nowhere'}: re-identification folder not found; set "
                                             rf"reidentify_dir"):
        read_reidentification(tmp_path / "nowhere", ["P001"])


def test_a_lookup_with_odd_headers_and_blank_local_ids_is_read(tmp_path):
    from riskstrat.data.privacy import read_reidentification_lookup

    (tmp_path / "P001.csv").write_text("\ufeffPseudonym\u200b, Local_ID \n0a1b2c3d4e5f6071,NA\n1234567890abcdef,\n"
                                       ",L1\n \u200b,L2\n")
    got = read_reidentification_lookup(tmp_path / "P001.csv")
    assert got.to_dict("list") == {"person_id": ["0a1b2c3d4e5f6071", "1234567890abcdef"], "local_id": ["NA", ""]}


def test_the_invisible_characters_removed_are_unicode_category_cf_and_the_default_ignorable_code_points():
    from riskstrat.data.privacy import _format_characters, _invisible_characters

    every = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    assert set(map(ord, _format_characters())) == every and {0x200B, 0xFEFF, 0x2060, 0x00AD} <= every
    # The defect: variation selectors, Hangul fillers and the like (not Cf) stayed in, and the id matched no one.
    assert set(_invisible_characters()) == set(map(chr, every)) | IGNORABLE | {"\u2800"}


def test_a_key_from_the_environment_is_the_same_key_as_from_a_file_whatever_the_surrounding_whitespace(tmp_path,
                                                                                                         monkeypatch):
    from riskstrat.data.privacy import load_pseudonym_key

    path = tmp_path / "key"
    path.write_text("anything\n")
    path.chmod(0o600)
    monkeypatch.delenv(KEY_ENV, raising=False)
    from_file = load_pseudonym_key(path)
    monkeypatch.setenv(KEY_ENV, "anything\n")
    assert load_pseudonym_key() == from_file == b"anything"


def test_a_data_set_without_a_key_fingerprint_is_refused_when_ids_are_matched_and_warned_otherwise(tmp_path,
                                                                                                  monkeypatch):
    import json
    import warnings

    from riskstrat.data.privacy import PseudonymKeyWarning, check_key_matches

    monkeypatch.setenv(KEY_ENV, "anything")
    (tmp_path / "dataset.json").write_text(json.dumps({"source": "by hand"}))
    with pytest.raises(PseudonymKeyError, match="records no pseudonymisation key fingerprint"):
        check_key_matches(tmp_path, matches_ids=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert check_key_matches(tmp_path) is None
    assert [w.category for w in seen] == [PseudonymKeyWarning]
    (tmp_path / "dataset.json").write_text(json.dumps({"generator": "riskstrat.synth"}))  # synthetic: no key
    assert check_key_matches(tmp_path, matches_ids=True) is None
