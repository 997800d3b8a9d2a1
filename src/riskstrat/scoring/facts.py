"""What a clinician checks first about each listed person, from the month's records: the flags (on the
palliative care register, living in a care home, already case-managed, died or moved since the data
end), the last emergency admission (date, and its primary diagnosis chapter), the distinct outpatient
specialties in 12 months, and the full long-term-condition list.

Computed for the listed people only (:func:`person_facts`), from validated tables whatever the
engine (``FeatureEngine.tables``: in memory for pandas, read through the engine's own cleaning for
DuckDB and Spark). A fact whose source the data do not have is missing, never zero, and the flags
say which were checked (:class:`PersonFacts`).

>>> FLAG_WORDS["died"]
'died since the data end'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.data.codelists import icd10_chapter, palliative_code
from riskstrat.data.io import find_table_file, read_table_file, read_user_text
from riskstrat.data.privacy import canonical_ids
from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import LONG_TERM_CONDITIONS
from riskstrat.errors import RiskstratError
from riskstrat.features.clinical import CARE_HOME_TYPES, WINDOWS
from riskstrat.modeling.config import LIST_FLAGS

__all__ = ["FACT_TABLES", "FLAG_WORDS", "CaseManagedFileError", "NextExtractError", "PersonFacts", "flags_text",
           "person_facts", "read_case_managed", "read_next_persons"]

# The event tables the facts read (each only where the data have it).
FACT_TABLES = ("inpatient_spells", "outpatient_appointments", "ltc_register", "social_care")

# A flag as the lists write it (list.csv's "Flags", the page's badges), in LIST_FLAGS order.
FLAG_WORDS = {"palliative_care": "palliative care", "care_home": "care home", "case_managed": "case-managed",
              "died": "died since the data end", "moved": "moved since the data end"}
# Where each flag comes from, for the page's "How to read" and the manifest.
FLAG_SOURCES = {
    "palliative_care": "a hospital spell before the scoring date whose primary diagnosis is on the palliative care "
                       "code list (ICD-10 Z51.5, SNOMED CT palliative and hospice care codes)",
    "care_home": "a residential or nursing home service in the social care data, in place on the scoring date",
    "case_managed": "the case-managed list the data team was given (case_managed_file)",
    "died": "a date of death after the data end in the next extract",
    "moved": "in the next extract: registered with another practice, registration ended after the data end, or no "
             "longer in the data",
}
_WHY_NOT = {
    "palliative_care": "the data have no hospital spells with a primary diagnosis",
    "care_home": "the data have no social care table",
    "case_managed": "no case-managed list was given (case_managed_file)",
    "died": "no later extract was given (next_extract)",
    "moved": "no later extract was given (next_extract)",
}
SEPARATOR = "; "
assert tuple(FLAG_WORDS) == LIST_FLAGS


class CaseManagedFileError(RiskstratError):
    """The case-managed file cannot be read."""


class NextExtractError(RiskstratError):
    """The next extract's persons table cannot be read."""


@dataclass(frozen=True)
class PersonFacts:
    """The listed people's facts and which flags the data could say.

    ``table`` (index ``person_id``) has a bool column per flag of :data:`FLAG_WORDS`, ``flags`` (their
    words joined by "; "), ``last_emergency_admission`` (date), and, where the source has them,
    ``last_emergency_diagnosis`` (ICD-10 chapter), ``outpatient_specialties_12m`` and
    ``long_term_conditions`` (plain names joined by "; ", every condition). ``checked`` maps each flag
    looked for to its source in words; ``not_checked`` each other flag to why not.
    """

    table: pd.DataFrame
    checked: Mapping[str, str] = field(default_factory=dict)
    not_checked: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self, exclude: Iterable[str] = ()) -> dict:
        """What the manifest records (counts of flagged listed people, no ids) and the pages explain."""
        return {"checked": dict(self.checked), "not_checked": dict(self.not_checked), "excluded": list(exclude),
                "flagged": {f: int(self.table[f].sum()) for f in FLAG_WORDS if f in self.checked}}


