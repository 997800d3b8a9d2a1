"""What a clinician checks first about each listed person (riskstrat.scoring.facts), and the hold-out's
approval: hand-made records where the answer is known, the lists and pages written from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from riskstrat.data.codelists import icd10_chapter, palliative_code
from riskstrat.data.io import write_records_tables
from riskstrat.data.validate import load_records
from riskstrat.errors import RiskstratError
from riskstrat.features.duckdb import DuckDBEngine
from riskstrat.features.engine import PandasEngine
from riskstrat.modeling.config import ConfigError, ListsConfig, ScoringConfig, load_config
from riskstrat.scoring import lists
from riskstrat.scoring.facts import (FACT_TABLES, CaseManagedFileError, NextExtractError, person_facts,
                                     read_case_managed, read_next_persons)

AS_OF = "2025-11-01"
DATA_END = "2025-10-31"
CONDITIONS = ["diabetes", "copd", "chd", "heart_failure", "ckd"]  # five: more than a reason names


def spell(pid, date, method="emergency", diagnosis=None):
    return {"person_id": pid, "admission_date": date, "discharge_date": date, "admission_method": method,
            "primary_diagnosis": diagnosis}


def records_tables() -> dict[str, list[dict]]:
    people = [{"person_id": pid, "birth_date": "1940-01-01", "practice_id": "P001"} for pid in "abcdef"]
    return {
        "persons": people,
        "inpatient_spells": [
            spell("a", "2025-03-01", diagnosis="I50.9"),
            spell("a", "2025-06-01", diagnosis="J44.1"),  # the last before the scoring date
            spell("a", "2025-11-01", diagnosis="S72.0"),  # on the scoring date: the future
            spell("a", "2025-07-01", method="elective", diagnosis="C34"),  # not emergency
            spell("b", "2024-02-01", method="elective", diagnosis="Z51.5"),  # palliative care
            spell("e", "2025-12-01", diagnosis="Z515"),  # after the scoring date: not yet
        ],
        "outpatient_appointments": [
            {"person_id": "a", "appointment_date": "2025-01-01", "specialty": "Cardiology", "attended": True},
            {"person_id": "a", "appointment_date": "2025-02-01", "specialty": " cardiology", "attended": False},
            {"person_id": "a", "appointment_date": "2025-03-01", "specialty": "Renal", "attended": True},
            {"person_id": "a", "appointment_date": "2024-10-01", "specialty": "Eye", "attended": True},  # > 12m
        ],
        "ltc_register": [{"person_id": "a", "condition": c, "diagnosis_date": "2020-01-01"} for c in CONDITIONS]
        + [{"person_id": "b", "condition": "asthma", "diagnosis_date": "2026-01-01"}],  # after the scoring date
        "social_care": [
            {"person_id": "c", "service_type": "nursing", "start_date": "2024-01-01"},  # ongoing
            {"person_id": "d", "service_type": "residential", "start_date": "2024-01-01", "end_date": "2025-01-01"},
            {"person_id": "e", "service_type": "home_care", "start_date": "2024-01-01"},
        ],
    }


@pytest.fixture
def records(make_records):
    return make_records(**records_tables())


def next_extract() -> pd.DataFrame:
    """The next month's persons: a died, c changed practice, d left registration, e stayed, b and f gone."""
    return pd.DataFrame({"person_id": ["a", "c", "d", "e"], "practice_id": ["P001", "P009", "P001", "P001"],
                         "registration_end": [pd.NaT, pd.NaT, pd.Timestamp("2025-11-15"), pd.NaT],
                         "death_date": [pd.Timestamp("2025-11-10"), pd.NaT, pd.NaT, pd.NaT]})


# ----------------------------------------------------------------------------- the facts


def test_code_lists_as_data():
    assert palliative_code(pd.Series(["Z51.5", "z515", "SNOMED:103735009", "385763009", "Z51.1", None])).tolist() \
        == [True, True, True, True, False, False]
    assert icd10_chapter(pd.Series(["J44.1", "I50", "C34", "D61", "S72.0", "Q99"])).tolist() == \
        ["respiratory system", "circulatory system", "cancer and other neoplasms", "blood and immune system",
         "injury and poisoning", "congenital"]


