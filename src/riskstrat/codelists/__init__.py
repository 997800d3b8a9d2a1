"""Code lists as data: the clinical codes readers map, kept in CSV files beside this module.

Each file is a small, reviewed table with a ``note`` column saying why a row is there:

``ltc_omop.csv`` (condition, concept_id, concept_name, note)
    Standard SNOMED concepts (OMOP concept ids) per long-term condition of the register
    (:data:`riskstrat.schema.LONG_TERM_CONDITIONS`). A condition is matched by these concepts *and
    their descendants* when the OMOP vocabulary is present; without it, by the exact ids only (which is
    why a few common descendants are listed too).
``ltc_icd10.csv`` (condition, first, last, note)
    Inclusive ranges of three-character ICD-10 categories per condition (``E10``-``E14`` diabetes).
``atc_bnf.csv`` (atc, bnf_chapter, atc_name, note)
    ATC class prefix (a first, second or third level code) -> BNF chapter; the longest matching prefix
    wins, so ``C05A`` (haemorrhoid preparations, chapter 01) overrides ``C`` (chapter 02). ATC groups with
    no natural BNF chapter (B06, S03, V03, V04, V07-V10 and anything unlisted) are left unmapped: the
    reader writes "unknown".

>>> load_codelist("ltc_icd10").columns.tolist()
['condition', 'first', 'last', 'note']
"""

from __future__ import annotations


from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from riskstrat.errors import InvalidInputError

__all__ = ["load_codelist", "icd10_condition", "ltc_concepts", "atc_to_bnf"]

CODELISTS = ("ltc_omop", "ltc_icd10", "atc_bnf")


@lru_cache(maxsize=None)
def _load(name: str) -> pd.DataFrame:
    if name not in CODELISTS:
        raise InvalidInputError(f"unknown code list {name!r}; choose one of {', '.join(CODELISTS)}")
    with resources.files(__package__).joinpath(f"{name}.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def load_codelist(name: str) -> pd.DataFrame:
    """The code list ``name`` (``"ltc_omop"``, ``"ltc_icd10"`` or ``"atc_bnf"``) as text columns (a copy)."""
    return _load(name).copy()


def ltc_concepts() -> dict[int, str]:
    """Code-list concept id -> register condition (``ltc_omop.csv``)."""
    df = _load("ltc_omop")
    return dict(zip(df["concept_id"].astype(int), df["condition"]))


def icd10_condition(codes: pd.Series) -> pd.Series:
    """Register condition for each ICD-10 code (``"E11.9"``, ``"E119"``, ``"I10"``), else missing.

    >>> icd10_condition(pd.Series(["E11.9", "I48", "R69", "201826"])).tolist()
    ['diabetes', 'atrial_fibrillation', nan, nan]
    """
    cat = codes.astype("string").str.upper().str.replace(".", "", regex=False).str.strip() \
        .str.extract(r"^([A-Z]\d\d)", expand=False)
    result = pd.Series(np.nan, index=codes.index, dtype=object)
    for row in _load("ltc_icd10").itertuples():
        hit = (cat >= row.first) & (cat <= row.last) & result.isna()
        result[hit.fillna(False).to_numpy(dtype=bool)] = row.condition
    return result


def atc_to_bnf(codes: pd.Series) -> pd.Series:
    """BNF chapter (``"01"``..``"15"``) of each ATC code by the longest prefix in ``atc_bnf.csv``, else missing.

    >>> atc_to_bnf(pd.Series(["C09AA02", "C05AA01", "N02BE01", "V08AB", None])).tolist()
    ['02', '01', '04', nan, nan]
    """
    table = _load("atc_bnf")
    text = codes.astype("string").str.upper().str.strip()
    result = pd.Series(np.nan, index=codes.index, dtype=object)
    for row in table.sort_values("atc", key=lambda s: s.str.len(), ascending=False).itertuples():
        hit = text.str.startswith(row.atc).fillna(False).to_numpy(dtype=bool) & result.isna().to_numpy()
        result[hit] = row.bnf_chapter
    return result
