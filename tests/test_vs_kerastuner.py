"""The KerasTuner benchmark builds its arms from the default study's own space file (no benchmark is run)."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow  # keras_tuner imports TensorFlow.


def load_benchmark() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vs_kerastuner", PROJECT_ROOT / "benchmarks" / "vs_kerastuner.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_parameter_of_sweep_yaml_reaches_keras_tuner_and_a_change_there_follows(tmp_path: Path) -> None:
    import keras_tuner

    benchmark = load_benchmark()
    space = benchmark.sweep_space()
    hp = keras_tuner.HyperParameters()
    values = benchmark.define(hp, space)
    assert set(space.distributions) == set(OmegaConf.load(benchmark.SPACE_FILE).hydra.sweeper.params)
    assert set(values) == set(space.distributions_for(values))
    units = hp.get_config()["space"]
    (width,) = [h["config"] for h in units if h["config"]["name"] == "model.units"]
    assert (width["min_value"], width["max_value"], width["sampling"]) == (
        space.distributions["model.units"].low,
        space.distributions["model.units"].high,
        "log",
    )

    changed = OmegaConf.load(benchmark.SPACE_FILE)
    changed.hydra.sweeper.params["model.units"] = "int(interval(100, 200))"
    copy = tmp_path / "sweep.yaml"
    OmegaConf.save(changed, copy)
    hp = keras_tuner.HyperParameters()
    benchmark.define(hp, benchmark.sweep_space(copy))
    (width,) = [h["config"] for h in hp.get_config()["space"] if h["config"]["name"] == "model.units"]
    assert (width["min_value"], width["max_value"], width["sampling"]) == (100, 200, "linear")
    assert "train.epochs" in benchmark.define(keras_tuner.HyperParameters(), space)
    # Hyperband's epoch budget replaces the epochs parameter.
    assert "train.epochs" not in benchmark.define(keras_tuner.HyperParameters(), space, skip=("train.epochs",))


def test_the_optimizer_branches_reach_keras_tuner_as_conditional_scopes() -> None:
    import keras_tuner

    benchmark = load_benchmark()
    space = benchmark.sweep_space()
    branches = {branch.condition: branch for branch in space.branches}
    assert {"optimizer=sgd", "optimizer=adamw"} <= set(branches)
    chosen = {}
    for optimizer in space.distributions["optimizer"].choices:
        hp = keras_tuner.HyperParameters()
        hp.values["optimizer"] = optimizer
        chosen[optimizer] = benchmark.define(hp, space)
        # Exactly the parameters our study gives a trial with this optimizer.
        assert set(chosen[optimizer]) == set(space.distributions_for({"optimizer": optimizer})), optimizer
    assert "optimizer.momentum" in chosen["sgd"] and "optimizer.momentum" not in chosen["adam"]
    assert "optimizer.weight_decay" in chosen["adamw"] and "optimizer.weight_decay" not in chosen["sgd"]
    assert isinstance(chosen["sgd"]["optimizer.nesterov"], bool)
    # sgd's learning rate comes from its own branch's range, under a name of its own in KerasTuner.
    sgd_rate = branches["optimizer=sgd"].distributions["optimizer.learning_rate"]
    configs = {h["config"]["name"]: h["config"] for h in hp.get_config()["space"]}
    own = configs[benchmark.branch_name("optimizer.learning_rate", branches["optimizer=sgd"])]
    assert (own["min_value"], own["max_value"]) == (sgd_rate.low, sgd_rate.high)
    assert sgd_rate.low <= chosen["sgd"]["optimizer.learning_rate"] <= sgd_rate.high
