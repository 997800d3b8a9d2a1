"""Code lists as data: the clinical codes readers map, kept in CSV files beside this module.

Each file is a small, reviewed table with a ``note`` column saying why a row is there:

``ltc_omop.csv`` (condition, concept_id, concept_name, note)
    Standard SNOMED concepts (OMOP concept ids) per long-term condition of the register
    (:data:`riskstrat.data.schema.LONG_TERM_CONDITIONS`). A condition is matched by these concepts *and
    their descendants* when the OMOP vocabulary is present; without it, by the exact ids only (which is
    why a few common descendants are listed too).
``ltc_omop_descendants.csv`` (condition, concept_id, concept_code, concept_name, root_concept_id, source)
    The descendants of ``ltc_omop.csv``'s concepts in an OMOP vocabulary, listed by
    ``make_ltc_omop.py`` (its docstring gives the command and the vocabulary; ``source`` cites it per
    row), so that exports without ``CONCEPT_ANCESTOR`` or without any vocabulary table still find them.
``ltc_snomed.csv`` (condition, snomed_code, snomed_name, source)
    SNOMED CT codes per condition (the roots and the descendants ETLs such as Synthea's write), matched
    against ``condition_source_value`` and, when ``CONCEPT`` holds it, the SNOMED code of the row's
    concept: a path that needs no concept ids at all. ``ltc_omop_descendants.csv``'s SNOMED codes count too.
``ltc_icd10.csv`` (condition, first, last, note)
    Inclusive ranges of three-character ICD-10 categories per condition (``E10``-``E14`` diabetes).
``atc_bnf.csv`` (atc, bnf_chapter, atc_name, note)
    ATC class prefix (a first, second or third level code) -> BNF chapter; the longest matching prefix
    wins, so ``C05A`` (haemorrhoid preparations, chapter 01) overrides ``C`` (chapter 02). ATC groups with
    no natural BNF chapter (B06, S03, V03, V04, V07-V10 and anything unlisted) are left unmapped: the
    reader writes "unknown".
``palliative_care.csv`` (system, code, name, note)
    The codes that put a person on the lists' palliative care flag: ICD-10 (``icd10``, matched as the
    code's start without its dot, so ``Z515`` matches ``Z51.5``) and SNOMED CT (``snomed``, exact) codes,
    looked for in the primary diagnosis of hospital spells (:func:`palliative_code`).
``icd10_chapters.csv`` (chapter, first, last, name, note)
    The 22 ICD-10 chapters as inclusive ranges of three-character categories, with a short name for
    the lists (:func:`icd10_chapter`).

>>> load_codelist("ltc_icd10").columns.tolist()
['condition', 'first', 'last', 'note']
"""

from __future__ import annotations


from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from riskstrat.errors import InvalidInputError

__all__ = ["load_codelist", "icd10_chapter", "icd10_condition", "palliative_code", "snomed_condition", "ltc_concepts",
           "ltc_concept_pairs", "atc_to_bnf"]

CODELISTS = ("ltc_omop", "ltc_omop_descendants", "ltc_snomed", "ltc_icd10", "atc_bnf", "palliative_care",
             "icd10_chapters")


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


def ltc_concept_pairs() -> pd.DataFrame:
    """(``concept_id``, ``condition``) pairs of ``ltc_omop.csv`` and ``ltc_omop_descendants.csv`` (int ids)."""
    roots, more = _load("ltc_omop"), _load("ltc_omop_descendants")
    pairs = pd.concat([roots[["concept_id", "condition"]], more[["concept_id", "condition"]]], ignore_index=True)
    return pairs.astype({"concept_id": "int64"}).drop_duplicates().reset_index(drop=True)


@lru_cache(maxsize=None)
def _snomed_codes() -> pd.DataFrame:
    more = _load("ltc_omop_descendants")
    more = more.loc[more["concept_code"] != "", ["concept_code", "condition"]].rename(
        columns={"concept_code": "snomed_code"})
    return pd.concat([_load("ltc_snomed")[["snomed_code", "condition"]], more], ignore_index=True).drop_duplicates()


def snomed_condition(codes: pd.Series) -> pd.DataFrame:
    """(``index``, ``condition``) for each value of ``codes`` that is a listed SNOMED CT code (one code may
    count for two conditions); ``index`` is the value's index in ``codes``.

    >>> snomed_condition(pd.Series(["431857002", " 185086009", "I10", None])).values.tolist()
    [[0, 'ckd'], [1, 'copd']]
    """
    text = codes.astype("string").str.strip().str.removeprefix("SNOMED:")
    frame = pd.DataFrame({"index": codes.index, "snomed_code": text.to_numpy()}).dropna()
    return frame.merge(_snomed_codes(), on="snomed_code")[["index", "condition"]].reset_index(drop=True)


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


def _icd10_text(codes: pd.Series) -> pd.Series:
    """ICD-10 codes upper-case, without dots or white space (``" z51.5"`` -> ``"Z515"``)."""
    return codes.astype("string").str.upper().str.replace(".", "", regex=False).str.strip()


def palliative_code(codes: pd.Series) -> np.ndarray:
    """True for each code on ``palliative_care.csv``: an ICD-10 code starting with a listed one, or a
    listed SNOMED CT code (``SNOMED:`` prefix allowed).

    >>> palliative_code(pd.Series(["Z51.5", "Z515", "SNOMED:103735009", "Z51.1", None])).tolist()
    [True, True, True, False, False]
    """
    table = _load("palliative_care")
    icd = tuple(table.loc[table["system"] == "icd10", "code"].str.upper())
    snomed = set(table.loc[table["system"] == "snomed", "code"])
    text = _icd10_text(codes)
    by_icd = text.str.startswith(icd).fillna(False).to_numpy(dtype=bool) if icd else np.zeros(len(codes), bool)
    by_snomed = codes.astype("string").str.strip().str.removeprefix("SNOMED:").isin(snomed).fillna(False)
    return by_icd | by_snomed.to_numpy(dtype=bool)


def icd10_chapter(codes: pd.Series) -> pd.Series:
    """The short name of each ICD-10 code's chapter (``icd10_chapters.csv``), else missing.

    >>> icd10_chapter(pd.Series(["I50.9", "J44", "S72.0", "D61", "xyz", None])).tolist()
    ['circulatory system', 'respiratory system', 'injury and poisoning', 'blood and immune system', nan, nan]
    """
    cat = _icd10_text(codes).str.extract(r"^([A-Z]\d\d)", expand=False)
    result = pd.Series(np.nan, index=codes.index, dtype=object)
    for row in _load("icd10_chapters").itertuples():
        hit = (cat >= row.first) & (cat <= row.last) & result.isna()
        result[hit.fillna(False).to_numpy(dtype=bool)] = row.name
    return result
