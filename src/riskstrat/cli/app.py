"""The one Typer app; every command lives in its own module and only parses and prints."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

app = typer.Typer(
    name="riskstrat",
    help=(
        "Population health risk stratification from linked person-level records.\n\n"
        "Start with `riskstrat demo`: it generates a synthetic population, trains and registers the "
        "models and writes case-finding lists, all under the current folder."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide output when written to a file or CI log; the terminal's own width otherwise.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
out = Console(width=None if sys.stdout.isatty() else 120)


def fail(message: str, code: int = 1) -> None:
    """Print an error a user can act on and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def _root() -> None:
    # A callback keeps `riskstrat COMMAND` a command group even while it has a single command.
    return None