def flags_text(table: pd.DataFrame, flags: Iterable[str] = LIST_FLAGS) -> pd.Series:
    """Each person's ``flags`` (bool columns of ``table``) in words, "; "-joined ("" for none)."""
    words = pd.Series("", index=table.index, dtype=object)
    for flag in flags:
        hit = table[flag].to_numpy(dtype=bool)
        words[hit] = np.where(words[hit] == "", FLAG_WORDS[flag], words[hit] + SEPARATOR + FLAG_WORDS[flag])
    return words


def read_case_managed(path) -> set[str]:
    """Canonical pseudonyms of the people already case-managed: one per line (blank lines and ``#``
    comments skipped) or a CSV with a ``person_id`` column."""
    path = Path(path)
    if not path.is_file():
        raise CaseManagedFileError(f"{path}: case-managed file not found{' (it is a folder)' if path.is_dir() else ''}; "
                                   f"check case_managed_file in the scoring config")
    try:
        text = read_user_text(path, what="case-managed")
    except RiskstratError as exc:
        raise CaseManagedFileError(f"{exc}; check case_managed_file in the scoring config") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lines and "," in lines[0]:
        header = [h.strip().lstrip("\ufeff").lower() for h in lines[0].split(",")]
        if "person_id" not in header:
            raise CaseManagedFileError(f"{path}: a CSV of case-managed people needs a person_id column, found "
                                       f"{header}; or give one pseudonym per line")
        at = header.index("person_id")
        lines = [row.split(",")[at] if len(row.split(",")) > at else "" for row in lines[1:]]
    elif lines and canonical_ids(pd.Series(lines[:1])).iloc[0] == "person_id":
        lines = lines[1:]
    return set(canonical_ids(pd.Series(lines, dtype=object)).dropna())


def read_next_persons(folder) -> pd.DataFrame:
    """The next extract's persons (``person_id`` canonical, ``practice_id``, ``registration_end``,
    ``death_date``) from its ``persons`` file, as it is (validated when it is scored itself)."""
    folder = Path(folder)
    path = find_table_file(folder, "persons") if folder.is_dir() else None
    if path is None:
        raise NextExtractError(f"{folder}: no persons table (persons.parquet or persons.csv) found for next_extract; "
                               f"give the later extract's data folder, or remove the setting")
    try:
        raw = read_table_file(path)
    except RiskstratError as exc:
        raise NextExtractError(f"{exc}; check next_extract in the scoring config") from None
    if "person_id" not in raw:
        raise NextExtractError(f"{path}: the next extract's persons table has no person_id column")

    def column(name: str, date: bool = False) -> pd.Series:
        values = raw[name] if name in raw else pd.Series(None, index=raw.index, dtype=object)
        return pd.to_datetime(values, errors="coerce") if date else values.astype("string")

    return pd.DataFrame({"person_id": canonical_ids(raw["person_id"].astype(object)).to_numpy(),
                         "practice_id": column("practice_id").str.strip().to_numpy(),
                         "registration_end": column("registration_end", True).to_numpy(),
                         "death_date": column("death_date", True).to_numpy()}).dropna(subset=["person_id"])


