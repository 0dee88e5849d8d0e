"""The tutorial's network and the optimizer config group, built from config."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mnist_study import model

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_baseline_network_has_the_tutorials_shape() -> None:
    network = model.build_model(512)
    assert network.input_shape == (None, 784)
    assert network.output_shape == (None, 10)
    # 784*512 + 512 weights into the hidden layer, 512*10 + 10 into the output: the tutorial's 407 050.
    assert network.count_params() == 407_050
    assert [layer.name for layer in network.layers] == ["hidden", "output"]


def test_dropout_layer_only_when_positive() -> None:
    assert "dropout" in [layer.name for layer in model.build_model(64, dropout=0.25).layers]
    assert "dropout" not in [layer.name for layer in model.build_model(64, dropout=0.0).layers]


@pytest.mark.parametrize("name", sorted(model.OPTIMIZERS))
def test_every_optimizer_config_builds_its_keras_optimizer(name: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"optimizer={name}"])
    settings = OmegaConf.to_container(cfg.optimizer, resolve=True)
    optimizer = model.build_optimizer(settings)
    assert isinstance(optimizer, model.OPTIMIZERS[name])
    assert float(optimizer.learning_rate) == pytest.approx(settings["learning_rate"])


def test_unknown_optimizer_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"optimizer\.name='adagrad'"):
        model.build_optimizer({"name": "adagrad", "learning_rate": 0.01})


@pytest.mark.parametrize(("units", "dropout", "key"), [(0, 0.0, "model.units"), (16, 1.0, "model.dropout")])
def test_bad_model_settings_name_the_key(units: int, dropout: float, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        model.build_model(units, dropout=dropout)


def test_validation_knows_the_same_optimizers() -> None:
    from mnist_study.validation import OPTIMIZER_NAMES

    assert set(OPTIMIZER_NAMES) == set(model.OPTIMIZERS)
