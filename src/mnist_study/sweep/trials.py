"""A study's trials as the sweeper and its jobs share them: their attributes, which ones count, dead workers.

Accounting: `n_trials` counts trials with a verdict — COMPLETE, PRUNED, or FAIL raised by the trial itself. A FAIL
that carries the user attr `uncounted` (its worker died, or it was a surplus ask that never ran) does not count.
This module never imports TensorFlow or MLflow.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from mnist_study.sweep.space import format_value

# Trial user attrs the sweeper and its jobs write.
HOST, PID = "host", "pid"
FAIL_REASON = "fail_reason"
UNCOUNTED = "uncounted"
RETRY_OF = "retry_of"
# The trial the sweeper enqueued as the configured baseline (trial 0 when the space contains the baseline).
BASELINE_ATTR = "baseline"
# The id of the trial's MLflow run, recorded by the job as the run opens.
MLFLOW_RUN_ATTR = "mlflow_run_id"
# `fixed.<key>`: a parameter of the space that the command line pinned to one value for this sweep.
FIXED_PREFIX = "fixed."
# Trial system attr carrying the pruner's config, so a job in any process can rebuild the study's pruner.
PRUNER_ATTR = "mnist_study:pruner"
# Study user attr holding the MLflow parent run's id.
PARENT_RUN_ATTR = "mlflow_parent_run_id"

IN_FLIGHT = (TrialState.RUNNING, TrialState.WAITING)


def fixed_attrs(fixed: Mapping[str, str]) -> dict[str, str]:
    """The user attrs that record the space's fixed parameters (`key -> "key=value"` overrides) on a trial."""
    return {f"{FIXED_PREFIX}{key}": override.split("=", 1)[1] for key, override in fixed.items()}


def trial_values(trial: FrozenTrial) -> dict[str, Any]:
    """Every parameter value a trial ran with: what the command line fixed, then what Optuna sampled."""
    fixed = {
        key.removeprefix(FIXED_PREFIX): value
        for key, value in trial.user_attrs.items()
        if key.startswith(FIXED_PREFIX)
    }
    return {**fixed, **trial.params}


def trial_overrides(trial: FrozenTrial) -> tuple[str, ...]:
    """The command-line overrides that reproduce a trial (`model.units=256`, `optimizer=adam`, ...)."""
    return tuple(f"{key}={format_value(value)}" for key, value in trial_values(trial).items())


def is_counted(trial: FrozenTrial) -> bool:
    """Whether a trial holds a verdict that counts towards `n_trials`."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and UNCOUNTED not in trial.user_attrs


def count_verdicts(trials: Iterable[FrozenTrial]) -> int:
    return sum(1 for trial in trials if is_counted(trial))


def count_running(trials: Iterable[FrozenTrial]) -> int:
    return sum(1 for trial in trials if trial.state == TrialState.RUNNING)


def rank(trials: Iterable[FrozenTrial], number: int) -> int:
    """How many trials numbered below `number` count or may still count (a verdict, running or queued).

    Trial numbers are handed out atomically by the storage, so every worker agrees on this rank; a trial whose
    rank is already `n_trials` is surplus and is never run. The rank of a trial can only fall over time (a lower
    trial may turn out uncounted, never the reverse), so the rule never over-runs the budget.
    """
    return sum(1 for trial in trials if trial.number < number and (is_counted(trial) or trial.state in IN_FLIGHT))


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphan_reason(trial: FrozenTrial, grace: dt.timedelta, now: dt.datetime | None = None) -> str | None:
    """Why a RUNNING trial's worker is dead, or None while it may be alive.

    On this host the recorded pid tells; a trial from another host (or with no pid yet) is presumed dead only once
    it has run for longer than the grace period, because Optuna's ask/tell has no heartbeat.
    """
    host, pid = trial.user_attrs.get(HOST), trial.user_attrs.get(PID)
    if host == this_host() and isinstance(pid, int):
        if pid == os.getpid() or pid_alive(pid):
            return None
        return f"worker died: process {pid} on {host} is gone"
    started = trial.datetime_start
    now = now or dt.datetime.now()
    if started is not None and now - started <= grace:
        return None
    return f"worker presumed dead: running on {host or 'an unknown host'} for longer than {grace}"


def trial_id(storage: BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of a study's trial, from public storage API."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def recover_orphans(study: optuna.Study, storage: BaseStorage, grace: dt.timedelta) -> list[FrozenTrial]:
    """Fail the trials left RUNNING by dead workers, uncounted, and queue their parameters again.

    Several workers may find the same orphan at once; only the one whose FAIL the storage accepts re-queues it.
    Returns the trials this worker recovered, as they were before (so their MLflow runs can be closed too).
    """
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = orphan_reason(trial, grace)
        if reason is None:
            continue
        identifier = trial_id(storage, study.study_name, trial.number)
        try:
            # Another worker may finish the trial between any two of these calls; each then raises, and it wins.
            storage.set_trial_user_attr(identifier, FAIL_REASON, reason)
            storage.set_trial_user_attr(identifier, UNCOUNTED, reason)
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):
            continue  # Another worker recovered it first.
        retry_of = trial.user_attrs.get(RETRY_OF, trial.number)
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: retry_of})
        recovered.append(trial)
    return recovered
