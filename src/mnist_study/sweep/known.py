"""Known configurations first: configurations queued right after the baseline, and an earlier study's results.

`hydra.sweeper.enqueue` lists configurations (override key -> value) that the new study tries before the sampler
draws anything; `hydra.sweeper.warm_start` names an earlier study whose COMPLETE trials are copied into the new
study, so that the sampler starts informed. Both happen once, when the study is created (a resumed study never
queues or copies again). Copied trials are tagged with where they came from and never count towards `n_trials`.
This module never imports TensorFlow or MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from mnist_study.checks import ConfigError
from mnist_study.secrets import redact
from mnist_study.sweep.schema import ENQUEUED_ATTR, WARM_START_ATTR
from mnist_study.sweep.settings import SweepSettings
from mnist_study.sweep.space import Branch, SearchSpace, format_value, in_distribution, same_value
from mnist_study.sweep.storage import open_storage

KEY = "hydra.sweeper.enqueue"


def misfit(space: SearchSpace, values: Mapping[str, Any]) -> str | None:
    """Why a configuration does not fit the space (a key it does not sample, a value outside), or None."""
    distributions = space.distributions_for(values)
    for key, value in values.items():
        if key not in distributions:
            return f"{key} is not a sampled parameter here"
        if not in_distribution(value, distributions[key]):
            return f"{key}={format_value(value)} is outside {space_expression(space, key, values)}"
    return None


def space_expression(space: SearchSpace, key: str, values: Mapping[str, Any]) -> str:
    """The expression that gives `key` its space for a configuration with these values."""
    chosen: list[Branch] = [
        branch
        for branch in space.branches
        if key in branch.distributions and same_value(values.get(branch.parent), branch.value)
    ]
    return chosen[0].expressions[key] if chosen else space.expressions.get(key, key)


def check_enqueue(entries: Sequence[Mapping[str, Any]], space: SearchSpace) -> None:
    """Every configuration to queue must fit the space, or the sweep stops before it writes anything."""
    for index, entry in enumerate(entries):
        reason = misfit(space, entry)
        if reason is not None:
            raise ConfigError(f"{KEY}[{index}]: {reason}; queue only values the study's space can take")


def check_known(settings: SweepSettings, space: SearchSpace) -> None:
    """The configurations to queue fit the space, and the study to start from exists (nothing is written)."""
    check_enqueue(settings.enqueue, space)
    if settings.warm_start is not None:
        load_source(settings.warm_start)


def load_source(source: Mapping[str, str]) -> optuna.Study:
    """The earlier study a warm start copies from."""
    name, url = source["study"], source["storage"]
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise ConfigError(f"hydra.sweeper.warm_start.study={name}: no such study in {redact(url)}") from None


def enqueue_known(study: optuna.Study, entries: Sequence[Mapping[str, Any]]) -> None:
    """Queue each configuration once (the caller created the study), tagged as queued by hand."""
    for entry in entries:
        study.enqueue_trial(dict(entry), user_attrs={ENQUEUED_ATTR: True})


def warm_start(study: optuna.Study, source: Mapping[str, Any], space: SearchSpace) -> tuple[int, int]:
    """Copy the COMPLETE trials of the source study that fit the space; return (copied, skipped)."""
    name, url = source["study"], source["storage"]
    earlier = load_source(source)
    if earlier.directions != study.directions:
        raise ConfigError(f"hydra.sweeper.warm_start.study={name}: it optimizes in other directions than this one")
    copied = skipped = 0
    for trial in earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if misfit(space, trial.params) is not None:
            skipped += 1
            continue
        study.add_trial(copy_of(trial, space.distributions_for(trial.params), f"{redact(url)}#{name}"))
        copied += 1
    return copied, skipped


def copy_of(trial: FrozenTrial, distributions: Mapping[str, BaseDistribution], origin: str) -> FrozenTrial:
    """A COMPLETE trial with the earlier trial's params and values, in this space's distributions."""
    return optuna.trial.create_trial(
        params=dict(trial.params),
        distributions={key: distributions[key] for key in trial.params},
        values=trial.values,
        state=TrialState.COMPLETE,
        user_attrs={WARM_START_ATTR: f"{origin}/{trial.number}"},
    )
