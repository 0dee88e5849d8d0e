"""The sweeper's own settings, checked before any trial: misspelt keys, `timeout_s` and `constraints`.

The sweeper is built the way Hydra builds it (`hydra.utils.instantiate` of the composed `hydra.sweeper` node), so
a refused setting ends in the one line and exit status the command line shows. Nothing here trains or opens a
store.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig

from conftest import PROJECT_ROOT, composed
from mnist_study.checks import ConfigError
from mnist_study.sweep.constraints import Constraint, parse_constraints, takes_constraints
from mnist_study.sweep.settings import SweepSettings, check_algorithms


def sweeper_node(*overrides: str, config_dir: Path | None = None, experiment: str = "smoke") -> DictConfig:
    """The composed `hydra.sweeper` node of an experiment, as Hydra instantiates the sweeper from it."""
    arguments = [f"+experiments={experiment}", *overrides]
    if config_dir is not None:
        arguments.insert(0, f"hydra.searchpath=[file://{config_dir},file://{PROJECT_ROOT}]")
    return composed(*arguments, hydra=True).hydra.sweeper


def build_sweeper(node: DictConfig) -> object:
    return instantiate(node)


def refusal(node: DictConfig) -> str:
    """The one line the sweeper exits with when Hydra builds it from `node`."""
    with pytest.raises(SystemExit) as raised:
        build_sweeper(node)
    line = str(raised.value.code)
    assert line.startswith("error: ") and "\n" not in line, line
    return line


def test_the_configured_settings_build_a_sweeper_with_no_limit_and_no_constraints() -> None:
    sweeper = build_sweeper(sweeper_node())
    assert sweeper.settings.timeout_s is None and sweeper.settings.constraints == ()  # type: ignore[attr-defined]


def test_a_misspelt_key_on_the_command_line_is_refused_naming_the_nearest_key() -> None:
    line = refusal(sweeper_node("+hydra.sweeper.n_trails=60"))
    assert line.startswith("error: hydra.sweeper.n_trails=60: not a setting of the sweeper")
    assert "did you mean hydra.sweeper.n_trials?" in line
    line = refusal(sweeper_node("+hydra.sweeper.timeout=60"))
    assert "hydra.sweeper.timeout=60" in line and "did you mean hydra.sweeper.timeout_s?" in line


def test_a_misspelt_key_in_an_experiment_file_is_refused(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    smoke = (PROJECT_ROOT / "experiments" / "smoke.yaml").read_text()
    typo = smoke.replace("    n_trials: 3\n", "    n_trails: 60\n    prunner: null\n")
    assert typo != smoke
    (experiments / "typo.yaml").write_text(typo)
    line = refusal(sweeper_node(config_dir=tmp_path, experiment="typo"))
    assert "hydra.sweeper.n_trails=60" in line and "did you mean hydra.sweeper.n_trials?" in line


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("hydra.sweeper.timeout_s=0", "hydra.sweeper.timeout_s=0: must be a number of seconds > 0"),
        ("hydra.sweeper.timeout_s=soon", "hydra.sweeper.timeout_s='soon': must be a number"),
        ("+hydra.sweeper.constraints.n_parms='<= 5'", "constraints.n_parms: not a metric a constraint can bound"),
        ("+hydra.sweeper.constraints.n_params='< 5'", "constraints.n_params='< 5': must be an operator"),
        ("+hydra.sweeper.constraints.fit_seconds=fast", "constraints.fit_seconds='fast': must be an operator"),
    ],
)
def test_a_bad_time_budget_or_constraint_is_one_line(override: str, expected: str) -> None:
    assert expected in refusal(sweeper_node(override))


def test_the_nearest_known_metric_is_named_for_a_misspelt_constraint() -> None:
    with pytest.raises(ConfigError, match=r"did you mean fit_seconds\?"):
        parse_constraints({"fit_second": "<= 60"})


def test_constraints_parse_into_bounds() -> None:
    parsed = parse_constraints({"n_params": "<= 1e6", "fit_seconds": " >=2.5 "})
    assert parsed == (Constraint("n_params", "<=", 1e6), Constraint("fit_seconds", ">=", 2.5))
    # A bare number is a budget, an upper bound.
    assert parse_constraints({"fit_seconds": 60}) == (Constraint("fit_seconds", "<=", 60.0),)
    assert parse_constraints({}) == parse_constraints(None) == ()


def test_constraint_values_are_optuna_s_sign_convention() -> None:
    budget, floor = Constraint("n_params", "<=", 1000.0), Constraint("fit_seconds", ">=", 2.0)
    assert budget.value(999) == -1 and budget.value(1000) == 0 and budget.value(1001) == 1
    assert floor.value(3.0) == -1 and floor.value(1.0) == 1
    # A cost the job never recorded cannot be shown to hold.
    assert budget.value(None) == float("inf")
    assert str(budget) == "n_params <= 1000"


def test_only_constraint_aware_samplers_take_constraints() -> None:
    assert takes_constraints(optuna.samplers.TPESampler())
    assert takes_constraints(optuna.samplers.NSGAIISampler())
    assert not takes_constraints(optuna.samplers.RandomSampler())
    assert not takes_constraints(optuna.samplers.CmaEsSampler())


def test_a_sampler_that_cannot_take_constraints_is_refused_before_any_trial() -> None:
    constrained = "+hydra.sweeper.constraints.n_params='<= 500000'"
    settings = build_sweeper(sweeper_node(constrained)).settings  # type: ignore[attr-defined]
    check_algorithms(settings)  # TPE, the configured sampler, takes them.
    random = build_sweeper(
        sweeper_node(constrained, "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler")
    ).settings  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as raised:
        check_algorithms(random)
    line = str(raised.value)
    assert "optuna.samplers.RandomSampler: does not take constraints" in line and "n_params <= 500000" in line
    assert "\n" not in line


def test_settings_without_constraints_take_any_sampler() -> None:
    node = sweeper_node("hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler")
    settings: SweepSettings = build_sweeper(node).settings  # type: ignore[attr-defined]
    check_algorithms(settings)
