"""The OMOP standardized vocabulary: reading the tables a reader needs, and pure look-ups on them.

Reading (:func:`read_vocabulary`) is the only I/O: ``CONCEPT``, ``CONCEPT_ANCESTOR`` and
``CONCEPT_RELATIONSHIP`` are read in chunks, only the columns needed, and filtered as they are read
(a full Athena download holds tens of millions of rows; an export's subset a few thousand):

- ``CONCEPT``: the concepts the data or the code lists use, plus every ATC and Currency concept
  (their ``concept_code`` is what the look-ups need).
- ``CONCEPT_ANCESTOR``: pairs whose descendant is a concept the data use and whose ancestor is a
  concept of interest or an ATC class.
- ``CONCEPT_RELATIONSHIP`` (valid rows only): "Maps to" from the data's source concepts; the links
  between RxNorm and ATC; and, only when ``CONCEPT_ANCESTOR`` is absent or empty (as in many export
  subsets), "Is a" and the RxNorm hierarchy (ingredient, component, form, brand, pack, quantity), so
  that descendants and ATC classes can still be found by walking the relationships.

A hierarchy with a cycle (a concept that "Is a" its own descendant, by a data error) would make
every concept of the cycle a descendant of every other, and a long-term-condition root the
ancestor of whatever hangs below a concept above it. :meth:`Vocabulary.from_frames` breaks them and
counts them (:attr:`Vocabulary.cycles`):

- "Is a": self-loops are ignored; within each cycle (a strongly connected set of concepts) the
  relationship that points furthest downwards (to a parent furthest from the top of the hierarchy,
  by distance to a concept without parents, compared with its child) closes the cycle and is left
  out, one at a time until no cycle is left.
- ``CONCEPT_ANCESTOR``: self-loops other than the identity row (level 0) are dropped; a pair that is
  each other's ancestor is a cycle. A closure built over a cycle cannot be repaired row by row, so
  descendants are then found by walking the "Is a" relationships (cycles broken as above), read
  for that; without them, only the rows between the cycle's concepts are dropped.

The look-ups are pure functions of a :class:`Vocabulary`:

>>> vocab = Vocabulary.from_frames(
...     concepts=pd.DataFrame({"concept_id": [21600381], "concept_name": ["ACE inhibitors, plain"],
...                            "vocabulary_id": ["ATC"], "concept_code": ["C09AA"], "standard_concept": ["C"]}),
...     relationships=pd.DataFrame({"concept_id_1": [443614, 46271022, 1308216],
...                                 "concept_id_2": [46271022, 46271022, 21600381],
...                                 "relationship_id": ["Is a", "Maps to", "RxNorm - ATC pr up"]}))
>>> descendants(vocab, [46271022])["descendant_concept_id"].tolist()
[443614, 46271022]
>>> atc_classes(vocab, [1308216]).to_dict()
{1308216: 'C09AA'}
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.data.io import DataFileError
from riskstrat.data.readers._cdm import delimiter, find_table

__all__ = ["Vocabulary", "read_vocabulary", "descendants", "maps_to", "atc_classes", "atc_links",
           "VOCABULARY_TABLES", "CODE_VOCABULARIES"]

VOCABULARY_TABLES = ("concept", "concept_ancestor", "concept_relationship")
MAPS_TO = "Maps to"
IS_A = "Is a"
# RxNorm relationships that lead from a drug product towards its ingredients (upwards), so that a
# drug reaches the ATC class linked to its ingredient or clinical drug form.
RXNORM_UP = ("Maps to", "Tradename of", "Consists of", "RxNorm has ing", "Has ingredient", "RxNorm is a",
             "Quantified form of", "Contains", "Box of", "Marketed form of", "Has precise ing")
_MAX_RXNORM_STEPS = 5
_CONCEPT_COLUMNS = ("concept_id", "concept_name", "domain_id", "vocabulary_id", "concept_class_id", "concept_code",
                    "standard_concept")
# Vocabularies whose concept codes a source value may be looked up in (``read_vocabulary(codes=...)``):
# drug and condition codes as ETLs write them in ``*_source_value`` (RxNorm CUIs, CVX, SNOMED CT ids).
CODE_VOCABULARIES = ("RxNorm", "RxNorm Extension", "CVX", "SNOMED")


@dataclass(frozen=True)
class Vocabulary:
    """The vocabulary rows a reader kept (see the module docstring). ``tables`` names those present."""

    concepts: pd.DataFrame
    ancestors: pd.DataFrame
    relationships: pd.DataFrame
    tables: tuple[str, ...] = ()
    # Cycles found and broken (see the module): "is_a" (cycles), "is_a_relationships" (left out),
    # "concept_ancestor" (pairs each other's ancestor), "concept_ancestor_rows" (rows dropped).
    cycles: dict = field(default_factory=dict, compare=False)
    # Descendants by walking "Is a" even though CONCEPT_ANCESTOR has rows (it holds a cycle).
    walk_is_a: bool = False

    @classmethod
    def from_frames(cls, *, concepts: pd.DataFrame | None = None, ancestors: pd.DataFrame | None = None,
                    relationships: pd.DataFrame | None = None) -> "Vocabulary":
        """A vocabulary from small hand-made frames (tests, notebooks), its hierarchy's cycles broken."""
        tables = tuple(name for name, df in zip(VOCABULARY_TABLES, (concepts, ancestors, relationships))
                       if df is not None)
        concepts = concepts if concepts is not None else pd.DataFrame(columns=list(_CONCEPT_COLUMNS))
        ancestors = ancestors if ancestors is not None else pd.DataFrame(
            columns=["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation"])
        relationships = relationships if relationships is not None else pd.DataFrame(
            columns=["concept_id_1", "concept_id_2", "relationship_id"])
        concepts = concepts.astype({"concept_id": "int64"})
        for c in _CONCEPT_COLUMNS[1:]:
            if c not in concepts:
                concepts[c] = ""
        if "min_levels_of_separation" not in ancestors:
            ancestors = ancestors.assign(min_levels_of_separation=0)
        ancestors = ancestors.astype("int64")
        relationships = relationships.astype({"concept_id_1": "int64", "concept_id_2": "int64",
                                              "relationship_id": str})
        relationships, n_cycles, n_left_out = _without_is_a_cycles(relationships)
        ancestors, n_pairs, n_dropped = _without_ancestor_cycles(ancestors)
        cycles = {"is_a": n_cycles, "is_a_relationships": n_left_out, "concept_ancestor": n_pairs,
                  "concept_ancestor_rows": n_dropped}
        walk = bool(n_pairs) and bool((relationships["relationship_id"] == IS_A).any())
        return cls(concepts.reset_index(drop=True), ancestors.reset_index(drop=True),
                   relationships.reset_index(drop=True), tables, cycles, walk)

    def cycle_notes(self) -> list[str]:
        """The import report's words for the cycles broken (none: an empty list)."""
        c, notes = self.cycles, []
        if c.get("concept_ancestor"):
            instead = ("descendants found by walking the 'Is a' relationships instead" if self.walk_is_a
                       else "no 'Is a' relationships to walk instead, so only those rows were dropped")
            notes.append(f"{c['concept_ancestor']:,} cycle{'s' if c['concept_ancestor'] != 1 else ''} in the "
                         f"vocabulary's CONCEPT_ANCESTOR (concepts that are each other's ancestor; "
                         f"{c['concept_ancestor_rows']:,} rows dropped): {instead}")
        if c.get("is_a"):
            notes.append(f"{c['is_a']:,} cycle{'s' if c['is_a'] != 1 else ''} in the vocabulary's Is a relationships "
                         f"{'were' if c['is_a'] != 1 else 'was'} broken ({c['is_a_relationships']:,} "
                         f"relationship{'s' if c['is_a_relationships'] != 1 else ''} that close"
                         f"{'s' if c['is_a_relationships'] == 1 else ''} a cycle left out)")
        return notes

    @property
    def uses_ancestors(self) -> bool:
        """Whether descendants come from CONCEPT_ANCESTOR (rows, and no cycle there) or from the "Is a" walk."""
        return bool(len(self.ancestors)) and not self.walk_is_a

    @property
    def has_hierarchy(self) -> bool:
        """Whether descendants can be found (CONCEPT_ANCESTOR rows or "Is a" relationships)."""
        return bool(len(self.ancestors)) or bool((self.relationships["relationship_id"] == IS_A).any())

    def atc_ids(self) -> pd.Series:
        return self.concepts.loc[self.concepts["vocabulary_id"] == "ATC", "concept_id"]


