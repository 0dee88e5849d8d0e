"""The study's schema: the attributes the sweeper and its jobs write on trials, their states, and which ones count.

Defined once here and imported wherever a study is read (report/, scripts/, benchmarks/); only the trial ledger
(`ledger.TrialLedger`) changes a trial's state. Accounting: `n_trials` counts trials with a verdict — COMPLETE,
PRUNED, or FAIL raised by the trial itself. A FAIL that carries the user attr `uncounted` (its worker died, or it
was a surplus ask that never ran) does not count. This module never imports TensorFlow or MLflow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from mnist_study.sweep.space import format_value

# Trial user attrs the sweeper and its jobs write.
# Who works on a trial: its host, process id and that process's start time (a pid alone may be reused).
HOST, PID, PROCESS_START = "host", "pid", "process_start"
FAIL_REASON = "fail_reason"
UNCOUNTED = "uncounted"
RETRY_OF = "retry_of"
# The trial the sweeper enqueued as the configured baseline (trial 0 when the space contains the baseline).
BASELINE_ATTR = "baseline"
# A configuration queued by hand (`hydra.sweeper.enqueue`), tried right after the baseline.
ENQUEUED_ATTR = "enqueued"
# A COMPLETE trial copied from an earlier study (`hydra.sweeper.warm_start`): `<storage>#<study>/<number>`. It
# informs the sampler and never counts towards n_trials.
WARM_START_ATTR = "warm_start_from"
# The id of the trial's MLflow run, recorded by the job as the run opens.
MLFLOW_RUN_ATTR = "mlflow_run_id"
# `fixed.<key>`: a parameter of the space that the command line pinned to one value for this sweep.
FIXED_PREFIX = "fixed."
# Trial system attr carrying the pruner's config, so a job in any process can rebuild the study's pruner.
PRUNER_ATTR = "mnist_study:pruner"
# Trial system attr: how long the job retries the storage when a report does not go through (store_retry_s).
STORE_RETRY_ATTR = "mnist_study:store_retry_s"
# Trial system attr of a journal storage's heartbeat: the time of the last beat, in seconds since the epoch.
HEARTBEAT_ATTR = "mnist_study:heartbeat"
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
    """Whether a trial holds a verdict that counts towards `n_trials` (one copied from another study does not)."""
    if WARM_START_ATTR in trial.user_attrs:
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and UNCOUNTED not in trial.user_attrs


def count_verdicts(trials: Iterable[FrozenTrial]) -> int:
    return sum(1 for trial in trials if is_counted(trial))


def count_running(trials: Iterable[FrozenTrial]) -> int:
    return sum(1 for trial in trials if trial.state == TrialState.RUNNING)


def state_counts(trials: Iterable[FrozenTrial]) -> dict[TrialState, int]:
    """How many trials are in each state, in Optuna's order of the states; a state no trial is in is left out."""
    counts = Counter(trial.state for trial in trials)
    return {state: counts[state] for state in TrialState if counts[state]}


def state_counts_text(trials: Iterable[FrozenTrial]) -> str:
    """`12 COMPLETE, 3 PRUNED, 1 FAIL`: a study's trials per state, as the report and the results table say it."""
    return ", ".join(f"{count} {state.name}" for state, count in state_counts(trials).items())


def rank(trials: Iterable[FrozenTrial], number: int) -> int:
    """How many trials numbered below `number` count or may still count (a verdict, running or queued).

    Trial numbers are handed out atomically by the storage, so every worker agrees on this rank; a trial whose
    rank is already `n_trials` is surplus and is never run. The rank of a trial can only fall over time (a lower
    trial may turn out uncounted, never the reverse), so the rule never over-runs the budget.
    """
    return sum(1 for trial in trials if trial.number < number and (is_counted(trial) or trial.state in IN_FLIGHT))


def trial_id(storage: BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of a study's trial, from public storage API."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)
