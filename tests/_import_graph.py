"""riskstrat's import graph, read from the source with ``ast`` (nothing is imported).

Used by ``tests/test_floor_plan.py`` (the contract) and runnable as a report of the numbers::

    python tests/_import_graph.py            # cycles, upward arrows, function-level imports, complexity
    python tests/_import_graph.py --edges    # also every arrow, one a line

An arrow is one ``import`` statement naming one module, or one ``importlib.import_module("...")`` or
``__import__("...")`` call whose module name is a literal string (a name computed at run time cannot be
read). It is *module-level* when it runs on import (top of the file, a class body, a ``try``),
*function-level* when it sits inside a function, and *typing* when it sits under ``if TYPE_CHECKING:``:
a typing arrow never runs, so it is left out of the cycle checks (:func:`graph`), but it is still a
dependency on the module it names, so the contract's upward check counts it. ``from riskstrat.x import
y`` points at ``riskstrat.x.y`` when ``y`` is a submodule, else at ``riskstrat.x``. Importing
``riskstrat.a.b`` also runs ``riskstrat/a/__init__.py``: that hidden arrow is kept as kind ``package``
so cycles through a package's ``__init__`` are seen too.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "riskstrat"
SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Arrow:
    """One import of a module: ``importer`` imports ``target`` at ``path:line``."""

    importer: str
    target: str
    line: int
    where: str  # "module", "function" or "typing"
    kind: str = "explicit"  # "explicit" or "package" (the __init__ an import runs on the way)
    function: str = ""  # the enclosing function for a function-level import

    @property
    def own(self) -> bool:
        return self.target == PACKAGE or self.target.startswith(PACKAGE + ".")


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its ``__init__.py``)."""
    found: dict[str, Path] = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def _resolve_from(node: ast.ImportFrom, importer: str, files: dict[str, Path]) -> str | None:
    """The absolute module a ``from ... import`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module
    base = importer.split(".")
    if not _is_package(importer, files):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def _deepest(name: str, files: dict[str, Path]) -> str:
    """The deepest module of ours a dotted name names (``riskstrat.a.B`` -> ``riskstrat.a``); others as written."""
    if name.split(".")[0] == PACKAGE:
        while name not in files and "." in name:
            name = name.rsplit(".", 1)[0]
    return name


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _dynamic(node: ast.Call) -> list[str] | None:
    """The module names an ``importlib.import_module(...)`` or ``__import__(...)`` call gives as literal
    strings (``None`` when the call is neither, or its module name is computed)."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in ("import_module", "__import__") or not node.args:
        return None
    keywords = {k.arg: k.value for k in node.keywords if k.arg}
    name = _literal(node.args[0])
    if name is None:
        return None
    if called == "import_module":
        if name.startswith("."):  # relative to a literal package= (else it cannot be read)
            package = _literal(node.args[1] if len(node.args) > 1 else keywords.get("package"))
            try:
                name = importlib.util.resolve_name(name, package) if package else ""
            except ImportError:  # beyond the top-level package: it fails when it runs
                return None
            if not name:
                return None
        return [name]
    # __import__(name, globals, locals, fromlist, level): a relative one (level > 0) cannot be read.
    level = node.args[4] if len(node.args) > 4 else keywords.get("level")
    if level is not None and not (isinstance(level, ast.Constant) and level.value == 0):
        return None
    fromlist = node.args[3] if len(node.args) > 3 else keywords.get("fromlist")
    subs = [_literal(e) for e in fromlist.elts] if isinstance(fromlist, (ast.List, ast.Tuple)) else []
    if name.split(".")[0] != PACKAGE:  # a third party's submodules are not ours to tell from its names
        subs = []
    return [name] + [f"{name}.{sub}" for sub in subs if sub and sub != "*"]


