"""The tutorial's network and the optimizer config group, built from config."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from conftest import composed
from mnist_study import model
from mnist_study.checks import ConfigError, check_model

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


@pytest.mark.parametrize("name", sorted(path.stem for path in (CONF / "optimizer").glob("*.yaml")))
def test_every_optimizer_file_builds_its_target_with_its_arguments(name: str) -> None:
    cfg = composed(f"optimizer={name}")
    optimizer = model.build_optimizer(cfg.optimizer)
    assert isinstance(optimizer, get_class(cfg.optimizer._target_))
    # Every key but `_target_` and `name` (a label) reaches the optimizer.
    for key, value in cfg.optimizer.items():
        if key not in ("_target_", "name"):
            assert optimizer.get_config()[key] == pytest.approx(value), key


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"units": 0}, "model.units"),
        ({"units": 16, "dropout": 1.0}, "model.dropout"),
        ({"units": 16, "layers": 4}, "model.layers"),
        ({"units": 16, "layers": 2, "units_2": 0}, "model.units_2"),
        ({"units": 16, "max_norm": -1}, "model.max_norm"),
    ],
)
def test_bad_model_settings_name_the_key(settings: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as from_model:
        model.build_model(**settings)
    # One rule: the network refuses a value in the very words the config check (`checks.check_model`) uses.
    with pytest.raises(ConfigError) as from_check:
        check_model(OmegaConf.create({"model": {"activation": "relu", **settings}}))
    assert str(from_model.value) == str(from_check.value)


# The tutorial's family: one hidden layer, and three with input dropout and max-norm (a frontier champion's shape).
SERVED_NETWORKS = {
    "one-layer": {"units": 64, "dropout": 0.2},
    "three-layers": {
        "units": 64,
        "layers": 3,
        "units_2": 48,
        "dropout": 0.5,
        "input_dropout": 0.2,
        "max_norm": 3.0,
    },
}


@pytest.mark.parametrize("shape", sorted(SERVED_NETWORKS))
def test_the_served_network_takes_raw_pixels_and_answers_as_the_trained_one_bit_for_bit(
    tmp_path: Path, shape: str
) -> None:
    from mnist_study.data import load_mnist
    from mnist_study.serving.network import serving_network

    trained = model.build_model(**SERVED_NETWORKS[shape])
    _, (images, _) = load_mnist()
    # The training path's own scaling (data.make_split): flatten, float32, divide by 255.
    scaled = images[:300].reshape(300, -1).astype("float32") / np.float32(255)
    served = serving_network(trained)
    assert np.array_equal(served.predict(images[:300], verbose=0), trained.predict(scaled, verbose=0))
    # Saved and loaded with plain Keras (built-in layers only), with no optimizer state inside.
    served.save(tmp_path / "network.keras")
    loaded = keras.saving.load_model(tmp_path / "network.keras")
    with zipfile.ZipFile(tmp_path / "network.keras") as archive, archive.open("model.weights.h5") as weights:
        assert "optimizer" not in h5py.File(io.BytesIO(weights.read()), "r")
    assert np.array_equal(loaded.predict(images[:300], verbose=0), served.predict(images[:300], verbose=0))
