"""Bounds on what a trial costs (`hydra.sweeper.constraints`): `n_params: "<= 1000000"`, `fit_seconds: "<= 60"`.

A constraint is not an objective: a trial that breaks one is infeasible, whatever its accuracy. Every trial's job
records its costs on its Optuna trial (the user attrs `n_params` and `fit_seconds`); before the sweeper tells a
COMPLETE or PRUNED verdict it turns them into Optuna constraint values with `Trial.set_constraint` (Optuna 5's way;
a value <= 0 is feasible, stored as the trial system attr `constraints:<metric>`). Optuna's constraint-aware
samplers (TPE, NSGA-II, NSGA-III, GP) steer away from infeasible trials, `study.best_trial` and the Pareto front
skip them, and the report never picks one. This module never imports TensorFlow or MLflow.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mnist_study.checks import ConfigError, is_number
from mnist_study.metrics import COST_METRICS

if TYPE_CHECKING:
    # Types only: Hydra imports the sweeper's settings (and so this module) whenever it composes any config, and
    # a single run must not pay for loading Optuna (tests/test_layering.py).
    import optuna
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

KEY = "hydra.sweeper.constraints"
OPERATORS = ("<=", ">=")
# `<= 1000000`, `>= 0.5`, `<= 1e6`: an operator, then a finite number.
_PATTERN = re.compile(r"^\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """`metric operator bound`, for example `n_params <= 1000000`."""

    metric: str
    operator: str
    bound: float

    def value(self, measured: float | None) -> float:
        """Optuna's constraint value: <= 0 when `measured` satisfies the constraint; unmeasured is infeasible."""
        if measured is None or not math.isfinite(measured):
            return math.inf
        return measured - self.bound if self.operator == "<=" else self.bound - measured

    def __str__(self) -> str:
        return f"{self.metric} {self.operator} {plain(self.bound)}"


def parse_constraints(node: Mapping[str, Any] | None) -> tuple[Constraint, ...]:
    """`{metric: "<= bound"}` as constraints; an unknown metric or a bad condition is one line."""
    if node is None:
        return ()
    if not isinstance(node, Mapping):
        raise ConfigError(f"{KEY}={node!r}: must be a mapping of metric to condition, e.g. {{n_params: '<= 1e6'}}")
    constraints = []
    for metric, condition in node.items():
        key = f"{KEY}.{metric}"
        if metric not in COST_METRICS:
            nearest = difflib.get_close_matches(str(metric), COST_METRICS, n=1, cutoff=0.0)
            raise ConfigError(
                f"{key}: not a metric a constraint can bound; one of {', '.join(COST_METRICS)} "
                f"(did you mean {nearest[0]}?)"
            )
        if is_number(condition):
            condition = f"<= {condition}"  # A bare number is an upper bound, the usual kind of budget.
        matched = _PATTERN.match(condition) if isinstance(condition, str) else None
        if matched is None:
            raise ConfigError(
                f"{key}={condition!r}: must be an operator ({' or '.join(OPERATORS)}) and a number, "
                f"e.g. '<= 1000000'"
            )
        constraints.append(Constraint(str(metric), matched.group(1), float(matched.group(2))))
    return tuple(constraints)


def takes_constraints(sampler: BaseSampler) -> bool:
    """Whether the sampler uses Optuna's constraint values: the constraint-aware samplers are those whose
    constructor also offers (the deprecated) `constraints_func`."""
    return "constraints_func" in inspect.signature(type(sampler)).parameters


def constraint_values(constraints: Sequence[Constraint], measured: Mapping[str, Any]) -> dict[str, float]:
    """Each constraint's Optuna value for a trial whose job recorded `measured` (metric -> value)."""
    values = {}
    for constraint in constraints:
        number = measured.get(constraint.metric)
        values[constraint.metric] = constraint.value(float(number) if is_number(number) else None)
    return values


def judge(trial: optuna.Trial, constraints: Sequence[Constraint], recorded: FrozenTrial) -> None:
    """Set each constraint's value on the live trial, from the costs its job recorded (`recorded`, the trial as the
    storage holds it); a constraint already set (a retried tell) is left as it is."""
    for metric, value in constraint_values(constraints, recorded.user_attrs).items():
        if metric not in recorded.constraints:
            trial.set_constraint(metric, value)


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether the trial breaks none of its stored constraints (a trial of an unconstrained study always holds)."""
    return all(value <= 0 for value in trial.constraints.values())


def describe(constraints: Sequence[Constraint], trial: FrozenTrial) -> str:
    """` feasible (n_params=407050 <= 1000000)` or ` INFEASIBLE (n_params=1863690 > 500000)`: progress lines."""
    if not constraints or not trial.constraints:
        return ""
    parts = []
    for constraint in constraints:
        measured = trial.user_attrs.get(constraint.metric)
        held = trial.constraints.get(constraint.metric, math.inf) <= 0
        shown = plain(measured) if is_number(measured) else "unmeasured"
        relation = constraint.operator if held else {"<=": ">", ">=": "<"}[constraint.operator]
        parts.append(f"{constraint.metric}={shown} {relation} {plain(constraint.bound)}")
    verdict = "feasible" if is_feasible(trial) else "INFEASIBLE"
    return f" {verdict} ({', '.join(parts)})"


def plain(number: float) -> str:
    """`500000` for a whole number (a parameter count), `12.35` otherwise."""
    return str(int(number)) if float(number).is_integer() else f"{number:.4g}"
