"""A hook for the fault tests: `MNIST_STUDY_FAULT=<step>` kills the process (SIGKILL) at that step of a trial.

A worker can die at any instant; these are the instants between two writes to two stores (or to one store twice)
where a death leaves something half-written for the next worker to repair. Unset, the hook does nothing.
"""

from __future__ import annotations

import os
import signal

ENVIRONMENT_VARIABLE = "MNIST_STUDY_FAULT"
STEPS = (
    "after_ask",  # the trial is RUNNING in Optuna; nothing else recorded yet
    "after_mlflow_run",  # the job's MLflow run exists; its id is not yet recorded on the trial
    "mid_training",  # after the first epoch was reported to Optuna
    "after_tell",  # Optuna holds the verdict; the MLflow run is not yet tagged with it
    "during_recovery",  # a dead worker's trial is failed; its params are not yet queued, its run not yet closed
)


def crash_point(step: str) -> None:
    """Die here, without any clean-up, if the environment arms this step."""
    if os.environ.get(ENVIRONMENT_VARIABLE) == step:
        os.kill(os.getpid(), signal.SIGKILL)