def _targets(node: ast.Import | ast.ImportFrom | ast.Call, importer: str, files: dict[str, Path]) -> list[str]:
    """The modules one import statement or import call names (third-party ones as they are written)."""
    if isinstance(node, ast.Call):
        return list(dict.fromkeys(_deepest(name, files) for name in _dynamic(node) or ()))
    if isinstance(node, ast.Import):
        return [_deepest(alias.name, files) for alias in node.names]
    module = _resolve_from(node, importer, files) or ""
    if module.split(".")[0] != PACKAGE:
        return [module]
    out = []
    for alias in node.names:
        sub = f"{module}.{alias.name}"
        out.append(sub if sub in files else module)
    return list(dict.fromkeys(out))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, where: str, function: str) -> Iterable[tuple[ast.AST, str, str]]:
    """Every import statement and literal import call under ``node`` with where it runs and its
    enclosing function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, where, function
        elif isinstance(child, ast.Call):
            if _dynamic(child):
                yield child, where, function
            yield from _walk(child, where, function)  # an import call's arguments may hold another
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            name = getattr(child, "name", "<lambda>")
            inner = where if where == "typing" else "function"
            yield from _walk(child, inner, f"{function}.{name}" if function else name)
        elif isinstance(child, ast.ClassDef):
            yield from _walk(child, where, f"{function}.{child.name}" if function else child.name)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), "typing", function)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), where, function)
        else:
            yield from _walk(child, where, function)


def arrows(src: Path = SRC) -> list[Arrow]:
    """Every import statement in the package, ours and third-party, one arrow per named module."""
    files = module_files(src)
    found: list[Arrow] = []
    for importer, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, where, function in _walk(tree, "module", ""):
            for target in _targets(node, importer, files):  # type: ignore[arg-type]
                if target == importer:
                    continue
                found.append(Arrow(importer, target, node.lineno, where, "explicit", function))
                if target.split(".")[0] != PACKAGE:
                    continue
                # Importing riskstrat.a.b runs riskstrat/a/__init__.py first, unless the importer
                # lives inside riskstrat.a (then that package is already being imported).
                parts = target.split(".")
                for depth in range(2, len(parts)):
                    package = ".".join(parts[:depth])
                    if importer == package or importer.startswith(package + "."):
                        continue
                    found.append(Arrow(importer, package, node.lineno, where, "package", function))
    return found


def own(found: Iterable[Arrow], *, where: str | None = None, kinds: tuple[str, ...] = ("explicit",)) -> list[Arrow]:
    """The arrows to riskstrat's own modules, optionally only those at ``where``."""
    return [a for a in found if a.own and a.target != PACKAGE and a.kind in kinds and (where is None or a.where == where)]


def graph(found: Iterable[Arrow], *, where: str = "module") -> dict[str, set[str]]:
    """The module-level graph (``importer -> targets``) including the package arrows."""
    edges: dict[str, set[str]] = {}
    for a in own(found, where=where, kinds=("explicit", "package")):
        edges.setdefault(a.importer, set()).add(a.target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(set(edges) | {t for ts in edges.values() for t in ts}):
        if node not in index:
            visit(node)
    return sorted(found, key=lambda c: (-len(c), c))


# --- complexity -----------------------------------------------------------------------------------

_BRANCHES = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.Assert, ast.match_case)


def _complexity(function: ast.AST) -> int:
    """McCabe's cyclomatic complexity, counted as radon counts it (nested functions apart)."""
    score = 1
    todo = list(ast.iter_child_nodes(function))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, _BRANCHES):
            score += 1
            if isinstance(node, (ast.For, ast.AsyncFor, ast.While)) and node.orelse:
                score += 1
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            score += 1 + len(node.ifs)
        elif isinstance(node, ast.Try) and node.orelse:
            score += 1
        todo.extend(ast.iter_child_nodes(node))
    return score


def functions(src: Path = SRC) -> list[tuple[int, int, str]]:
    """``(complexity, lines, module:function)`` for every function and method, most complex first."""
    out = []
    for module, path in module_files(src).items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        todo: list[tuple[ast.AST, str]] = [(tree, "")]
        while todo:
            node, prefix = todo.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}.{child.name}" if prefix else child.name
                    if not isinstance(child, ast.ClassDef):
                        lines = (child.end_lineno or child.lineno) - child.lineno + 1
                        out.append((_complexity(child), lines, f"{module}:{name}"))
                    todo.append((child, name))
                else:
                    todo.append((child, prefix))
    return sorted(out, reverse=True)


