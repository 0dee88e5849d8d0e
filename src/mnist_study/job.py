"""One Hydra job: a tracked training, reporting to its Optuna trial when a sweep runs it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from mnist_study.describe import protocol, run_name
from mnist_study.metrics import objective_names
from mnist_study.tracked_training import train_tracked

if TYPE_CHECKING:
    from mnist_study.sweep.job_trial import PruningCallback


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> float | list[float] | None:
    """Train `cfg` inside its own MLflow run; return the objective (None when there is no validation split), or
    one value per objective when `objective` is a list (`[val_accuracy, n_params]`).

    Inside a sweep (`trial.number` set) the job reports the objective to its Optuna trial after every epoch and
    raises `optuna.TrialPruned` when the pruner says so; the sweeper tells Optuna the verdict and tags the run.
    """
    started = time.perf_counter()
    name = run_name(cfg, overrides)
    tags = {"protocol": protocol(cfg), "objective": ",".join(objective_names(cfg.objective)), **trial_tags(cfg)}
    reporters: list[PruningCallback] = []

    def callbacks(run_id: str) -> list[PruningCallback]:
        reporters.extend(trial_callbacks(cfg, run_id))
        return reporters

    trained = train_tracked(cfg, name, tags, more_callbacks=callbacks)
    for reporter in reporters:
        # The finished training's own costs, the ones its MLflow run logs, are what the constraints judge.
        reporter.record_costs(trained.result)
    objective = objective_values(cfg.objective, trained.result)
    if cfg.trial.number is None:  # In a sweep, the sweeper prints one progress line per trial instead.
        val_accuracy = trained.result["history"].get("val_accuracy", [float("nan")])[-1]
        print(
            f"{name}: test_accuracy={trained.result['test_accuracy']:.4f} val_accuracy={val_accuracy:.4f} "
            f"{time.perf_counter() - started:.1f}s mlflow_run={trained.run_id}",
            flush=True,
        )
    return objective


def objective_values(objective: object, result: Mapping[str, Any]) -> float | list[float] | None:
    """The last epoch's value of a history metric, or a finished run's metric (n_params, fit_seconds), per name."""
    history = result["history"]

    def value(name: str) -> float | None:
        return float(history[name][-1]) if name in history else result.get(name)

    if isinstance(objective, str):
        return value(objective)
    values = [value(name) for name in objective_names(objective)]
    return None if None in values else values


def trial_tags(cfg: DictConfig) -> dict[str, str]:
    """Tags that tie a sweep job's MLflow run to its study and trial (none outside a sweep)."""
    if cfg.trial.number is None:
        return {}
    return {"optuna.study": str(cfg.trial.study_name), "optuna.trial": str(cfg.trial.number)}


def trial_callbacks(cfg: DictConfig, mlflow_run_id: str) -> list[PruningCallback]:
    """In a sweep, the callback that reports each epoch to this job's Optuna trial (and may prune it)."""
    if cfg.trial.number is None:
        return []
    from mnist_study.sweep.job_trial import pruning_callback

    trial = cfg.trial
    # Optuna prunes single-objective studies only; a multi-objective trial reports nothing per epoch.
    monitor = cfg.objective if isinstance(cfg.objective, str) else None
    return [pruning_callback(trial.study_name, trial.storage, trial.number, mlflow_run_id, monitor)]
