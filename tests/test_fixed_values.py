"""A value fixed on the command line wins: in `params`, in a branch, and outside the branch's range.

The fast tests sample real Optuna trials from the parsed space and read what each trial would run with (its job's
overrides) and what it records as fixed, without training. One slow test runs the issue's command on a small
subset: `sweep optimizer=sgd optimizer.learning_rate=1e12`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from conftest import composed, run_cli, small_config, store_overrides
from mnist_study.sweep.ledger import TrialLedger
from mnist_study.sweep.schema import fixed_attrs
from mnist_study.sweep.space import SearchSpace, check_space, parse_space
from mnist_study.sweep.sweeper import baseline_values, enqueue_baseline, fixed_lines

GROUPS = {"optimizer": ["adam", "adamw", "nadam", "rmsprop", "sgd"], "model": ["mlp"], "data": ["mnist"]}


def sweep_config(*overrides: str) -> DictConfig:
    """The default study's composed config (with its `hydra` node), as the sweeper gets it."""
    return composed("+experiments=sweep", *overrides, hydra=True)


# The default study's space and branches, as `experiments/sweep.yaml` gives them.
PARAMS: dict[str, str] = OmegaConf.to_container(sweep_config().hydra.sweeper.params)  # type: ignore[assignment]
BRANCHES: dict[str, dict[str, str]] = OmegaConf.to_container(sweep_config().hydra.sweeper.conditional)  # type: ignore[assignment]


def ran_with(space: SearchSpace, trials: int = 40) -> list[tuple[dict[str, Any], dict[str, str], dict[str, str]]]:
    """For `trials` trials sampled on a real study: the sampled params, the job's overrides as key -> value, and
    the user attrs that record the fixed values."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    parser = OverridesParser.create()
    sampled = []
    for _ in range(trials):
        params = space.sample(study.ask())
        lines = space.job_overrides(params)
        keys = [parser.parse_override(line).get_key_element() for line in lines]
        assert len(keys) == len(set(keys)), f"a key is given twice: {lines}"
        overrides = {key: line.split("=", 1)[1] for key, line in zip(keys, lines, strict=True)}
        sampled.append((params, overrides, fixed_attrs(space.fixed_for(params))))
    return sampled


def test_a_fixed_key_of_params_holds_in_every_trial_and_is_recorded() -> None:
    space = parse_space(PARAMS, ["optimizer=adam", "optimizer.learning_rate=0.05"], BRANCHES)
    for params, overrides, recorded in ran_with(space):
        assert "optimizer.learning_rate" not in params and "optimizer" not in params
        assert overrides["optimizer.learning_rate"] == "0.05" and overrides["optimizer"] == "adam"
        assert recorded == {"fixed.optimizer": "adam", "fixed.optimizer.learning_rate": "0.05"}


def test_a_fixed_key_beats_the_branch_the_fixed_parent_chose() -> None:
    # The issue's case: sgd's branch has its own learning-rate range; the command line's rate still runs.
    space = parse_space(PARAMS, ["optimizer=sgd", "optimizer.learning_rate=0.02"], BRANCHES)
    assert "optimizer.learning_rate" not in space.distributions
    for params, overrides, recorded in ran_with(space):
        assert "optimizer.learning_rate" not in params and "optimizer.momentum" in params
        assert overrides["optimizer.learning_rate"] == "0.02"
        assert recorded["fixed.optimizer.learning_rate"] == "0.02"


def test_a_fixed_key_beats_every_branch_while_the_parent_is_still_sampled() -> None:
    space = parse_space(PARAMS, ["optimizer.learning_rate=0.02"], BRANCHES)
    seen = set()
    for params, overrides, recorded in ran_with(space, trials=60):
        seen.add(params["optimizer"])
        assert "optimizer.learning_rate" not in params
        assert overrides["optimizer.learning_rate"] == "0.02"
        assert recorded == {"fixed.optimizer.learning_rate": "0.02"}
    assert {"sgd", "adam"} <= seen


def test_a_key_only_a_branch_has_is_fixed_in_that_branch_s_trials_only() -> None:
    space = parse_space(PARAMS, ["optimizer.momentum=0.5"], BRANCHES)
    seen = set()
    for params, overrides, recorded in ran_with(space, trials=60):
        seen.add(params["optimizer"])
        assert "optimizer.momentum" not in params
        if params["optimizer"] == "sgd":
            assert "optimizer.nesterov" in params  # The rest of the branch is still sampled.
            assert overrides["optimizer.momentum"] == "0.5"
            assert recorded == {"fixed.optimizer.momentum": "0.5"}
        else:
            # An adam trial has no momentum to set: giving it one would not even compose.
            assert "optimizer.momentum" not in overrides and recorded == {}
    assert "sgd" in seen and len(seen) > 1
    assert space.described()["optimizer.momentum when optimizer is sgd"] == "optimizer.momentum=0.5"


def composer(*fixed: str) -> Callable[[list[str]], DictConfig]:
    return lambda overrides: small_config(*fixed, *overrides)


def test_a_fixed_value_outside_the_branch_s_range_runs_as_asked_and_the_sweep_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    arguments: Sequence[str] = ["optimizer=sgd", "optimizer.learning_rate=1e12"]
    # Every value the space can produce is checked first; the user's own value is not refused for its size.
    check_space(PARAMS, arguments, GROUPS, composer(*arguments), BRANCHES)
    space = parse_space(PARAMS, arguments, BRANCHES)
    for _, overrides, recorded in ran_with(space, trials=10):
        assert overrides["optimizer.learning_rate"] == "1e12"
        assert recorded["fixed.optimizer.learning_rate"] == "1e12"
    assert fixed_lines(space) == ["fixed in every trial: optimizer=sgd optimizer.learning_rate=1e12"]
    # The explanation agrees with what runs: the rate is not a sampled parameter the baseline could fall outside.
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    config = sweep_config(*arguments)
    with caplog.at_level("INFO", logger="mnist_study.sweep"):
        enqueued = enqueue_baseline(TrialLedger(study, storage), space, baseline_values(config, space))
    assert "learning_rate" not in caplog.text
    assert enqueued and "optimizer.learning_rate" not in study.get_trials()[0].params


@pytest.mark.slow
def test_the_issue_s_command_runs_every_trial_at_the_fixed_rate_and_finishes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    command = ["sweep", "optimizer=sgd", "optimizer.learning_rate=1e12", "hydra.sweeper.n_trials=2"]
    small = ["data.train_subset=300", "train.epochs=1", "tracking.plots=false"]
    result = run_cli([*command, *small, *store_overrides(tmp_path), f"hydra.sweeper.storage={storage}"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert "fixed in every trial: optimizer=sgd optimizer.learning_rate=1e12 train.epochs=1" in result.stdout
    assert "outside the search space" not in output

    trials = optuna.load_study(study_name="mnist-mlp", storage=storage).get_trials()
    assert len(trials) == 2
    assert {trial.state for trial in trials} <= {optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for trial in trials:
        assert "optimizer.learning_rate" not in trial.params and "optimizer.momentum" in trial.params
        assert trial.user_attrs["fixed.optimizer.learning_rate"] == "1e12"
        ran = client.get_run(trial.user_attrs["mlflow_run_id"]).data.params
        assert float(ran["optimizer.learning_rate"]) == 1e12
        assert ran["optimizer.name"] == "sgd"
