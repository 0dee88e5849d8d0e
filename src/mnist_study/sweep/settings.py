"""The sweeper's own settings (`hydra.sweeper.*` in conf/hydra/sweeper/mnist_study.yaml), checked once.

`SweepSettings.from_hydra` checks the scalar settings as Hydra builds the sweeper, before anything heavy is
imported; `check_algorithms` builds the sampler and pruner once before the first trial, so that a typo in a
`_target_` fails in one line instead of failing every trial of the study in turn.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_study.checks import ConfigError, is_int, is_number, require
from mnist_study.sweep.constraints import Constraint, parse_constraints, takes_constraints

ALGORITHM_KINDS = ("sampler", "pruner")
LIVENESS_KEYS = ("heartbeat_interval_s", "heartbeat_grace_s", "store_retry_s")


@dataclass(frozen=True)
class SweepSettings:
    """What `hydra.sweeper` says, as plain, checked Python values."""

    study_name: str
    storage: str
    n_trials: int
    # `_target_` configs as plain dicts (JSON-able: the pruner's is stored on every trial), or None.
    sampler: dict[str, Any] | None
    pruner: dict[str, Any] | None
    # The search space in Hydra's sweep grammar, key -> expression.
    params: dict[str, str]
    # Conditional branches: `parent=value` -> {key: expression} sampled only when the parent takes that value.
    conditional: dict[str, dict[str, str]]
    # Configurations tried right after the baseline (key -> value each), and an earlier study to start from.
    enqueue: list[dict[str, Any]]
    warm_start: dict[str, str] | None
    # Liveness: a running trial's worker beats every interval; a trial silent for longer than the grace is dead.
    heartbeat_interval_s: int
    heartbeat_grace_s: float
    # How long a worker keeps retrying a store that stopped answering before it stops with one line.
    store_retry_s: float
    # Wall time after which a worker asks for no more trials (counted from its command's start); None: no limit.
    timeout_s: float | None
    # Bounds on a trial's costs; a trial that breaks one is infeasible.
    constraints: tuple[Constraint, ...]

    @classmethod
    def from_hydra(cls, settings: Mapping[str, Any]) -> SweepSettings:
        """Check and convert the keyword arguments Hydra builds the sweeper with."""
        check_keys(settings)
        study_name, n_trials = settings.get("study_name"), settings.get("n_trials")
        named = isinstance(study_name, str) and study_name.strip() != ""
        require(named, "hydra.sweeper.study_name", study_name, "a non-empty name")
        require(is_int(n_trials) and n_trials >= 1, "hydra.sweeper.n_trials", n_trials, "an integer >= 1")
        interval, grace, retry = (settings.get(key) for key in LIVENESS_KEYS)
        key = "hydra.sweeper.heartbeat_interval_s"
        require(is_int(interval) and interval >= 1, key, interval, "an integer of seconds >= 1")
        # Optuna's RDB heartbeat takes whole seconds; a grace of two intervals or less fails a worker for one late
        # beat.
        longer = is_int(grace) and is_int(interval) and grace > 2 * interval
        key = "hydra.sweeper.heartbeat_grace_s"
        require(longer, key, grace, "an integer of seconds > 2 x heartbeat_interval_s")
        require(is_number(retry) and retry >= 0, "hydra.sweeper.store_retry_s", retry, "a number of seconds >= 0")
        timeout = settings.get("timeout_s")
        positive = timeout is None or (is_number(timeout) and timeout > 0)
        require(positive, "hydra.sweeper.timeout_s", timeout, "a number of seconds > 0, or null for no limit")
        constraints = settings.get("constraints")
        if isinstance(constraints, DictConfig):
            constraints = OmegaConf.to_container(constraints, resolve=True)
        return cls(
            study_name=study_name,
            storage=str(settings.get("storage")),
            n_trials=int(n_trials),
            sampler=plain_target(settings.get("sampler"), "sampler"),
            pruner=plain_target(settings.get("pruner"), "pruner"),
            params={str(key): str(value) for key, value in (settings.get("params") or {}).items()},
            conditional=plain_branches(settings.get("conditional")),
            enqueue=plain_configurations(settings.get("enqueue")),
            warm_start=plain_source(settings.get("warm_start"), str(settings.get("storage"))),
            heartbeat_interval_s=int(interval),
            heartbeat_grace_s=int(grace),
            store_retry_s=float(retry),
            timeout_s=None if timeout is None else float(timeout),
            constraints=parse_constraints(constraints),
        )


def check_keys(settings: Mapping[str, Any]) -> None:
    """Refuse a key the sweeper does not take (`n_trails: 60`), naming the nearest one it does."""
    known = [field.name for field in fields(SweepSettings)]
    for key in settings:
        if key not in known:
            nearest = difflib.get_close_matches(str(key), known, n=1, cutoff=0.0)
            value = settings[key]
            shown = OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value
            raise ConfigError(
                f"hydra.sweeper.{key}={shown!r}: not a setting of the sweeper; did you mean "
                f"hydra.sweeper.{nearest[0]}? (conf/hydra/sweeper/mnist_study.yaml lists them all)"
            )


def plain_branches(node: Any) -> dict[str, dict[str, str]]:
    """`hydra.sweeper.conditional` as plain strings: condition -> {key: expression}."""
    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else (node or {})
    allowed = (
        "a mapping of `parent=value` to {key: sweep expression}, e.g. optimizer=sgd: {optimizer.momentum: ...}"
    )
    require(isinstance(container, dict), "hydra.sweeper.conditional", container, allowed)
    for condition, entries in container.items():
        require(isinstance(entries, dict), f"hydra.sweeper.conditional.{condition}", entries, allowed)
    return {str(c): {str(k): str(v) for k, v in entries.items()} for c, entries in container.items()}


def plain_configurations(node: Any) -> list[dict[str, Any]]:
    """`hydra.sweeper.enqueue` as a list of plain `{override key: value}` dicts."""
    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, ListConfig) else (node or [])
    allowed = "a list of configurations, each {override key: value}, e.g. [{model.units: 1024, optimizer: adam}]"
    require(isinstance(container, list), "hydra.sweeper.enqueue", container, allowed)
    for index, entry in enumerate(container):
        require(isinstance(entry, dict) and entry != {}, f"hydra.sweeper.enqueue[{index}]", entry, allowed)
    return [{str(key): value for key, value in entry.items()} for entry in container]


def plain_source(node: Any, storage: str) -> dict[str, str] | None:
    """`hydra.sweeper.warm_start`: a study name (in this sweep's storage) or {study, storage}; None for none."""
    if node is None:
        return None
    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    source = {"study": container} if isinstance(container, str) else container
    allowed = "an earlier study's name, or {study: name, storage: url}"
    named = isinstance(source, dict) and isinstance(source.get("study"), str) and source["study"] != ""
    require(named and set(source) <= {"study", "storage"}, "hydra.sweeper.warm_start", container, allowed)
    return {"study": source["study"], "storage": str(source.get("storage") or storage)}


def plain_target(node: Any, kind: str) -> dict[str, Any] | None:
    """A `_target_` config node as a plain dict (Hydra hands the sweeper DictConfigs), or None."""
    if node is None:
        return None
    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    allowed = f"a `_target_` config of an optuna.{kind}s class with its arguments, or null"
    require(isinstance(container, dict) and "_target_" in container, f"hydra.sweeper.{kind}", container, allowed)
    return dict(container)


def check_algorithms(settings: SweepSettings) -> None:
    """The sampler and pruner must build Optuna ones (null: TPE / no pruning)."""
    import optuna
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from mnist_study.sweep.sampling import quiet_group_warning

    quiet_group_warning()
    bases = {"sampler": optuna.samplers.BaseSampler, "pruner": optuna.pruners.BasePruner}
    for kind in ALGORITHM_KINDS:
        config = getattr(settings, kind)
        if config is None:
            continue
        key = f"hydra.sweeper.{kind}._target_"
        try:
            built = instantiate(config)
        except InstantiationException as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = " ".join(lines).replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception", "")
            raise ConfigError(f"{key}={config['_target_']}: cannot be built ({reason})") from None
        require(isinstance(built, bases[kind]), key, config["_target_"], f"an optuna.{kind}s class")
        if kind == "sampler" and settings.constraints and not takes_constraints(built):
            bounds = ", ".join(str(constraint) for constraint in settings.constraints)
            raise ConfigError(
                f"{key}={config['_target_']}: does not take constraints, but hydra.sweeper.constraints has "
                f"{bounds}; use TPESampler, NSGAIISampler, NSGAIIISampler or GPSampler, or drop the constraints"
            )
