"""One Hydra job: a tracked training, reporting to its Optuna trial when a sweep runs it."""

from __future__ import annotations

import time
from collections.abc import Sequence

import keras
from omegaconf import DictConfig

from mnist_study.describe import protocol, run_name
from mnist_study.tracked_training import train_tracked


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> float | None:
    """Train `cfg` inside its own MLflow run; return the objective (None when there is no validation split).

    Inside a sweep (`trial.number` set) the job reports the objective to its Optuna trial after every epoch and
    raises `optuna.TrialPruned` when the pruner says so; the sweeper tells Optuna the verdict and tags the run.
    """
    started = time.perf_counter()
    name = run_name(cfg, overrides)
    tags = {"protocol": protocol(cfg), "objective": cfg.objective, **trial_tags(cfg)}
    trained = train_tracked(cfg, name, tags, more_callbacks=lambda run_id: trial_callbacks(cfg, run_id))
    history = trained.result["history"]
    objective = history[cfg.objective][-1] if cfg.objective in history else None
    if cfg.trial.number is None:  # In a sweep, the sweeper prints one progress line per trial instead.
        val_accuracy = history.get("val_accuracy", [float("nan")])[-1]
        print(
            f"{name}: test_accuracy={trained.result['test_accuracy']:.4f} val_accuracy={val_accuracy:.4f} "
            f"{time.perf_counter() - started:.1f}s mlflow_run={trained.run_id}",
            flush=True,
        )
    return objective


def trial_tags(cfg: DictConfig) -> dict[str, str]:
    """Tags that tie a sweep job's MLflow run to its study and trial (none outside a sweep)."""
    if cfg.trial.number is None:
        return {}
    return {"optuna.study": str(cfg.trial.study_name), "optuna.trial": str(cfg.trial.number)}


def trial_callbacks(cfg: DictConfig, mlflow_run_id: str) -> list[keras.callbacks.Callback]:
    """In a sweep, the callback that reports each epoch to this job's Optuna trial (and may prune it)."""
    if cfg.trial.number is None:
        return []
    from mnist_study.sweep.job_trial import pruning_callback

    trial = cfg.trial
    return [pruning_callback(trial.study_name, trial.storage, trial.number, mlflow_run_id, cfg.objective)]