class _Listed:
    """The listed people's ids (as the data write them, unique) and where each table row's person is among them:
    by the person column's categorical codes (records key every event table over the same persons' ids), so
    that no row's id is turned into a string or looked up by its text."""

    def __init__(self, ids: pd.Index) -> None:
        self.ids = ids
        self._categories, self._of_code = None, None

    def positions(self, person: pd.Series) -> np.ndarray:
        """Each row's position in ``ids`` (-1: not listed)."""
        categories = person.cat.categories
        if categories is not self._categories:
            code = categories.get_indexer(self.ids.astype(categories.dtype))  # each listed id's code (-1: none)
            listed = code >= 0
            self._of_code = np.full(len(categories) + 1, -1, dtype=np.int64)  # the last slot: a missing id's (-1)
            self._of_code[code[listed]] = np.flatnonzero(listed)
            self._categories = categories
        return self._of_code[person.cat.codes.to_numpy()]

    def spread(self, at: np.ndarray, values: pd.Series, **fill) -> pd.Series:
        """``values`` (one per position ``at``) as a Series over ``ids``: missing elsewhere, or ``fill_value``."""
        return values.set_axis(at).reindex(np.arange(len(self.ids)), **fill).set_axis(self.ids)

    def have(self, at: np.ndarray) -> np.ndarray:
        """True for each listed person at one of the positions ``at``."""
        hit = np.zeros(len(self.ids), dtype=bool)
        hit[at] = True
        return hit


def _rows(records: LinkedRecords, name: str, listed: _Listed, date: str, before: pd.Timestamp) -> pd.DataFrame | None:
    """The rows of table ``name`` of the listed people dated before ``before``, with ``_at``, the row's person's
    position among them (None: the data lack the table)."""
    if not records.has(name):
        return None
    table = records.get(name)
    at = listed.positions(table["person_id"])
    keep = (at >= 0) & (table[date] < before).fillna(False).to_numpy(bool)
    return table.loc[keep].assign(_at=at[keep])


def _names_held(person: np.ndarray, condition: np.ndarray, n: int) -> np.ndarray:
    """Each of ``n`` people's long-term conditions in words, in :data:`LONG_TERM_CONDITIONS` order, "; "-joined
    ("" for none): rows ``person`` (position of the row's person) hold ``condition`` (a code); codes that are
    not long-term conditions are left out. One pass per condition, not one per person."""
    words = np.full(n, "", dtype=object)
    for code, name in LONG_TERM_CONDITIONS.items():
        held = np.zeros(n, dtype=bool)
        held[person[condition == code]] = True
        first = held & (words == "")
        words[first] = name
        later = held & ~first
        words[later] = words[later] + (SEPARATOR + name)
    return words


def _has_values(records: LinkedRecords, name: str, column: str) -> bool:
    """Whether the data's table ``name`` holds a ``column`` value in any row: of the whole table, also when
    ``records`` hold only the listed people's rows (``filled``, :meth:`FeatureEngine.tables`)."""
    filled = getattr(records, "filled", None)
    if filled is not None and name in filled:
        return records.has(name) and column in filled[name]
    return records.has(name) and column in records.get(name) and bool(records.get(name)[column].notna().any())


