"""Progress display shared by long commands (quiet with --quiet)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from riskstrat.cli.app import console
from riskstrat.quiet import mlflow_events_hidden


@contextmanager
def libraries_quiet(quiet: bool) -> Iterator[None]:
    """With --quiet, also silence MLflow's own messages (database set-up, "Created version ...",
    download bars), which go to stderr whatever our output does; restored afterwards."""
    if not quiet:
        yield
        return
    with mlflow_events_hidden():
        yield


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