# --- reading ---------------------------------------------------------------------------------

def read_vocabulary(src_dir: str | Path, *, concept_ids: Iterable[int], roots: Iterable[int] = (),
                    codes: Iterable[str] = (), chunksize: int = 1_000_000) -> Vocabulary | None:
    """Read the vocabulary tables in ``src_dir`` that matter for ``concept_ids``; None if none is there.

    ``concept_ids`` are the concepts of interest: those the data use (condition, drug and source
    concepts, currencies) and those of the code lists. ``roots`` (the code lists' concepts, whose
    descendants are looked up): every ``CONCEPT_ANCESTOR`` row above or below them is kept, so that a
    cycle through one shows (a pair each other's ancestor); then the "Is a" relationships are read too.
    ``codes``: source values (e.g. ``drug_source_value``) whose concepts in :data:`CODE_VOCABULARIES` are
    kept too, so that a row without a concept id can still be told a drug, a vaccine or a condition.
    """
    src_dir = Path(src_dir)
    wanted = np.unique(np.asarray([int(i) for i in concept_ids], dtype="int64"))
    codes = pd.Index(sorted({str(c).strip() for c in codes if str(c).strip()}), dtype=object)
    roots = np.unique(np.asarray([int(i) for i in roots], dtype="int64"))
    paths = {name: find_table(src_dir, name) for name in VOCABULARY_TABLES}
    if not any(paths.values()):
        return None

    concepts = _read_filtered(paths["concept"], _CONCEPT_COLUMNS, ("concept_id",), chunksize,
                              lambda df: df["concept_id"].isin(wanted)
                              | df["vocabulary_id"].isin(["ATC", "Currency"])
                              | (df["concept_code"].isin(codes) & df["vocabulary_id"].isin(CODE_VOCABULARIES)
                                 if len(codes) and "concept_code" in df and "vocabulary_id" in df else False))
    atc = concepts.loc[concepts["vocabulary_id"] == "ATC", "concept_id"].to_numpy() if concepts is not None \
        else np.empty(0, dtype="int64")
    # Walk relationships only when CONCEPT_ANCESTOR has no rows (a header-only file is common).
    walk = paths["concept_ancestor"] is None or not _has_rows(paths["concept_ancestor"])
    kinds = {IS_A, *RXNORM_UP} - {MAPS_TO} if walk else set()

    def keep_relationship(df: pd.DataFrame) -> pd.Series:
        rel = df["relationship_id"]
        valid = df["invalid_reason"].isna() if "invalid_reason" in df else pd.Series(True, index=df.index)
        maps = (rel == MAPS_TO) & df["concept_id_1"].isin(wanted)
        return valid & (maps | rel.str.contains("ATC", regex=False) | rel.isin(kinds))

    relationships = _read_filtered(paths["concept_relationship"],
                                   ("concept_id_1", "concept_id_2", "relationship_id", "invalid_reason"),
                                   ("concept_id_1", "concept_id_2"), chunksize, keep_relationship)
    if relationships is not None:
        relationships = relationships.drop(columns=["invalid_reason"], errors="ignore")
        # The standard concepts the data's source concepts map to are concepts of interest too.
        mapped = relationships.loc[relationships["relationship_id"] == MAPS_TO, "concept_id_2"].to_numpy()
        wanted = np.union1d(wanted, mapped)
    ancestors = _read_filtered(
        paths["concept_ancestor"], ("ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation"),
        ("ancestor_concept_id", "descendant_concept_id"), chunksize,
        lambda df: (df["descendant_concept_id"].isin(wanted)
                    & (df["ancestor_concept_id"].isin(wanted) | df["ancestor_concept_id"].isin(atc)))
        | df["ancestor_concept_id"].isin(roots) | df["descendant_concept_id"].isin(roots))
    vocab = Vocabulary.from_frames(concepts=concepts, ancestors=ancestors, relationships=relationships)
    if vocab.cycles.get("concept_ancestor") and not walk and paths["concept_relationship"] is not None:
        # A closure built over a cycle cannot be trusted: read the "Is a" relationships to walk instead.
        is_a = _read_filtered(paths["concept_relationship"],
                              ("concept_id_1", "concept_id_2", "relationship_id", "invalid_reason"),
                              ("concept_id_1", "concept_id_2"), chunksize,
                              lambda df: (df["relationship_id"] == IS_A)
                              & (df["invalid_reason"].isna() if "invalid_reason" in df else True))
        is_a = is_a.drop(columns=["invalid_reason"], errors="ignore")
        vocab = Vocabulary.from_frames(concepts=concepts, ancestors=ancestors,
                                       relationships=pd.concat([relationships, is_a], ignore_index=True))
    return vocab


