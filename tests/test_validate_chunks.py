"""Validation of a report alone in pieces (validate, --stamp): the same findings, messages and counts as
checking each table whole, in memory bounded by a piece (riskstrat.data.validate._check_in_chunks)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from riskstrat.data import validate as validation
from riskstrat.data.stamp import STAMP
from riskstrat.data.validate import stamp_data_dir, validate_data_dir

PIECE = 7_000  # rows a piece: every event table but the smallest is read in several


def read(path) -> pd.DataFrame:
    """A Parquet table with its text as plain values (to set any value)."""
    table = pd.read_parquet(path)
    return table.astype({c: object for c in table.columns if isinstance(table[c].dtype, pd.CategoricalDtype)})


@pytest.fixture(scope="module")
def messy(synthetic_2000, tmp_path_factory):
    """The 2,000 people with repeats across pieces, a blank and an unknown code, a negative cost, an
    unknown person, a date after the data end and stays ending after death."""
    out = shutil.copytree(synthetic_2000, tmp_path_factory.mktemp("chunks") / "data")
    (out / STAMP).unlink()
    persons = read(out / "persons.parquet")
    drugs = read(out / "prescriptions.parquet")
    n = len(drugs)
    copies = drugs.iloc[[3, 5, 3, n - 2, n // 2]]  # row 3 three times in all; others far from their copy
    drugs = pd.concat([drugs.iloc[: n // 3], copies, drugs.iloc[n // 3:], copies.iloc[[1]]], ignore_index=True)
    drugs.loc[10, "bnf_chapter"] = "99"
    drugs.loc[len(drugs) - 4, "bnf_chapter"] = "zz"
    drugs.to_parquet(out / "prescriptions.parquet", index=False)
    visits = read(out / "gp_contacts.parquet")
    visits.loc[len(visits) - 7, "person_id"] = "nobody-at-all"
    visits.loc[9_500, "contact_date"] = pd.Timestamp("2031-01-01")
    visits.to_parquet(out / "gp_contacts.parquet", index=False)
    stays = read(out / "outpatient_appointments.parquet")
    stays.loc[stays.index[-3:], "cost"] = -5.0
    stays.to_parquet(out / "outpatient_appointments.parquet", index=False)
    dead = persons.loc[persons["death_date"].notna(), ["person_id", "death_date"]]
    spells = read(out / "inpatient_spells.parquet")
    at = spells.index[spells["person_id"].isin(dead["person_id"])][:2]
    spells.loc[at, "discharge_date"] = (spells.loc[at, "person_id"].map(dead.set_index("person_id")["death_date"])
                                        + pd.Timedelta(days=3)).astype(spells["discharge_date"].dtype)
    spells.to_parquet(out / "inpatient_spells.parquet", index=False)
    return out


def report_of(folder, **options):
    _, report = validate_data_dir(folder, keep_records=False, **options)
    return report.to_dict()


def test_a_messy_folder_checked_in_pieces_gives_the_whole_tables_report(messy, monkeypatch):
    pieces = []
    original = validation._check_in_chunks
    monkeypatch.setattr(validation, "_check_in_chunks",
                        lambda table, *a, **k: pieces.append(table.name) or original(table, *a, **k))
    whole = report_of(messy)
    assert pieces == []
    assert {i["rule"] for i in whole["issues"]} >= {"duplicate_rows", "unknown_code", "negative_cost",
                                                    "unknown_person", "future_event", "event_after_death"}
    for options in ({"duplicate_rows": "error"}, {"unknown_codes": "drop"}, {"out_of_life_events": "error"}):
        assert report_of(messy, chunk_rows=PIECE, **options) == report_of(messy, **options)
    assert report_of(messy, chunk_rows=PIECE) == whole
    assert {"prescriptions", "gp_contacts", "outpatient_appointments"} <= set(pieces)


def test_a_clean_folder_stamped_in_pieces_has_the_whole_tables_stamp(synthetic_2000, tmp_path):
    folder = shutil.copytree(synthetic_2000, tmp_path / "data")
    drugs = read(folder / "prescriptions.parquet")
    pd.concat([drugs, drugs.iloc[[0, len(drugs) // 2]]], ignore_index=True).to_parquet(
        folder / "prescriptions.parquet", index=False)  # repeats, each far from the row it repeats
    stamp_data_dir(folder, chunk_rows=10**9)
    whole = json.loads((folder / STAMP).read_text())
    stamp_data_dir(folder, chunk_rows=PIECE)
    assert json.loads((folder / STAMP).read_text()) == whole
    assert whole["tables"]["prescriptions"]["dropped"] == 2


def test_a_bad_row_in_one_piece_is_refused_with_its_row(synthetic_2000, tmp_path):
    folder = shutil.copytree(synthetic_2000, tmp_path / "data")
    drugs = pd.read_parquet(folder / "prescriptions.parquet")
    drugs.loc[len(drugs) - 1, "cost"] = np.inf
    drugs.to_parquet(folder / "prescriptions.parquet", index=False)
    report, stamp = stamp_data_dir(folder, chunk_rows=PIECE)
    assert stamp is None and not (folder / STAMP).exists()
    [bad] = report.errors
    assert bad.table == "prescriptions" and bad.column == "cost" and bad.n_rows == 1
    assert f"row {len(drugs)}" in bad.message
