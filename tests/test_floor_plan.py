"""The floor plan, enforced: riskstrat's layers, and imports that only point down.

The contract is declared once, here; ``tests/_import_graph.py`` reads the import graph from the
source with ``ast`` and prints the numbers (``python tests/_import_graph.py``).

1. Every module belongs to one layer (:data:`LAYERS`, bottom first in :data:`ORDER`); a module's
   layer is the longest declared prefix of its dotted name. The folders are the layers. The package
   itself (``riskstrat``) names only ``riskstrat/__init__.py``, never its submodules: a module in no
   declared folder fails the test until it is placed.
2. No cycle among module-level imports, nor once the imports inside functions are counted.
3. No import points up a layer: at module level, inside a function, or under ``if TYPE_CHECKING:``
   (a type annotation from a higher layer is a dependency on it too). An ``importlib.import_module``
   or ``__import__`` call with a literal module name counts as an import where it sits.
4. Imports of riskstrat's own modules sit at the top of the module. The one exception is named in
   :data:`LAZY_LAYERS`: inside the command line's functions, each command imports its pipeline when
   it runs (only ``riskstrat.pipelines.*``, ``riskstrat.errors`` and ``riskstrat.cli.*``), so
   ``riskstrat --help`` starts without loading pandas, LightGBM or MLflow. What a command needs from a
   lower layer (its config loader, the exceptions it catches, a formatter) it gets from the pipeline
   module it calls, which imports it at the top.
5. The optional heavy libraries in :data:`HEAVY_OPTIONAL` are imported only inside the functions that
   need them. Other third-party imports may sit at the top or inside functions.

Extending it: a new module goes in a layer (a new file in a layer's folder is in it already; a new
top-level module or folder needs its name in :data:`LAYERS`). A new import of a riskstrat module
goes at the top of the file and points down; if that makes a cycle, the shared definition belongs
in the lower module (move it down), not behind an import inside a function.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

import _import_graph as graph

# --- the contract ---------------------------------------------------------------------------------

# Bottom first: a module may import its own layer and the layers before it.
ORDER = ["base", "data", "features", "outcomes", "modeling", "evaluation", "registry", "scoring", "report",
         "wiring", "serve", "cli"]

LAYERS: dict[str, list[str]] = {
    # What every stage uses: the package, its errors, quieting foreign libraries, and the page templates
    # with their one Jinja2 environment (the reports and the practice lists both render pages).
    "base": ["riskstrat", "riskstrat.errors", "riskstrat.quiet", "riskstrat.templates"],
    # The linked records: schema, file input/output, reading, validating, pseudonymising, generating them.
    "data": ["riskstrat.data"],
    # Features before the index date: the clinical definitions, the spec, generic covariates, the pandas reference
    # engine and the other engines, the words for reasons, costs.
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
    # The reports a reader opens: evaluation, monitoring, the import report (rendered from riskstrat.templates).
    "report": ["riskstrat.report"],
    # The functions that wire a whole run (each step one call); what the CLI and notebooks call.
    "wiring": ["riskstrat.pipelines"],
    # The practices' worklist (web), over published months: its app, database, accounts and the months it loads.
    "serve": ["riskstrat.serve"],
    # Commands only: parse, call one wiring function, print.
    "cli": ["riskstrat.cli"],
}


class Lazy(NamedTuple):
    """A layer whose functions may import riskstrat modules: which ones (dotted prefixes), and why."""

    may_import: tuple[str, ...]
    why: str


# Layers whose modules may import riskstrat modules inside functions.
LAZY_LAYERS: dict[str, Lazy] = {
    "cli": Lazy(("riskstrat.pipelines", "riskstrat.serve", "riskstrat.errors", "riskstrat.cli"),
                "each command imports the pipeline it runs when it runs: `riskstrat --help` and a command's -h "
                "stay at about 0.15 s instead of the 3 s that pandas, LightGBM and MLflow take to import"),
}

# Third-party libraries imported only inside the functions that need them, never at a module's top:
# pyspark is the optional extra riskstrat[spark] (490 MiB and Java; without it every module that
# names the Spark engine must still import), and optuna serves only the hyperparameter search.
HEAVY_OPTIONAL = ("pyspark", "optuna")

# The web stack serves the worklist only: imported by riskstrat.serve's modules and nowhere else (a command
# imports riskstrat.serve inside its function, so `riskstrat --help` never loads them).
WEB_ONLY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "itsdangerous")
# ...and the one reader of the worklist's database below it: monitoring reads the status history
# (SQLAlchemy Core, by table name) without the web application.
WEB_ALSO = {"sqlalchemy": ("riskstrat.pipelines.worklist",)}

_HOW_TO_FIX = """\
How to fix it: import riskstrat's modules at the top of the module, pointing down the layers
({order}). If the import would make a cycle, the shared definition sits in the wrong module:
move it down into the lower module (re-export it from the old place if callers use it) instead of
hiding the import inside a function. A command (cli/) imports only its pipeline inside a function;
what it needs from a lower layer it gets from that pipeline module. See the docstring of
tests/test_floor_plan.py."""


# --- helpers --------------------------------------------------------------------------------------


def layer_map() -> dict[str, str]:
    return {module: layer for layer, modules in LAYERS.items() for module in modules}


def upward(found, layers: dict[str, str], order: list[str]) -> set[tuple[str, str]]:
    """``(importer, target)`` for every arrow to a higher layer, typing arrows included."""
    rank = {name: i for i, name in enumerate(order)}
    return {(a.importer, a.target) for a in graph.own(found)
            if rank[graph.layer_of(a.target, layers)] > rank[graph.layer_of(a.importer, layers)]}


def unplaced(modules, layers: dict[str, str]) -> list[str]:
    """The modules no layer names."""
    missing = []
    for module in modules:
        try:
            graph.layer_of(module, layers)
        except KeyError:
            missing.append(module)
    return missing


def inside_functions(found, layers: dict[str, str], lazy: dict[str, Lazy]) -> set[tuple[str, str, str, int]]:
    """``(importer, target, function, line)`` for every import of a riskstrat module inside a function
    that its layer's :class:`Lazy` entry does not allow."""
    def allowed(a) -> bool:
        rule = lazy.get(graph.layer_of(a.importer, layers))
        return rule is not None and any(a.target == p or a.target.startswith(p + ".") for p in rule.may_import)

    return {(a.importer, a.target, a.function, a.line) for a in graph.own(found, where="function") if not allowed(a)}