def person_facts(records: LinkedRecords, person_ids, as_of, *, data_end=None, case_managed: set[str] | None = None,
                 next_persons: pd.DataFrame | None = None) -> PersonFacts:
    """The facts of the people ``person_ids`` (as the data write them) on the scoring date ``as_of``.

    Events dated before ``as_of`` count (an event on it belongs to the future, as for the features);
    "in 12 months" is the features' window (the 365 days before ``as_of``). ``case_managed``:
    canonical pseudonyms (:func:`read_case_managed`; None: not checked). ``next_persons``: a later
    extract's persons (:func:`read_next_persons`; None: died and moved not checked), compared with
    this data's practice and ``data_end``.
    """
    t = pd.Timestamp(as_of).normalize()
    ids = pd.Index(pd.Series(list(person_ids), dtype=object).astype(str).unique(), name="person_id")
    out = pd.DataFrame(index=ids)
    checked, not_checked = {}, {}
    for flag in FLAG_WORDS:
        out[flag] = False

    listed = _Listed(ids)
    ip = _rows(records, "inpatient_spells", listed, "admission_date", t)
    if ip is not None:
        if "primary_diagnosis" not in ip:  # an optional column the source may not have
            ip["primary_diagnosis"] = pd.Series(pd.NA, index=ip.index, dtype="string")
        emergency = ip.loc[(ip["admission_method"].astype("string") == "emergency").fillna(False).to_numpy(bool)]
        last = emergency.sort_values(["_at", "admission_date", "primary_diagnosis"], na_position="first") \
            .groupby("_at").tail(1)
        at = last["_at"].to_numpy()
        out["last_emergency_admission"] = listed.spread(at, last["admission_date"]).astype("datetime64[s]")
        if _has_values(records, "inpatient_spells", "primary_diagnosis"):
            out["last_emergency_diagnosis"] = listed.spread(at, icd10_chapter(last["primary_diagnosis"])) \
                .astype("string")
            out["palliative_care"] = listed.have(ip.loc[palliative_code(ip["primary_diagnosis"]), "_at"].to_numpy())
            checked["palliative_care"] = FLAG_SOURCES["palliative_care"]
    if "palliative_care" not in checked:
        not_checked["palliative_care"] = _WHY_NOT["palliative_care"]

    if _has_values(records, "outpatient_appointments", "specialty"):
        op = _rows(records, "outpatient_appointments", listed, "appointment_date", t)
        op = op.loc[(op["appointment_date"] >= t - pd.Timedelta(days=WINDOWS["12m"][1])).to_numpy(bool)]
        specialty = op["specialty"].astype("string").str.strip().str.lower()
        distinct = op.assign(_s=specialty).dropna(subset=["_s"]).loc[lambda f: f["_s"] != ""] \
            .groupby("_at")["_s"].nunique()
        out["outpatient_specialties_12m"] = listed.spread(distinct.index.to_numpy(), distinct, fill_value=0).astype("Int64")

    ltc = _rows(records, "ltc_register", listed, "diagnosis_date", t)
    if ltc is not None:
        out["long_term_conditions"] = pd.Series(
            _names_held(ltc["_at"].to_numpy(), ltc["condition"].astype(str).to_numpy(object), len(ids)),
            index=ids, dtype="string")

    sc = _rows(records, "social_care", listed, "start_date", t)
    if sc is not None:
        ongoing = (sc["end_date"].isna() | (sc["end_date"] >= t)).to_numpy(bool)
        home = sc["service_type"].astype(str).isin(CARE_HOME_TYPES).to_numpy(bool)
        out["care_home"] = listed.have(sc.loc[ongoing & home, "_at"].to_numpy())
        checked["care_home"] = FLAG_SOURCES["care_home"]
    else:
        not_checked["care_home"] = _WHY_NOT["care_home"]

    canon = canonical_ids(pd.Series(ids, dtype=object)).to_numpy(dtype=object)
    if case_managed is not None:
        out["case_managed"] = pd.Series(canon).isin(case_managed).to_numpy()
        checked["case_managed"] = FLAG_SOURCES["case_managed"]
    else:
        not_checked["case_managed"] = _WHY_NOT["case_managed"]

    if next_persons is not None:
        end = pd.Timestamp(data_end) if data_end is not None else t - pd.Timedelta(days=1)
        present = pd.Series(canon).isin(next_persons["person_id"]).to_numpy()
        later = next_persons.drop_duplicates("person_id").set_index("person_id").reindex(canon)
        died = present & (later["death_date"] > end).fillna(False).to_numpy(bool)
        ended = present & (later["registration_end"] > end).fillna(False).to_numpy(bool)
        practice_now = records.persons.set_index(records.persons["person_id"].astype(str))["practice_id"] \
            .reindex(ids).astype("string").str.strip().fillna("").to_numpy(dtype=object)
        practice_then = later["practice_id"].astype("string").fillna("").to_numpy(dtype=object)
        out["died"] = died
        out["moved"] = ~died & (~present | ended | (present & (practice_then != practice_now)))
        checked["died"], checked["moved"] = FLAG_SOURCES["died"], FLAG_SOURCES["moved"]
    else:
        not_checked["died"], not_checked["moved"] = _WHY_NOT["died"], _WHY_NOT["moved"]

    out["flags"] = flags_text(out).astype("string")
    return PersonFacts(out, checked=checked, not_checked=not_checked)