def _has_rows(path: Path) -> bool:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        fh.readline()
        return any(line.strip() for line in fh)


def _read_filtered(path: Path | None, columns: tuple[str, ...], required: tuple[str, ...], chunksize: int,
                   keep) -> pd.DataFrame | None:
    """Only ``columns`` of a vocabulary file, rows passing ``keep`` chunk by chunk; None if no file.

    ``required`` id columns must be there (rows without them are skipped); columns ending in ``_id``
    or ``_separation`` are integers, the rest text.
    """
    if path is None:
        return None
    sep = delimiter(path)
    # Athena's tab-separated files are not quoted and concept names may hold a lone '"'.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    kept = []
    try:
        header = pd.read_csv(path, sep=sep, nrows=0, quoting=quoting, encoding="utf-8-sig").columns
        present = {str(c).strip().lower(): c for c in header if str(c).strip().lower() in columns}
        missing = [c for c in required if c not in present]
        int_columns = [c for c in present if c in required or c.endswith("_separation")]
        if missing:
            raise DataFileError(f"{path}: required column(s) {', '.join(missing)} missing")
        # Ids parse as float64 (exact below 2**53, and fast); empty or odd cells become missing rows.
        dtypes = {orig: ("float64" if low in int_columns else str) for low, orig in present.items()}
        reader = pd.read_csv(path, sep=sep, dtype=dtypes, keep_default_na=False, na_values=[""], quoting=quoting,
                             encoding="utf-8-sig", usecols=list(present.values()), chunksize=chunksize)
        for chunk in reader:
            chunk.columns = [str(c).strip().lower() for c in chunk.columns]
            chunk = chunk.dropna(subset=list(int_columns)).astype({c: "int64" for c in int_columns})
            kept.append(chunk[keep(chunk).to_numpy(dtype=bool)])
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot be read ({exc})") from exc
    if not kept:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in required else object) for c in required})
    return pd.concat(kept, ignore_index=True)


