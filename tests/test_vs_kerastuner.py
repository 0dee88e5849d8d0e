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
    assert set(values) == set(space) == set(OmegaConf.load(benchmark.SPACE_FILE).hydra.sweeper.params)
    units = hp.get_config()["space"]
    (width,) = [h["config"] for h in units if h["config"]["name"] == "model.units"]
    assert (width["min_value"], width["max_value"], width["sampling"]) == (
        space["model.units"].low,
        space["model.units"].high,
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
    # Hyperband's epoch budget replaces the epochs parameter.
    assert "train.epochs" not in benchmark.define(keras_tuner.HyperParameters(), space, skip=("train.epochs",))
