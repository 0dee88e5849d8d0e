"""The metrics a run logs, named once: what every epoch records, what the test set gives, which way is better."""

from __future__ import annotations

import numpy as np

# Keras's per-epoch history keys, logged to MLflow at step = epoch; the study's objective is one of them.
HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Logged once, at step 0, when a run finishes: the test set's scores.
FINAL_METRICS = ("test_loss", "test_accuracy")
# Logged once when a run finishes, about its cost: a study may minimize them beside an accuracy.
COST_METRICS = ("n_params", "fit_seconds")

# Suffixes of the metrics a study may optimize, and which way is better.
_MAXIMIZED = ("accuracy",)
_MINIMIZED = ("loss", "n_params", "_seconds")


def direction_for(objective: str) -> str:
    """`maximize` for accuracies; `minimize` for losses, `n_params` and times; anything else is an error."""
    if objective.endswith(_MAXIMIZED):
        return "maximize"
    if objective.endswith(_MINIMIZED):
        return "minimize"
    raise ValueError(f"objective {objective!r} is neither an accuracy nor a loss; cannot tell which way is better")


def objective_names(objective: object) -> list[str]:
    """The study's objectives: `val_accuracy` or a list such as `[val_accuracy, n_params]`."""
    if isinstance(objective, str):
        return [objective]
    return [str(name) for name in objective]  # type: ignore[attr-defined]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """Counts of (true label, predicted label) pairs: rows are the truth, columns the prediction."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    predicted = np.asarray(predicted).astype(np.int64).ravel()
    if labels.shape != predicted.shape:
        raise ValueError(f"{labels.size} labels but {predicted.size} predictions")
    if labels.size and (min(labels.min(), predicted.min()) < 0 or max(labels.max(), predicted.max()) >= classes):
        raise ValueError(f"labels and predictions must lie in 0..{classes - 1}")
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
