"""TPE that learns from finished trials only: a pruned trial is neither a good nor a bad example to it.

Optuna's TPE ranks a pruned trial below every complete one, so the region it came from becomes a "bad" example.
With a pruner that judges after an epoch or two, the slow starters (a low learning rate, strong dropout) are
pruned first, and TPE learns to avoid the very family that wins after 20 epochs. This sampler hands TPE a view of
the study without its pruned trials: TPE models complete trials only (and stays random until it has
`n_startup_trials` of them), while the pruner still saves the epochs. Select it with
`hydra.sweeper.sampler._target_=mnist_study.sweep.complete_trials_tpe.CompleteTrialsTPESampler`.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from optuna import Study
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.trial import FrozenTrial, TrialState

# Every state a trial can be in but PRUNED: what the view lets through when asked for "all states".
NOT_PRUNED = tuple(state for state in TrialState if state != TrialState.PRUNED)


class _CompleteTrialsView:
    """The study as TPE reads it, without its pruned trials; everything else is the study's own."""

    def __init__(self, study: Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        wanted = tuple(state for state in NOT_PRUNED if states is None or state in states)
        return self._study._get_trials(deepcopy=deepcopy, states=wanted, use_cache=use_cache)

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class CompleteTrialsTPESampler(TPESampler):
    """`TPESampler` (the same arguments) that never sees a pruned trial."""

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return super().infer_relative_search_space(_CompleteTrialsView(study), trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return super().sample_relative(_CompleteTrialsView(study), trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return super().sample_independent(_CompleteTrialsView(study), trial, param_name, param_distribution)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        super().after_trial(_CompleteTrialsView(study), trial, state, values)
