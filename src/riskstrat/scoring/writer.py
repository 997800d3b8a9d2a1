"""A helper process that writes practices' list files for :func:`riskstrat.scoring.lists.write_month`.

Started as ``python -m riskstrat.scoring.writer`` by the run (``lists.write_workers``), it reads
pickled requests on its standard input, one after another: ``(month folder, [(relative folder,
job), ...])``, writes each list's files with :func:`riskstrat.scoring.lists._write_list` and
answers on its standard output with ``("ok", {path: sha256})`` or ``("error", exception, traceback
text)``; ``None`` ends it. A fresh interpreter rather than a fork (no lock of the run's threads
copied mid-hold) or ``multiprocessing`` (which runs the caller's main script again in each worker).
Every file depends only on its own job, so the bytes do not depend on which process writes it.
"""

from __future__ import annotations

import pickle
import sys
import traceback
from pathlib import Path

from riskstrat.scoring.lists import _write_list


def serve(requests, answers) -> int:
    """Answer ``requests`` (a binary stream of pickles) on ``answers`` until ``None`` or the end."""
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:  # the run has gone: nothing more to write
            return 0
        if request is None:
            return 0
        month, chunk = request
        try:
            hashes: dict[str, str] = {}
            for relative, job in chunk:
                hashes.update(_write_list(Path(month) / relative, relative, job))
            answer = ("ok", hashes)
        except Exception as exc:  # noqa: BLE001 - handed to the run, which raises it
            text = traceback.format_exc()
            try:
                pickle.dumps(exc)
                answer = ("error", exc, text)
            except Exception:  # noqa: BLE001 - an exception that cannot travel: its words do
                answer = ("error", RuntimeError(f"{type(exc).__name__}: {exc}"), text)
        pickle.dump(answer, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()


def main() -> int:
    answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed goes to the run's error stream, not into the answers
    return serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    sys.exit(main())
