"""One training inside one MLflow run: what a job and a report refit both call.

The run gets its config as params, every epoch as it ends, the test metrics, a description and its figures, and
is closed FINISHED, FAILED or KILLED whatever happens. A pruned trial's run ends FINISHED (pruning is a decision,
not an error) and `optuna.TrialPruned` is raised again once the run is closed.
"""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras: a report imports this
# module only once it trains in its own process.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import optuna
from omegaconf import DictConfig

from mnist_study.callbacks import EpochRecorder
from mnist_study.data import load_mnist
from mnist_study.describe import description, outcome, short_description
from mnist_study.plots import (
    CONFUSION_ARTIFACT,
    CURVES_ARTIFACT,
    confusion_figure,
    learning_curves_figure,
    log_figure,
)
from mnist_study.serving import MODEL_ID_TAG
from mnist_study.tracking import TrackedRun, tracked_run
from mnist_study.train import train

log = logging.getLogger(__name__)

# What `train()` returns that a finished run logs as metrics (at step 0).
RESULT_METRICS = ("test_loss", "test_accuracy", "epochs_run", "n_params", "fit_seconds", "evaluate_seconds")


@dataclass(frozen=True)
class TrainedRun:
    """A finished training and the MLflow run that holds it."""

    run_id: str
    result: dict[str, Any]


def train_tracked(
    cfg: DictConfig,
    name: str,
    tags: Mapping[str, str],
    what: str | None = None,
    more_callbacks: Callable[[str], Sequence[keras.callbacks.Callback]] = lambda run_id: (),
) -> TrainedRun:
    """Train `cfg` inside a new MLflow run called `name`.

    `what` is the first sentence of the run's description (see `describe.description`); `more_callbacks(run_id)`
    adds callbacks that need the run's id (a sweep trial's pruning callback records it on the trial).
    """
    note = description(cfg, name, what)
    pruned: optuna.TrialPruned | None = None
    with tracked_run(cfg, name, tags={**tags, "mlflow.note.content": note}) as tracked:
        # The recorder comes before a pruning callback, so the epoch that gets a trial pruned is recorded.
        recorder = EpochRecorder()
        callbacks = [tracked.epoch_logger(), recorder, *more_callbacks(tracked.run_id)]
        try:
            result = train(cfg, callbacks=callbacks)
        except optuna.TrialPruned as error:
            # Caught inside the run so that it ends FINISHED; raised again below, once the run is closed.
            pruned = error
            ending = outcome(recorder.history, None, pruned=True)
            tracked.set_tags({"optuna.pruned": str(error), "mlflow.note.content": f"{note}\n\n{ending}"})
            log_plots(cfg, tracked, recorder.history, name)
        except Exception:
            # A failed run's curves show where it went wrong (a diverging loss); the error itself is raised again.
            log_plots(cfg, tracked, recorder.history, name)
            raise
        else:
            tracked.log_metrics({key: result[key] for key in RESULT_METRICS})
            if cfg.tracking.log_model:
                log_served_model(cfg, tracked, result["model"])
            ending = outcome(result["history"], result["test_accuracy"], pruned=False)
            tracked.set_tags({"mlflow.note.content": f"{note}\n\n{ending}"})
            log_plots(cfg, tracked, recorder.history, name, result["test_confusion"])
    if pruned is not None:
        raise pruned
    return TrainedRun(tracked.run_id, result)


def log_served_model(cfg: DictConfig, tracked: TrackedRun, trained: keras.Model) -> None:
    """The run's model, with a few raw test images as its input example (see `serving.model`)."""
    from mnist_study.serving.model import EXAMPLE_IMAGES, log_model

    _, (test_images, _) = load_mnist(cfg.data.cache)
    model_id = log_model(tracked, trained, test_images[:EXAMPLE_IMAGES])
    tracked.set_tags({MODEL_ID_TAG: model_id})


def log_plots(
    cfg: DictConfig,
    tracked: TrackedRun,
    history: Mapping[str, Sequence[float]],
    name: str,
    confusion: np.ndarray | None = None,
) -> None:
    """Learning curves for every run; for a run that completed, its confusion matrix on the test set too.

    Best effort (see `plots.log_figure`); the time spent is logged as `plot_seconds` so its cost stays visible.
    `tracking.plots=false` skips them.
    """
    if not cfg.tracking.plots:
        return
    title = f"{name}: {short_description(cfg)}"
    curves = functools.partial(learning_curves_figure, history, title)
    seconds = log_figure(tracked.client, tracked.run_id, curves, CURVES_ARTIFACT)
    if confusion is not None:
        # Counted by train() while it scored the test set, so drawing needs no second pass over the images.
        matrix = functools.partial(confusion_figure, confusion, f"{name}: test set")
        seconds += log_figure(tracked.client, tracked.run_id, matrix, CONFUSION_ARTIFACT)
    try:
        tracked.log_metrics({"plot_seconds": seconds})
    except Exception as error:
        log.warning("could not log plot_seconds: %s", error)