def test_facts_from_hand_made_records(records):
    facts = person_facts(records, list("abcdef"), AS_OF, data_end=DATA_END, case_managed={"f"},
                         next_persons=next_extract())
    t = facts.table
    assert t.loc["a", "last_emergency_admission"] == pd.Timestamp("2025-06-01")
    assert t.loc["a", "last_emergency_diagnosis"] == "respiratory system"
    assert pd.isna(t.loc["b", "last_emergency_admission"])  # elective only
    assert t.loc["a", "outpatient_specialties_12m"] == 2 and t.loc["b", "outpatient_specialties_12m"] == 0
    assert t.loc["a", "long_term_conditions"] == ("diabetes; COPD; coronary heart disease; heart failure; "
                                                  "chronic kidney disease")
    assert t.loc["b", "long_term_conditions"] == ""  # recorded after the scoring date
    assert t["palliative_care"].tolist() == [False, True, False, False, False, False]
    assert t["care_home"].tolist() == [False, False, True, False, False, False]  # d's ended, e's is home care
    assert t["case_managed"].tolist() == [False, False, False, False, False, True]
    assert t["died"].tolist() == [True, False, False, False, False, False]
    # c: another practice; d: registration ended; b and f: no longer in the data; a died (not "moved").
    assert t["moved"].tolist() == [False, True, True, True, False, True]
    assert t.loc["f", "flags"] == "case-managed; moved since the data end"
    assert set(facts.checked) == {"palliative_care", "care_home", "case_managed", "died", "moved"}
    assert facts.as_dict(exclude=["died"])["flagged"] == {"palliative_care": 1, "care_home": 1, "case_managed": 1,
                                                          "died": 1, "moved": 4}


def test_each_person_keeps_their_facts_whatever_the_lists_order(records):
    # The facts are worked out by each row's position among the listed people: another order, a repeat and an
    # id the data do not have must not move a fact to someone else.
    kwargs = dict(data_end=DATA_END, next_persons=next_extract())
    whole = person_facts(records, list("abcdef"), AS_OF, **kwargs).table
    got = person_facts(records, ["e", "a", "zz", "c", "a", "b"], AS_OF, **kwargs).table
    assert got.index.tolist() == ["e", "a", "zz", "c", "b"]
    pd.testing.assert_frame_equal(got.loc[list("eacb")], whole.loc[list("eacb")])
    stranger = got.loc["zz"]
    assert pd.isna(stranger["last_emergency_admission"]) and stranger["outpatient_specialties_12m"] == 0
    assert stranger["long_term_conditions"] == "" and not stranger[["palliative_care", "care_home"]].any()


def test_a_flag_without_its_source_is_not_checked_and_says_why(make_records):
    tables = records_tables()
    for row in tables["inpatient_spells"]:
        row["primary_diagnosis"] = None
    records = make_records(persons=tables["persons"], inpatient_spells=tables["inpatient_spells"])
    facts = person_facts(records, ["a", "b"], AS_OF)
    assert facts.checked == {}
    assert set(facts.not_checked) == {"palliative_care", "care_home", "case_managed", "died", "moved"}
    assert "no later extract" in facts.not_checked["died"]
    # The last emergency admission is known; its chapter, the specialties and conditions are not columns.
    assert facts.table.loc["a", "last_emergency_admission"] == pd.Timestamp("2025-06-01")
    assert not {"last_emergency_diagnosis", "outpatient_specialties_12m", "long_term_conditions"} & set(facts.table)
    assert not facts.table[["palliative_care", "care_home"]].any().any()


def test_duckdb_tables_give_the_same_facts(records, tmp_path, make_table):
    folder = write_records_tables({name: make_table(name, rows) for name, rows in records_tables().items()},
                                  tmp_path / "data")
    kwargs = dict(data_end=DATA_END, case_managed={"f"}, next_persons=next_extract())
    reference = person_facts(PandasEngine(load_records(folder)).tables(FACT_TABLES), list("abcdef"), AS_OF, **kwargs)
    got = person_facts(DuckDBEngine(folder).tables(FACT_TABLES), list("abcdef"), AS_OF, **kwargs)
    pd.testing.assert_frame_equal(got.table, reference.table)
    assert got.checked == reference.checked


