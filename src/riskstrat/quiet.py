"""Other libraries' noise kept out of riskstrat's output: their warnings and MLflow's event lines.

riskstrat checks the conditions behind the warnings that matter itself and reports them in its own
words (minimum events, degenerate models, stale data), and its stage lines say what MLflow
registered and loaded. So other libraries' warnings (scikit-learn, LightGBM, MLflow, pandas, tqdm,
...), MLflow's event lines ("Created version '2' of model ...", database set-up) and its download
bars only repeat or distract.

- :func:`foreign_warnings_hidden` and :func:`mlflow_events_hidden` hide them for a block (the CLI
  wraps every command in both);
- :func:`hide_library_noise` hides them for the rest of a session (a notebook's first cell).

riskstrat's own warnings still show. ``RISKSTRAT_SHOW_WARNINGS=1`` shows everything, for debugging.
riskstrat's own progress lines go to a ``stage`` callback the caller passes; :func:`no_stage`, the
default, drops them.
"""

from __future__ import annotations

import importlib.abc
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["foreign_warnings_hidden", "hide_library_noise", "mlflow_events_hidden", "no_stage", "show_all"]

_MLFLOW_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
# Loggers that write set-up chatter at INFO (alembic's migrations run when MLflow creates its database).
_CHATTY_LOGGERS = ("mlflow", "alembic")


def no_stage(message: str) -> None:
    """The default ``stage`` callback: riskstrat's progress lines go nowhere unless the caller asks."""
    return None


def show_all() -> bool:
    """True when ``RISKSTRAT_SHOW_WARNINGS`` is set: nothing is hidden."""
    return bool(os.environ.get("RISKSTRAT_SHOW_WARNINGS"))


def _filter_foreign_warnings() -> None:
    warnings.simplefilter("ignore")
    warnings.filterwarnings("default", module=r"riskstrat(\.|$)")


@contextmanager
def foreign_warnings_hidden() -> Iterator[None]:
    """Hide warnings raised by other libraries while the block runs (riskstrat's own still show)."""
    if show_all():
        yield
        return
    with warnings.catch_warnings():
        _filter_foreign_warnings()
        yield


_MLFLOW_LOGGING = "mlflow.utils.logging_utils"


def _silence(stream) -> bool:
    """Replace the MLflow stream's write; False if an enclosing block replaced it already (it restores it)."""
    # MLflow's own enable/disable switch is not enough: log_model re-enables it part-way through
    # (its events-and-warnings context), so the stream's write is replaced.
    if "write" in vars(stream):
        return False
    stream.write = lambda text: None
    return True


class _SilenceWhenImported(importlib.abc.MetaPathFinder):
    """Silences MLflow's event stream as its module is imported, for a block that began before MLflow was.

    Hiding MLflow's events must not import MLflow (1.5-2 s of CPU, with FastAPI and pyspark behind it):
    the CLI wraps every command in :func:`mlflow_events_hidden`, and most commands never load MLflow.
    This finder finds the module with the finders after it and runs the silencing once the module has run."""

    def __init__(self) -> None:
        self.stream = None

    def find_spec(self, name, path, target=None):
        if name != _MLFLOW_LOGGING or self.stream is not None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        run = spec.loader.exec_module  # the loader is this spec's own: patching it touches no other module

        def exec_module(module) -> None:
            run(module)
            self.stream = module.MLFLOW_LOGGING_STREAM
            _silence(self.stream)

        spec.loader.exec_module = exec_module
        return spec


def _hide_mlflow_events() -> Callable[[], None]:
    """Silence MLflow's event stream and download bars, now or, if MLflow is not imported yet, when it is;
    returns the function that restores them."""
    before = os.environ.get(_MLFLOW_PROGRESS_BAR)
    os.environ[_MLFLOW_PROGRESS_BAR] = "false"
    loaded = sys.modules.get(_MLFLOW_LOGGING)
    hook = None
    if loaded is not None:
        stream = loaded.MLFLOW_LOGGING_STREAM
        silenced_here = _silence(stream)  # a nested call finds it replaced already and leaves it to the outer one
    elif not any(isinstance(finder, _SilenceWhenImported) for finder in sys.meta_path):
        hook = _SilenceWhenImported()
        sys.meta_path.insert(0, hook)
        stream, silenced_here = None, False
    else:  # an enclosing block waits for MLflow's import already, and restores what it silences
        stream, silenced_here = None, False

    def restore() -> None:
        nonlocal stream, silenced_here
        if hook is not None:
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
            stream, silenced_here = hook.stream, hook.stream is not None
        if silenced_here and "write" in vars(stream):
            del stream.write
        if before is None:
            os.environ.pop(_MLFLOW_PROGRESS_BAR, None)
        else:
            os.environ[_MLFLOW_PROGRESS_BAR] = before

    return restore


@contextmanager
def mlflow_events_hidden() -> Iterator[None]:
    """Silence MLflow's event lines (database set-up, "Created version ...") and download bars,
    which go to stderr whatever riskstrat prints, while the block runs."""
    restore = _hide_mlflow_events()
    try:
        yield
    finally:
        restore()


def hide_library_noise() -> None:
    """For the rest of this session, hide other libraries' warnings, MLflow's event lines and
    download bars, and set-up log lines below WARNING (MLflow, alembic); riskstrat's own warnings
    still show. For notebooks and interactive sessions; does nothing with ``RISKSTRAT_SHOW_WARNINGS``.
    Calling it again changes nothing.
    """
    if show_all():
        return
    _filter_foreign_warnings()
    import mlflow  # noqa: F401  MLflow sets its logger's level when imported: import it, then set ours

    _hide_mlflow_events()
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