# --- look-ups (pure) -------------------------------------------------------------------------

def descendants(vocab: Vocabulary, ancestor_ids: Iterable[int]) -> pd.DataFrame:
    """Pairs (``ancestor_concept_id``, ``descendant_concept_id``) for each of ``ancestor_ids``, itself included.

    From ``CONCEPT_ANCESTOR`` when it has rows (and no cycle), else by walking "Is a" relationships
    downwards (their cycles broken: see the module).
    """
    roots = pd.Series(sorted({int(i) for i in ancestor_ids}), dtype="int64")
    pairs = [pd.DataFrame({"ancestor_concept_id": roots, "descendant_concept_id": roots})]
    if vocab.uses_ancestors:
        a = vocab.ancestors
        pairs.append(a.loc[a["ancestor_concept_id"].isin(roots), ["ancestor_concept_id", "descendant_concept_id"]])
    else:
        isa = vocab.relationships[vocab.relationships["relationship_id"] == IS_A]
        children = isa.groupby("concept_id_2")["concept_id_1"].apply(list).to_dict()
        for root in roots:
            seen, frontier = {root}, [root]
            while frontier:
                frontier = [c for parent in frontier for c in children.get(parent, ()) if c not in seen]
                seen.update(frontier)
            seen.discard(root)
            pairs.append(pd.DataFrame({"ancestor_concept_id": root,
                                       "descendant_concept_id": sorted(seen)}, dtype="int64"))
    out = pd.concat(pairs, ignore_index=True).astype("int64").drop_duplicates()
    return out.sort_values(["ancestor_concept_id", "descendant_concept_id"]).reset_index(drop=True)


