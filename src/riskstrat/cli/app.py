"""The one Typer app; every command lives in its own module and only parses and prints.

Errors and warnings are handled here, once, for every command (:class:`_Commands`):

- riskstrat's own refusals (:class:`riskstrat.errors.RiskstratError`: bad input, a bad
  configuration, data that fail validation, a model the data cannot support) print their message
  and exit with status 2; operating-system errors (a missing file, no permission, a full disk) print
  the file, the error and what to do, and exit with status 1; both without a traceback. Anything
  else (a ``ValueError`` or ``KeyError`` included) is a bug in riskstrat and keeps its traceback:
  no command catches them.
- warnings from other libraries (scikit-learn, LightGBM, MLflow, pandas, ...) are not shown: the
  conditions that matter are checked by riskstrat itself and reported in its own words (minimum
  events, degenerate models, stale data). MLflow's own event lines are silenced likewise (the
  stage lines say what was registered and loaded). ``RISKSTRAT_SHOW_WARNINGS=1`` shows them all.
"""

from __future__ import annotations

import datetime as dt
import errno
import inspect
import sys
import warnings

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from riskstrat import __version__
from riskstrat.errors import RiskstratError
from riskstrat.quiet import foreign_warnings_hidden, mlflow_events_hidden, show_all

# Exit statuses: 1 for operating-system failures (and bugs, with their traceback), 2 for a riskstrat
# refusal and for usage errors (click's own convention).
EXIT_FAILURE, EXIT_REFUSED = 1, 2

# Wide output when written to a file or CI log; the terminal's own width otherwise.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
out = Console(width=None if sys.stdout.isatty() else 120)


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    """Print an error a user can act on and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def refuse(message: str) -> None:
    """Print a refusal (the input cannot be used as given) and exit with status 2."""
    fail(message, EXIT_REFUSED)


def parse_date(value: str | None, *, option: str = "--as-of") -> dt.date | None:
    """A YYYY-MM-DD option as a date; anything else is a usage error (status 2) naming the option."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2026-11-01", param_hint=option) from None


# What to do about an operating-system error, by its errno.
_OS_ADVICE = {
    errno.ENOENT: "check the path: it, or a folder above it, does not exist",
    errno.EACCES: "check the permissions of the file and of the folders above it",
    errno.EPERM: "check the permissions and attributes of the file: an immutable or append-only file, or "
                 "another user's file in a sticky folder, cannot be changed",
    errno.EISDIR: "a folder is where a file was expected: move it away or choose another path",
    errno.ENOTDIR: "part of the path is a file, not a folder",
    errno.ENOSPC: "the disk is full: free space or choose another output folder",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another folder",
    errno.EEXIST: "something is already at that path: move it away",
    errno.ELOOP: "a symbolic link loop, or a link where riskstrat refuses to follow one: remove the link",
}


def describe_os_error(exc: OSError) -> str:
    """``exc`` as one line a person can act on: the file(s), the system's words and what to do."""
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or str(exc)
    advice = _OS_ADVICE.get(exc.errno or -1)
    line = f"{files}: {what}" if files else str(exc)
    return f"{line}; {advice}" if advice else line


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """riskstrat's own warnings (the only ones not hidden) as one line in its words, on stderr, even
    with --quiet: not Python's ``file:line: Category: ...`` with a source line."""
    console.print(f"[bold yellow]warning:[/] {message}", highlight=False)


