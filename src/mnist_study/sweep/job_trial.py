"""A job's side of a trial: reconnect to it from the storage, report every epoch, stop when the pruner says so.

Everything a job needs travels in its overrides (study name, storage URL, trial number) and in the storage (the
pruner's config, written by the sweeper as a trial system attr), so any Hydra launcher can run it.
"""

from __future__ import annotations

import math
import os

import keras
import optuna
from hydra.utils import instantiate

from mnist_study.sweep.storage import open_storage
from mnist_study.sweep.trials import HOST, MLFLOW_RUN_ATTR, PID, PRUNER_ATTR, this_host, trial_id


def connect_trial(study_name: str, storage_url: str, number: int, mlflow_run_id: str) -> optuna.Trial:
    """The live trial `number` of a study, with the study's pruner, this process recorded as its worker and
    `mlflow_run_id` as the MLflow run that tracks it."""
    storage = open_storage(storage_url)
    identifier = trial_id(storage, study_name, number)
    pruner_config = storage.get_trial_system_attrs(identifier).get(PRUNER_ATTR)
    pruner = instantiate(pruner_config) if pruner_config else optuna.pruners.NopPruner()
    # The sampler is never used here (the sweeper has sampled already); a random one costs nothing to build.
    study = optuna.load_study(
        study_name=study_name, storage=storage, pruner=pruner, sampler=optuna.samplers.RandomSampler()
    )
    trial = optuna.trial.Trial(study, identifier)
    # The worker that trains is the one whose death would orphan the trial (another launcher may use another host).
    trial.set_user_attr(HOST, this_host())
    trial.set_user_attr(PID, os.getpid())
    trial.set_user_attr(MLFLOW_RUN_ATTR, mlflow_run_id)
    return trial


class PruningCallback(keras.callbacks.Callback):
    """Report the objective after every epoch (step = epoch, 1-based); raise TrialPruned when told to."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"the objective {self.monitor!r} is not among Keras's metrics {sorted(logs or {})}")
        value = float(value)
        if not math.isfinite(value):
            return  # A NaN objective is a failure, reported by the job's result, not a pruning signal.
        step = epoch + 1
        self.trial.report(value, step=step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {step}: {self.monitor}={value:.4f}")