def maps_to(vocab: Vocabulary, concept_ids: Iterable[int]) -> pd.DataFrame:
    """Pairs (``concept_id``, ``standard_concept_id``): the "Maps to" targets of each source concept.

    A source code may map to several standard concepts (for example a diabetes code with a kidney
    complication); every pair is returned. Concepts without a mapping are absent.
    """
    ids = pd.Series(sorted({int(i) for i in concept_ids}), dtype="int64")
    r = vocab.relationships
    m = r[(r["relationship_id"] == MAPS_TO) & r["concept_id_1"].isin(ids)]
    return (m.rename(columns={"concept_id_1": "concept_id", "concept_id_2": "standard_concept_id"})
            [["concept_id", "standard_concept_id"]].drop_duplicates().reset_index(drop=True))


def atc_classes(vocab: Vocabulary, drug_ids: Iterable[int]) -> pd.Series:
    """The ATC code of each drug concept that has one (indexed by drug concept id).

    From ``CONCEPT_ANCESTOR`` (the nearest ATC ancestor), else by walking RxNorm relationships up to
    the ingredient and following RxNorm-ATC links (primary links before secondary ones, nearest
    first). Ties go to the longest (most specific) code, then the first in alphabetical order.
    ATC classes missing from ``CONCEPT`` have no code and are ignored.
    """
    drugs = pd.Series(sorted({int(i) for i in drug_ids}), dtype="int64")
    codes = vocab.concepts.loc[vocab.concepts["vocabulary_id"] == "ATC"].set_index("concept_id")["concept_code"]
    if drugs.empty or codes.empty:
        return pd.Series(dtype=object)
    found = []
    if len(vocab.ancestors):
        a = vocab.ancestors
        a = a[a["descendant_concept_id"].isin(drugs) & a["ancestor_concept_id"].isin(codes.index)]
        found.append(pd.DataFrame({"drug": a["descendant_concept_id"], "rank": a["min_levels_of_separation"],
                                   "code": a["ancestor_concept_id"].map(codes)}))
    links = _atc_links(vocab.relationships, codes)
    if len(links):
        r = vocab.relationships
        up = r[r["relationship_id"].isin(RXNORM_UP)]
        parents = up.groupby("concept_id_1")["concept_id_2"].apply(list).to_dict()
        reach = pd.DataFrame({"drug": drugs, "node": drugs, "step": 0})
        frames, seen = [reach], set(zip(reach["drug"], reach["node"]))
        for step in range(1, _MAX_RXNORM_STEPS + 1):
            nxt = [(d, p) for d, n in zip(reach["drug"], reach["node"]) for p in parents.get(n, ())
                   if (d, p) not in seen]
            if not nxt:
                break
            seen.update(nxt)
            reach = pd.DataFrame(nxt, columns=["drug", "node"]).assign(step=step)
            frames.append(reach)
        reached = pd.concat(frames, ignore_index=True).merge(links, left_on="node", right_on="rxnorm")
        # Primary links rank before secondary ones; nearer ingredients before farther ones.
        found.append(pd.DataFrame({"drug": reached["drug"],
                                   "rank": 1000 + reached["secondary"] * 100 + reached["step"],
                                   "code": reached["code"]}))
    if not found:
        return pd.Series(dtype=object)
    f = pd.concat(found, ignore_index=True).dropna(subset=["code"])
    f = f.assign(length=-f["code"].str.len()).sort_values(["drug", "rank", "length", "code"], kind="stable")
    best = f.drop_duplicates("drug")
    return pd.Series(best["code"].to_numpy(), index=best["drug"].to_numpy(), dtype=object)


