"""The one Typer app; every command lives in its own module and only parses and prints.

Errors and warnings are handled here, once, for every command (:class:`_Commands`):

- riskstrat's own refusals (:class:`riskstrat.errors.RiskstratError`) print their message and exit
  with status 2, operating-system errors (a missing file, a full disk) with status 1, both without a
  traceback; anything else is a bug and keeps its traceback.
- warnings from other libraries (scikit-learn, LightGBM, MLflow, pandas, ...) are not shown: the
  conditions that matter are checked by riskstrat itself and reported in its own words (minimum
  events, degenerate models, stale data). MLflow's own event lines are silenced likewise (the
  stage lines say what was registered and loaded). ``RISKSTRAT_SHOW_WARNINGS=1`` shows them all.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from typer.core import TyperGroup

from riskstrat.quiet import foreign_warnings_hidden, mlflow_events_hidden, show_all

# Exit statuses: 1 for failures (also typer.Exit from `fail`), 2 for a riskstrat refusal.
EXIT_FAILURE, EXIT_REFUSED = 1, 2

# Wide output when written to a file or CI log; the terminal's own width otherwise.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
out = Console(width=None if sys.stdout.isatty() else 120)


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    """Print an error a user can act on and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


class _Commands(TyperGroup):
    """The root command group: runs every command with foreign warnings hidden, and turns
    riskstrat's refusals and OS errors into a message and an exit status."""

    def invoke(self, ctx):
        from riskstrat.errors import RiskstratError

        try:
            # MLflow's own event lines ("Created version '2' of model ...") and download bars repeat
            # what riskstrat's stage lines say; shown only with RISKSTRAT_SHOW_WARNINGS.
            if show_all():
                return super().invoke(ctx)
            with foreign_warnings_hidden(), mlflow_events_hidden():
                return super().invoke(ctx)
        except RiskstratError as exc:
            fail(str(exc), EXIT_REFUSED)
        except OSError as exc:
            fail(str(exc), EXIT_FAILURE)


app = typer.Typer(
    name="riskstrat",
    cls=_Commands,
    help=(
        "Population health risk stratification from linked person-level records.\n\n"
        "Start with `riskstrat demo`: it generates a synthetic population, trains and registers the "
        "models and writes case-finding lists, all under the current folder."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # A callback keeps `riskstrat COMMAND` a command group even while it has a single command.
    return None
