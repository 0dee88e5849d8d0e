"""The study's search space: Hydra's sweep grammar in, Optuna distributions out.

`choice(...)` becomes a categorical, `range(a, b[, step])` an int or float distribution whose high end is the last
element of the range (the stop is excluded, as in Python), `interval(a, b)` a float distribution (an int one under
`int(...)`), and `tag(log, ...)` makes it log-scaled. Parsing uses Hydra's own override parser, so a space reads
exactly like a command line. Before the first trial, `check_space` tries every value the space can produce
against the job's own checks. This module never imports TensorFlow.

A conditional branch (`hydra.sweeper.conditional`, `"optimizer=sgd": {key: expression, ...}`) holds parameters that
exist only in trials where its parent parameter takes that value; an entry for a key of the flat space replaces
that key's space in those trials. A trial samples its parents first, then every other parameter from the branch
its parents chose, so its params hold only what it ran with.

A plain `key=value` on the command line fixes that key wherever the space has it: in `params`, in any branch, or
both. The user's value wins over every range (even one it lies outside), and is recorded on each trial it reaches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import Trial

from mnist_study.checks import CHECKS, ConfigError, check_tracking
from mnist_study.errors import first_line

SPACE_GRAMMAR = (
    "choice(a, b, ...), range(start, stop[, step]), interval(low, high) with low < high, int(...), tag(log, ...)"
)


@dataclass(frozen=True)
class Branch:
    """Parameters sampled only in trials whose `parent` parameter took `value` (`optimizer=sgd`)."""

    parent: str
    value: Any
    distributions: dict[str, BaseDistribution]
    expressions: dict[str, str]
    # Keys of this branch that the command line fixed (key -> override string), for this branch's trials only.
    fixed: dict[str, str] = field(default_factory=dict)

    @property
    def condition(self) -> str:
        return f"{self.parent}={format_value(self.value)}"


@dataclass(frozen=True)
class SearchSpace:
    """What the sweeper samples, what it fixes, and what it passes to every job unchanged."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    # The sweep expressions the distributions came from (key -> override string), for people to read.
    expressions: dict[str, str] = field(default_factory=dict)
    # Parameters of the configured space that the command line pinned to one value (key -> override string).
    fixed: dict[str, str] = field(default_factory=dict)
    # Every other plain override of the command line, passed to each job as written.
    passthrough: tuple[str, ...] = ()
    # Conditional branches whose parent is still sampled (a fixed parent's branch is merged into the flat space).
    branches: tuple[Branch, ...] = ()

    def sample(self, trial: Trial) -> dict[str, Any]:
        """Suggest a trial's parameters: the branches' parents first, then every other parameter from the branch
        its parent chose (or the flat space), so an sgd trial has a momentum and an adam trial none."""
        parents = {branch.parent for branch in self.branches}
        params = {key: suggest(trial, key, dist) for key, dist in self.distributions.items() if key in parents}
        for key, distribution in self.distributions_for(params).items():
            if key not in params:
                params[key] = suggest(trial, key, distribution)
        return params

    def distributions_for(self, values: Mapping[str, Any]) -> dict[str, BaseDistribution]:
        """The distributions of a trial whose parents hold `values`: the flat ones, replaced and extended by the
        branch (if any) each parent's value chooses."""
        distributions = dict(self.distributions)
        for branch in self.chosen_branches(values):
            distributions.update(branch.distributions)
        return distributions

    def fixed_for(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The fixed overrides of a trial whose parents hold `values`: every trial's, then its branches' own."""
        fixed = dict(self.fixed)
        for branch in self.chosen_branches(values):
            fixed.update(branch.fixed)
        return fixed

    def chosen_branches(self, values: Mapping[str, Any]) -> list[Branch]:
        """The branches whose parent takes, in `values`, the branch's value."""
        return [
            branch
            for branch in self.branches
            if branch.parent in values and same_value(values[branch.parent], branch.value)
        ]

    def described(self) -> dict[str, str]:
        """Every expression in force; a branch's as `<key> when <parent> is <value>` (no `=` in MLflow tags)."""
        described = {**self.expressions, **self.fixed}
        for branch in self.branches:
            for key, expression in {**branch.expressions, **branch.fixed}.items():
                described[f"{key} when {branch.parent} is {format_value(branch.value)}"] = expression
        return described

    def job_overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The overrides that reproduce a trial: its sampled params, then the fixed and plain ones."""
        sampled = [f"{key}={format_value(value)}" for key, value in params.items()]
        return [*sampled, *self.fixed_for(params).values(), *self.passthrough]

    def contains(self, values: Mapping[str, Any]) -> bool:
        """Whether every sampled parameter's value lies inside its distribution."""
        return all(in_distribution(values.get(key), dist) for key, dist in self.distributions.items())


def suggest(trial: Trial, key: str, distribution: BaseDistribution) -> Any:
    """`trial.suggest_*` for an Optuna distribution (an enqueued value, if the trial has one, is returned)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(key, distribution.choices)
    if isinstance(distribution, IntDistribution):
        low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
        return trial.suggest_int(key, low, high, step=step, log=log)
    if isinstance(distribution, FloatDistribution):
        low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
        return trial.suggest_float(key, low, high, step=step, log=log)
    raise TypeError(f"{key}: unsupported distribution {distribution!r}")


def same_value(sampled: Any, wanted: Any) -> bool:
    """Whether a sampled value is a branch's condition value (`true` is not 1)."""
    return type(sampled) is type(wanted) and sampled == wanted


def format_value(value: Any) -> str:
    """A parameter value as Hydra's override grammar reads it back (floats keep full precision)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_space(
    params: Mapping[str, str],
    arguments: Sequence[str],
    conditional: Mapping[str, Mapping[str, str]] | None = None,
) -> SearchSpace:
    """Combine the configured space with the command line: a sweep expression replaces a parameter's space,
    a plain value fixes it (in `params` and in every branch that has it), and every other override passes through
    to the jobs. A branch whose parent the command line narrowed away is dropped; one whose parent it fixed to the
    branch's value joins the flat space."""
    parsed_branches = parse_branches(conditional or {})
    sweeps, fixed, pinned, passthrough = combine_overrides(params, arguments, parsed_branches)
    distributions = {key: to_distribution(override) for key, override in sweeps.items()}
    expressions = {key: override.input_line or "" for key, override in sweeps.items()}
    live, merged = [], []
    for branch in (pin_branch(branch, pinned) for branch in parsed_branches):
        if branch.parent in distributions:
            if in_distribution(branch.value, distributions[branch.parent]):
                live.append(branch)
        elif fixed.get(branch.parent, pinned.get(branch.parent)) == branch.condition:
            # The command line chose the branch for every trial: its parameters are plain parameters now.
            for key in branch.distributions:
                fixed.pop(key, None)
            distributions.update(branch.distributions)
            expressions.update(branch.expressions)
            merged.append(branch)
    everywhere = pinned_everywhere(params, pinned, live, merged)
    fixed.update(everywhere)
    live = [replace(b, fixed={k: v for k, v in b.fixed.items() if k not in everywhere}) for b in live]
    return SearchSpace(distributions, expressions, fixed, tuple(passthrough), tuple(live))


def combine_overrides(
    params: Mapping[str, str], arguments: Sequence[str], branches: Sequence[Branch]
) -> tuple[dict[str, Override], dict[str, str], dict[str, str], list[str]]:
    """The configured space and the command line, key by key: the sweep expressions in force, the configured plain
    values, the plain values the command line gave for a key of the space or of a branch (they win over every
    range), and the other overrides, passed through to the jobs."""
    parser = OverridesParser.create()
    configured = {key: parser.parse_override(f"{key}={value}") for key, value in params.items()}
    sweeps = {key: override for key, override in configured.items() if override.is_sweep_override()}
    fixed = {key: override.input_line or "" for key, override in configured.items() if key not in sweeps}
    in_branches = {key for branch in branches for key in branch.distributions}
    pinned: dict[str, str] = {}
    passthrough: list[str] = []
    for override in parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        if override.is_sweep_override():
            sweeps[key] = override
            fixed.pop(key, None)
        elif key in sweeps or key in fixed or key in in_branches:
            sweeps.pop(key, None)
            fixed.pop(key, None)
            pinned[key] = override.input_line or ""
        else:
            passthrough.append(override.input_line or "")
    return sweeps, fixed, pinned, passthrough


def pinned_everywhere(
    params: Mapping[str, str], pinned: Mapping[str, str], live: Sequence[Branch], merged: Sequence[Branch]
) -> dict[str, str]:
    """The command line's values that hold in every trial: for a key of `params`, of a branch every trial takes,
    or of no branch left (the checks then refuse it where the config lacks the key). The others hold in the
    trials of the live branches that have their key."""
    in_live = {key for branch in live for key in branch.fixed}
    in_merged = {key for branch in merged for key in branch.fixed}
    return {key: line for key, line in pinned.items() if key in params or key in in_merged or key not in in_live}


def pin_branch(branch: Branch, pinned: Mapping[str, str]) -> Branch:
    """The branch with the command line's fixed values in place of its ranges for the same keys."""
    kept = [key for key in branch.distributions if key not in pinned]
    return replace(
        branch,
        distributions={key: branch.distributions[key] for key in kept},
        expressions={key: branch.expressions[key] for key in kept},
        fixed={key: pinned[key] for key in branch.distributions if key in pinned},
    )


def parse_branches(conditional: Mapping[str, Mapping[str, str]]) -> list[Branch]:
    """`{"optimizer=sgd": {"optimizer.momentum": "interval(0, 0.99)"}}` as branches; a condition must be one
    plain `key=value` and every entry a sweep expression."""
    parser = OverridesParser.create()
    branches = []
    for condition, entries in conditional.items():
        try:
            parent = parser.parse_override(condition)
        except Exception as error:  # Hydra's grammar errors: say which condition.
            text = f"hydra.sweeper.conditional: {condition!r} is not a condition key=value ({error})"
            raise ConfigError(text) from None
        if parent.is_sweep_override() or parent.value() is None:
            raise ConfigError(f"hydra.sweeper.conditional: {condition!r} must be one value, e.g. optimizer=sgd")
        distributions, expressions = {}, {}
        for key, expression in (entries or {}).items():
            line = f"{key}={expression}"
            override = parser.parse_override(line)
            if not override.is_sweep_override():
                raise ConfigError(f"{condition}: {line}: a branch holds sweep expressions; use {SPACE_GRAMMAR}")
            try:
                distributions[key] = to_distribution(override)
            except (ValueError, TypeError) as error:
                raise ConfigError(f"{condition}: {line}: cannot be an Optuna distribution ({error})") from None
            expressions[key] = line
        branches.append(Branch(parent.get_key_element(), parent.value(), distributions, expressions))
    return branches


def to_distribution(override: Override) -> BaseDistribution:
    """One sweep expression as an Optuna distribution."""
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        if log:
            raise ValueError(f"{override.input_line}: tag(log, ...) has no meaning for a choice")
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        return _range_distribution(override, value, log)
    if isinstance(value, IntervalSweep):
        if value.start is None or value.end is None:
            raise ValueError(f"{override.input_line}: an interval needs both ends")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(
        f"{override.input_line}: unsupported sweep; use choice, range, interval, int() or tag(log, ...)"
    )


def _range_distribution(override: Override, value: RangeSweep, log: bool) -> BaseDistribution:
    """`range(a, b, step)` includes a and excludes b, as in Python; Optuna's high end is the last element."""
    if value.shuffle:
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    elements = list(value.range())
    if not elements:
        raise ValueError(f"{override.input_line}: the range is empty")
    if log and value.step != 1:
        raise ValueError(f"{override.input_line}: a log-scaled range must have step 1")
    if all(isinstance(item, int) for item in (value.start, value.stop, value.step)):
        return IntDistribution(int(elements[0]), int(elements[-1]), log=log, step=int(value.step))
    step = None if log else float(value.step)
    return FloatDistribution(float(elements[0]), float(elements[-1]), log=log, step=step)


def in_distribution(value: Any, distribution: BaseDistribution) -> bool:
    """Whether `value` is one the distribution could sample (used to decide whether the baseline is inside)."""
    if isinstance(distribution, CategoricalDistribution):
        return any(type(value) is type(choice) and value == choice for choice in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    if isinstance(distribution, IntDistribution):
        inside = isinstance(value, int) and distribution.low <= value <= distribution.high
        return inside and (value - distribution.low) % distribution.step == 0
    if isinstance(distribution, FloatDistribution):
        inside = distribution.low <= value <= distribution.high
        if distribution.step is None:
            return inside
        steps = (value - distribution.low) / distribution.step
        return inside and math.isclose(steps, round(steps), abs_tol=1e-8)
    return False


# ---------------------------------------------------------------------------------------------------------------
# Checks before the first trial: every expression is a distribution, and every value it can produce a valid config.


def check_space(
    params: Mapping[str, str],
    arguments: Sequence[str],
    groups: Mapping[str, Sequence[str]],
    compose: Callable[[list[str]], DictConfig],
    conditional: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Raise ConfigError for the first expression or value of the space that cannot make a valid job config.

    `compose(overrides)` builds a job's config the way the launcher will. Each parameter is tried alone at the ends
    of its range (and at every choice of a categorical), so the message names the parameter and value at fault;
    a branch's parameters are tried in a config where their parent takes the branch's value.
    """
    check_expressions(params, arguments)
    check_conditions(params, conditional or {})
    space = parse_space(params, arguments, conditional)
    base: DictConfig | None = None  # Composed on first need, then shared by every plain key.
    for key, distribution in space.distributions.items():
        for value in values_to_try(distribution):
            expression = space.expressions[key]
            try:
                if key in groups:
                    # A group's option is a different file: only Hydra can say whether it composes.
                    config = compose(space.job_overrides({key: value}))
                else:
                    # A plain key is set on one composed config: a compose costs about as much as the checks of
                    # every value together.
                    base = base if base is not None else compose(space.job_overrides({}))
                    config = with_value(base, key, value)
            except Exception as error:  # Hydra raises several types; each means this value cannot compose.
                raise ConfigError(composition_error(expression, key, value, groups, error)) from None
            check_job_config(config, expression, value)
    for branch in space.branches:
        check_branch(space, branch, groups, compose)


def check_conditions(params: Mapping[str, str], conditional: Mapping[str, Mapping[str, str]]) -> None:
    """Every branch's parent is a parameter of the configured space that can take the branch's value."""
    configured = parse_space(params, [])
    for branch in parse_branches(conditional):
        if branch.parent in configured.distributions:
            parent = configured.distributions[branch.parent]
            if not in_distribution(branch.value, parent):
                raise ConfigError(
                    f"hydra.sweeper.conditional: {branch.condition}: {branch.parent} never takes "
                    f"{format_value(branch.value)} ({configured.expressions[branch.parent]})"
                )
        elif branch.parent not in configured.fixed:
            raise ConfigError(
                f"hydra.sweeper.conditional: {branch.condition}: {branch.parent} is not a parameter of "
                f"hydra.sweeper.params; a branch hangs on one of {', '.join(configured.distributions)}"
            )


def check_branch(
    space: SearchSpace,
    branch: Branch,
    groups: Mapping[str, Sequence[str]],
    compose: Callable[[list[str]], DictConfig],
) -> None:
    """A branch's parameters, each at the ends of its range, in a config where the parent takes its value."""
    parent = {branch.parent: branch.value}
    base: DictConfig | None = None
    for key, distribution in branch.distributions.items():
        expression = f"{branch.condition}: {branch.expressions[key]}"
        for value in values_to_try(distribution):
            try:
                if key in groups:
                    config = compose(space.job_overrides({**parent, key: value}))
                else:
                    base = base if base is not None else compose(space.job_overrides(parent))
                    config = with_value(base, key, value)
            except Exception as error:  # As above: this value cannot compose.
                raise ConfigError(composition_error(expression, key, value, groups, error)) from None
            check_job_config(config, expression, value)


def check_expressions(params: Mapping[str, str], arguments: Sequence[str]) -> None:
    """Every sweep expression, configured or given on the command line, must be an Optuna distribution."""
    parser = OverridesParser.create()
    # The command line replaces a configured expression for the same key, as in `parse_space`.
    lines = {key: f"{key}={value}" for key, value in params.items()}
    for line in arguments:
        lines[parser.parse_override(line).get_key_element()] = line
    for line in lines.values():
        override = parser.parse_override(line)
        if not override.is_sweep_override():
            continue
        try:
            to_distribution(override)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{line}: cannot be an Optuna distribution ({error}); use {SPACE_GRAMMAR}") from None


def values_to_try(distribution: BaseDistribution) -> list[Any]:
    """Every choice of a categorical; both ends of a range."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def check_job_config(config: DictConfig, expression: str, value: Any) -> None:
    """The job checks on one trial's config; the store was checked once already, on the base config."""
    try:
        for check in CHECKS:
            if check is not check_tracking:
                check(config)
    except ConfigError as error:
        raise ConfigError(f"{expression}: the value {format_value(value)} gives {error}") from None


def with_value(config: DictConfig, key: str, value: Any) -> DictConfig:
    """A copy of `config` with the existing `key` set to `value`, as the override `key=value` would set it."""
    missing = object()
    if OmegaConf.select(config, key, default=missing, throw_on_missing=False) is missing:
        raise ValueError(f"Could not override '{key}'. Key '{key}' is not in the config")
    changed = copy.deepcopy(config)  # DictConfig.copy() shares nested nodes, so it would change `config` too.
    OmegaConf.update(changed, key, value, merge=False)
    return changed


def composition_error(
    expression: str, key: str, value: Any, groups: Mapping[str, Sequence[str]], error: Exception
) -> str:
    """One line for a trial config Hydra cannot compose: an option a group lacks, or a key the config lacks."""
    if key in groups:
        return f"{expression}: {key}={format_value(value)} is not an option; one of {', '.join(groups[key])}"
    reason = first_line(error)
    return (
        f"{expression}: {key} is not a key of the config; sample a key it has (e.g. model.units) or a config "
        f"group ({', '.join(sorted(groups))}) [{reason}]"
    )