def atc_links(vocab: Vocabulary, drug_ids: Iterable[int]) -> pd.Series:
    """For each of ``drug_ids``, the number of RxNorm-ATC links reachable from it whose ATC concept is
    *not* in ``CONCEPT`` (so its code, and a BNF chapter, cannot be read): the import report's reason
    why a linked drug still has no chapter. Only drugs with such links are returned."""
    drugs = pd.Series(sorted({int(i) for i in drug_ids}), dtype="int64")
    r = vocab.relationships
    known = set(vocab.concepts.loc[vocab.concepts["vocabulary_id"] == "ATC", "concept_id"])
    forward = r[r["relationship_id"].str.startswith("RxNorm - ATC")]
    unknown_atc = forward[~forward["concept_id_2"].isin(known)]
    if drugs.empty or unknown_atc.empty:
        return pd.Series(dtype="int64")
    linked = set(unknown_atc["concept_id_1"])
    up = r[r["relationship_id"].isin(RXNORM_UP)].groupby("concept_id_1")["concept_id_2"].apply(list).to_dict()
    out = {}
    for drug in drugs:
        seen, frontier = {drug}, [drug]
        for _ in range(_MAX_RXNORM_STEPS):
            frontier = [p for n in frontier for p in up.get(n, ()) if p not in seen]
            seen.update(frontier)
        n = len(seen & linked)
        if n:
            out[int(drug)] = n
    return pd.Series(out, dtype="int64")


def _atc_links(relationships: pd.DataFrame, codes: pd.Series) -> pd.DataFrame:
    """RxNorm concept -> ATC code links from relationships named "RxNorm - ATC..." / "ATC - RxNorm..."."""
    r = relationships[relationships["relationship_id"].str.contains("ATC", regex=False)]
    forward = r["relationship_id"].str.startswith("RxNorm - ATC")
    backward = r["relationship_id"].str.startswith("ATC - RxNorm")
    links = pd.concat([
        pd.DataFrame({"rxnorm": r.loc[forward, "concept_id_1"], "atc": r.loc[forward, "concept_id_2"],
                      "relationship_id": r.loc[forward, "relationship_id"]}),
        pd.DataFrame({"rxnorm": r.loc[backward, "concept_id_2"], "atc": r.loc[backward, "concept_id_1"],
                      "relationship_id": r.loc[backward, "relationship_id"]}),
    ], ignore_index=True)
    links["code"] = links["atc"].map(codes)
    links["secondary"] = links["relationship_id"].str.contains(" sec ", regex=False).astype(int)
    return links.dropna(subset=["code"]).drop_duplicates(["rxnorm", "code", "secondary"])


# --- cycles ----------------------------------------------------------------------------------

