"""Which configurations the report compares: the tutorial's protocol, the baseline and the study's top trials.

Trials are ranked by the study's own objective (validation accuracy), among COMPLETE trials only; the test set
never takes part. A trial's params are the command-line overrides that reproduce it (`model.units=256`,
`optimizer=adam`, ...), so a configuration here is a list of overrides. This module never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_study.secrets import redact
from mnist_study.sweep.constraints import is_feasible
from mnist_study.sweep.schema import BASELINE_ATTR, PARENT_RUN_ATTR, is_counted, trial_overrides
from mnist_study.sweep.storage import open_storage


class ReportError(ValueError):
    """A request the report cannot honour (no such study, a bad count); its message is the line users see."""


@dataclass(frozen=True)
class Candidate:
    """One configuration to refit: its label, role (replica, baseline, variant) and the overrides that make it."""

    label: str
    role: str
    overrides: tuple[str, ...]
    trial: FrozenTrial | None = None


def load_study(name: str, storage_url: str) -> optuna.Study:
    """The study, or a ValueError that lists the studies the storage does hold."""
    storage = open_storage(storage_url)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    if name not in names:
        held = ", ".join(names) or "no studies"
        raise ReportError(f"no study {name!r} in {redact(storage_url)}; it holds: {held}")
    return optuna.load_study(study_name=name, storage=storage)


def parent_run_id(study: optuna.Study) -> str | None:
    """The study's MLflow parent run, as the sweeper recorded it on the study."""
    return study.user_attrs.get(PARENT_RUN_ATTR)


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The COMPLETE trial the sweeper enqueued as the baseline (trial 0 when the space contains the baseline)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get(BASELINE_ATTR):
            return trial
    return None


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The k best COMPLETE trials by the study's objective, best first, the baseline trial, trials that do not
    count by the schema's rule (`is_counted`: copies from another study by `warm_start`, which have no run in this
    study) and trials that break one of the study's constraints (`hydra.sweeper.constraints`) excluded.

    Ties keep the earlier trial first. Nothing but the study's objective values is read. A study of several
    objectives offers its Pareto front instead, k members spread along it (see `spread_along_front`).
    """
    if k < 0:
        raise ReportError(f"top_k={k}: must be >= 0")
    complete = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not trial.user_attrs.get(BASELINE_ATTR) and is_counted(trial) and trial.values and is_feasible(trial)
    ]
    if len(study.directions) > 1:
        return spread_along_front(study, complete, k)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete.sort(key=lambda trial: (-trial.value if maximize else trial.value, trial.number))
    return complete[:k]


def spread_along_front(study: optuna.Study, trials: list[FrozenTrial], k: int) -> list[FrozenTrial]:
    """Up to k non-dominated trials, evenly spaced along the front ordered by the first objective (best first),
    so the comparison covers the accurate-and-large end, the small end and the middle."""
    front_numbers = {trial.number for trial in study.best_trials}
    front = [trial for trial in trials if trial.number in front_numbers]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    front.sort(key=lambda trial: (-trial.values[0] if maximize else trial.values[0], trial.number))
    if k >= len(front):
        return front
    if k == 1:
        return front[:1]
    picks = sorted({round(index * (len(front) - 1) / (k - 1)) for index in range(k)})
    return [front[index] for index in picks]


def candidates(study: optuna.Study, variants: Sequence[FrozenTrial]) -> list[Candidate]:
    """Seed replica, baseline, then the variants (the study's top trials, in the report's order).

    The replica is the baseline's hyperparameters under the tutorial's protocol (`+experiments=seed_replica`:
    fit on the test set), so that it differs from the baseline row in the protocol alone.
    """
    baseline = baseline_trial(study)
    base = trial_overrides(baseline) if baseline is not None else ()
    label = f"baseline (trial {baseline.number})" if baseline is not None else "baseline (config defaults)"
    rows = [
        Candidate("seed_replica (fits on test)", "replica", ("+experiments=seed_replica", *base), baseline),
        Candidate(label, "baseline", base, baseline),
    ]
    rows += [Candidate(f"trial {trial.number}", "variant", trial_overrides(trial), trial) for trial in variants]
    return rows
