"""Whether a RUNNING trial's worker still lives: its heartbeat, and on the worker's own host its process.

The worker that asked for a trial keeps a heartbeat for it until it tells the verdict (`Heartbeat`). On an RDB
storage that is Optuna's own heartbeat (a row per trial, stamped with the database server's clock, so hosts with
skewed clocks still agree); a journal file, which has no heartbeat in Optuna, gets the same as a trial system attr.
A trial whose last beat is older than the grace period is dead, whatever host it ran on. On the worker's own host
its process is checked too, by pid and the process's start time, so a pid the system has since given to another
process never passes for the dead worker. This module only says which workers are dead; the ledger
(`ledger.TrialLedger.recover`) fails their trials (uncounted) and queues their parameters again. This module never
imports TensorFlow or MLflow.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from types import TracebackType
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages._heartbeat import is_heartbeat_enabled  # Public in name, not exported by optuna.storages.
from optuna.trial import FrozenTrial, TrialState

from mnist_study.sweep.schema import HEARTBEAT_ATTR, HOST, PID, PROCESS_START

log = logging.getLogger(__name__)


def this_host() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc); None if it does not exist or on a system
    without /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    # Field 22 of stat(5); the split after the command name's closing parenthesis starts at field 3.
    return fields[19]


def worker_attrs() -> dict[str, Any]:
    """The user attrs that identify the process working on a trial."""
    return {HOST: this_host(), PID: os.getpid(), PROCESS_START: process_start(os.getpid())}


def process_gone(trial: FrozenTrial) -> bool:
    """Whether the trial's worker ran on this host and its process is gone (its pid free or given to another)."""
    return gone(*(trial.user_attrs.get(key) for key in (HOST, PID, PROCESS_START)))


def gone(host: str | None, pid: int | None, started: str | None) -> bool:
    """Whether process `pid` that started at `started` on `host` is this host's and no longer runs."""
    if host != this_host() or not isinstance(pid, int) or not os.path.isdir("/proc"):
        return False
    return process_start(pid) != started if started is not None else process_start(pid) is None


def uses_optuna_heartbeat(storage: BaseStorage) -> bool:
    """Whether the storage records Optuna's own heartbeats (an RDB storage opened with a heartbeat interval)."""
    return is_heartbeat_enabled(storage)


def beat(storage: BaseStorage, identifier: int) -> None:
    """Record that trial `identifier`'s worker is alive now."""
    if uses_optuna_heartbeat(storage):
        storage.record_heartbeat(identifier)
    elif isinstance(storage, JournalStorage):
        storage.set_trial_system_attr(identifier, HEARTBEAT_ATTR, time.time())


class Heartbeat:
    """A thread that beats for one trial every `interval_s` seconds while the `with` block runs.

    The first beat is recorded before the block starts, so a trial with a worker attr has a heartbeat. A beat that
    fails (the store is briefly away) is retried at the next interval; the trial is never stopped for it.
    """

    def __init__(self, storage: BaseStorage, identifier: int, interval_s: float) -> None:
        self.storage = storage
        self.identifier = identifier
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{identifier}", daemon=True)

    def __enter__(self) -> Heartbeat:
        beat(self.storage, self.identifier)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                beat(self.storage, self.identifier)
            except Exception as error:  # Any store error: the next beat may succeed, and the trial goes on.
                log.warning("heartbeat of trial id %s not recorded: %s", self.identifier, error)


def stale_numbers(study: optuna.Study, storage: BaseStorage, grace_s: float) -> set[int]:
    """The RUNNING trials whose last heartbeat is older than `grace_s` seconds."""
    if uses_optuna_heartbeat(storage):
        study_id = storage.get_study_id_from_name(study.study_name)
        # Optuna's own staleness test, with the database server's clock (the method fail_stale_trials uses).
        return {storage.get_trial_number_from_id(i) for i in storage._get_stale_trial_ids(study_id)}
    now = time.time()
    return {
        trial.number
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if now - trial.system_attrs.get(HEARTBEAT_ATTR, now) > grace_s
    }


def orphan_reason(trial: FrozenTrial, stale: set[int], grace_s: float) -> str | None:
    """Why a RUNNING trial's worker is dead, or None while it may be alive."""
    host, pid = trial.user_attrs.get(HOST), trial.user_attrs.get(PID)
    if process_gone(trial):
        return f"worker died: process {pid} on {host} is gone"
    if host == this_host() and isinstance(pid, int) and trial.user_attrs.get(PROCESS_START) is not None:
        return None  # Its process lives on this host: a late heartbeat is a busy store, not a dead worker.
    if trial.number in stale:
        return f"worker presumed dead: no heartbeat from {host or 'an unknown host'} for more than {grace_s:g} s"
    started = trial.datetime_start
    # A trial without a worker attr lost its worker between the ask and the first beat (a few milliseconds).
    never_beat = HOST not in trial.user_attrs and started is not None
    if never_beat and (dt.datetime.now() - started).total_seconds() > grace_s:
        return f"worker presumed dead: no heartbeat recorded in {grace_s:g} s"
    return None
