"""`riskstrat synth --jobs`: chunks made in worker processes, written in order, the same bytes as one process."""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import signal

import pytest
from typer.testing import CliRunner

from riskstrat.cli import app
from riskstrat.data.synth import write_population
from riskstrat.data.synth.jobs import OrderedJobs, WorkerStopped
from riskstrat.errors import InvalidInputError

# 2,500 people in chunks of 1,000: three chunks (the last one short), the third made by the first worker again.
SMALL = dict(start="2021-11-01", years=3, seed=3, truth_dates=["2023-01-01"], n_futures=2, chunk_size=1000)


def _files(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _workers_left() -> list[str]:
    return [p.name for p in multiprocessing.active_children() if p.name.startswith("riskstrat-synth")]


def test_two_jobs_write_the_same_files_byte_for_byte_as_one(tmp_path):
    seen = []
    one = write_population(tmp_path / "one", 2500, **SMALL)
    two = write_population(tmp_path / "two", 2500, **SMALL, jobs=2, progress=lambda done, total: seen.append(done))
    assert one == two
    files = _files(tmp_path / "one")
    # Every file: the tables, dataset.json, the stamp (validated.json), the ground truth, the folder marker.
    assert {"dataset.json", "validated.json", "persons.parquet", "ground_truth/truth.parquet"} <= set(files)
    assert _files(tmp_path / "two") == files
    assert seen == [1000, 2000, 2500]  # progress in chunk order, as with one process
    assert _workers_left() == []


def test_a_worker_that_dies_stops_the_run_names_it_and_leaves_no_folder(tmp_path):
    def kill_first_worker(done, total):
        # The first worker is making chunk 2 now (chunk 0 was its first): as if the system killed it for memory.
        if done == 1000:
            (worker,) = [p for p in multiprocessing.active_children() if p.name == "riskstrat-synth-0"]
            os.kill(worker.pid, signal.SIGKILL)

    out = tmp_path / "synthetic"
    with pytest.raises(WorkerStopped, match=r"making chunk 2 \(people 2,000 to 2,499\).*killed by signal SIGKILL"):
        write_population(out, 2500, **SMALL, jobs=2, progress=kill_first_worker)
    assert list(tmp_path.iterdir()) == []  # not even the temporary folder
    assert _workers_left() == []  # the other worker was ended too


def test_ctrl_c_in_the_parent_ends_every_worker_and_leaves_no_folder(tmp_path):
    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_population(tmp_path / "synthetic", 2500, **SMALL, jobs=2, progress=interrupt)
    assert list(tmp_path.iterdir()) == []
    assert _workers_left() == []


def test_ordered_jobs_give_results_in_order_and_raise_a_workers_own_exception():
    with OrderedJobs(math.sqrt, [1.0, 4.0, 9.0, 16.0, 25.0], jobs=2, name="riskstrat-synth-test") as results:
        assert list(results) == [1.0, 2.0, 3.0, 4.0, 5.0]
    with OrderedJobs(math.sqrt, [4.0, -1.0, 9.0], jobs=2, name="riskstrat-synth-test") as results:
        assert next(results) == 2.0
        with pytest.raises(ValueError, match="math domain error") as raised:
            next(results)
    note = "\n".join(raised.value.__notes__)
    assert "worker 1" in note and "item 1" in note and "nothing was written" in note and "Traceback" in note
    # A worker that ends without a word (here: exits with status 3) is named with its exit status.
    with OrderedJobs(os._exit, [3], jobs=1, name="riskstrat-synth-test") as results:
        with pytest.raises(WorkerStopped, match="making item 0: the worker ended without a result .exit status 3"):
            next(results)
    assert _workers_left() == []


@pytest.mark.parametrize("jobs", [0, -2, 1.5, True, "2", None])
def test_a_bad_number_of_jobs_is_refused_before_anything_is_made(tmp_path, jobs):
    with pytest.raises(InvalidInputError, match=f"jobs must be a whole number of worker processes, 1 or more.*{jobs!r}"):
        write_population(tmp_path / "synthetic", 100, **SMALL, jobs=jobs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("value", "says"), [("0", "greater than or equal to 1"), ("two", "valid integer")])
def test_the_cli_refuses_a_bad_jobs_option_naming_it(tmp_path, value, says):
    result = CliRunner().invoke(app, ["synth", "--people", "100", "--jobs", value, "--out", str(tmp_path / "s")])
    output = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "--jobs" in output and says in output
    assert not (tmp_path / "s").exists()
