"""Conditional parameters: a branch's parameters exist only in trials whose parent takes the branch's value.

Parsing, sampling on a real Optuna study and the checks run in this process (no TF); one end-to-end sweep on a
small MNIST subset runs `python src/run.py` with an experiment file written to a temporary config folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from conftest import PROJECT_ROOT, run_cli, small_config, store_overrides
from mnist_study.checks import ConfigError
from mnist_study.sweep.space import check_space, parse_space
from mnist_study.sweep.storage import open_storage

PARAMS = {
    "optimizer": "choice(rmsprop, adam, sgd, adamw)",
    "optimizer.learning_rate": "tag(log, interval(1e-4, 1e-2))",
    "model.units": "choice(32, 64)",
}
BRANCHES = {
    "optimizer=sgd": {
        "optimizer.learning_rate": "tag(log, interval(0.05, 0.3))",
        "optimizer.momentum": "interval(0, 0.99)",
        "optimizer.nesterov": "choice(true, false)",
    },
    "optimizer=adamw": {"optimizer.weight_decay": "tag(log, interval(1e-6, 1e-2))"},
}
GROUPS = {"optimizer": ["adam", "adamw", "nadam", "rmsprop", "sgd"], "model": ["mlp"], "data": ["mnist"]}


def composer(*fixed: str) -> Callable[[list[str]], DictConfig]:
    return lambda overrides: small_config(*fixed, *overrides)


def test_an_sgd_trial_samples_its_branch_and_an_adam_trial_has_none_of_it() -> None:
    space = parse_space(PARAMS, [], BRANCHES)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    by_optimizer: dict[str, list[dict]] = {}
    for _ in range(40):
        trial = study.ask()
        params = space.sample(trial)
        by_optimizer.setdefault(params["optimizer"], []).append(params)
    assert set(by_optimizer) == {"rmsprop", "adam", "sgd", "adamw"}
    for params in by_optimizer["sgd"]:
        assert {"optimizer.momentum", "optimizer.nesterov"} <= set(params)
        assert 0.05 <= params["optimizer.learning_rate"] <= 0.3  # The branch's range, not the flat one.
    for name in ("rmsprop", "adam"):
        for params in by_optimizer[name]:
            assert set(params) == set(PARAMS) and params["optimizer.learning_rate"] <= 1e-2
    assert all("optimizer.weight_decay" in params for params in by_optimizer["adamw"])


def test_narrowing_the_parent_keeps_the_branches_that_remain_and_fixing_it_merges_its_branch() -> None:
    narrowed = parse_space(PARAMS, ["optimizer=choice(sgd, adam)"], BRANCHES)
    assert [branch.condition for branch in narrowed.branches] == ["optimizer=sgd"]
    fixed = parse_space(PARAMS, ["optimizer=sgd"], BRANCHES)
    assert fixed.branches == () and fixed.fixed["optimizer"] == "optimizer=sgd"
    assert {"optimizer.momentum", "optimizer.nesterov"} <= set(fixed.distributions)
    assert fixed.distributions["optimizer.learning_rate"].low == 0.05
    other = parse_space(PARAMS, ["optimizer=adam"], BRANCHES)
    assert other.branches == () and "optimizer.momentum" not in other.distributions


@pytest.mark.parametrize(
    ("branches", "message"),
    [
        ({"optimizer=lbfgs": {"optimizer.momentum": "interval(0, 1)"}}, "optimizer never takes lbfgs"),
        ({"train.batch_size=64": {"optimizer.momentum": "interval(0, 1)"}}, "not a parameter of"),
        ({"optimizer=sgd": {"optimizer.momentum": "interval(1, 0)"}}, "interval"),
        ({"optimizer=sgd": {"optimizer.momentum": "0.9"}}, "a branch holds sweep expressions"),
        ({"optimizer=sgd": {"optimizer.momentom": "interval(0, 0.9)"}}, "optimizer.momentom is not a key"),
        ({"optimizer=adam": {"optimizer.momentum": "interval(0, 0.9)"}}, "optimizer=adam: optimizer.momentum"),
        ({"optimizer=sgd": {"optimizer.momentum": "interval(0, 1.5)"}}, None),
    ],
)
def test_a_bad_branch_is_refused_in_one_line_before_any_trial(branches: dict, message: str | None) -> None:
    if message is None:  # A momentum of 1.5 builds (Keras accepts it): the checks do not invent limits.
        check_space(PARAMS, [], GROUPS, composer(), branches)
        return
    with pytest.raises(ConfigError, match=message) as raised:
        check_space(PARAMS, [], GROUPS, composer(), branches)
    assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_a_sweep_with_branches_runs_each_trial_with_its_branch_s_values(tmp_path: Path) -> None:
    experiments = tmp_path / "config" / "experiments"
    experiments.mkdir(parents=True)
    smoke = (PROJECT_ROOT / "experiments" / "smoke.yaml").read_text()
    smoke = smoke.replace("optimizer: choice(rmsprop, adam)", "optimizer: choice(adam, sgd)")
    assert "choice(adam, sgd)" in smoke
    branch = "\n".join(f"        {key}: {value}" for key, value in BRANCHES["optimizer=sgd"].items())
    (experiments / "branches.yaml").write_text(f"{smoke}    conditional:\n      optimizer=sgd:\n{branch}\n")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    arguments = ["--config-dir", str(tmp_path / "config"), "+experiments=branches", *store_overrides(tmp_path)]
    result = run_cli([*arguments, f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=6"])
    assert result.returncode == 0, result.stdout + result.stderr

    trials = optuna.load_study(study_name="smoke", storage=open_storage(storage)).trials
    assert {trial.params["optimizer"] for trial in trials} == {"adam", "sgd"}
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for trial in trials:
        sgd = trial.params["optimizer"] == "sgd"
        assert ("optimizer.momentum" in trial.params) == sgd, trial.params
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        # The MLflow params are what the job ran with: the sampled learning rate, and sgd's momentum.
        ran = run.data.params
        assert float(ran["optimizer.learning_rate"]) == pytest.approx(trial.params["optimizer.learning_rate"])
        if sgd:
            assert 0.05 <= trial.params["optimizer.learning_rate"] <= 0.3
            assert float(ran["optimizer.momentum"]) == pytest.approx(trial.params["optimizer.momentum"])
        else:
            assert "optimizer.momentum" not in run.data.params

    # A branch on a value the parent never takes: one line, exit 1, no study written.
    (experiments / "bad.yaml").write_text(f"{smoke}    conditional:\n      optimizer=rmsprop:\n{branch}\n")
    other = tmp_path / "other.db"
    refused = run_cli(["--config-dir", str(tmp_path / "config"), "+experiments=bad", *store_overrides(tmp_path),
                       f"hydra.sweeper.storage=sqlite:///{other}"])  # fmt: skip
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith("error: "), (
        refused.stderr
    )
    assert "optimizer never takes rmsprop" in refused.stderr and not other.exists()