def heavy_at_the_top(found, heavy: tuple[str, ...]) -> set[tuple[str, str, int]]:
    """``(importer, library, line)`` for every module-level import of a library in ``heavy``."""
    return {(a.importer, a.target, a.line) for a in found if a.where == "module" and a.target.split(".")[0] in heavy}


@pytest.fixture(scope="module")
def found():
    return graph.arrows()


# --- the contract's checks ------------------------------------------------------------------------


def test_every_module_has_a_layer():
    layers = layer_map()
    assert set(layers.values()) == set(ORDER)
    missing = unplaced(graph.module_files(), layers)
    assert not missing, f"modules with no layer: {missing}; add each (or a prefix) to LAYERS in {__file__}"
    stale = [m for m in layers if not any(f == m or f.startswith(m + ".") for f in graph.module_files())]
    assert not stale, f"LAYERS names modules that do not exist: {stale}; remove them"


def test_no_cycle_among_module_level_imports(found):
    cycles = graph.cycles(graph.graph(found))
    assert not cycles, "module-level import cycles: " + "; ".join(" <-> ".join(c) for c in cycles) + "\n" + \
        _HOW_TO_FIX.format(order=" < ".join(ORDER))


def test_no_import_points_up_a_layer(found):
    layers = layer_map()
    up = sorted(upward(found, layers, ORDER))
    assert not up, "imports that point up a layer:\n" + "\n".join(
        f"  {i} [{graph.layer_of(i, layers)}] -> {t} [{graph.layer_of(t, layers)}]" for i, t in up
    ) + "\n" + _HOW_TO_FIX.format(order=" < ".join(ORDER))


def test_no_cycle_hidden_inside_functions(found):
    edges = graph.graph(found)
    for a in graph.own(found, where="function"):
        edges.setdefault(a.importer, set()).add(a.target)
    cycles = graph.cycles(edges)
    assert not cycles, "cycles through imports inside functions:\n" + "\n".join(
        f"  {len(c)} modules: {', '.join(c)}" for c in cycles) + "\n" + _HOW_TO_FIX.format(order=" < ".join(ORDER))


def test_riskstrat_modules_are_imported_at_the_top(found):
    inside = sorted(inside_functions(found, layer_map(), LAZY_LAYERS))
    assert not inside, "imports of riskstrat modules inside functions:\n" + "\n".join(
        f"  {i} -> {t} (in {f}, line {n})" for i, t, f, n in inside) + "\n" + _HOW_TO_FIX.format(
        order=" < ".join(ORDER))


def test_optional_heavy_libraries_are_imported_inside_functions(found):
    top = sorted(heavy_at_the_top(found, HEAVY_OPTIONAL))
    assert not top, "optional heavy libraries imported at a module's top (move each into the function that " \
        "needs it):\n" + "\n".join(f"  {i} -> {t} (line {n})" for i, t, n in top)


