"""The report's refits, two at a time: worker processes whose TensorFlow uses one thread each.

On a 2-core machine two single-threaded fits side by side finish a pair of refits about 1.5 times sooner than the
same fits one after the other with two threads each (benchmarks/README.md, `two_workers.py`): a fit of these small
networks keeps one core busy far better than two. So the report starts `workers` processes (spawned: each imports
TensorFlow once and trains the refits it is handed, in turn) and sizes each one's thread pools to its share of the
cores. The thread counts are overrides of the refit's config (`thread_overrides`), so every run records how it was
trained and a refit is reused only by a report that would train it the same way.

The report process stays the only one that decides anything: it plans, looks for reusable runs, hands the rest
out and prints one line per refit. A worker never outlives it: Linux's parent-death signal kills a worker whose
report was SIGKILLed (its run, left RUNNING, is closed by the next report, see `strays`), and Ctrl-C or SIGTERM
reach each worker as SIGINT, so it stops at its refit's next epoch boundary and closes the run KILLED, as a refit
interrupted in the report's own process does.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from omegaconf import DictConfig, OmegaConf

# prctl(2)'s option that sends this process a signal when its parent dies (Linux).
PR_SET_PDEATHSIG = 1
# Set in a worker when SIGINT has come (from the report, or from the terminal's Ctrl-C).
INTERRUPTED = threading.Event()
# How long a worker gets to close its MLflow run after SIGINT before it is killed.
CLOSE_SECONDS = 60.0


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_overrides(workers: int, forwarded: Sequence[str] = ()) -> tuple[str, ...]:
    """Each worker's share of the cores as TensorFlow thread-pool overrides for its refits (none for one worker,
    which keeps TensorFlow's default, or where the report's own overrides already size the pools)."""
    if workers < 1:
        raise ValueError(f"workers={workers}: must be >= 1 (1 refits in the report's own process)")
    sized = any(item.startswith(("train.intra_op_threads=", "train.inter_op_threads=")) for item in forwarded)
    if workers == 1 or sized:
        return ()
    threads = max(1, cores() // workers)
    return (f"train.intra_op_threads={threads}", f"train.inter_op_threads={threads}")


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the report dies (a no-op where there is no prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _note_interrupt(signal_number: int, frame: object) -> None:
    """SIGINT only sets a flag: raised at an arbitrary instant (in a garbage collector's callback, say) a
    KeyboardInterrupt can be swallowed, so the refit stops at its next epoch boundary instead."""
    INTERRUPTED.set()


def _stop_when_asked() -> Any:
    """A Keras callback that ends the fit with KeyboardInterrupt at an epoch boundary once SIGINT has come, inside
    the refit's MLflow run, which then closes KILLED as a refit interrupted in the report's own process does."""
    import keras

    class _StopWhenAsked(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if INTERRUPTED.is_set():
                raise KeyboardInterrupt("SIGINT")

        on_epoch_end = on_epoch_begin

    return _StopWhenAsked()


def _serve(connection: Connection) -> None:
    """A worker: train each refit it is sent, answer with its result (or the error), until told to stop."""
    _die_with_parent()
    signal.signal(signal.SIGINT, _note_interrupt)
    try:
        import mnist_study.quiet_tensorflow  # noqa: F401  (first: TensorFlow's start-up noise stays hidden)

        # isort: split
        from mnist_study.report.refit import train_labelled
        from mnist_study.report.strays import process_tags

        while True:
            try:
                job = connection.recv()
            except EOFError:  # The report has gone.
                return
            if job is None or INTERRUPTED.is_set():
                return
            label, seed, plain, tags, study_name = job
            cfg = OmegaConf.create(plain)
            # The run records this worker's process, so that a report started later can tell it is gone.
            tags = {**tags, **process_tags()}
            try:
                answer = ("result", train_labelled(label, seed, cfg, tags, study_name, (_stop_when_asked(),)))
            except Exception as error:  # The report raises it again, as if the refit had failed in its process.
                answer = ("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
            connection.send(answer)
    except KeyboardInterrupt:  # The run, if any, is closed KILLED; the report says what happened.
        return


class RefitWorkers:
    """Up to `workers` spawned processes that train refits, started when the first refit needs training (a
    report that reuses every refit starts none); use as a context manager."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.processes: list[BaseProcess] = []
        self.connections: list[Connection] = []
        # The connections of the workers training a refit now, with the index of the job each trains.
        self.busy: dict[Connection, int] = {}

    def __enter__(self) -> RefitWorkers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        for connection in self.connections:
            if connection in self.busy and kind is not None:
                process = self.processes[self.connections.index(connection)]
                if process.is_alive() and process.pid is not None:
                    os.kill(process.pid, signal.SIGINT)
            else:
                with contextlib.suppress(OSError):
                    connection.send(None)
        for process in self.processes:
            process.join(CLOSE_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for _ in range(self.workers):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs,), name="refit-worker", daemon=True)
            process.start()
            theirs.close()
            self.processes.append(process)
            self.connections.append(ours)

    def train(self, jobs: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, dict]]:
        """Train every job ((label, seed, config as plain data, tags, study name) for `refit.train_labelled`), as
        many at once as there are workers;
        yield (the job's index, its result) as each finishes."""
        if jobs and not self.processes:
            self._start()
        waiting = list(enumerate(jobs))
        idle = [connection for connection in self.connections if connection not in self.busy]
        while waiting or self.busy:
            while waiting and idle:
                index, job = waiting.pop(0)
                connection = idle.pop()
                connection.send(job)
                self.busy[connection] = index
            for connection in wait(list(self.busy)):
                try:
                    kind, value = connection.recv()
                except EOFError as error:
                    raise RuntimeError("a refit worker died before it answered (see the lines above)") from error
                index = self.busy.pop(connection)
                if kind == "error":
                    raise RuntimeError(f"a refit failed in its worker: {value}")
                idle.append(connection)
                yield index, value


def portable(cfg: DictConfig) -> dict:
    """A refit's config as plain data for a worker (resolved here, where the report's resolvers are registered)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(container, dict):
        raise TypeError("a refit's config must be a mapping")
    return container
