"""A study's figures, logged on its MLflow parent run and drawn again in the report.

Per-run figures (learning curves, confusion matrix) live in `mnist_study.plots`, which knows nothing of Optuna, so
that a single run never loads the sweep.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import optuna
from optuna.trial import FrozenTrial, TrialState

import mnist_study.plots  # noqa: F401  (selects Matplotlib's file-only backend before pyplot draws anything)
from mnist_study.sweep.schema import trial_values


def optuna_figure(plot: Callable[[optuna.Study], Any], study: optuna.Study) -> plt.Figure:
    """One of Optuna's matplotlib plots, without its experimental-API and empty-legend warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        figure = plot(study).figure
    figure.tight_layout()
    return figure


def accuracy_vs_width(trials: Sequence[FrozenTrial], objective: str) -> plt.Figure:
    """The objective against the hidden layer's width, one colour per optimizer."""
    if not trials:
        raise ValueError("no COMPLETE trials yet")
    figure, axes = plt.subplots(figsize=(7, 4.5))
    by_optimizer: dict[str, list[tuple[float, float]]] = {}
    for trial in trials:
        values = trial_values(trial)
        units = float(values.get("model.units", 512))
        by_optimizer.setdefault(str(values.get("optimizer", "rmsprop")), []).append((units, trial.value))
    for optimizer, points in sorted(by_optimizer.items()):
        xs, ys = zip(*points, strict=True)
        axes.scatter(xs, ys, label=optimizer, alpha=0.8)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("model.units (hidden layer width)")
    axes.set_ylabel(objective)
    axes.set_title(f"{objective} vs width, by optimizer (COMPLETE trials)")
    axes.legend(title="optimizer")
    figure.tight_layout()
    return figure


def study_figures(study: optuna.Study, objectives: Sequence[str]) -> dict[str, Callable[[], plt.Figure]]:
    """The study's figures by artifact name: they need COMPLETE trials (importances need two). A study of several
    objectives gets its Pareto front instead."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures: dict[str, Callable[[], plt.Figure]] = {}
    if complete and len(objectives) > 1:
        front = functools.partial(optuna.visualization.matplotlib.plot_pareto_front, target_names=list(objectives))
        figures["plots/pareto_front.png"] = lambda: optuna_figure(front, study)
        return figures
    if complete:
        history = optuna.visualization.matplotlib.plot_optimization_history
        figures["plots/optimization_history.png"] = lambda: optuna_figure(history, study)
        figures["plots/accuracy_vs_width.png"] = lambda: accuracy_vs_width(complete, objectives[0])
    if len(complete) >= 2:
        importances = optuna.visualization.matplotlib.plot_param_importances
        figures["plots/param_importances.png"] = lambda: optuna_figure(importances, study)
    return figures
