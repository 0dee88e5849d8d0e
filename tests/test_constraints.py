"""Constraints on a study, on real Optuna studies: judged from the costs a job records, stored on each trial as
Optuna's constraint values, skipped by `best_trial`, shown in progress lines and trials.csv, never handed to the
report. Nothing here trains: each trial's recorded costs are written as a job writes them."""

from __future__ import annotations

import csv
import io
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from mnist_study.report.selection import top_trials
from mnist_study.sweep.constraints import Constraint, describe, is_feasible, judge
from mnist_study.sweep.parent_run import trials_csv
from mnist_study.sweep.schema import BASELINE_ATTR

BUDGET = (Constraint("n_params", "<=", 500_000.0), Constraint("fit_seconds", "<=", 60.0))
# (validation accuracy, n_params, fit_seconds, state) per trial; trial 0 is the baseline.
TRIALS = [
    (0.978, 407_050, 12.0, TrialState.COMPLETE),
    (0.990, 1_863_690, 40.0, TrialState.COMPLETE),  # the most accurate, but too large
    (0.985, 300_000, 75.0, TrialState.COMPLETE),  # small, but too slow
    (0.984, 250_000, 20.0, TrialState.COMPLETE),
    (0.982, 450_000, 30.0, TrialState.COMPLETE),
    (None, 900_000, 5.0, TrialState.PRUNED),
]


def run_study(constraints: tuple[Constraint, ...] = BUDGET) -> optuna.Study:
    """A study whose trials recorded the costs above and were judged and told as the sweeper does."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for number, (value, n_params, fit_seconds, state) in enumerate(TRIALS):
        trial = study.ask()
        trial.suggest_int("model.units", 16, 4096)
        trial.set_user_attr("n_params", n_params)
        trial.set_user_attr("fit_seconds", fit_seconds)
        if number == 0:
            trial.set_user_attr(BASELINE_ATTR, True)
        judge(trial, constraints, study._storage.get_trial(trial._trial_id))
        study.tell(trial, value, state=state)
    return study


def test_each_judged_trial_stores_optuna_s_constraint_values() -> None:
    trials = run_study().get_trials()
    assert trials[1].constraints == {"n_params": 1_363_690.0, "fit_seconds": -20.0}
    assert trials[2].constraints == {"n_params": -200_000.0, "fit_seconds": 15.0}
    # A pruned trial is judged too (the sampler learns from it); its costs are those it had when stopped.
    assert trials[5].state == TrialState.PRUNED and trials[5].constraints["n_params"] == 400_000.0
    assert [is_feasible(trial) for trial in trials] == [True, False, False, True, True, False]


def test_judging_again_keeps_the_first_values_without_a_warning() -> None:
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("n_params", 10)
    judge(trial, BUDGET[:1], study._storage.get_trial(trial._trial_id))
    trial.set_user_attr("n_params", 10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        judge(trial, BUDGET[:1], study._storage.get_trial(trial._trial_id))
    assert study._storage.get_trial(trial._trial_id).constraints == {"n_params": 10 - 500_000.0}


def test_an_unrecorded_cost_is_infeasible() -> None:
    study = optuna.create_study()
    trial = study.ask()
    judge(trial, BUDGET[:1], study._storage.get_trial(trial._trial_id))
    study.tell(trial, 0.9)
    assert not is_feasible(study.get_trials()[0])


def test_the_best_trial_and_the_report_s_variants_are_feasible_only() -> None:
    study = run_study()
    assert study.best_trial.number == 3
    assert [trial.number for trial in top_trials(study, 5)] == [3, 4]
    # Without constraints the same results rank the large trial first.
    assert [trial.number for trial in top_trials(run_study(()), 2)] == [1, 2]


def test_a_progress_line_says_whether_the_trial_holds_and_by_how_much() -> None:
    trials = run_study().get_trials()
    assert describe(BUDGET, trials[3]) == " feasible (n_params=250000 <= 500000, fit_seconds=20 <= 60)"
    assert describe(BUDGET, trials[1]) == " INFEASIBLE (n_params=1863690 > 500000, fit_seconds=40 <= 60)"
    assert describe((), trials[1]) == ""


def test_trials_csv_carries_each_constraint_and_feasibility() -> None:
    rows = list(csv.DictReader(io.StringIO(trials_csv(run_study()))))
    assert [row["feasible"] for row in rows] == ["True", "False", "False", "True", "True", "False"]
    assert float(rows[1]["constraint_n_params"]) == pytest.approx(1_363_690)
    assert rows[1]["user_attrs_n_params"] == "1863690"
    unconstrained = list(csv.DictReader(io.StringIO(trials_csv(run_study(())))))
    assert "feasible" not in unconstrained[0]