def _reflow(text: str | None) -> str | None:
    """Help text with each paragraph on one line: Typer's rich help keeps a docstring's single line
    breaks, so a wrapped docstring would print its source line breaks at any terminal width."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
                       for p in paragraphs)


def _tidy_value_types(params, ctx) -> None:
    """No value placeholder (Typer's ``<bool>``) for an on/off flag: it takes no value. ``<int>`` for
    Typer's ``<int range>``: the range follows it anyway, and the narrower column leaves the option
    names and the help room at 80 columns (Rich cuts words that do not fit)."""
    for param in params:
        if param.param_type_name != "option" or param.metavar is not None or not hasattr(param, "display_type"):
            continue
        if getattr(param, "is_bool_flag", False):
            param.metavar = ""
        elif param.display_type(ctx).endswith(" range>"):
            param.metavar = param.display_type(ctx).replace(" range>", ">")


class Command(TyperCommand):
    """A command whose help reads well: paragraphs reflowed, no placeholder on flags."""

    def __init__(self, *args, help: str | None = None, **kwargs):  # noqa: A002 (click's name)
        super().__init__(*args, help=_reflow(help), **kwargs)

    def format_help(self, ctx, formatter):
        _tidy_value_types(self.get_params(ctx), ctx)  # the help option itself is made per context
        return super().format_help(ctx, formatter)


class Group(TyperGroup):
    """A command group whose help reads like :class:`Command`'s."""

    def __init__(self, *args, help: str | None = None, **kwargs):  # noqa: A002
        super().__init__(*args, help=_reflow(help), **kwargs)

    def format_help(self, ctx, formatter):
        _tidy_value_types(self.get_params(ctx), ctx)
        return super().format_help(ctx, formatter)


class App(typer.Typer):
    """``typer.Typer`` for riskstrat's command groups: ``-h`` as well as ``--help``, and commands and
    sub-groups built as :class:`Command` and :class:`Group`."""

    def __init__(self, *, cls: type[TyperGroup] = Group, **kwargs):
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(cls=cls, add_completion=False, pretty_exceptions_enable=False, **kwargs)

    def command(self, *args, cls: type[TyperCommand] | None = None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)


# `riskstrat --help` lists the commands in the order a user meets them, in panels: the demo first
# (the root help's advice), then data in (synthetic, or your own: the key before the import that
# needs it) and checked, then the models (what they are built from, training, the evidence, the
# gate), then the monthly run and its follow-up. A command not named here goes last under "Other".
WORKFLOW: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Start here", ("demo",)),
    ("Data", ("synth", "key", "import", "validate")),
    ("Models", ("features", "train", "evaluate", "promote")),
    ("Every month", ("score", "monitor", "workbook")),
    ("Worklist", ("serve", "users")),
)
_ORDER = [name for _, names in WORKFLOW for name in names]
_PANEL = {name: panel for panel, names in WORKFLOW for name in names}


class _Commands(Group):
    """The root command group: lists the commands in workflow order, runs every command with foreign
    warnings hidden, and turns riskstrat's refusals and OS errors into a message and an exit status."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, command in self.commands.items():
            command.rich_help_panel = _PANEL.get(name, "Other")

    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER))

    def invoke(self, ctx):
        try:
            # MLflow's own event lines ("Created version '2' of model ...") and download bars repeat
            # what riskstrat's stage lines say; shown only with RISKSTRAT_SHOW_WARNINGS.
            if show_all():
                return super().invoke(ctx)
            with foreign_warnings_hidden(), mlflow_events_hidden():
                warnings.showwarning = _show_warning  # restored by foreign_warnings_hidden's catch_warnings
                return super().invoke(ctx)
        except RiskstratError as exc:
            fail(str(exc), EXIT_REFUSED)
        except OSError as exc:
            fail(describe_os_error(exc), EXIT_FAILURE)


app = App(
    name="riskstrat",
    cls=_Commands,
    help=(
        "Population health risk stratification from linked person-level records.\n\n"
        "Start with `riskstrat demo`: it generates a synthetic population, trains and registers the "
        "models and writes case-finding lists, all under the current folder. `riskstrat COMMAND -h` "
        "explains each command.\n\n"
        "Example: riskstrat demo"
    ),
    no_args_is_help=True,
)


def _print_version(value: bool) -> None:
    """``--version``: the package version, then exit (before any command runs)."""
    if value:
        out.print(f"riskstrat {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    # The root's own options (--version); a callback also keeps `riskstrat COMMAND` a command group.
    return None