def test_case_managed_file_and_next_extract_are_read(tmp_path):
    lines = tmp_path / "case_managed.txt"
    lines.write_text("# people on the community matrons' caseload\nAB12\n\n cd34 \n")
    assert read_case_managed(lines) == {"ab12", "cd34"}
    table = tmp_path / "case_managed.csv"
    table.write_text("person_id,team\nAB12,matrons\n")
    assert read_case_managed(table) == {"ab12"}
    table.write_text("id,team\nAB12,matrons\n")
    with pytest.raises(CaseManagedFileError, match="person_id"):
        read_case_managed(table)
    with pytest.raises(CaseManagedFileError, match="case_managed_file"):
        read_case_managed(tmp_path / "missing.txt")
    later = tmp_path / "next"
    later.mkdir()
    with pytest.raises(NextExtractError, match="next_extract"):
        read_next_persons(later)
    (later / "persons.csv").write_text("person_id,birth_date,sex,practice_id,death_date\n"
                                       "AB12,1940-01-01,female,P001,2025-11-10\ncd34,1950-01-01,male,P002,\n")
    persons = read_next_persons(later)
    assert persons["person_id"].tolist() == ["ab12", "cd34"]
    assert persons["death_date"].iloc[0] == pd.Timestamp("2025-11-10") and pd.isna(persons["death_date"].iloc[1])


# ----------------------------------------------------------------------------- on the lists


def population_with(records, *, exclude=(), holdout=0.0):
    """The six people ranked a..f in one practice, listed, with their facts."""
    ids = pd.Index(list("abcdef"), name="person_id")
    features = pd.DataFrame({"practice_id": pd.array(["P001"] * 6, dtype="string"), "age": 80.0,
                             "sex": "female", "emergency_admissions_0_3m": 1.0, "emergency_admissions_3_12m": 0.0,
                             "ae_attendances_0_3m": 0.0, "ae_attendances_3_12m": 0.0, "cost_total_12m": 100.0},
                            index=ids)
    risk = np.linspace(0.9, 0.4, 6)
    population = lists.rank_population(features, risk)
    facts = person_facts(records, ids, AS_OF, data_end=DATA_END, case_managed={"f"}, next_persons=next_extract())
    population = lists.mark_lists(population, list_size=6, month="2025-11", facts=facts.table,
                                  exclude_flags=exclude, holdout_fraction=holdout, seed=1, holdout_exempt_tiers=())
    return population, facts


def write(out, population, facts, *, exclude=(), holdout=None):
    manifest = {"as_of": AS_OF, "month": "2025-11", "data_end": DATA_END, "flags": facts.as_dict(exclude=exclude),
                **({"holdout": holdout} if holdout else {})}
    return lists.write_month(out, population=population,
                             practice_lists=lists.practice_lists(population, list_size=6, facts=facts.table),
                             summary=lists.commissioner_summary(population, list_size=6), manifest=manifest)


def test_flags_and_facts_are_on_the_page_workbook_and_csv(records, tmp_path):
    population, facts = population_with(records)
    month = write(tmp_path / "m", population, facts)
    folder = month / "practices" / "P001"
    table = pd.read_csv(folder / "list.csv", dtype=str, keep_default_na=False)
    assert table["Person ID"].tolist() == list("abcdef")  # flagged people listed, not left off
    assert table["Flags"].tolist() == ["died since the data end", "palliative care; moved since the data end",
                                       "care home; moved since the data end", "moved since the data end", "",
                                       "case-managed; moved since the data end"]
    a = table.iloc[0]
    assert a["Last emergency admission"] == "2025-06-01"
    assert a["Last emergency admission: diagnosis chapter"] == "respiratory system"
    assert a["Outpatient specialties (12m)"] == "2"
    # The full list, where a reason names three at most.
    assert a["Long-term conditions"].count(";") == 4 and "…" not in a["Long-term conditions"]
    page = (folder / "list.html").read_text()
    row_a = page[page.index('<td class="pid">a'):page.index("</td>", page.index('<td class="pid">a'))]
    assert '<span class="flag">died since the data end</span>' in row_a
    assert "Last emergency admission: 2025-06-01 (respiratory system)" in row_a
    assert "Long-term conditions: diabetes, COPD, coronary heart disease, heart failure, chronic kidney disease" \
        in row_a and "<summary>more</summary>" in row_a
    assert "Not checked this month" not in page and "Checked this month: palliative care" in page
    from openpyxl import load_workbook

    sheet = load_workbook(folder / "list.xlsx").worksheets[0]
    rows = [[c.value for c in r] for r in sheet.iter_rows()]
    header = next(r for r in rows if "Flags" in r)
    assert rows[rows.index(header) + 3][header.index("Flags")] == "care home; moved since the data end"


