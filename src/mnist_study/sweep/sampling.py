"""A sampler seeded from each trial's number, so that a study's draws depend on nothing but its seed.

Optuna seeds a sampler once, when it is built. The sweeper's processes come and go (a resumed study, several
workers on one study), and each would start the seeded sequence again and repeat its draws. This wrapper builds
the configured sampler afresh for every trial, seeded from (study seed, trial number). The storage hands out
each trial number once, so two workers that ask at the same instant still draw with different seeds, and a study
run again from scratch draws exactly what it drew before.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hydra.utils import instantiate
from optuna import Study
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState


def quiet_group_warning() -> None:
    """Silence TPE's `group` warning (the default study models its optimizer branches with it).

    Optuna marks `group` experimental and warns whenever a sampler is built with it: at every trial here, since
    the sampler is rebuilt for each.
    """
    warnings.filterwarnings("ignore", message="Argument ``group``", category=ExperimentalWarning)


def make_sampler(config: Mapping[str, Any] | None) -> BaseSampler:
    """The configured sampler (`hydra.sweeper.sampler`; None is TPE); a seeded one is reseeded every trial."""
    if config is None:
        return TPESampler()
    quiet_group_warning()
    arguments = dict(config)
    seed = arguments.pop("seed", None)
    if seed is None:
        return instantiate(arguments)
    return TrialSeededSampler(lambda trial_seed: instantiate(arguments, seed=trial_seed), int(seed))


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number` of a study seeded with `seed`.

    Mixed, not added: with `seed + number`, the study of seed 1 drew what the study of seed 0 drew one trial later,
    so two "independent" seeds shared all but one of their random draws.
    """
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Delegates to `build(seed)`, rebuilt with `trial_seed(seed, trial.number)` before every trial."""

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self._build = build
        self._seed = seed
        self._sampler = build(trial_seed(seed, 0))

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        # Optuna calls this as the trial is created, before it samples anything for it.
        self._sampler = self._build(trial_seed(self._seed, trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        # The seed of every trial is fixed by design; nothing to reseed.
        pass
