"""Other libraries' noise is hidden, riskstrat's own warnings are not (riskstrat.quiet)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Runs in a fresh interpreter: hide_library_noise changes the session for good, which is its point.
SESSION = textwrap.dedent("""
    import logging, sys, types, warnings
    from riskstrat.quiet import hide_library_noise

    hide_library_noise()
    hide_library_noise()  # twice changes nothing

    # A warning from another library's module, and one from riskstrat's.
    foreign = types.ModuleType("otherlib")
    exec("import warnings\\ndef f():\\n    warnings.warn('FOREIGN-WARNING', FutureWarning)", foreign.__dict__)
    foreign.f()
    import riskstrat.modeling.guards
    exec("import warnings\\ndef g():\\n    warnings.warn('RISKSTRAT-WARNING', UserWarning)", vars(riskstrat.modeling.guards))
    riskstrat.modeling.guards.g()

    # MLflow's event lines ("Successfully registered model ...") and its INFO log lines.
    from mlflow.utils.logging_utils import eprint
    eprint("MLFLOW-EVENT")
    logging.getLogger("mlflow.store.db.utils").info("MLFLOW-INFO")
    logging.getLogger("alembic.runtime.migration").info("ALEMBIC-INFO")
    import os
    print("progress bar", os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"))
""")


def _run(env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RISKSTRAT_SHOW_WARNINGS", "MLFLOW_LOGGING_LEVEL",
                                                            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "PYTHONWARNINGS")}
    env.update(PYTHONPATH=SRC, **env_extra)
    return subprocess.run([sys.executable, "-c", SESSION], capture_output=True, text=True, env=env, timeout=120,
                          check=True)


def test_hide_library_noise_keeps_riskstrats_own_warnings_only():
    done = _run({})
    assert "RISKSTRAT-WARNING" in done.stderr
    for noise in ("FOREIGN-WARNING", "MLFLOW-EVENT", "MLFLOW-INFO", "ALEMBIC-INFO"):
        assert noise not in done.stderr, done.stderr
    assert "progress bar false" in done.stdout


def test_show_warnings_shows_everything():
    done = _run({"RISKSTRAT_SHOW_WARNINGS": "1"})
    assert "FOREIGN-WARNING" in done.stderr and "RISKSTRAT-WARNING" in done.stderr
    assert "MLFLOW-EVENT" in done.stderr
    assert "progress bar None" in done.stdout


def test_mlflow_events_hidden_restores_the_stream():
    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM as stream

    from riskstrat.quiet import mlflow_events_hidden

    written = []
    original = sys.stderr
    sys.stderr = type("Capture", (), {"write": lambda self, t: written.append(t), "flush": lambda self: None})()
    try:
        with mlflow_events_hidden():
            with mlflow_events_hidden():  # nested: the outer one restores
                stream.write("inner")
            stream.write("outer")
            assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
        stream.write("after")
    finally:
        sys.stderr = original
    assert written == ["after"]
    assert "write" not in vars(stream)


@pytest.mark.parametrize("module, shown", [("otherlib", False), ("riskstrat.modeling.models", True), ("riskstratx", False)])
def test_foreign_warnings_hidden_by_module(module, shown, monkeypatch):
    import warnings

    from riskstrat.quiet import foreign_warnings_hidden

    monkeypatch.delenv("RISKSTRAT_SHOW_WARNINGS", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with foreign_warnings_hidden():
            warnings.warn_explicit("a warning", UserWarning, "file.py", 1, module=module)
    assert bool(caught) is shown


# The CLI wraps every command in mlflow_events_hidden; a command that needs no MLflow must not import it
# (1.5-2 s of CPU with FastAPI and pyspark behind it), and one that imports it later still gets it silenced.
LOADED = textwrap.dedent("""
    import sys
    import riskstrat.cli as cli

    try:
        cli.app(sys.argv[1:])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    print("LOADED", sorted(m for m in ("mlflow", "fastapi", "pyspark", "lightgbm", "sklearn") if m in sys.modules))
""")


@pytest.mark.parametrize("args", [["--help"], ["score", "--help"], ["train", "--help"], ["synth", "--help"],
                                  ["key", "init", "--key-file", "{tmp}/k.key"]])
def test_commands_that_need_no_mlflow_do_not_import_it(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run([sys.executable, "-c", LOADED, *[a.format(tmp=tmp_path) for a in args]],
                          capture_output=True, text=True, env=env, timeout=120, check=True)
    assert "LOADED []" in done.stdout, done.stdout + done.stderr


IMPORTED_INSIDE = textwrap.dedent("""
    import sys
    from riskstrat.quiet import mlflow_events_hidden

    with mlflow_events_hidden():
        assert "mlflow" not in sys.modules  # hiding MLflow's events does not import it
        with mlflow_events_hidden():  # nested, before the import: the outer block restores
            from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM as stream, eprint
            eprint("MLFLOW-INSIDE")
        eprint("MLFLOW-OUTER")
    eprint("MLFLOW-AFTER")
    print("patched", "write" in vars(stream), "hooks", [type(f).__name__ for f in sys.meta_path if "Silence" in type(f).__name__])
""")


def test_mlflow_imported_inside_the_block_is_silenced_then_restored():
    env = {k: v for k, v in os.environ.items() if k != "RISKSTRAT_SHOW_WARNINGS"}
    done = subprocess.run([sys.executable, "-c", IMPORTED_INSIDE], capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=SRC), timeout=120, check=True)
    assert "MLFLOW-INSIDE" not in done.stderr and "MLFLOW-OUTER" not in done.stderr, done.stderr
    assert "MLFLOW-AFTER" in done.stderr
    assert "patched False hooks []" in done.stdout
