"""A job's side of a trial: join it through the trial ledger, report every epoch, stop when the pruner says so.

Everything a job needs travels in its overrides (study name, storage URL, trial number) and in the storage (the
pruner's config, written by the sweeper as a trial system attr), so any Hydra launcher can run it. The job also
records what the trial cost (`n_params`, `fit_seconds`) on the trial, where the sweeper reads them to check the
study's constraints: a finished training's own numbers, or a pruned one's numbers when it was stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import keras
import optuna

from mnist_study.metrics import COST_METRICS
from mnist_study.model import trainable_parameters
from mnist_study.sweep.ledger import TrialLedger
from mnist_study.sweep.liveness import worker_attrs
from mnist_study.sweep.schema import MLFLOW_RUN_ATTR, STORE_RETRY_ATTR
from mnist_study.sweep.stores import retrying


def pruning_callback(
    study_name: str, storage_url: str, number: int, mlflow_run_id: str, monitor: str | None
) -> PruningCallback:
    """The callback that reports `monitor` to the live trial `number` of a study, with the study's pruner, this
    process recorded as the trial's worker and `mlflow_run_id` as the MLflow run that tracks it."""
    ledger, trial = TrialLedger.join(study_name, storage_url, number)
    # The worker that trains is the one whose death would orphan the trial (another launcher may use another host).
    ledger.start(trial, {**worker_attrs(), MLFLOW_RUN_ATTR: mlflow_run_id})
    store_retry_s = float(ledger.system_attrs(trial).get(STORE_RETRY_ATTR, 0.0))
    return PruningCallback(ledger, trial, monitor, store_retry_s)


class PruningCallback(keras.callbacks.Callback):
    """Report the objective after every epoch (step = epoch, 1-based); raise TrialPruned when told to."""

    def __init__(
        self, ledger: TrialLedger, trial: optuna.Trial, monitor: str | None, store_retry_s: float = 0.0
    ) -> None:
        super().__init__()
        self.ledger = ledger
        self.trial = trial
        self.monitor = monitor
        self.store_retry_s = store_retry_s
        self.started = time.perf_counter()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def record_costs(self, costs: Mapping[str, Any]) -> None:
        """Record the trial's `n_params` and `fit_seconds` on it (user attrs), for the study's constraints."""

        measured = {name: costs[name] for name in COST_METRICS}
        retrying(lambda: self.ledger.record(self.trial, measured), self.store_retry_s, "the Optuna storage")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.monitor is None:
            return  # A multi-objective trial: nothing to report, nothing to prune.
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"the objective {self.monitor!r} is not among Keras's metrics {sorted(logs or {})}")
        value = float(value)
        if not math.isfinite(value):
            return  # A NaN objective is a failure, reported by the job's result, not a pruning signal.
        step = epoch + 1
        # A storage that stops answering for a while (a database restart) does not end the trial.
        prune = retrying(
            lambda: self.ledger.report(self.trial, value, step), self.store_retry_s, "the Optuna storage"
        )
        if prune:
            elapsed = time.perf_counter() - self.started
            self.record_costs({"n_params": trainable_parameters(self.model), "fit_seconds": elapsed})
            raise optuna.TrialPruned(f"pruned at epoch {step}: {self.monitor}={value:.4f}")
