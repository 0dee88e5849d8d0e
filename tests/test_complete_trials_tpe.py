"""CompleteTrialsTPESampler: TPE that does not learn from pruned trials (no TensorFlow)."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from mnist_study.sweep.complete_trials_tpe import CompleteTrialsTPESampler

SPACE = {"x": FloatDistribution(0.0, 1.0)}


def study_with(sampler: optuna.samplers.BaseSampler, pruned: int, complete: int) -> optuna.Study:
    """A study whose pruned trials sit near x = 0.1 and whose complete ones near x = 0.9 (better for higher x)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for index in range(pruned):
        study.add_trial(
            create_trial(
                params={"x": 0.1 + index / 1000},
                distributions=SPACE,
                state=TrialState.PRUNED,
                intermediate_values={1: 0.5},
            )
        )
    for index in range(complete):
        study.add_trial(create_trial(params={"x": 0.9 - index / 100}, distributions=SPACE, value=0.9 - index / 100))
    return study


@pytest.mark.parametrize("multivariate", [False, True])
def test_only_pruned_trials_leave_it_random(multivariate: bool) -> None:
    # Twelve trials, all pruned: Optuna's TPE is past its ten start-up trials and models them; this one has seen no
    # finished trial yet, so it still draws what its random start-up sampler draws.
    draws = {}
    for name, sampler in {
        "complete_only": CompleteTrialsTPESampler(seed=5, multivariate=multivariate),
        "tpe": optuna.samplers.TPESampler(seed=5, multivariate=multivariate),
        "random": optuna.samplers.RandomSampler(seed=5),
    }.items():
        study = study_with(sampler, pruned=12, complete=0)
        draws[name] = [study.ask(SPACE).params["x"] for _ in range(3)]
    assert draws["complete_only"] == draws["random"]
    assert draws["tpe"] != draws["random"]


def test_pruned_trials_are_not_bad_examples() -> None:
    # With pruned trials near 0.1 counted as bad, TPE keeps away from 0.1; without them, the region is only as
    # unlikely as the prior makes it. Over many draws the complete-only sampler visits it more often.
    def near_pruned(sampler: optuna.samplers.BaseSampler) -> int:
        study = study_with(sampler, pruned=20, complete=12)
        return sum(abs(study.ask(SPACE).params["x"] - 0.1) < 0.1 for _ in range(60))

    assert near_pruned(CompleteTrialsTPESampler(seed=1)) > near_pruned(optuna.samplers.TPESampler(seed=1))
