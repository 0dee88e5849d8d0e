"""One job: an MLflow run around one training run, and the objective handed back to Hydra (and a sweeper)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import keras
import optuna
from omegaconf import DictConfig

from mnist_study.tracking import tracked_run
from mnist_study.train import train

log = logging.getLogger(__name__)

# Overrides that say where a job logs or reports, not what it trains; they do not name a run.
BOOKKEEPING_PREFIXES = ("+experiment=", "experiment=", "trial.", "tracking.", "hydra.", "name=")


def run_name(cfg: DictConfig, overrides: Sequence[str] = ()) -> str:
    """What the MLflow run is called: the config's `name`, a sweep trial's number, or the overrides in use."""
    if cfg.name:
        return str(cfg.name)
    if cfg.trial.number is not None:
        return f"trial-{cfg.trial.number}"
    meaningful = [item for item in overrides if not item.startswith(BOOKKEEPING_PREFIXES)]
    return ",".join(meaningful) or "baseline"


def protocol(cfg: DictConfig) -> str:
    """How the numbers were made: honestly, or by the tutorial's fit-on-test protocol."""
    return "tutorial: fit on test, score on test" if cfg.data.fit_on == "test" else "fit on train, select on val"


def trial_callback(cfg: DictConfig, mlflow_run_id: str) -> keras.callbacks.Callback:
    """Reconnect to this job's Optuna trial and return the callback that reports to it (and may prune)."""
    from mnist_study.optuna_trial import PruningCallback, connect_trial

    trial = connect_trial(cfg.trial.study_name, cfg.trial.storage, cfg.trial.number)
    trial.set_user_attr("mlflow_run_id", mlflow_run_id)
    return PruningCallback(trial, cfg.objective)


def trial_tags(cfg: DictConfig) -> dict[str, str]:
    """Tags that tie a sweep job's MLflow run to its study and trial (none outside a sweep)."""
    if cfg.trial.number is None:
        return {}
    return {"optuna.study": str(cfg.trial.study_name), "optuna.trial": str(cfg.trial.number)}


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> float | None:
    """Train `cfg` inside its own MLflow run; return the objective (None when there is no validation split).

    Inside a sweep (`trial.number` set) the job reports the objective to its Optuna trial after every epoch and
    raises `optuna.TrialPruned` when the pruner says so; its MLflow run still ends FINISHED, since pruning is a
    decision, not an error. The sweeper tells Optuna the verdict and tags the run with it.
    """
    started = time.perf_counter()
    name = run_name(cfg, overrides)
    tags = {"protocol": protocol(cfg), "objective": cfg.objective, **trial_tags(cfg)}
    pruned: optuna.TrialPruned | None = None
    with tracked_run(cfg, name, tags=tags) as tracked:
        callbacks = [tracked.epoch_logger()]
        if cfg.trial.number is not None:
            callbacks.append(trial_callback(cfg, tracked.run_id))
        try:
            result = train(cfg, callbacks=callbacks)
        except optuna.TrialPruned as error:
            # Caught inside the run so that it ends FINISHED; re-raised below for the sweeper.
            pruned = error
            tracked.set_tags({"optuna.pruned": str(error)})
        else:
            tracked.log_metrics(
                {
                    "test_loss": result["test_loss"],
                    "test_accuracy": result["test_accuracy"],
                    "epochs_run": result["epochs_run"],
                    "fit_seconds": result["fit_seconds"],
                    "evaluate_seconds": result["evaluate_seconds"],
                }
            )
    if pruned is not None:
        raise pruned
    history = result["history"]
    objective = history[cfg.objective][-1] if cfg.objective in history else None
    if cfg.trial.number is not None:
        return objective  # The sweeper prints one progress line per trial.
    val_accuracy = history.get("val_accuracy", [float("nan")])[-1]
    print(
        f"{name}: test_accuracy={result['test_accuracy']:.4f} val_accuracy={val_accuracy:.4f} "
        f"{time.perf_counter() - started:.1f}s mlflow_run={tracked.run_id}",
        flush=True,
    )
    return objective
