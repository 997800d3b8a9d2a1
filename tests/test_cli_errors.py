"""The CLI's exit statuses: 2 for every refusal, 1 for an operating-system failure (named, with what
to do), and a bug keeps its traceback (no command catches ValueError or KeyError)."""

from __future__ import annotations

import ast
import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import riskstrat.cli
import riskstrat.pipelines.train
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

    monkeypatch.setattr(riskstrat.pipelines.train, "run_training", run_training)
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
    said = " ".join(result.output.split())  # the console wraps long lines (a long temporary path) at its width
    assert str(target) in result.output.replace("\n", "") and "system words" in said and advice in said
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


@pytest.mark.parametrize(("content", "says"), [(b"\xff\xfeo\x00u\x00t\x00", "is not UTF-8 text"),
                                                ("output_dir: caf\xe9\n".encode("latin-1"), "is not UTF-8 text")])
def test_a_config_file_that_is_not_utf8_is_a_refusal_naming_it(tmp_path, content, says):
    path = tmp_path / "scoring.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(app, ["score", "--as-of", "2025-11-01", "--config", str(path)])
    assert result.exit_code == 2 and says in " ".join(result.output.split()) and str(path) in result.output.replace("\n", "")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_config_path_that_is_a_folder_is_a_refusal(tmp_path):
    result = CliRunner().invoke(app, ["score", "--as-of", "2025-11-01", "--config", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder, not the configuration file" in " ".join(result.output.split())


def test_a_gate_file_that_is_not_utf8_is_a_refusal_naming_it(tmp_path):
    from riskstrat.evaluation.gate import GateError, load_gate

    path = tmp_path / "gate.yaml"
    path.write_bytes("# caf\xe9\nmin_events: 10\n".encode("cp1252"))
    with pytest.raises(GateError, match=r"gate.yaml: the gate file is not UTF-8 text"):
        load_gate(path)
    path.write_bytes("\ufeff# café\nmin_events: 10\n".encode("utf-8"))  # UTF-8 with a byte-order mark is fine
    assert load_gate(path).min_events == 10


def test_a_practice_names_file_saved_by_excel_on_windows_is_a_refusal_naming_it(tmp_path):
    from riskstrat.data.io import DataFileError, read_user_csv

    path = tmp_path / "names.csv"
    path.write_bytes("practice_id,name\nP1,Caf\xe9 Surgery\n".encode("cp1252"))
    with pytest.raises(DataFileError, match=r"names.csv: the practice names file is not UTF-8 text.*CSV UTF-8"):
        read_user_csv(path, what="practice names")
    path.write_bytes("\ufeffpractice_id,name\nP1,Café Surgery\n".encode("utf-8"))
    assert read_user_csv(path, what="practice names").to_dict("records") == [{"practice_id": "P1",
                                                                              "name": "Café Surgery"}]


@pytest.mark.parametrize("name", ["../../etc/x", "a/b", " high", "high\u200b", "x" * 41])
def test_a_tier_or_group_name_mlflow_or_the_lists_cannot_hold_is_refused_before_anything_runs(name):
    from riskstrat.modeling.config import ConfigError, ScoringConfig, load_config

    with pytest.raises(ConfigError, match="tier name"):
        load_config(None, [f"lists.tiers={{{json.dumps(name)}: 0.05, \"b\": 0.2}}", "lists.holdout_exempt_tiers=[]"],
                        model=ScoringConfig)
    with pytest.raises(ConfigError, match="group name"):
        load_config(None, [f"lists.groups=[{{name: {json.dumps(name)}, min_age: 40}}]"], model=ScoringConfig)


def test_metric_keys_never_hold_a_path():
    from riskstrat.registry.tracking import metric_key

    assert metric_key("count.tier.../../etc/x") == "count.tier._._etc_x"
    assert "/" not in metric_key("a/b") and ".." not in metric_key("a....b")


@pytest.mark.parametrize("path", ["/tmp/victim #lists", "[x", "*star", "a: b", "null", "yes"])
def test_paths_given_as_options_are_taken_as_written_not_as_yaml(path):
    from riskstrat.modeling.config import ScoringConfig, load_config, path_override

    cfg = load_config(None, [path_override("output_dir", path), path_override("data.path", path)], model=ScoringConfig)
    assert str(cfg.output_dir) == path and str(cfg.data.path) == path


def test_an_override_that_is_not_yaml_is_a_refusal_not_a_traceback():
    result = CliRunner().invoke(app, ["score", "--as-of", "2025-11-01", "--set", "lists.list_size=["])
    assert result.exit_code == 2 and "is not valid YAML" in " ".join(result.output.split())


def _fifo(path):
    import os

    os.mkfifo(path)
    return path


def test_a_fifo_or_device_given_as_a_file_is_refused_without_hanging(tmp_path, without_hanging):
    from riskstrat.modeling.config import ConfigError, load_config
    from riskstrat.data.io import NotAFileError, file_sha256, open_regular_file, read_user_bytes
    from riskstrat.data.privacy import OptOutError, ReidentificationLookupError, read_opt_outs, \
        read_reidentification_lookup

    fifo = _fifo(tmp_path / "opt-outs.txt")
    cases = [
        (lambda: read_opt_outs(fifo), OptOutError, "is a FIFO"),
        (lambda: read_reidentification_lookup(_fifo(tmp_path / "P81000.csv")), ReidentificationLookupError,
         "is a FIFO"),
        (lambda: load_config(_fifo(tmp_path / "scoring.yaml")), ConfigError, "is a FIFO"),
        (lambda: file_sha256(fifo), NotAFileError, "is a FIFO"),
    ]
    for call, error, says in cases:
        with pytest.raises(error, match=says):
            without_hanging(call)
    with pytest.raises(NotAFileError, match="is a device"):  # /dev/zero: checked, never read
        open_regular_file("/dev/zero", what="opt-out file")
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 101)
    with pytest.raises(NotAFileError, match="101 bytes, more than"):
        read_user_bytes(big, what="list", max_bytes=100)
    assert issubclass(NotAFileError, RiskstratError)  # the CLI refuses (exit 2), naming the file


@pytest.mark.parametrize("command", ["train", "score"])
def test_help_shows_the_spark_extra_in_full(command):
    """Rich reads "[spark]" as markup and dropped it: the help told users to pip install 'riskstrat'."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    assert "pip install 'riskstrat[spark]'" in result.output


# The command's process ends without the interpreter's teardown (riskstrat.cli.exit_now), but as sys.exit would:
# the status, then the atexit callbacks, threads waited for and everything printed flushed.
_EXIT_SCRIPT = """
import atexit, sys, threading, time
import riskstrat.cli
atexit.register(lambda: print("atexit ran", flush=False))
threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished", flush=False))).start()
sys.argv = ["riskstrat", *sys.argv[1:]]
riskstrat.cli.main()
print("not reached")
"""


@pytest.mark.parametrize("args, status, said", [(["--version"], 0, "riskstrat "),
                                                (["score"], 2, "Missing option")])
def test_the_process_ends_as_sys_exit_would(args, status, said):
    done = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == status
    assert said in done.stdout + done.stderr
    assert "thread finished" in done.stdout and "atexit ran" in done.stdout
    assert done.stdout.index("thread finished") < done.stdout.index("atexit ran")
    assert "not reached" not in done.stdout


def test_exit_now_with_a_message_says_it_and_ends_with_status_1():
    done = subprocess.run([sys.executable, "-c", "import riskstrat.cli; riskstrat.cli.exit_now('stopped: why')"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (1, "stopped: why")
