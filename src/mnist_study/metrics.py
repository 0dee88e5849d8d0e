"""The metrics a run logs, named once: what every epoch records, what the test set gives, which way is better."""

from __future__ import annotations

# Keras's per-epoch history keys, logged to MLflow at step = epoch; the study's objective is one of them.
HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Logged once, at step 0, when a run finishes: the test set's scores.
FINAL_METRICS = ("test_loss", "test_accuracy")

# Suffixes of the metrics a study may optimize, and which way is better.
_MAXIMIZED = ("accuracy",)
_MINIMIZED = ("loss",)


def direction_for(objective: str) -> str:
    """`maximize` for accuracies, `minimize` for losses; anything else is a configuration error."""
    if objective.endswith(_MAXIMIZED):
        return "maximize"
    if objective.endswith(_MINIMIZED):
        return "minimize"
    raise ValueError(f"objective {objective!r} is neither an accuracy nor a loss; cannot tell which way is better")
