"""Known configurations first: configurations queued right after the baseline, and an earlier study's results.

`hydra.sweeper.enqueue` lists configurations (override key -> value) that the new study tries before the sampler
draws anything; `hydra.sweeper.warm_start` names an earlier study whose COMPLETE trials are copied into the new
study, so that the sampler starts informed. Both happen once, when the study is created (a resumed study never
queues or copies again). This module decides what fits the space; the trial ledger queues and copies
(`TrialLedger.enqueue`, `TrialLedger.add_copy`), and tags a copy with where it came from, so that it never counts
towards `n_trials`. This module never imports TensorFlow or MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from mnist_study.checks import ConfigError
from mnist_study.secrets import redact
from mnist_study.sweep.settings import SweepSettings
from mnist_study.sweep.space import Branch, SearchSpace, format_value, in_distribution, same_value
from mnist_study.sweep.storage import open_storage

if TYPE_CHECKING:
    from mnist_study.sweep.ledger import TrialLedger

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


def warm_start(ledger: TrialLedger, source: Mapping[str, Any], space: SearchSpace) -> tuple[int, int]:
    """Copy the COMPLETE trials of the source study that fit the space into the ledger's study; return (copied,
    skipped)."""
    name, url = source["study"], source["storage"]
    earlier = load_source(source)
    if earlier.directions != ledger.study.directions:
        raise ConfigError(f"hydra.sweeper.warm_start.study={name}: it optimizes in other directions than this one")
    copied = skipped = 0
    for trial in earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if misfit(space, trial.params) is not None:
            skipped += 1
            continue
        ledger.add_copy(trial, space.distributions_for(trial.params), f"{redact(url)}#{name}")
        copied += 1
    return copied, skipped
