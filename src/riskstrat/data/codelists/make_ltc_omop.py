"""Regenerate ``ltc_omop_descendants.csv``: the descendants of ``ltc_omop.csv``'s concepts in an OMOP vocabulary.

The reader finds a long-term condition by its code-list concepts *and their descendants*; an export
without ``CONCEPT_ANCESTOR`` (or without any vocabulary table) cannot say which concepts those are, so
the descendants are shipped as data. This script lists them from a vocabulary folder (an Athena
download or an export's vocabulary tables): from ``CONCEPT_ANCESTOR`` when it has rows, else by
walking the valid "Is a" rows of ``CONCEPT_RELATIONSHIP`` (cycles broken as in
:mod:`riskstrat.data.readers.vocab`). Names and SNOMED codes come from ``CONCEPT`` where it holds the
concept (left blank where it does not: the id is still the vocabulary's).

The shipped file was made with::

    python -m riskstrat.data.codelists.make_ltc_omop /work/shared/data/omop-synthea27nj \\
        --source "OHDSI/EunomiaDatasets datasets/Synthea27Nj/Synthea27Nj_5.4.zip (commit 3efd533e), vocabulary shard v5.0 09-APR-22"

Run it again on a full Athena vocabulary to widen the list (the rows are merged with the existing
file, each keeping its own ``source``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from riskstrat.data.codelists import ltc_concepts
from riskstrat.data.readers._cdm import find_table
from riskstrat.data.readers.vocab import Vocabulary, descendants

OUT = Path(__file__).with_name("ltc_omop_descendants.csv")
COLUMNS = ["condition", "concept_id", "concept_code", "concept_name", "root_concept_id", "source"]


def _read(path: Path | None, columns: list[str]) -> pd.DataFrame | None:
    if path is None:
        return None
    sep = "\t" if ".tsv" in path.suffixes else ","
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    df.columns = [c.strip().lower() for c in df.columns]
    return df[[c for c in columns if c in df]]


def expand(vocab_dir: Path, *, source: str) -> pd.DataFrame:
    """Rows of ``ltc_omop_descendants.csv`` from the vocabulary in ``vocab_dir`` (the roots themselves left out)."""
    roots = ltc_concepts()
    ancestors = _read(find_table(vocab_dir, "concept_ancestor"), ["ancestor_concept_id", "descendant_concept_id",
                                                                   "min_levels_of_separation"])
    if ancestors is not None and len(ancestors):
        vocab = Vocabulary.from_frames(ancestors=ancestors.astype("int64"))
        how = "CONCEPT_ANCESTOR"
    else:
        rel = _read(find_table(vocab_dir, "concept_relationship"),
                    ["concept_id_1", "concept_id_2", "relationship_id", "invalid_reason"])
        rel = rel[(rel["relationship_id"] == "Is a") & (rel["invalid_reason"] == "")]
        vocab = Vocabulary.from_frames(relationships=rel[["concept_id_1", "concept_id_2", "relationship_id"]])
        how = "'Is a' rows of CONCEPT_RELATIONSHIP (CONCEPT_ANCESTOR empty)"
    pairs = descendants(vocab, roots)
    pairs = pairs[pairs["descendant_concept_id"] != pairs["ancestor_concept_id"]]
    concept = _read(find_table(vocab_dir, "concept"), ["concept_id", "concept_name", "vocabulary_id", "concept_code"])
    names = concept.assign(concept_id=concept["concept_id"].astype("int64")).set_index("concept_id")
    out = pd.DataFrame({
        "condition": pairs["ancestor_concept_id"].map(roots),
        "concept_id": pairs["descendant_concept_id"],
        "concept_code": pairs["descendant_concept_id"].map(
            names["concept_code"].where(names["vocabulary_id"] == "SNOMED")).fillna(""),
        "concept_name": pairs["descendant_concept_id"].map(names["concept_name"]).fillna(""),
        "root_concept_id": pairs["ancestor_concept_id"],
        "source": f"descendant by {how} of {source}",
    })
    # A concept below two roots of one condition (e.g. T2DM below diabetes mellitus) is listed once.
    out = out.sort_values(["condition", "concept_id", "root_concept_id"]).drop_duplicates(["condition", "concept_id"])
    return out[~out["concept_id"].isin(list(roots))].reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vocab_dir", type=Path)
    parser.add_argument("--source", required=True, help="what the vocabulary is (cited in each row)")
    args = parser.parse_args(argv)
    new = expand(args.vocab_dir, source=args.source)
    if OUT.exists():
        old = pd.read_csv(OUT, dtype=str, keep_default_na=False)
        new = pd.concat([old, new.astype(str)], ignore_index=True).drop_duplicates(["condition", "concept_id"])
    new.astype(str).sort_values(["condition", "concept_id"], key=lambda s: s.str.zfill(12)).to_csv(
        OUT, index=False, columns=COLUMNS)
    print(f"{OUT}: {len(new)} rows")


if __name__ == "__main__":
    main()
