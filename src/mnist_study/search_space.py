"""The study's search space: Hydra's sweep grammar in, Optuna distributions out.

`choice(...)` becomes a categorical, `range(a, b[, step])` an int or float distribution whose high end is the last
element of the range (the stop is excluded, as in Python), `interval(a, b)` a float distribution (an int one under
`int(...)`), and `tag(log, ...)` makes it log-scaled. Parsing uses Hydra's own override parser, so a space reads
exactly like a command line. This module never imports TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

# Suffixes of the metrics a study may optimize, and which way is better.
_MAXIMIZED = ("accuracy",)
_MINIMIZED = ("loss",)


def direction_for(objective: str) -> str:
    """`maximize` for accuracies, `minimize` for losses; anything else is a configuration error."""
    if objective.endswith(_MAXIMIZED):
        return "maximize"
    if objective.endswith(_MINIMIZED):
        return "minimize"
    raise ValueError(f"objective {objective!r} is neither an accuracy nor a loss; cannot tell which way is better")


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

    def job_overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The overrides that reproduce a trial: its sampled params, then the fixed and plain ones."""
        sampled = [f"{key}={format_value(value)}" for key, value in params.items()]
        return [*sampled, *self.fixed.values(), *self.passthrough]

    def contains(self, values: Mapping[str, Any]) -> bool:
        """Whether every sampled parameter's value lies inside its distribution."""
        return all(in_distribution(values.get(key), dist) for key, dist in self.distributions.items())


def format_value(value: Any) -> str:
    """A parameter value as Hydra's override grammar reads it back (floats keep full precision)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_space(params: Mapping[str, str], arguments: Sequence[str]) -> SearchSpace:
    """Combine the configured space with the command line: a sweep expression replaces a parameter's space,
    a plain value fixes it, and every other override passes through to the jobs."""
    parser = OverridesParser.create()
    configured = {key: parser.parse_override(f"{key}={value}") for key, value in params.items()}
    given = parser.parse_overrides(list(arguments))
    sweeps = {key: override for key, override in configured.items() if override.is_sweep_override()}
    fixed: dict[str, str] = {
        key: override.input_line or "" for key, override in configured.items() if key not in sweeps
    }
    passthrough: list[str] = []
    for override in given:
        key = override.get_key_element()
        if override.is_sweep_override():
            sweeps[key] = override
            fixed.pop(key, None)
        elif key in sweeps or key in fixed:
            sweeps.pop(key, None)
            fixed[key] = override.input_line or ""
        else:
            passthrough.append(override.input_line or "")
    distributions = {key: to_distribution(override) for key, override in sweeps.items()}
    expressions = {key: override.input_line or "" for key, override in sweeps.items()}
    return SearchSpace(distributions, expressions, fixed, tuple(passthrough))


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
