"""LinkedRecords keys event rows by the persons' ids (riskstrat.data.records)."""

from __future__ import annotations

import pandas as pd
import pytest

from riskstrat.data.records import LinkedRecords


@pytest.mark.parametrize("dtype", ["str", object])
def test_event_rows_are_keyed_by_the_persons_ids_as_pandas_would(dtype, make_table):
    persons = make_table("persons", [{"person_id": p, "birth_date": "1950-01-01", "practice_id": "P1"}
                                     for p in ["p3", "p1", "p2"]])
    ltc = make_table("ltc_register", [{"person_id": p, "condition": "asthma", "diagnosis_date": "2020-01-01"}
                                      for p in ["p2", "p1", "p2", "p3"]])
    ltc["person_id"] = ltc["person_id"].astype(dtype)
    ltc.loc[1, "person_id"] = None  # validation refuses a missing or unknown id; keying makes it missing
    ltc.loc[3, "person_id"] = "p9"
    keyed = LinkedRecords({"persons": persons, "ltc_register": ltc}).get("ltc_register")["person_id"]
    categories = pd.Index(persons["person_id"].unique(), dtype=persons["person_id"].dtype)
    assert keyed.cat.categories.equals(categories)  # p3, p1, p2: the persons' order
    assert keyed.cat.codes.tolist() == [2, -1, 2, -1]
    assert keyed.astype(object).tolist()[0] == "p2" and keyed.isna().tolist() == [False, True, False, True]