def test_excluded_flags_are_left_off_and_counted(records, tmp_path):
    population, facts = population_with(records, exclude=["died", "care_home"])
    assert population.set_index("person_id")["left_off"].notna().to_dict() == \
        {"a": True, "b": False, "c": True, "d": False, "e": False, "f": False}
    month = write(tmp_path / "m", population, facts, exclude=["died", "care_home"])
    folder = month / "practices" / "P001"
    table = pd.read_csv(folder / "list.csv", dtype=str)
    assert table["Person ID"].tolist() == ["b", "d", "e", "f"] and table["Rank"].tolist() == ["1", "2", "3", "4"]
    page = (folder / "list.html").read_text()
    notice = page[page.index('id="left-off"'):page.index("</p>", page.index('id="left-off"'))]
    assert "2 people who would be on this list are left off for a flag" in notice
    assert "1 care home; 1 died since the data end" in notice
    summary = pd.read_csv(month / "summary.csv", dtype=str)
    assert {"left off (flags)", "shown"} <= set(summary.columns)
    # Nobody left off: the page says nothing of it, and the summary has no such column.
    population, facts = population_with(records)
    month = write(tmp_path / "n", population, facts)
    assert 'id="left-off"' not in (month / "practices" / "P001" / "list.html").read_text()
    assert "left off (flags)" not in pd.read_csv(month / "summary.csv").columns


def test_exclude_flags_is_checked():
    assert ListsConfig(exclude_flags=["died", "moved", "died"]).exclude_flags == ["died", "moved"]
    with pytest.raises(ValidationError, match="exclude_flags"):
        ListsConfig(exclude_flags=["deceased"])


# ----------------------------------------------------------------------------- the hold-out's approval


def test_a_hold_out_needs_a_stated_approval(tmp_path):
    with pytest.raises(ValidationError, match="holdout_approval"):
        ListsConfig(holdout_fraction=0.1)
    with pytest.raises(ConfigError, match="lists.holdout_approval is not set") as refused:
        load_config(None, ["lists.holdout_fraction=0.1"], model=ScoringConfig)
    assert isinstance(refused.value, RiskstratError)
    with pytest.raises(lists.HoldoutApprovalError, match="Nothing was published"):
        lists.check_holdout_approval(fraction=0.1, approval="  ")
    lists.check_holdout_approval(fraction=0.0, approval=None)
    assert ListsConfig(holdout_fraction=0.1, holdout_approval="ICB governance, ref 7").holdout_approval
    shipped = load_config(Path(__file__).parents[1] / "configs" / "scoring.yaml", model=ScoringConfig)
    assert shipped.lists.holdout_fraction > 0 and "ref" in shipped.lists.holdout_approval


def test_the_page_names_the_approval_and_says_ranks_are_not_shown(records, tmp_path):
    population, facts = population_with(records, holdout=0.4)
    assert population["holdout"].sum() == 2
    rule = lists.holdout_rule(fraction=0.4, seed=1, exempt_tiers=(),
                              approval="North ICB research governance, ref RG-2026-014")
    month = write(tmp_path / "m", population, facts, holdout=rule)
    page = (month / "practices" / "P001" / "list.html").read_text()
    notice = page[page.index('id="held-back"'):page.index("</p>", page.index('id="held-back"'))]
    assert "Approved by North ICB research governance, ref RG-2026-014." in notice
    assert "Their ranks are not shown" in notice
    assert json.loads((month / "manifest.json").read_text())["holdout"]["approval"].startswith("North ICB")
