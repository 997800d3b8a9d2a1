"""Work made in worker processes and handed back in order (``riskstrat synth --jobs``).

:class:`OrderedJobs` runs ``fn(item)`` for each item in ``jobs`` worker processes and gives the results
back in the items' order, so a caller that writes them one after another writes the same bytes as a
loop in one process. Item ``k`` goes to worker ``k % jobs`` (items cost about the same: chunks of people).

- Workers are started with ``spawn``: a fresh interpreter that inherits no threads, locks or open files
  of the parent (progress bars, Arrow's thread pool), the same on Linux, macOS and Windows.
- Each worker uses one BLAS thread (the workers are the parallelism).
- Memory is bounded: a worker makes its next result while the last one is handed over, never further
  ahead, so at most about two results per worker exist at once (plus the one the caller holds).
- A worker that raises stops the run: the parent raises the worker's own exception (its type kept, so
  a refusal stays a refusal), with a note naming the worker, the item and the worker's traceback. A
  worker that dies without a word (killed, out of memory) is named with its exit status.
- Workers ignore Ctrl-C (the terminal sends it to every process of the group): the parent gets it and
  ends them all on its way out, as it does after any error; a worker whose parent has gone ends when it
  next tries to hand a result over.

>>> import math
>>> with OrderedJobs(math.sqrt, [1, 4, 9], jobs=2) as results:   # doctest: +SKIP
...     list(results)
[1.0, 2.0, 3.0]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import traceback
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator, Sequence

from threadpoolctl import threadpool_limits

from riskstrat.errors import InvalidInputError

__all__ = ["OrderedJobs", "WorkerStopped", "check_jobs"]


class WorkerStopped(ChildProcessError):
    """A worker process ended without handing its result over (killed, out of memory, crashed). An
    operating-system failure (an ``OSError``): the CLI prints it without a traceback, with status 1."""


def check_jobs(jobs: object) -> int:
    """``jobs`` as a number of worker processes, or a refusal that says what is allowed."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidInputError(f"jobs must be a whole number of worker processes, 1 or more (1: no workers, "
                                f"everything in this process); got {jobs!r}")
    return jobs


def _send_all(conn, outbox: queue.Queue) -> None:
    """(In the worker.) Hand each result to the parent; the parent gone, end the worker at once."""
    while True:
        message = outbox.get()
        if message is None:
            outbox.task_done()
            return
        try:
            conn.send_bytes(message)
        except OSError:  # the parent has ended (a broken pipe): nothing is waiting for this work
            os._exit(1)
        del message  # not kept while waiting for the next one
        outbox.task_done()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a worker is started: an ignored signal stays ignored through the new
    interpreter's exec, and Python installs its KeyboardInterrupt handler only over the default one, so
    a Ctrl-C during the worker's second of imports leaves no traceback of it (the parent handles it)."""
    before = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or before is None:
        yield  # only the main thread may change a handler, and one not set from Python cannot be put back
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _serve(conn, fn: Callable[[Any], Any], items: list[tuple[int, Any]]) -> None:
    """(In the worker.) Make each item's result and hand it over, one ahead at most."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # One BLAS thread: the workers are the parallelism (more threads only spin against each other).
    threadpool_limits(limits=1, user_api="blas")
    outbox: queue.Queue = queue.Queue(maxsize=1)
    sender = threading.Thread(target=_send_all, args=(conn, outbox), daemon=True)
    sender.start()
    for index, item in items:
        try:
            result = fn(item)
            message = pickle.dumps(("ok", index, result), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent, which raises it
            message = _failure(index, exc)
            outbox.join()
            outbox.put(message)
            break
        del result
        outbox.join()  # the previous result is handed over before this one is queued: bounded memory
        outbox.put(message)
        del message
    outbox.put(None)
    sender.join()
    conn.close()


def _failure(index: int, exc: BaseException) -> bytes:
    text = traceback.format_exc()
    try:
        message = pickle.dumps(("error", index, exc, text), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(message)  # some exceptions pickle but cannot be rebuilt (their own __init__ arguments)
        return message
    except Exception:  # noqa: BLE001 - such an exception is sent as its words
        return pickle.dumps(("error", index, RuntimeError(f"{type(exc).__name__}: {exc}"), text))


class OrderedJobs:
    """``fn(item)`` for every item in ``jobs`` spawned worker processes; iterate for the results in the
    items' order. Use as a context manager: leaving it ends every worker (after an error, or Ctrl-C).

    ``fn`` must be a module-level function (workers import it by name); items and results are pickled.
    ``describe(index)`` words an item for error messages (default: "item <index>").
    """

    def __init__(self, fn: Callable[[Any], Any], items: Sequence[Any], *, jobs: int, name: str = "riskstrat-job",
                 describe: Callable[[int], str] | None = None) -> None:
        self.fn, self.items, self.jobs = fn, list(items), check_jobs(jobs)
        self.name = name
        self.describe = describe or (lambda index: f"item {index}")
        self._workers: list[tuple[multiprocessing.process.BaseProcess, Any]] = []

    def __enter__(self) -> Iterator[Any]:
        context = multiprocessing.get_context("spawn")
        n = min(self.jobs, len(self.items))
        try:
            for w in range(n):
                reader, writer = context.Pipe(duplex=False)
                mine = [(k, self.items[k]) for k in range(w, len(self.items), n)]
                process = context.Process(target=_serve, args=(writer, self.fn, mine),
                                          name=f"{self.name}-{w}", daemon=True)
                with _sigint_ignored():  # the worker is born ignoring Ctrl-C, not only once _serve runs
                    process.start()
                writer.close()  # the worker's end: a dead worker then reads as end-of-file here
                self._workers.append((process, reader))
        except BaseException:
            self.close()
            raise
        return self._results()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _results(self) -> Iterator[Any]:
        n = len(self._workers)
        for index in range(len(self.items)):
            w = index % n
            process, reader = self._workers[w]
            yield self._receive(w, process, reader, index)

    def _receive(self, w: int, process, reader, index: int) -> Any:
        where = f"worker {w} ({process.name}, pid {process.pid}), making {self.describe(index)}"
        wait([reader, process.sentinel])
        try:
            message = pickle.loads(reader.recv_bytes())
        except (EOFError, OSError):
            process.join(timeout=5)
            raise WorkerStopped(f"{where}: the worker ended without a result ({_exit_words(process.exitcode)}); "
                                f"nothing was written. If it ran out of memory, use fewer --jobs or a smaller "
                                f"--chunk-size.") from None
        kind, got, payload, *rest = message
        if got != index:  # a worker hands its items over in order: anything else is a bug here
            raise RuntimeError(f"{where}: got item {got} instead")
        if kind == "ok":
            return payload
        payload.add_note(f"(raised in {where}; nothing was written)\nthe worker's traceback:\n{rest[0].rstrip()}")
        raise payload

    def close(self) -> None:
        """End every worker still running (idempotent)."""
        for process, reader in self._workers:
            reader.close()
            if process.is_alive():
                process.terminate()
        for process, _ in self._workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        self._workers = []


def _exit_words(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
