"""Per-run figures a person opens in the MLflow UI: learning curves and a confusion matrix on the test set.

The figures are built from what a run already has (its per-epoch logs, the test set's confusion counts that `train`
returns), so `train.py` draws nothing: a Keras callback records each epoch, and the job draws after `train`
returns (or is pruned). Drawing never decides a run's fate: a failure to plot is logged, and the run goes on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # Plots are files; no display is needed or wanted.

import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

CURVES_ARTIFACT = "plots/learning_curves.png"
CONFUSION_ARTIFACT = "plots/confusion_matrix.png"
# Small enough to open instantly in the browser, sharp enough to read the digits in every cell.
DPI = 90
# Fixed margins, as `tight_layout` computed them for these two layouts: it cost a third of the time spent drawing
# a trial's figures, and a layout that never changes needs no solver.
CURVES_MARGINS = {"left": 0.075, "right": 0.985, "bottom": 0.165, "top": 0.81, "wspace": 0.2}
CONFUSION_MARGINS = {"left": 0.05, "right": 0.9, "bottom": 0.11, "top": 0.89}


def learning_curves_figure(history: Mapping[str, Sequence[float]], title: str) -> plt.Figure:
    """Loss and accuracy per epoch, train against validation, side by side."""
    if not history.get("loss"):
        raise ValueError("no epoch finished: there is no learning curve to draw")
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.6))
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for key, label, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "-s")):
            values = history.get(key)
            if values:
                epochs = range(1, len(values) + 1)
                axes.plot(epochs, values, style, label=label, markersize=4)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(metric)
        # Whole epochs only: a two-epoch run should not show ticks at 1.25, 1.5, nor a one-epoch run at 0.96.
        epochs_run = len(history["loss"])
        axes.set_xlim(0.5, epochs_run + 0.5)
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
        axes.grid(alpha=0.3)
        if axes.get_lines():
            axes.legend()
        else:
            axes.text(0.5, 0.5, f"no {metric} logged", ha="center", va="center", transform=axes.transAxes)
    figure.suptitle(title)
    figure.subplots_adjust(**CURVES_MARGINS)
    return figure


def confusion_figure(matrix: np.ndarray, title: str) -> plt.Figure:
    """The confusion matrix as a heat map with every count written in its cell."""
    classes = matrix.shape[0]
    figure, axes = plt.subplots(figsize=(6.2, 5.4))
    # A log-like colour scale would hide the diagonal; instead the diagonal is drawn apart from the errors, so
    # that a few dozen confusions are visible next to a thousand correct answers.
    errors = matrix.astype(float).copy()
    np.fill_diagonal(errors, np.nan)
    image = axes.imshow(errors, cmap="Reds", vmin=0)
    for truth in range(classes):
        for guess in range(classes):
            count = int(matrix[truth, guess])
            if truth == guess:
                axes.add_patch(plt.Rectangle((guess - 0.5, truth - 0.5), 1, 1, color="#cfe8cf"))
            if count or truth == guess:
                # White on the darkest cells, where black digits would be lost.
                dark = truth != guess and count > 0.6 * np.nanmax(errors)
                axes.text(
                    guess,
                    truth,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    total = int(matrix.sum())
    correct = int(np.trace(matrix))
    accuracy = correct / total if total else math.nan
    axes.set_title(f"{title}\n{correct}/{total} correct ({accuracy:.2%}); off-diagonal: errors")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="errors")
    figure.subplots_adjust(**CONFUSION_MARGINS)
    return figure


def log_figure(client: MlflowClient, run_id: str, draw: Callable[[], plt.Figure], artifact: str) -> float:
    """Draw a figure and log it as an artifact of `run_id`; return the seconds spent.

    `draw` makes the figure, so that a failure while drawing is caught here too. Any failure (a bad value, a full
    disk, a store that refuses the upload) is logged and swallowed: a missing plot must not fail a finished run.
    """
    started = time.perf_counter()
    try:
        figure = draw()
        client.log_figure(run_id, figure, artifact, save_kwargs={"dpi": DPI})
    except Exception as error:
        log.warning("could not log %s for run %s: %s: %s", artifact, run_id, type(error).__name__, error)
    finally:
        plt.close("all")
    return time.perf_counter() - started
