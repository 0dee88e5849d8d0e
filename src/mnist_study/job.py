"""One job: an MLflow run around one training run, and the objective handed back to Hydra (and a sweeper)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import keras
import numpy as np
import optuna
from omegaconf import DictConfig

from mnist_study.plots import (
    CONFUSION_ARTIFACT,
    CURVES_ARTIFACT,
    EpochRecorder,
    confusion_figure,
    learning_curves,
    log_figure,
)
from mnist_study.tracking import TrackedRun, tracked_run
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


def _number(value: object) -> str:
    """A hyperparameter as a person writes it: 0.001 rather than 1.0e-03, 0.25 rather than 0.25000000001."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def short_description(cfg: DictConfig) -> str:
    """The parameters a sweep varies, in one line (a plot's title)."""
    dropout = f", dropout {_number(cfg.model.dropout)}" if cfg.model.dropout else ""
    return (
        f"{cfg.model.units} units{dropout}, {cfg.optimizer.name} lr {_number(cfg.optimizer.learning_rate)}, "
        f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}"
    )


def description(cfg: DictConfig, name: str) -> str:
    """The run's MLflow description (the note on its page): what it is and every parameter that shapes it."""
    if cfg.trial.number is not None:
        what = f"Trial {cfg.trial.number} of the Optuna study `{cfg.trial.study_name}`."
    elif name == "baseline":
        what = "The baseline: the Keras MNIST tutorial network and hyperparameters, trained honestly."
    elif cfg.data.fit_on == "test":
        what = f"`{name}`: the tutorial's own protocol, kept for comparison only."
    else:
        what = f"A single run: `{name}`."
    knobs = [
        f"{key} {_number(value)}" for key, value in cfg.optimizer.items() if key not in ("name", "learning_rate")
    ]
    dropout = f"dropout {_number(cfg.model.dropout)}" if cfg.model.dropout else "no dropout"
    network = (
        f"A 784 → {cfg.model.units} {cfg.model.activation} → 10 softmax network ({dropout}), trained with "
        f"{cfg.optimizer.name} at learning rate {_number(cfg.optimizer.learning_rate)}"
        f"{' (' + ', '.join(knobs) + ')' if knobs else ''} for {cfg.train.epochs} epochs at batch size "
        f"{cfg.train.batch_size}, seed {cfg.seed}."
    )
    if cfg.data.fit_on == "test":
        data = "Fitted on the 10 000 test images and scored on them: its test accuracy is not an honest estimate."
    else:
        subset = f"the first {cfg.data.train_subset} of " if cfg.data.train_subset is not None else ""
        data = (
            f"Fitted on {subset}the training images, selected on the last {cfg.data.val_size} of them "
            f"(`val_accuracy`), scored once on the 10 000 test images (`test_accuracy`)."
        )
    return f"{what}\n\n{network}\n\n{data}"


def outcome(history: dict[str, list[float]], test_accuracy: float | None, pruned: bool) -> str:
    """One sentence on how the run ended, appended to its description."""
    epochs = len(history.get("loss", []))
    val = history.get("val_accuracy")
    val_text = f", val_accuracy {val[-1]:.4f}" if val else ""
    if pruned:
        return f"Pruned after epoch {epochs}{val_text}."
    test_text = f", test_accuracy {test_accuracy:.4f}" if test_accuracy is not None else ""
    return f"Finished {epochs} epochs{val_text}{test_text}."


def log_plots(
    cfg: DictConfig, tracked: TrackedRun, recorder: EpochRecorder, name: str, confusion: np.ndarray | None = None
) -> None:
    """Learning curves for every run; for a run that completed, its confusion matrix on the test set too.

    Best effort (see `plots.log_figure`); the time spent is logged as `plot_seconds` so its cost stays visible.
    `tracking.plots=false` skips them.
    """
    if not cfg.tracking.get("plots", True):
        return
    title = f"{name}: {short_description(cfg)}"
    seconds = log_figure(
        tracked.client, tracked.run_id, lambda: learning_curves(recorder.history, title), CURVES_ARTIFACT
    )
    if confusion is not None:
        # Counted by train() while it scored the test set, so drawing needs no second pass over the images.
        seconds += log_figure(
            tracked.client,
            tracked.run_id,
            lambda: confusion_figure(confusion, f"{name}: test set"),
            CONFUSION_ARTIFACT,
        )
    try:
        tracked.log_metrics({"plot_seconds": seconds})
    except Exception as error:
        log.warning("could not log plot_seconds: %s", error)


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> float | None:
    """Train `cfg` inside its own MLflow run; return the objective (None when there is no validation split).

    Inside a sweep (`trial.number` set) the job reports the objective to its Optuna trial after every epoch and
    raises `optuna.TrialPruned` when the pruner says so; its MLflow run still ends FINISHED, since pruning is a
    decision, not an error. The sweeper tells Optuna the verdict and tags the run with it.
    """
    started = time.perf_counter()
    name = run_name(cfg, overrides)
    note = description(cfg, name)
    tags = {
        "protocol": protocol(cfg),
        "objective": cfg.objective,
        "mlflow.note.content": note,
        **trial_tags(cfg),
    }
    pruned: optuna.TrialPruned | None = None
    with tracked_run(cfg, name, tags=tags) as tracked:
        # The recorder comes before the pruning callback, so the epoch that gets a trial pruned is recorded.
        recorder = EpochRecorder()
        callbacks = [tracked.epoch_logger(), recorder]
        if cfg.trial.number is not None:
            callbacks.append(trial_callback(cfg, tracked.run_id))
        try:
            result = train(cfg, callbacks=callbacks)
        except optuna.TrialPruned as error:
            # Caught inside the run so that it ends FINISHED; re-raised below for the sweeper.
            pruned = error
            tracked.set_tags(
                {
                    "optuna.pruned": str(error),
                    "mlflow.note.content": f"{note}\n\n{outcome(recorder.history, None, True)}",
                }
            )
            log_plots(cfg, tracked, recorder, name)
        except Exception:
            # A failed run's curves show where it went wrong (a diverging loss); the error itself is re-raised.
            log_plots(cfg, tracked, recorder, name)
            raise
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
            ending = outcome(result["history"], result["test_accuracy"], pruned=False)
            tracked.set_tags({"mlflow.note.content": f"{note}\n\n{ending}"})
            log_plots(cfg, tracked, recorder, name, result["test_confusion"])
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