def _without_is_a_cycles(relationships: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """``relationships`` without "Is a" self-loops and without the "Is a" rows that close a cycle (see the
    module); and the cycles (strongly connected sets of two or more concepts) and rows left out."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components, shortest_path

    is_a = (relationships["relationship_id"] == IS_A).to_numpy()
    loop = is_a & (relationships["concept_id_1"] == relationships["concept_id_2"]).to_numpy()
    edges = relationships[is_a & ~loop]
    if edges.empty:
        return relationships[~loop], 0, 0
    nodes, codes = np.unique(np.concatenate([edges["concept_id_1"].to_numpy(), edges["concept_id_2"].to_numpy()]),
                             return_inverse=True)
    child, parent = codes[:len(edges)], codes[len(edges):]
    n = len(nodes)
    up = csr_matrix((np.ones(len(edges)), (child, parent)), shape=(n, n))  # child -> parent
    _, component = connected_components(up, directed=True, connection="strong")
    size = np.bincount(component)
    in_cycle = (component[child] == component[parent]) & (size[component[child]] > 1)
    if not in_cycle.any():
        return relationships[~loop], 0, 0
    # Each concept's distance from the top (a concept without parents), by one search from a node above
    # every top; a cycle's detour never shortens it. Unreachable (a cycle with no way up): infinite.
    tops = np.flatnonzero(np.bincount(child, minlength=n) == 0)
    down = csr_matrix((np.ones(len(edges) + len(tops)), (np.r_[parent, np.full(len(tops), n)], np.r_[child, tops])),
                      shape=(n + 1, n + 1))
    depth = shortest_path(down, directed=True, unweighted=True, indices=n)[:n]
    n_cycles = len(np.unique(component[child[in_cycle]]))
    # Within the cycles only: leave out, one at a time per remaining cycle, the relationship that points
    # furthest down (its parent's depth minus its child's; ties by ids), until no cycle is left. A
    # relationship up from a child that also has a shorter way to the top is then kept.
    candidates = np.flatnonzero(in_cycle)
    downward = np.nan_to_num(depth[parent] - depth[child], nan=np.inf, posinf=np.inf, neginf=-np.inf)
    order = np.lexsort((nodes[parent], nodes[child], -downward))  # worst first
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    closes = np.zeros(len(edges), dtype=bool)
    while len(candidates):
        sub = csr_matrix((np.ones(len(candidates)), (child[candidates], parent[candidates])), shape=(n, n))
        _, part = connected_components(sub, directed=True, connection="strong")
        cyclic = candidates[part[child[candidates]] == part[parent[candidates]]]
        if not len(cyclic):
            break
        worst = pd.Series(rank[cyclic], index=cyclic).groupby(part[child[cyclic]]).idxmin().to_numpy()
        closes[worst] = True
        candidates = np.setdiff1d(cyclic, worst)
    keep = ~loop
    keep[np.flatnonzero(is_a & ~loop)[closes]] = False
    return relationships[keep], n_cycles, int(closes.sum())


def _without_ancestor_cycles(ancestors: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """``CONCEPT_ANCESTOR`` rows without self-loops other than the identity row (level 0) and without
    the rows between concepts that are each other's ancestor; and those pairs (cycles) and rows dropped."""
    a, d = ancestors["ancestor_concept_id"], ancestors["descendant_concept_id"]
    loop = (a == d) & (ancestors["min_levels_of_separation"] != 0)
    pairs = pd.MultiIndex.from_arrays([a, d])
    mutual = (a != d) & pairs.isin(pd.MultiIndex.from_arrays([d, a]))
    drop = (loop | mutual).to_numpy()
    paired = {tuple(sorted(p)) for p in zip(a[mutual], d[mutual])}
    # A concept its own ancestor at some distance lies on a cycle too (one not already counted in a pair).
    alone = set(a[loop]) - {c for p in paired for c in p}
    return ancestors[~drop], len(paired) + len(alone), int(drop.sum())
