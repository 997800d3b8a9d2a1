"""Every third-party module riskstrat imports is declared in pyproject.toml, and none is private API.

An AST scan of src/riskstrat: imports at module level and inside functions alike.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "riskstrat"

# Import names whose distribution is called something else (checked before the installed metadata).
DISTRIBUTION_OF = {"sklearn": "scikit-learn", "yaml": "pyyaml"}
# Extras for working on riskstrat, not for running it: they cannot make a run-time import legal.
DEVELOPMENT_EXTRAS = {"test"}
# Private helpers still reached into, each with the issue that removes it (and the pin it forces).
KNOWN_PRIVATE: dict[tuple[str, str], str] = {}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports(root: Path = SRC) -> dict[str, set[str]]:
    """Top-level third-party module name -> the files (relative) that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "riskstrat" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(root)))
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra, reqs in project.get("optional-dependencies", {}).items():
        if extra not in DEVELOPMENT_EXTRAS:
            requirements += reqs
    return {_normalise(re.match(r"[A-Za-z0-9._-]+", r.strip()).group(0)) for r in requirements}


def distributions_of(module: str) -> set[str]:
    """The distributions that may provide ``module`` (mlflow comes from mlflow or mlflow-skinny)."""
    if module in DISTRIBUTION_OF:
        return {_normalise(DISTRIBUTION_OF[module])}
    return {_normalise(d) for d in _installed().get(module, [module])}


@functools.cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def test_the_scan_sees_imports_inside_functions(tmp_path):
    (tmp_path / "m.py").write_text("import os\nimport numpy as np\ndef f():\n    from sklearn.base import clone\n"
                                   "    import yaml.constructor\n    from . import sibling\n")
    assert third_party_imports(tmp_path) == {"numpy": {"m.py"}, "sklearn": {"m.py"}, "yaml": {"m.py"}}
    assert distributions_of("sklearn") == {"scikit-learn"} and distributions_of("yaml") == {"pyyaml"}
    assert "markupsafe" in distributions_of("markupsafe")


def test_every_third_party_import_is_a_declared_dependency():
    declared = declared_distributions()
    undeclared = {module: sorted(files) for module, files in third_party_imports().items()
                  if not distributions_of(module) & declared}
    assert not undeclared, (f"imported by src/riskstrat but not declared in pyproject.toml's dependencies "
                            f"(or a user extra): {undeclared}; declare them, or stop importing them")


def test_no_private_api_of_a_third_party_library_is_imported():
    private, libraries = {}, set(third_party_imports())
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] in libraries:
                for alias in node.names:
                    in_private_module = any(p.startswith("_") for p in node.module.split("."))
                    if (in_private_module or (alias.name.startswith("_") and not alias.name.startswith("__"))) \
                            and (node.module, alias.name) not in KNOWN_PRIVATE:
                        private[f"{path.relative_to(SRC)}:{node.lineno}"] = f"{node.module}.{alias.name}"
    assert not private, f"private API of a library (it forces a pin, and breaks without notice): {private}"
