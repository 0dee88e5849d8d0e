"""The frontier study's space (experiments/frontier.yaml): it composes, contains the baseline, every value it can
produce passes the job's checks, and depth is a conditional parent: a trial holds the widths of its own depth only.
No training: the space is sampled on a real Optuna study in memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from conftest import PROJECT_ROOT, composed, run_cli, store_overrides
from mnist_study.checks import ConfigError
from mnist_study.report.registry import write_champion_experiment
from mnist_study.report.results import Row
from mnist_study.report.selection import Candidate
from mnist_study.report.stats import Summary
from mnist_study.sweep.space import SearchSpace, check_space, parse_space
from mnist_study.sweep.storage import open_storage
from mnist_study.sweep.sweeper import baseline_values

EXPERIMENT = "+experiments=frontier"


def frontier_config(*overrides: str) -> DictConfig:
    return composed(EXPERIMENT, *overrides, hydra=True)


@pytest.fixture(scope="module")
def frontier() -> DictConfig:
    return frontier_config()


def settings(config: DictConfig) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    sweeper = config.hydra.sweeper
    params: Any = OmegaConf.to_container(sweeper.params)
    conditional: Any = OmegaConf.to_container(sweeper.conditional)
    return params, conditional


def groups(config: DictConfig) -> dict[str, list[str]]:
    """Each config group the job chose, with its options (the files of its folder), as the sweeper lists them."""
    folders = {"experiments": PROJECT_ROOT / "experiments"}
    return {
        group: sorted(path.stem for path in folders.get(group, PROJECT_ROOT / "conf" / group).glob("*.yaml"))
        for group in config.hydra.runtime.choices
        if not group.startswith("hydra/")
    }


def composer() -> Callable[[list[str]], DictConfig]:
    def compose_trial(overrides: list[str]) -> DictConfig:
        return composed(EXPERIMENT, *overrides)

    return compose_trial


def test_the_frontier_experiment_composes_its_own_study_and_store(frontier: DictConfig) -> None:
    assert frontier.hydra.sweeper.study_name == "frontier"
    assert frontier.tracking.experiment == "frontier"
    first_line = (PROJECT_ROOT / "experiments" / "frontier.yaml").read_text().splitlines()[1]
    assert first_line.startswith("# python src/run.py -m frontier")


def test_the_baseline_lies_inside_the_space_so_it_is_trial_0(frontier: DictConfig) -> None:
    params, conditional = settings(frontier)
    space = parse_space(params, [], conditional)
    baseline = baseline_values(frontier, space)
    assert baseline["model.layers"] == 1 and baseline["schedule"] == "constant"
    assert space.contains(baseline)


def test_every_value_of_the_space_and_of_each_depth_passes_the_job_checks(frontier: DictConfig) -> None:
    params, conditional = settings(frontier)
    check_space(params, [], groups(frontier), composer(), conditional)


def sampled(space: SearchSpace, trials: int = 90) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [space.sample(study.ask()) for _ in range(trials)]


def test_a_trial_holds_the_widths_of_its_own_depth_only(frontier: DictConfig) -> None:
    params, conditional = settings(frontier)
    by_depth: dict[int, list[dict[str, Any]]] = {}
    for trial in sampled(parse_space(params, [], conditional)):
        by_depth.setdefault(trial["model.layers"], []).append(trial)
    assert set(by_depth) == {1, 2, 3}
    widths = {1: set(), 2: {"model.units_2"}, 3: {"model.units_2", "model.units_3"}}
    for depth, trials in by_depth.items():
        for trial in trials:
            assert {key for key in trial if key.startswith("model.units_")} == widths[depth]
    assert all(256 <= trial["model.units_3"] <= 1024 for trial in by_depth[3])


def test_a_sampled_three_layer_trial_composes_with_its_widths() -> None:
    params, conditional = settings(frontier_config())
    space = parse_space(params, ["model.layers=3", "schedule=cosine"], conditional)
    trial = sampled(space, trials=1)[0]
    config = composer()(space.job_overrides(trial))
    assert config.model.layers == 3 and config.schedule.name == "cosine"
    assert config.model.units_2 == trial["model.units_2"] and config.model.units_3 == trial["model.units_3"]


@pytest.mark.parametrize(
    ("branch", "message"),
    [
        (
            {"model.layers=4": {"model.units_2": "int(interval(256, 512))"}},
            "hydra.sweeper.conditional: model.layers=4: model.layers never takes 4 (model.layers=choice(1, 2, 3))",
        ),
        (
            {"model.layers=3": {"model.units_4": "int(interval(256, 512))"}},
            "model.layers=3: model.units_4=int(interval(256, 512)): model.units_4 is not a key of the config",
        ),
        (
            {"model.layers=2": {"model.units_2": "int(interval(0, 512))"}},
            "the value 0 gives model.units_2=0: must be a positive integer",
        ),
    ],
)
def test_a_bad_depth_branch_is_refused_in_one_line_before_any_trial(
    frontier: DictConfig, branch: dict[str, dict[str, str]], message: str
) -> None:
    params, _ = settings(frontier)
    with pytest.raises(ConfigError) as caught:
        check_space(params, [], groups(frontier), composer(), branch)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_three_layer_cosine_champion_is_written_as_an_experiment_that_composes_back(tmp_path: Path) -> None:
    overrides = (
        "model.layers=3",
        "model.units=1024",
        "model.units_2=768",
        "model.units_3=512",
        "model.input_dropout=0.2",
        "model.max_norm=3",
        "schedule=cosine",
        "optimizer=adamw",
        "train.label_smoothing=0.1",
    )
    summary = Summary(n=5, mean=0.988, std=0.001, ci_low=0.987, ci_high=0.989)
    winner = Row(Candidate("trial 7", "variant", overrides), (), summary, summary, None, 5, "better")
    path = write_champion_experiment(tmp_path, "frontier", winner, "python src/report.py study_name=frontier")
    assert "  - override /schedule: cosine\n" in path.read_text()
    config = composed(f"hydra.searchpath=[file://{tmp_path.parent}]", f"+{tmp_path.name}=frontier_champion")
    assert (config.model.layers, config.model.units_2, config.model.units_3) == (3, 768, 512)
    assert config.schedule._target_ == "keras.optimizers.schedules.CosineDecay"
    assert config.optimizer.name == "adamw" and config.train.label_smoothing == 0.1


@pytest.mark.slow
def test_the_frontier_sweep_runs_deep_trials_with_their_own_widths(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    shrink = ["data.train_subset=256", "data.val_size=512", "train.epochs=2", "hydra.sweeper.n_trials=3"]
    result = run_cli(
        [
            "frontier",
            "model.layers=choice(2, 3)",
            *shrink,
            *store_overrides(tmp_path),
            f"hydra.sweeper.storage={storage}",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    trials = optuna.load_study(study_name="frontier", storage=open_storage(storage)).trials
    assert len(trials) == 3
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for trial in trials:
        depth = trial.params["model.layers"]
        assert ("model.units_3" in trial.params) == (depth == 3) and "model.units_2" in trial.params
        ran = client.get_run(trial.user_attrs["mlflow_run_id"]).data.params
        assert int(ran["model.layers"]) == depth and int(ran["model.units_2"]) == trial.params["model.units_2"]
