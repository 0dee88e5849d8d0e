"""The report's figures, each returned as PNG bytes (so Markdown can link them and HTML can embed them)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # Figures are files; no display is needed or wanted.

import matplotlib.pyplot as plt
import optuna

from mnist_study.sweep.figures import optuna_figure

TUTORIAL_CLAIM = 0.975


def png(figure: plt.Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed, so a long report does not pile figures up."""
    buffer = io.BytesIO()
    try:
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def accuracy_by_configuration(rows: Sequence[tuple[str, Sequence[float], float, float]]) -> bytes:
    """Test accuracy per configuration: every seed as a dot, the mean with its 95 % CI as an error bar.

    `rows` holds (label, per-seed accuracies, CI low, CI high).
    """
    figure, axes = plt.subplots(figsize=(8, 0.7 * len(rows) + 1.8))
    for position, (label, values, low, high) in enumerate(rows):
        mean = sum(values) / len(values)
        axes.scatter(values, [position] * len(values), color="tab:gray", alpha=0.6, s=18, zorder=2)
        if low == low:  # A single seed has no interval (NaN).
            axes.errorbar(mean, position, xerr=[[mean - low], [high - mean]], fmt="o", color="tab:blue", capsize=5)
        else:
            axes.plot(mean, position, "o", color="tab:blue")
        axes.annotate(label, (mean, position), xytext=(0, 8), textcoords="offset points", ha="center", fontsize=8)
    axes.axvline(TUTORIAL_CLAIM, color="tab:red", linestyle="--", label="tutorial's claim (97.5 %, fit on test)")
    axes.set_yticks([])
    axes.set_ylim(-0.7, len(rows) - 0.3)
    axes.invert_yaxis()
    axes.set_xlabel("test accuracy (refits on the full training set; dots = seeds, bars = 95 % CI of the mean)")
    axes.legend(loc="lower right", fontsize=8)
    return png(figure)


def curves_by_configuration(curves: Mapping[str, Mapping[int, float]], metric: str) -> bytes:
    """The study objective per epoch for a few trials (what the study saw: seed 0, validation split)."""
    if not curves:
        raise ValueError("no curves to draw")
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, values in curves.items():
        steps = sorted(values)
        axes.plot(steps, [values[step] for step in steps], marker="o", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per epoch in the study (validation split, seed 0)")
    axes.legend()
    return png(figure)


def optimization_history(study: optuna.Study) -> bytes:
    return png(optuna_figure(optuna.visualization.matplotlib.plot_optimization_history, study))


def param_importances(study: optuna.Study) -> bytes:
    return png(optuna_figure(optuna.visualization.matplotlib.plot_param_importances, study))