def _radon(src: Path) -> list[tuple[int, int, str]] | None:
    """The same list from radon when it is installed (it is not a dependency)."""
    try:
        from radon.complexity import cc_visit
    except ImportError:
        return None
    out = []
    for module, path in module_files(src).items():
        for block in cc_visit(path.read_text(encoding="utf-8")):
            if getattr(block, "is_method", None) is not None or type(block).__name__ == "Function":
                name = f"{block.classname}.{block.name}" if getattr(block, "classname", None) else block.name
                out.append((block.complexity, block.endline - block.lineno + 1, f"{module}:{name}"))
    return sorted(out, reverse=True)


def report(src: Path = SRC, *, layers: dict[str, str] | None = None, order: list[str] | None = None,
           show_edges: bool = False, top: int = 15) -> str:
    """The numbers, as text: modules, arrows, cycles, upward arrows, function-level imports, complexity."""
    found = arrows(src)
    files = module_files(src)
    explicit = own(found)
    module_level = own(found, where="module")
    function_level_all = [a for a in found if a.where == "function" and a.kind == "explicit"]
    statements = {(a.importer, a.line) for a in function_level_all}
    statements_own = {(a.importer, a.line) for a in function_level_all if a.own}
    function_level_own = own(found, where="function")
    unique = {(a.importer, a.target) for a in explicit if a.where != "typing"}
    unique_module = {(a.importer, a.target) for a in module_level}
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in files.values())
    out = [f"modules: {len(files)}, lines: {lines}",
           f"import arrows between riskstrat modules (distinct importer -> target, any level): {len(unique)}"
           f" ({len(unique_module)} module-level)",
           f"function-level import statements: {len(statements)}, {len(statements_own)} of riskstrat's own"
           f" modules ({len(function_level_own)} module names, {len({(a.importer, a.target) for a in function_level_own})}"
           f" distinct importer -> target arrows)"]
    found_cycles = cycles(graph(found))
    out.append(f"cycles among module-level imports: {len(found_cycles)}")
    out += [f"  {len(c)}: {' , '.join(c)}" for c in found_cycles]
    both = graph(found)
    for a in function_level_own:
        both.setdefault(a.importer, set()).add(a.target)
    hidden = cycles(both)
    out.append(f"cycles once function-level imports count too (the ones hidden inside functions): {len(hidden)}")
    out += [f"  {len(c)}: {' , '.join(c)}" for c in hidden]
    pairs = sorted({tuple(sorted((i, t))) for i, ts in both.items() for t in ts if i in both.get(t, ())})
    out.append(f"modules that import each other (at any level): {len(pairs)}")
    out += [f"  {a} <-> {b}" for a, b in pairs]
    if layers and order:
        rank = {name: i for i, name in enumerate(order)}
        up = sorted({(a.importer, a.target, a.where) for a in explicit
                     if rank[layer_of(a.target, layers)] > rank[layer_of(a.importer, layers)]})
        out.append(f"upward arrows (importer's layer below target's layer): {len(up)}"
                   f" ({sum(1 for u in up if u[2] == 'module')} module-level)")
        out += [f"  {i} [{layer_of(i, layers)}] -> {t} [{layer_of(t, layers)}] ({w})" for i, t, w in up]
    ranked = _radon(src)
    out.append(f"largest functions by cyclomatic complexity ({'radon' if ranked else 'ast count, as radon counts'}):")
    for cc, length, name in (ranked or functions(src))[:top]:
        out.append(f"  {cc:4d}  {length:4d} lines  {name}")
    if show_edges:
        out.append("arrows:")
        out += [f"  {a.importer} -> {a.target}  ({a.where}, line {a.line})" for a in sorted(explicit, key=lambda a: (a.importer, a.line))]
    return "\n".join(out)


def layer_of(module: str, layers: dict[str, str]) -> str:
    """The layer a module belongs to: the longest declared prefix that names it. The package itself
    (``riskstrat``) names only its ``__init__.py``: as a prefix it would name every module, and a module
    nobody placed would land in its layer unseen."""
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        name = ".".join(parts[:depth])
        if name in layers and (name != PACKAGE or module == PACKAGE):
            return layers[name]
    raise KeyError(module)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    src = SRC
    for arg in sys.argv[1:]:
        if arg.startswith("--src="):
            src = Path(arg.split("=", 1)[1])
    import test_floor_plan as contract  # the contract: the layers

    layers = {m: layer for layer, ms in contract.LAYERS.items() for m in ms}
    print(report(src, layers=layers, order=contract.ORDER, show_edges="--edges" in sys.argv))