def test_the_web_stack_is_imported_only_by_the_worklist(found):
    layers = layer_map()
    outside = sorted({(a.importer, a.target) for a in found if a.target.split(".")[0] in WEB_ONLY
                      and graph.layer_of(a.importer, layers) != "serve"
                      and a.importer not in WEB_ALSO.get(a.target.split(".")[0], ())})
    assert not outside, "web libraries imported outside riskstrat.serve: " + ", ".join(f"{i} -> {t}" for i, t in outside)


def test_the_lazy_layers_are_the_top_of_the_plan():
    # Only the top may import lazily: nothing imports it, so its imports inside functions cannot hide a cycle.
    assert set(LAZY_LAYERS) <= {ORDER[-1]}


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


def test_a_module_in_no_declared_layer_is_caught(tmp_path):
    # The package root is declared (its __init__.py is base) but names none of its submodules.
    src = _package(tmp_path, {"__init__.py": "", "errors.py": "", "serve.py": "", "data/__init__.py": "",
                              "data/io.py": ""})
    layers = {"riskstrat": "base", "riskstrat.errors": "base", "riskstrat.data": "data"}
    assert unplaced(graph.module_files(src), layers) == ["riskstrat.serve"]
    assert graph.layer_of("riskstrat", layers) == "base"
    assert graph.layer_of("riskstrat.data.io", layers) == "data"


def test_an_upward_import_for_typing_only_is_caught_but_makes_no_cycle(tmp_path):
    src = _package(tmp_path, {"__init__.py": "", "high.py": "from riskstrat import low\nH = 1\n", "low.py": """\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from riskstrat.high import H
        """})
    found = graph.arrows(src)
    layers = {"riskstrat": "base", "riskstrat.low": "base", "riskstrat.high": "top"}
    assert upward(found, layers, ["base", "top"]) == {("riskstrat.low", "riskstrat.high")}
    assert graph.cycles(graph.graph(found)) == []


def test_import_calls_with_a_literal_name_are_arrows(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "high.py": "",
        "pkg/__init__.py": "",
        "pkg/leaf.py": "",
        "low.py": """\
            import importlib
            from importlib import import_module
            importlib.import_module("riskstrat.high")
            def f(name):
                __import__("riskstrat.pkg", fromlist=["leaf"])
                import_module(".leaf", package="riskstrat.pkg")
                import_module(name)  # computed: cannot be read
                return importlib.import_module("optuna")
            """,
    })
    found = {(a.importer, a.target, a.where, a.function) for a in graph.arrows(src) if a.target != "importlib"}
    assert found == {
        ("riskstrat.low", "riskstrat.high", "module", ""),
        ("riskstrat.low", "riskstrat.pkg", "function", "f"),
        ("riskstrat.low", "riskstrat.pkg.leaf", "function", "f"),
        ("riskstrat.low", "optuna", "function", "f"),
    }
    layers = {"riskstrat": "base", "riskstrat.low": "base", "riskstrat.high": "top", "riskstrat.pkg": "base"}
    assert upward(graph.arrows(src), layers, ["base", "top"]) == {("riskstrat.low", "riskstrat.high")}
    assert {(i, t) for i, t, _, _ in inside_functions(graph.arrows(src), layers, {})} == {
        ("riskstrat.low", "riskstrat.pkg"), ("riskstrat.low", "riskstrat.pkg.leaf")}


def test_a_command_may_import_only_its_pipeline_inside_a_function(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "", "errors.py": "", "data/__init__.py": "", "data/io.py": "",
        "pipelines/__init__.py": "", "pipelines/run.py": "",
        "cli/__init__.py": "", "cli/app.py": "",
        "cli/run_cmd.py": """\
            def run():
                from riskstrat.pipelines.run import go
                from riskstrat.errors import RiskstratError
                from riskstrat.cli.app import out
                from riskstrat.data.io import read_json
            """,
        "data/validate.py": "def check():\n    from riskstrat.errors import RiskstratError\n",
    })
    layers = {"riskstrat": "base", "riskstrat.errors": "base", "riskstrat.data": "data",
              "riskstrat.pipelines": "wiring", "riskstrat.cli": "cli"}
    assert inside_functions(graph.arrows(src), layers, LAZY_LAYERS) == {
        ("riskstrat.cli.run_cmd", "riskstrat.data.io", "run", 5),
        ("riskstrat.data.validate", "riskstrat.errors", "check", 2),
    }


def test_an_optional_heavy_library_at_a_module_top_is_caught(tmp_path):
    src = _package(tmp_path, {"__init__.py": "", "spark.py": """\
        import importlib
        import pyspark.sql.functions as F
        importlib.import_module("optuna")
        def session():
            from pyspark.sql import SparkSession
            return SparkSession
        """})
    assert heavy_at_the_top(graph.arrows(src), HEAVY_OPTIONAL) == {
        ("riskstrat.spark", "pyspark.sql.functions", 2), ("riskstrat.spark", "optuna", 3)}
