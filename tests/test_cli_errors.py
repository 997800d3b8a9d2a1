"""The CLI's exit statuses: 2 for every refusal, 1 for an operating-system failure (named, with what
to do), and a bug keeps its traceback (no command catches ValueError or KeyError)."""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest
from typer.testing import CliRunner

import riskstrat.cli
import riskstrat.pipelines
from riskstrat.cli import app
from riskstrat.errors import InvalidInputError, RiskstratError

CLI_DIR = Path(riskstrat.cli.__file__).parent
# Exceptions that mean "a bug" when nobody raised them on purpose: catching them hides the traceback.
BUG_CLASSES = {"ValueError", "KeyError", "IndexError", "TypeError", "AttributeError", "LookupError", "Exception",
               "BaseException", "RuntimeError"}


def _caught_names(handler: ast.ExceptHandler) -> set[str]:
    if handler.type is None:
        return {"BaseException"}  # a bare except
    nodes = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {n.id if isinstance(n, ast.Name) else n.attr for n in nodes if isinstance(n, (ast.Name, ast.Attribute))}


def test_no_command_catches_the_exceptions_of_bugs():
    found = []
    for path in sorted(CLI_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for node in ast.walk(func):
                if isinstance(node, ast.ExceptHandler) and _caught_names(node) & BUG_CLASSES:
                    found.append(f"{path.name}:{func.name}:{node.lineno}")
    # parse_date turns the one expected ValueError (from date.fromisoformat) into a usage error.
    assert [f.rsplit(":", 1)[0] for f in found] == ["app.py:parse_date"]


def _train_raising(monkeypatch, exc: BaseException) -> object:
    def run_training(cfg, **kwargs):
        raise exc

    monkeypatch.setattr(riskstrat.pipelines, "run_training", run_training)
    return CliRunner().invoke(app, ["train", "--no-tracking"])


@pytest.mark.parametrize("bug", [ValueError("a bug"), KeyError("tier"), TypeError("a bug")])
def test_a_bug_keeps_its_traceback_and_exits_1(monkeypatch, bug):
    result = _train_raising(monkeypatch, bug)
    assert result.exit_code == 1
    assert isinstance(result.exception, type(bug))  # propagated, not turned into a message


@pytest.mark.parametrize("refusal", [RiskstratError("the data cannot support this"),
                                     InvalidInputError("the data cannot support this")])
def test_every_refusal_exits_2_with_its_message(monkeypatch, refusal):
    result = _train_raising(monkeypatch, refusal)
    assert result.exit_code == 2
    assert "the data cannot support this" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("code", "advice"), [(errno.EACCES, "permissions"), (errno.EISDIR, "a folder is where"),
                                              (errno.ENOSPC, "disk is full"), (errno.EPERM, "permissions")])
def test_os_errors_name_the_file_and_what_to_do(monkeypatch, tmp_path, code, advice):
    target = tmp_path / "out" / "audit.jsonl"
    result = _train_raising(monkeypatch, OSError(code, "system words", str(target)))
    assert result.exit_code == 1
    assert str(target) in result.output and "system words" in result.output and advice in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["score"], ["monitor"], ["evaluate", "--model", "m@champion", "--data", "."]])
def test_a_bad_date_is_a_usage_error_naming_the_option(command):
    result = CliRunner().invoke(app, [*command, "--as-of", "2025-13-01"])
    assert result.exit_code == 2
    assert "--as-of" in result.output and "'2025-13-01' is not a date" in result.output


def test_synth_refuses_a_bad_start_with_status_2(tmp_path):
    result = CliRunner().invoke(app, ["synth", "--people", "100", "--start", "2021-11-15", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "first of a month" in result.output
    assert not (tmp_path / "s").exists()
