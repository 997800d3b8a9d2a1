"""Progress display shared by long commands (quiet with --quiet)."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from riskstrat.cli.app import console

_MLFLOW_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextmanager
def libraries_quiet(quiet: bool) -> Iterator[None]:
    """With --quiet, also silence MLflow's own messages (database set-up, "Created version ...",
    download bars), which go to stderr whatever our output does; restored afterwards."""
    if not quiet:
        yield
        return
    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM as stream

    before = os.environ.get(_MLFLOW_PROGRESS_BAR)
    os.environ[_MLFLOW_PROGRESS_BAR] = "false"
    # MLflow's own enable/disable switch is not enough: log_model re-enables it part-way through
    # (its events-and-warnings context), so the stream's write is replaced for the duration. A
    # nested block finds it replaced already and leaves it to the outer one.
    silenced_here = "write" not in vars(stream)
    if silenced_here:
        stream.write = lambda text: None
    try:
        yield
    finally:
        if silenced_here:
            del stream.write
        if before is None:
            os.environ.pop(_MLFLOW_PROGRESS_BAR, None)
        else:
            os.environ[_MLFLOW_PROGRESS_BAR] = before


@contextmanager
def progress_bar(description: str, *, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """Yield a ``callback(done, total)`` that drives a rich progress bar (or does nothing if quiet)."""
    if quiet:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


class Stage:
    """Prints 'stage ... done in Xs' lines for multi-step commands."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            console.print(f"[dim]{time.perf_counter() - self.t0:7.1f}s[/] {message}", highlight=False)
