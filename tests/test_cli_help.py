"""The CLI's help: `-h` and `--version`, every command's help readable at 80 columns (an example, no
value placeholder on flags, no text eaten as Rich markup or cut off), commands in workflow order."""

from __future__ import annotations

import inspect
import re

import pytest
import typer
from typer.testing import CliRunner

import riskstrat
from riskstrat.cli import app


def _tree(command, path=()):
    """(path, click command) for the root, every command and every sub-command."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _tree(sub, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = dict(_tree(ROOT))


def _help(path: tuple[str, ...], *, flag: str = "--help"):
    return CliRunner().invoke(app, [*path, flag], env={"COLUMNS": "80"})


def _source_texts(command) -> list[str]:
    """The help texts as written: the command's and its parameters'."""
    return [inspect.cleandoc(command.help or "")] + [p.help for p in command.params if getattr(p, "help", None)]


def test_every_command_is_covered():
    # The groups and their sub-commands are all walked (a new command is checked without a new test).
    assert {("import", "synthea"), ("import", "omop"), ("import", "hes"), ("key", "init"),
            ("key", "fingerprint"), ("features",), ("demo",), ()} <= set(COMMANDS)
    assert len(COMMANDS) >= 17


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "riskstrat")
def test_help_renders_at_80_columns(path):
    result = _help(path)
    assert result.exit_code == 0, result.output
    text = result.output
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Example: riskstrat" in text  # every command shows how it is called
    assert not re.search(r"<bool>|<[a-z]+>\s+Show this message", text)  # flags take no value
    # Nothing written was lost: every bracketed word ("riskstrat[spark]", "[30,180,365]") is shown,
    # no escaping backslash shows, and no cell was cut short with an ellipsis.
    flat = " ".join(text.split())
    for source in _source_texts(COMMANDS[path]):
        for token in re.findall(r"[\w.'-]*\\?\[[^\]\s]*\]", source):
            assert token.replace("\\[", "[") in flat, f"{token!r} is missing from the help of {path}"
    assert "\\[" not in text
    assert "…" not in text, f"text cut off in the help of {path}:\n{text}"


def test_dash_h_is_help_everywhere():
    for path in [(), ("train",), ("import",), ("import", "omop"), ("key", "init")]:
        short, long = _help(path, flag="-h"), _help(path)
        assert short.exit_code == 0 and short.output == long.output


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    result = CliRunner().invoke(app, [flag])
    assert result.exit_code == 0
    assert result.output.strip() == f"riskstrat {riskstrat.__version__}"


def test_commands_are_listed_in_workflow_order():
    text = _help(()).output
    listed = re.findall(r"^│ ([a-z]+) ", text, flags=re.MULTILINE)
    assert listed == ["demo", "synth", "key", "import", "validate", "features", "train", "evaluate", "promote",
                      "score", "monitor", "workbook", "serve", "users"]
    panels = re.findall(r"^╭─ ([A-Z][a-z ]+?) ─", text, flags=re.MULTILINE)
    assert panels == ["Options", "Start here", "Data", "Models", "Every month", "Worklist"]
    # Every command is placed in the workflow (a new one goes under "Other" until it is placed).
    assert set(listed) == {p[0] for p in COMMANDS if len(p) == 1}
