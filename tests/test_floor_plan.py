"""The floor plan, enforced: riskstrat's layers, and imports that only point down.

The contract is declared once, here (and the function-level ratchet beside it in
``floor_plan_function_imports.txt``); ``tests/_import_graph.py`` reads the import graph from the
source with ``ast`` and prints the numbers (``python tests/_import_graph.py``).

1. Every module belongs to one layer (:data:`LAYERS`, bottom first in :data:`ORDER`); a module's
   layer is the longest declared prefix of its dotted name.
2. No cycle among module-level imports.
3. No import points up a layer, at module level or inside a function, except the arrows in
   :data:`UPWARD_ALLOWED`, each with the reason it is there and what removes it.
4. No cycle even once the imports inside functions are counted, except inside :data:`KNOWN_CYCLES`
   (the ones the full re-layer still has to break).
5. Imports of riskstrat's own modules inside functions only where ``floor_plan_function_imports.txt``
   lists them (a ratchet: the counts there are a ceiling that only goes down). Third-party imports
   inside functions are free, and expected for the heavy optional ones (:data:`HEAVY_OPTIONAL`):
   they keep ``import riskstrat`` and the CLI's start-up fast.

Extending it: a new module goes in a layer (add its name, or a prefix of it, to :data:`LAYERS`).
A new import of a riskstrat module goes at the top of the file and points down; if that makes a
cycle, the shared definition belongs in the lower module (move it down and re-export it), not
behind an import inside a function.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

import _import_graph as graph

# --- the contract ---------------------------------------------------------------------------------

# Bottom first: a module may import its own layer and the layers before it.
ORDER = ["base", "data", "features", "outcomes", "modeling", "evaluation", "registry", "scoring", "report",
         "wiring", "cli"]

LAYERS: dict[str, list[str]] = {
    # What every stage uses: the package, its errors, and quieting foreign libraries.
    "base": ["riskstrat", "riskstrat.errors", "riskstrat.quiet"],
    # The linked records: schema, file input/output, reading, validating, pseudonymising, generating them.
    "data": ["riskstrat.data"],
    # Features before the index date: the spec, the clinical definitions, generic covariates, engines, costs.
    "features": ["riskstrat.features"],
    # What happens after the index date: outcome definitions and their labels.
    "outcomes": ["riskstrat.outcomes"],
    # The run's config, the person split and index dates, the risk pyramid's rules, training, the refit.
    "modeling": ["riskstrat.modeling"],
    # Metrics, subgroup frames, the gate, drift and monitoring measures, plots.
    "evaluation": ["riskstrat.evaluation"],
    # MLflow, in one place: what training and evaluation log, what scoring loads.
    "registry": ["riskstrat.registry"],
    # The month: reasons, lists, workbooks, publishing and reading back, scoring on Spark.
    "scoring": ["riskstrat.scoring"],
    # The reports a reader opens: evaluation, monitoring, the import report (Jinja2 templates).
    "report": ["riskstrat.report"],
    # The functions that wire a whole run (each step one call); what the CLI and notebooks call.
    "wiring": ["riskstrat.pipelines"],
    # Commands only: parse, call one wiring function, print.
    "cli": ["riskstrat.cli"],
}

# Arrows that point up today, at any level. Each says why and what removes it (the re-layer plan).
UPWARD_ALLOWED: dict[tuple[str, str], str] = {
    ("riskstrat.data.readers", "riskstrat.report.imports"):
        "import_data writes the import report: the wiring (pipelines) should call the reader, then the report",
    ("riskstrat.features.spark", "riskstrat.scoring.spark"):
        "the Spark engine hands a month to Spark scoring: the wiring should choose the scorer",
    ("riskstrat.features.engine", "riskstrat.pipelines"):
        "PandasEngine.load reads records through pipelines.load_data: load_data moves down to data/",
    ("riskstrat.scoring.spark", "riskstrat.pipelines"):
        "Spark scoring uses PersonScores and explain_people: they move from pipelines to scoring/, "
        "and spark_score with them",
    ("riskstrat.features.clinical", "riskstrat.modeling.config"):
        "generic feature examples build a GenericFeaturesConfig: that config belongs with the feature spec",
    ("riskstrat.data.validate", "riskstrat.scoring.lists"):
        "validation names the no-practice code the lists use: NO_PRACTICE moves down to schema",
}

# Cycles that exist only through imports inside functions, still to break (members, sorted).
KNOWN_CYCLES: list[set[str]] = [
    {"riskstrat.modeling.config", "riskstrat.features.generic", "riskstrat.features.spec", "riskstrat.features.clinical",
     "riskstrat.scoring.lists", "riskstrat.outcomes", "riskstrat.outcomes._base", "riskstrat.outcomes._builtin",
     "riskstrat.scoring.reasons", "riskstrat.data.validate"},
    # Only through the engine's and Spark scoring's imports of the wiring (features.engine -> pipelines,
    # scoring.spark -> pipelines, features.spark -> scoring.spark): the rest points down.
    {"riskstrat.features.engine", "riskstrat.features.spark", "riskstrat.scoring.spark", "riskstrat.pipelines",
     "riskstrat.evaluation.held_out", "riskstrat.modeling.refit", "riskstrat.registry.tracking",
     "riskstrat.modeling.train"},
    {"riskstrat.data.readers", "riskstrat.data.readers._cdm", "riskstrat.data.readers.hes", "riskstrat.data.readers.omop",
     "riskstrat.data.readers.synthea", "riskstrat.data.readers.vocab"},
]

# Optional heavy libraries whose import stays inside the function that needs it (start-up time).
HEAVY_OPTIONAL = ("pyspark", "optuna", "duckdb", "mlflow", "lightgbm", "shap", "matplotlib", "sklearn", "scipy",
                  "pyarrow", "xlsxwriter", "jinja2", "rich", "sqlalchemy")

RATCHET = Path(__file__).with_name("floor_plan_function_imports.txt")

_HOW_TO_FIX = """\
How to fix it: import riskstrat's modules at the top of the module, pointing down the layers
({order}). If the import would make a cycle, the shared definition sits in the wrong module:
move it down into the lower module (re-export it from the old place if callers use it) instead of
hiding the import inside a function. Only an optional heavy third-party library stays inside a
function. See the docstring of tests/test_floor_plan.py."""


# --- helpers --------------------------------------------------------------------------------------


def layer_map() -> dict[str, str]:
    return {module: layer for layer, modules in LAYERS.items() for module in modules}


def read_ratchet(path: Path = RATCHET) -> Counter:
    """``(importer, target) -> allowed count`` from the ratchet file (``importer -> target  count``)."""
    allowed: Counter = Counter()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        arrow, count = line.rsplit(None, 1)
        importer, target = (part.strip() for part in arrow.split("->"))
        allowed[(importer, target)] = int(count)
    return allowed


def function_level_counts(found) -> Counter:
    """How many import statements inside functions name each riskstrat module, per importer."""
    return Counter((a.importer, a.target) for a in graph.own(found, where="function"))


def upward(found, layers: dict[str, str], order: list[str]) -> set[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(order)}
    return {(a.importer, a.target) for a in graph.own(found) if a.where != "typing"
            and rank[graph.layer_of(a.target, layers)] > rank[graph.layer_of(a.importer, layers)]}


@pytest.fixture(scope="module")
def found():
    return graph.arrows()


# --- the contract's checks ------------------------------------------------------------------------


def test_every_module_has_a_layer():
    layers = layer_map()
    assert set(layers.values()) == set(ORDER)
    missing = []
    for module in graph.module_files():
        try:
            graph.layer_of(module, layers)
        except KeyError:
            missing.append(module)
    assert not missing, f"modules with no layer: {missing}; add each (or a prefix) to LAYERS in {__file__}"
    stale = [m for m in layers if not any(f == m or f.startswith(m + ".") for f in graph.module_files())]
    assert not stale, f"LAYERS names modules that do not exist: {stale}; remove them"


def test_no_cycle_among_module_level_imports(found):
    cycles = graph.cycles(graph.graph(found))
    assert not cycles, "module-level import cycles: " + "; ".join(" <-> ".join(c) for c in cycles) + "\n" + \
        _HOW_TO_FIX.format(order=" < ".join(ORDER))


def test_no_import_points_up_a_layer(found):
    up = upward(found, layer_map(), ORDER)
    new = sorted(up - set(UPWARD_ALLOWED))
    assert not new, "imports that point up a layer:\n" + "\n".join(
        f"  {i} [{graph.layer_of(i, layer_map())}] -> {t} [{graph.layer_of(t, layer_map())}]" for i, t in new
    ) + "\n" + _HOW_TO_FIX.format(order=" < ".join(ORDER))
    gone = sorted(set(UPWARD_ALLOWED) - up)
    assert not gone, f"UPWARD_ALLOWED lists arrows that are gone (well done): {gone}; delete them from {__file__}"


def test_no_cycle_hidden_inside_functions(found):
    edges = graph.graph(found)
    for a in graph.own(found, where="function"):
        edges.setdefault(a.importer, set()).add(a.target)
    cycles = graph.cycles(edges)
    new = [c for c in cycles if not any(set(c) <= known for known in KNOWN_CYCLES)]
    assert not new, "cycles through imports inside functions:\n" + "\n".join(
        f"  {len(c)} modules: {', '.join(c)}" for c in new) + "\n" + _HOW_TO_FIX.format(order=" < ".join(ORDER))


def test_imports_inside_functions_only_where_the_ratchet_allows(found):
    allowed = read_ratchet()
    actual = function_level_counts(found)
    over = sorted((arrow, n, allowed.get(arrow, 0)) for arrow, n in actual.items() if n > allowed.get(arrow, 0))
    assert not over, "new imports of riskstrat modules inside functions:\n" + "\n".join(
        f"  {i} -> {t}: {n} (allowed {a})" for (i, t), n, a in over) + "\n" + _HOW_TO_FIX.format(
        order=" < ".join(ORDER))
    under = sorted((arrow, actual.get(arrow, 0), n) for arrow, n in allowed.items() if actual.get(arrow, 0) < n)
    assert not under, (
        f"fewer imports inside functions than {RATCHET.name} allows (well done): tighten the ratchet with\n"
        f"  python tests/_import_graph.py --tighten\n" + "\n".join(f"  {i} -> {t}: {n} (allowed {a})"
                                                                  for (i, t), n, a in under))


# --- the graph reader, on a hand-made package -----------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src"
    for name, text in files.items():
        path = src / "riskstrat" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return src


def test_reader_resolves_relative_submodule_function_and_typing_imports(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "base.py": "X = 1\n",
        "top.py": "from riskstrat.base import X\n",
        "pkg/__init__.py": "from . import leaf\n",
        "pkg/leaf.py": """\
            from typing import TYPE_CHECKING
            from ..base import X
            from riskstrat import top
            if TYPE_CHECKING:
                from riskstrat.pkg import other
            def f():
                import lightgbm
                from riskstrat.pkg.other import Y
                return Y
            class C:
                from riskstrat import base
            """,
        "pkg/other.py": "Y = 2\n",
    })
    found = {(a.importer, a.target, a.where, a.kind) for a in graph.arrows(src)}
    assert found == {
        ("riskstrat.top", "riskstrat.base", "module", "explicit"),
        ("riskstrat.pkg", "riskstrat.pkg.leaf", "module", "explicit"),
        ("riskstrat.pkg.leaf", "typing", "module", "explicit"),
        ("riskstrat.pkg.leaf", "riskstrat.base", "module", "explicit"),  # from ..base, and the class body
        ("riskstrat.pkg.leaf", "riskstrat.top", "module", "explicit"),  # `from riskstrat import top`: a module
        ("riskstrat.pkg.leaf", "riskstrat.pkg.other", "typing", "explicit"),
        ("riskstrat.pkg.leaf", "lightgbm", "function", "explicit"),
        ("riskstrat.pkg.leaf", "riskstrat.pkg.other", "function", "explicit"),
    }


def test_reader_finds_cycles_and_the_package_init_an_import_runs(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from riskstrat.pkg.b import B\nA = 1\n",
        "pkg/__init__.py": "from riskstrat.c import C\n",
        "pkg/b.py": "B = 1\n",
        "c.py": "def f():\n    from riskstrat.a import A\nC = 1\n",
    })
    found = graph.arrows(src)
    assert ("riskstrat.a", "riskstrat.pkg", "package") in {(a.importer, a.target, a.kind) for a in found}
    assert graph.cycles(graph.graph(found)) == []  # c -> a only inside a function
    edges = graph.graph(found)
    for a in graph.own(found, where="function"):
        edges.setdefault(a.importer, set()).add(a.target)
    assert graph.cycles(edges) == [["riskstrat.a", "riskstrat.c", "riskstrat.pkg"]]


def test_an_upward_import_is_caught(tmp_path):
    src = _package(tmp_path, {"__init__.py": "", "low.py": "def f():\n    from riskstrat import high\n",
                              "high.py": "from riskstrat import low\n"})
    layers = {"riskstrat": "base", "riskstrat.low": "base", "riskstrat.high": "top"}
    assert upward(graph.arrows(src), layers, ["base", "top"]) == {("riskstrat.low", "riskstrat.high")}


def test_complexity_counts_branches_as_radon_does(tmp_path):
    src = _package(tmp_path, {"__init__.py": "", "m.py": """\
        def f(x, ys):
            if x and ys:                 # +1 if, +1 and
                return [y for y in ys if y]  # +1 comprehension, +1 its if
            for y in ys:                 # +1
                try:
                    pass
                except ValueError:       # +1
                    pass
            return 0
        """})
    assert graph.functions(src) == [(7, 9, "riskstrat.m:f")]
