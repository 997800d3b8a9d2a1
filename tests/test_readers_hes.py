"""HES / SUS+ reader: hand-made extracts checked by hand, and the artificial HES files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.data.privacy import pseudonymise
from riskstrat.data.readers import MissingSourceFileError
from riskstrat.pipelines.imports import import_dataset
from riskstrat.data.readers.hes import (
    admission_method,
    ae_admitted,
    birth_date_from_mydob,
    ethnicity_group,
    find_hes_files,
    op_attended,
    practice_code,
    read_hes,
)

KEY = b"hes-test-key"
ARTIFICIAL_HES = Path(__file__).resolve().parents[2] / "shared" / "data" / "artificial-hes"

APC_COLUMNS = ["PSEUDO_HESID", "EPIKEY", "PROCODE3", "ADMIDATE", "EPISTART", "EPIEND", "EPIORDER", "DISDATE",
               "DISMETH", "ADMIMETH", "DIAG_4_01", "MYDOB", "SEX", "ETHNOS", "GPPRAC", "STARTAGE"]


def _write(path: Path, columns: list[str], rows: list[tuple], *, sep: str = ",") -> Path:
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False, sep=sep)
    return path


def _pid(source_id: str) -> str:
    return pseudonymise(pd.Series([source_id]), KEY).item()


@pytest.fixture
def hes_dir(tmp_path) -> Path:
    src = tmp_path / "hes"
    src.mkdir()
    apc = [
        # P1: one spell of two episodes (written last episode first), then an elective spell.
        ("P1", "e2", "RAA", "2020-01-10", "2020-01-15", "2020-01-20", "2", "2020-01-20", "1", "21", "I500",
         "041968", "1", "A", "B82002", "51"),
        ("P1", "e1", "RAA", "2020-01-10", "2020-01-10", "2020-01-15", "1", "", "8", "21", "I21.9",
         "041968", "1", "A", "B82002", "51"),
        ("P1", "e3", "RAA", "2020-03-01", "2020-03-01", "2020-03-02", "1", "2020-03-02", "1", "11", "K40-",
         "041968", "1", "A", "A81001", "51"),
        # Same person, same day, another provider: another spell.
        ("P1", "e4", "RBB", "2020-03-01", "2020-03-01", "2020-03-01", "1", "2020-03-01", "1", "2A", "R07",
         "041968", "1", "A", "A81001", "51"),
        # P2: every other ADMIMETH group, 99 (not known) and a code outside the dictionary.
        ("P2", "f1", "RCC", "2019-05-01", "2019-05-01", "2019-05-02", "1", "2019-05-02", "1", "12", "", "121950",
         "2", "H", "V81999", "69"),
        ("P2", "f2", "RCC", "2019-06-01", "2019-06-01", "2019-06-02", "1", "2019-06-02", "1", "31", "O800", "121950",
         "2", "H", "V81999", "69"),
        ("P2", "f3", "RCC", "2019-07-01", "2019-07-01", "2019-07-02", "1", "2019-07-02", "1", "82", "Z380", "121950",
         "2", "H", "V81999", "69"),
        ("P2", "f4", "RCC", "2019-08-01", "2019-08-01", "2019-08-02", "1", "2019-08-02", "1", "99", "R69X", "121950",
         "2", "H", "V81999", "69"),
        ("P2", "f5", "RCC", "2019-09-01", "2019-09-01", "2019-09-02", "1", "2019-09-02", "1", "ZZ", "R69X", "121950",
         "2", "Q", "V81999", "69"),
        ("P2", "f6", "RCC", "2019-10-01", "2019-10-01", "2019-10-02", "1", "2019-10-02", "1", "28", "J189", "121950",
         "2", "H", "V81999", "69"),
        # P4 died in hospital (DISMETH 4); a HES null admission date is a missing date.
        ("P4", "g1", "RCC", "2021-02-01", "2021-02-01", "2021-02-09", "1", "2021-02-09", "4", "22", "C349", "011940",
         "9", "Z", "&", "81"),
        ("P4", "g2", "RCC", "1800-01-01", "2021-02-01", "2021-02-09", "1", "", "8", "22", "C349", "011940",
         "9", "Z", "&", "81"),
    ]
    _write(src / "hes_apc_1920.csv", APC_COLUMNS, apc)
    # A&E: pipe-separated, lower-case headers; P3 has no MYDOB anywhere (birth from age).
    ae_cols = ["pseudo_hesid", "aekey", "arrivaldate", "aeattenddisp", "arrivalage", "sex", "ethnos", "gpprac"]
    ae = [("P3", "a1", "2020-06-15", "01", "40", "2", "M", "C81001"),
          ("P3", "a2", "2020-07-15", "1", "40", "2", "M", "C81001"),
          ("P3", "a3", "2020-08-15", "03", "40", "2", "M", "C81001"),
          ("P3", "a4", "2020-09-15", "99", "40", "2", "M", "C81001"),
          ("P3", "a5", "2020-10-15", "", "40", "2", "M", "C81001"),
          ("P3", "a6", "2020-11-15", "77", "40", "2", "M", "C81001"),
          ("P1", "a7", "2020-01-10", "01", "51", "1", "A", "B82002")]
    _write(src / "ae_2020.txt", ae_cols, ae, sep="|")
    # Outpatients: tab-separated, named by content only.
    op_cols = ["PSEUDO_HESID", "ATTENDKEY", "APPTDATE", "ATTENDED", "TRETSPEF", "MAINSPEF", "MYDOB", "SEX",
               "ETHNOS", "GPPRAC"]
    op = [("P2", f"o{code}", f"2019-0{i + 1}-10", code, "&" if code == "6" else "110", "300", "121950", "2",
           "H", "V81999") for i, code in enumerate(["5", "6", "3", "7", "2", "4", "0", "9"])]
    _write(src / "clinic_extract.tsv", op_cols, op, sep="\t")
    (src / "README.txt").write_text("not data\n")
    return src


@pytest.fixture
def hes(hes_dir):
    return read_hes(hes_dir, pseudonym_key=KEY)


def test_files_are_found_by_content_then_name(hes_dir):
    files = find_hes_files(hes_dir)
    assert [p.name for p in files["apc"]] == ["hes_apc_1920.csv"]
    assert [p.name for p in files["ae"]] == ["ae_2020.txt"]
    assert [p.name for p in files["op"]] == ["clinic_extract.tsv"]


def test_episodes_become_spells(hes):
    tables, summary = hes
    spells = tables["inpatient_spells"]
    p1 = spells[spells["person_id"] == _pid("P1")].sort_values(["admission_date", "admission_method"])
    assert len(p1) == 3  # two episodes -> one spell; same day at another provider -> its own spell
    first = p1.iloc[0]
    assert first["admission_date"] == pd.Timestamp("2020-01-10")
    assert first["discharge_date"] == pd.Timestamp("2020-01-20")  # from the last episode
    assert first["primary_diagnosis"] == "I219"  # first episode's DIAG_4_01, dot removed
    assert first["record_id"] == pseudonymise(pd.Series(["apc:e1"]), KEY).item()  # first episode's EPIKEY
    assert p1["admission_method"].tolist() == ["emergency", "elective", "emergency"]
    assert p1["primary_diagnosis"].tolist()[1] == "K40"  # HES '-' filler removed
    assert len(spells) == 3 + 6 + 1
    assert summary.dropped["hes_apc_1920.csv: episodes without a readable admission date"] == 1


def test_admission_methods_by_group_and_unknown_codes_counted(hes):
    tables, summary = hes
    p2 = tables["inpatient_spells"].query("person_id == @_pid('P2')").sort_values("admission_date")
    assert p2["admission_method"].tolist() == ["elective", "maternity", "maternity", "unknown", "unknown",
                                               "emergency"]  # the third is 82, a birth
    # 99 is the dictionary's "not known" (noted); ZZ is outside the dictionary (counted as a code)
    assert summary.unknown_codes["ADMIMETH"] == {"ZZ": 1}
    assert any("ADMIMETH 98/99" in n for n in summary.notes)


@pytest.mark.parametrize("code, method", [
    ("11", "elective"), ("12", "elective"), ("13", "elective"),
    *[(c, "emergency") for c in ("21", "22", "23", "24", "25", "26", "27", "28", "2A", "2B", "2C", "2D")],
    ("2a", "emergency"), ("31", "maternity"), ("32", "maternity"),
    ("81", "transfer"), ("82", "maternity"), ("83", "maternity"),
    ("98", "unknown"), ("99", "unknown"), ("84", "unknown"), ("14", "unknown"), (None, "unknown"),
])
def test_admimeth_codes(code, method):
    assert admission_method(pd.Series([code], dtype=object)).item() == method


def test_ae_attendances(hes):
    tables, summary = hes
    ae = tables["ae_attendances"].query("person_id == @_pid('P3')").sort_values("arrival_date")
    assert ae["admitted"].tolist() == [True, True, False, pd.NA, pd.NA, pd.NA]
    assert summary.unknown_codes["AEATTENDDISP"] == {"77": 1}
    assert ae["record_id"].notna().all() and ae["record_id"].nunique() == 6


@pytest.mark.parametrize("code, admitted", [("01", True), ("1", True), ("02", False), ("07", False),
                                            ("10", False), ("14", False), ("99", None), ("08", None)])
def test_aeattenddisp_codes(code, admitted):
    value = ae_admitted(pd.Series([code])).item()
    assert (value is pd.NA) if admitted is None else (value == admitted)


def test_outpatients_attended_dna_and_dropped(hes):
    tables, summary = hes
    op = tables["outpatient_appointments"].sort_values("appointment_date")
    # 5 seen, 6 late but seen, 3 did not attend, 7 too late to be seen
    assert op["attended"].tolist() == [True, True, False, False]
    assert op["specialty"].tolist() == ["110", "300", "110", "110"]  # '&' treatment specialty -> MAINSPEF
    cancelled = "clinic_extract.tsv: cancelled appointments (ATTENDED 2 by the patient, 4 by the provider)"
    assert summary.dropped[cancelled] == 2
    assert sorted(summary.drop_examples[cancelled]) == ["2", "4"]
    unknown = [r for r in summary.dropped if "ATTENDED is 0" in r]
    assert summary.dropped[unknown[0]] == 2 and sorted(summary.drop_examples[unknown[0]]) == ["0", "9"]


@pytest.mark.parametrize("code, attended", [("5", True), ("6", True), ("3", False), ("7", False),
                                            ("2", None), ("4", None), ("0", None), ("9", None)])
def test_attended_codes(code, attended):
    value = op_attended(pd.Series([code])).item()
    assert (value is pd.NA) if attended is None else (value == attended)


def test_persons(hes):
    tables, summary = hes
    persons = tables["persons"].set_index("person_id")
    p1, p2, p3, p4 = (persons.loc[_pid(p)] for p in ("P1", "P2", "P3", "P4"))
    assert p1["birth_date"] == pd.Timestamp("1968-04-01")  # MYDOB 041968
    assert (p1["sex"], p1["ethnicity_group"]) == ("male", "white")
    assert p1["practice_id"] == "A81001"  # the most recent record's practice (2020-03 over 2020-01)
    assert summary.conflicts["practice_id"] == 1
    assert (p2["sex"], p2["ethnicity_group"]) == ("female", "asian")
    assert pd.isna(p2["practice_id"])  # V81999: not known -> no practice, never "UNKNOWN"
    assert summary.unknown_codes["ETHNOS"] == {"Q": 1}
    # P3 has no MYDOB: 40 at 2020-11-15 -> about 1980-05 (the 1st of the month half a year earlier)
    assert p3["birth_date"] == pd.Timestamp("1980-05-01")
    assert (p3["sex"], p3["ethnicity_group"], p3["practice_id"]) == ("female", "black", "C81001")
    assert (p4["sex"], p4["ethnicity_group"]) == ("unknown", "unknown")  # SEX 9, ETHNOS Z
    assert pd.isna(p4["practice_id"])  # '&'
    assert p4["death_date"] == pd.Timestamp("2021-02-09")  # DISMETH 4: died on discharge
    assert "UNKNOWN" not in set(tables["persons"]["practice_id"].dropna())
    assert any("2 people with no registered practice" in n for n in summary.notes)


@pytest.mark.parametrize("mydob, expected", [("041968", "1968-04-01"), ("121899", "1899-12-01"),
                                             ("131950", None), ("1950", None), ("", None)])
def test_mydob(mydob, expected):
    value = birth_date_from_mydob(pd.Series([mydob])).item()
    assert (pd.isna(value) if expected is None else value == pd.Timestamp(expected))


def test_code_helpers():
    groups = ethnicity_group(pd.Series(["A", "D", "K", "N", "R", "S", "Z", "99", "0", "7"])).fillna("-")
    assert groups.tolist() == ["white", "mixed", "asian", "black", "asian", "other", "-", "-", "white", "asian"]
    assert practice_code(pd.Series(["V81997", "V81998", "A81001"])).tolist()[2] == "A81001"
    assert practice_code(pd.Series(["V81997", "V81998"])).isna().all()


def test_spell_id_groups_episodes_when_present(tmp_path):
    src = tmp_path / "hes"
    src.mkdir()
    cols = ["PSEUDO_HESID", "SUSSPELLID", "EPIKEY", "PROCODE3", "ADMIDATE", "EPIORDER", "DISDATE", "ADMIMETH",
            "MYDOB", "SEX"]
    _write(src / "apc.csv", cols, [
        ("P1", "S1", "k1", "RAA", "2020-01-01", "1", "", "21", "011950", "1"),
        ("P1", "S1", "k2", "RAA", "2020-01-01", "2", "2020-01-09", "21", "011950", "1"),
        ("P1", "S2", "k3", "RAA", "2020-01-01", "1", "2020-01-01", "13", "011950", "1"),  # a second same-day spell
    ])
    tables, _ = read_hes(src, pseudonym_key=KEY)
    spells = tables["inpatient_spells"].sort_values("admission_method")
    assert spells["admission_method"].tolist() == ["elective", "emergency"]
    assert spells["discharge_date"].tolist() == [pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-09")]


def test_missing_person_key_and_no_files_are_named(tmp_path):
    src = tmp_path / "hes"
    src.mkdir()
    with pytest.raises(MissingSourceFileError, match="no HES file"):
        read_hes(src, pseudonym_key=KEY)
    _write(src / "apc.csv", ["NHSNO", "ADMIDATE"], [("1", "2020-01-01")])
    with pytest.raises(MissingSourceFileError, match="PSEUDO_HESID"):
        read_hes(src, pseudonym_key=KEY)


def test_import_writes_report_and_dataset_json(hes_dir, tmp_path):
    out = tmp_path / "linked"
    summary, report = import_dataset("hes", hes_dir, out, pseudonym_key=KEY)
    assert report.ok
    payload = json.loads((out / "import_report.json").read_text())
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["source_format"] == "hes" and meta["currency"] == "GBP"
    assert meta["extract_end"] == "2021-02-01" and "imported_at" not in meta
    assert payload["rows_in"] == {"ae_2020.txt": 7, "clinic_extract.tsv": 8, "hes_apc_1920.csv": 12}
    assert payload["routes"]["hes_apc_1920.csv"]["inpatient_spells"] == 10
    assert payload["people_without_practice"] == 2
    assert payload["outcomes"]["high_cost"]["supported"] is False
    assert payload["outcomes"]["death"]["events"] == 1
    blob = (out / "import_report.json").read_text() + (out / "dataset.json").read_text()
    for secret in ("P1", "P2", "041968", "121950"):
        assert secret not in blob
    # deterministic: a rerun writes the same bytes
    import_dataset("hes", hes_dir, tmp_path / "again", pseudonym_key=KEY)
    for name in ("import_report.json", "dataset.json", "inpatient_spells.parquet", "persons.parquet"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_cli_import_hes_prints_the_report(hes_dir, tmp_path, monkeypatch):
    from riskstrat.cli import app

    monkeypatch.setenv("RISKSTRAT_PSEUDONYM_KEY", "cli-test-key")
    result = CliRunner().invoke(app, ["import", "hes", str(hes_dir), "--out", str(tmp_path / "linked")])
    assert result.exit_code == 0, result.output
    for text in ("hes import: 4 people", "people without a registered practice: 2", "hes_apc_1920.csv: 12 ->",
                 "cancelled appointments", "outcomes the data can support", "high_cost", "no costs recorded"):  # HES has no costs
        assert text in result.output, text


# --- the artificial HES files (format only: their fields are random) ---------------------------

@pytest.mark.skipif(not ARTIFICIAL_HES.is_dir(), reason=f"artificial HES not found at {ARTIFICIAL_HES}")
def test_artificial_hes_counts_checked_by_hand():
    # Counted with Python's csv module directly on the files (not with this reader):
    # APC 2,075 episodes, one with ADMIDATE 1801-01-01 (HES "invalid date"); the other 2,074 form 2,074
    # (person, PROCODE3, ADMIDATE) groups (the random fields never repeat an admission); first-episode
    # ADMIMETH: 11-13 987 (elective), 21-28 817 (emergency), 31/32 158+4 and 82 (births) 74 = 236
    # (maternity), 81 32 (transfer), 99 2 (unknown).
    # A&E 1,000 attendances, AEATTENDDISP 01 on 202, 99 on 5; 672 people, 2 of them with no age and no MYDOB.
    # OP 1,000: ATTENDED 5 806, 6 12, 3 91, 4 51, 2 40 -> 818 attended, 91 DNA, 91 cancelled (dropped).
    tables, summary = read_hes(ARTIFICIAL_HES, pseudonym_key=KEY)
    assert summary.source_rows == {"artificial_hes_ae_0708.csv": 1000, "artificial_hes_apc_0102.csv": 2075,
                                   "artificial_hes_op_0304.csv": 1000}
    spells = tables["inpatient_spells"]
    assert len(spells) == 2074
    assert spells["admission_method"].value_counts().to_dict() == {
        "elective": 987, "emergency": 817, "maternity": 236, "transfer": 32, "unknown": 2}
    ae = tables["ae_attendances"]
    assert len(ae) == 1000 - 2  # two attendances of the two people with no birth date
    assert int(ae["admitted"].sum()) == 202 and int(ae["admitted"].isna().sum()) == 5
    op = tables["outpatient_appointments"]
    assert (int(op["attended"].sum()), int((~op["attended"]).sum())) == (818, 91)
    assert summary.dropped["artificial_hes_op_0304.csv: cancelled appointments "
                           "(ATTENDED 2 by the patient, 4 by the provider)"] == 91
    assert len(tables["persons"]) == 994 + 672 + 269 - 2  # the three files share no one
    # 47 people have only blank or dummy GPPRAC codes (V81998, V81999, &) in all their records
    assert int(tables["persons"]["practice_id"].isna().sum()) == 47
    assert "UNKNOWN" not in set(tables["persons"]["practice_id"].dropna())


def test_deprivation_decile_and_linked_death_date(tmp_path):
    src = tmp_path / "hes"
    src.mkdir()
    cols = ["PSEUDO_HESID", "EPIKEY", "ADMIDATE", "ADMIMETH", "MYDOB", "SEX", "IMD04_DECILE", "DOD", "UNUSED_WIDE"]
    _write(src / "apc.csv", cols, [
        ("P1", "k1", "2020-01-01", "21", "011950", "1", "Most deprived 10%", "", "x"),
        ("P2", "k2", "2020-01-01", "21", "011950", "1", "More deprived 20-30%", "", "x"),
        ("P3", "k3", "2020-01-01", "21", "011950", "1", "Less deprived 10-20%", "2020-06-30", "x"),
        ("P4", "k4", "2020-01-01", "21", "011950", "1", "Least deprived 10%", "", "x"),
        ("P5", "k5", "2020-01-01", "21", "011950", "1", "7", "", "x"),
        ("P6", "k6", "2020-01-01", "21", "011950", "1", "somewhere", "", "x"),
    ])
    tables, summary = read_hes(src, pseudonym_key=KEY)
    persons = tables["persons"].set_index("person_id")
    deciles = [persons.loc[_pid(f"P{i}"), "deprivation_decile"] for i in range(1, 7)]
    assert deciles[:5] == [1, 3, 9, 10, 7] and pd.isna(deciles[5])
    assert summary.unknown_codes["IMD04_DECILE"] == {"SOMEWHERE": 1}
    assert persons.loc[_pid("P3"), "death_date"] == pd.Timestamp("2020-06-30")
    assert persons["death_date"].notna().sum() == 1


def test_yearly_apc_files_are_read_as_one(tmp_path):
    # The spell open on 31 March: episode 1001 and the unfinished 1002 (EPISTAT 1) in 2019/20, the
    # finished 1002 (EPISTAT 3) again in 2020/21. One spell, its discharge from the finished episode.
    src = tmp_path / "hes"
    src.mkdir()
    columns = [*APC_COLUMNS, "EPISTAT"]
    row = ("P1", "1001", "RAA", "2020-03-20", "2020-03-20", "2020-03-25", "1", "", "8", "21", "I500",
           "041968", "1", "A", "B82002", "51", "3")
    unfinished = ("P1", "1002", "RAA", "2020-03-20", "2020-03-25", "", "2", "", "8", "21", "I500",
                  "041968", "1", "A", "B82002", "51", "1")
    finished = ("P1", "1002", "RAA", "2020-03-20", "2020-03-25", "2020-04-09", "2", "2020-04-09", "1", "21", "I500",
                "041968", "1", "A", "B82002", "51", "3")
    _write(src / "apc_1920.csv", columns, [row, unfinished])
    _write(src / "apc_2021.csv", columns, [finished])
    tables, summary = read_hes(src, pseudonym_key=KEY)
    spells = tables["inpatient_spells"]
    assert len(spells) == 1
    assert spells["discharge_date"].item() == pd.Timestamp("2020-04-09")
    assert summary.dropped["APC records with a repeated EPIKEY (the finished or latest kept)"] == 1
    assert summary.routes == {"apc_1920.csv": {"inpatient_spells": 1, "persons": 1}}


def test_day_first_dates_place_people_and_reports_hold_no_dates(tmp_path):
    # An A&E person known only by age at a dd/mm/yyyy arrival is kept (born about 1950); an unreadable
    # birth or death date is reported by its shape, never its value.
    src = tmp_path / "hes"
    src.mkdir()
    _write(src / "ae.csv", ["PSEUDO_HESID", "AEKEY", "ARRIVALDATE", "AEATTENDDISP", "ARRIVALAGE", "MYDOB", "DOD"],
           [("q1", "a1", "03/04/2020", "01", "70", "", ""), ("q2", "a2", "2020-04-05", "02", "60", "5/1950",
                                                             "31/02/2021"),
            ("q2", "a2", "2020-04-05", "02", "60", "5/1950", "31/02/2021")])
    tables, summary = read_hes(src, pseudonym_key=KEY)
    ae = tables["ae_attendances"]
    assert len(ae) == 2  # q1 kept; the repeated AEKEY a2 counted once
    q1 = tables["persons"].set_index("person_id").loc[_pid("q1")]
    assert q1["birth_date"].year in (1949, 1950)
    report = json.dumps(summary.to_dict())
    assert "5/1950" not in report and "31/02/2021" not in report
    # Counted per file and column by shape (the file's two rows; each is read as its own record).
    assert summary.unreadable["ae.csv: DOD"] == {"kind": "date", "present": 2, "unreadable": 2,
                                                "shapes": {"NN/NN/NNNN": 2}}
    assert "DOD" not in summary.unknown_codes


def test_a_semicolon_separated_file_is_read(tmp_path):
    src = tmp_path / "hes"
    src.mkdir()
    _write(src / "ae.csv", ["PSEUDO_HESID", "AEKEY", "ARRIVALDATE", "AEATTENDDISP", "ARRIVALAGE"],
           [("s1", "a1", "2020-04-03", "01", "70"), ("s2", "a2", "2020-04-05", "02", "60")], sep=";")
    tables, _ = read_hes(src, pseudonym_key=KEY)
    assert sorted(tables["ae_attendances"]["person_id"]) == sorted([_pid("s1"), _pid("s2")])


def test_a_truncated_gz_file_is_named_not_aborted(tmp_path, monkeypatch):
    import gzip

    from riskstrat.cli import app
    from riskstrat.data.io import DataFileError
    from riskstrat.data.privacy import KEY_ENV

    src = tmp_path / "hes"
    src.mkdir()
    rows = [(f"t{i}", f"a{i}", "2020-04-03", "01", "70") for i in range(2000)]
    plain = _write(tmp_path / "ae.csv", ["PSEUDO_HESID", "AEKEY", "ARRIVALDATE", "AEATTENDDISP", "ARRIVALAGE"], rows)
    packed = gzip.compress(plain.read_bytes())
    (src / "ae.csv.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataFileError, match=r"ae.csv.gz: the compressed file is truncated or corrupt.*copy it again"):
        read_hes(src, pseudonym_key=KEY)
    monkeypatch.setenv(KEY_ENV, "test-key")
    result = CliRunner().invoke(app, ["import", "hes", str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "truncated or corrupt" in " ".join(result.output.split())
    assert "Aborted" not in result.output


def test_day_first_reading_is_said_with_the_ambiguous_count(tmp_path):
    src = tmp_path / "hes"
    src.mkdir()
    _write(src / "ae.csv", ["PSEUDO_HESID", "AEKEY", "ARRIVALDATE", "AEATTENDDISP", "ARRIVALAGE"],
           [("d1", "a1", "12/1/2001", "01", "70"), ("d2", "a2", "25/12/2001", "01", "60"),
            ("d3", "a3", "2001-03-04", "01", "50")])
    tables, summary = read_hes(src, pseudonym_key=KEY)
    dates = tables["ae_attendances"].set_index("person_id")["arrival_date"]
    assert dates[_pid("d1")] == pd.Timestamp("2001-01-12")
    note = next(n for n in summary.notes if n.startswith("ARRIVALDATE"))
    assert "2 dates written with slashes were read day first" in note and "1 of them would be another valid" in note


def test_unreadable_costs_ages_and_dates_are_counted_per_file(tmp_path):
    # Two A&E files read as one: each unreadable value is counted under its own file and column.
    src = tmp_path / "hes"
    src.mkdir()
    columns = ["PSEUDO_HESID", "AEKEY", "ARRIVALDATE", "AEATTENDDISP", "ARRIVALAGE", "COST"]
    _write(src / "ae_1920.csv", columns, [("q1", "a1", "2019-05-01", "01", "70", "£1,200"),
                                          ("q1", "a2", "2019-06-01", "02", "70", "NaN")])
    _write(src / "ae_2021.csv", columns, [("q1", "a3", "2020-05-01", "02", "seventy", "120"),
                                          ("q1", "a4", "2020-02-30", "02", "71", "$120")])
    tables, summary = read_hes(src, pseudonym_key=KEY)
    assert sorted(tables["ae_attendances"]["cost"].dropna().tolist()) == [120.0, 1200.0]  # £ in a GBP extract
    assert {k: (v["kind"], v["present"], v["unreadable"], v["shapes"]) for k, v in summary.unreadable.items()} == {
        "ae_1920.csv: COST": ("cost", 2, 1, {"ccc": 1}),
        "ae_2021.csv: ARRIVALAGE": ("number", 2, 1, {"ccccccc": 1}),
        "ae_2021.csv: ARRIVALDATE": ("date", 2, 1, {"NNNN-NN-NN": 1}),
    }  # $120 in ae_2021.csv is not counted: its row had no readable date and was dropped (counted) first
    assert summary.dropped["2 AE files: attendances without a readable ARRIVALDATE"] == 1
