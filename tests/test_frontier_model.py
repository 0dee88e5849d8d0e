"""The tutorial's network family (issue 30): depth, per-layer widths, input dropout, max-norm, label smoothing and
a learning-rate schedule, built and trained for real on a small MNIST subset (256 images, one or two epochs)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf, open_dict

from conftest import small_config
from mnist_study import logged_config, model
from mnist_study.checks import ConfigError, validate
from mnist_study.dropout_masks import epoch_key
from mnist_study.epoch_loop import EpochLoop
from mnist_study.train import train

TINY = ("data.train_subset=256", "data.val_size=512")
# The keys the family added; a config logged before them has none of them.
NEW_KEYS = ("model.layers", "model.units_2", "model.units_3", "model.input_dropout", "model.max_norm")


def test_a_three_layer_network_has_its_widths_input_dropout_and_max_norm() -> None:
    network = model.build_model(64, layers=3, units_2=32, dropout=0.5, input_dropout=0.2, max_norm=3.0)
    names = [layer.name for layer in network.layers]
    deeper = ["hidden_2", "dropout_2", "hidden_3", "dropout_3"]
    assert names == ["input_dropout", "hidden", "dropout", *deeper, "output"]
    # A deeper layer without its own width takes the first layer's.
    assert [network.get_layer(name).units for name in ("hidden", "hidden_2", "hidden_3")] == [64, 32, 64]
    for name in ("hidden", "hidden_2", "hidden_3"):
        constraint = network.get_layer(name).kernel_constraint
        assert isinstance(constraint, keras.constraints.MaxNorm) and constraint.max_value == 3.0


def test_the_default_family_member_is_the_tutorials_network() -> None:
    network = model.build_model(512, layers=1, units_2=2048, units_3=2048)
    # Widths of layers the network does not reach change nothing.
    assert [layer.name for layer in network.layers] == ["hidden", "output"]
    assert network.count_params() == 407_050
    assert network.get_layer("hidden").kernel_constraint is None


LOOPS = {
    "graph-hashed": ("train.loop=graph", "train.dropout_masks=hashed"),
    "graph-keras-masks": ("train.loop=graph", "train.dropout_masks=keras"),
    "keras": ("train.loop=keras",),
    "graph-bfloat16": ("train.loop=graph", "train.precision=bfloat16"),
}
# The fast tier trains a 2-layer network in the default loop and a 3-layer one in bfloat16; the rest of the matrix
# (each fit twice, a few seconds a case) runs with the slow tier.
FAST_CASES = {(2, "graph-hashed"), (3, "graph-bfloat16")}


def tier(layers: int, loop: str) -> tuple[pytest.MarkDecorator, ...]:
    return () if (layers, loop) in FAST_CASES else (pytest.mark.slow,)


@pytest.mark.parametrize(
    ("layers", "overrides"),
    [
        pytest.param(layers, overrides, id=f"{layers}-{name}", marks=tier(layers, name))
        for layers in (2, 3)
        for name, overrides in LOOPS.items()
    ],
)
def test_deeper_networks_with_the_whole_recipe_train_and_repeat(layers: int, overrides: tuple[str, ...]) -> None:
    cfg = small_config(
        *TINY,
        *overrides,
        f"model.layers={layers}",
        "model.units=64",
        "model.units_2=48",
        "model.units_3=32",
        "model.dropout=0.5",
        "model.input_dropout=0.2",
        "model.max_norm=2.0",
        "train.label_smoothing=0.1",
        "schedule=cosine",
        "train.epochs=2",
    )
    validate(cfg)
    first, second = train(cfg), train(cfg)
    assert len(first["model"].layers) == 2 * layers + 2
    assert first["epochs_run"] == 2 and 0.0 < first["test_accuracy"] <= 1.0
    assert np.isfinite(first["history"]["loss"]).all()
    # The same seed gives the same numbers with every new knob on.
    assert first["history"] == second["history"]
    # Max-norm holds after the last update: no hidden unit's incoming weights are longer than 2.
    for layer in first["model"].layers:
        if layer.name.startswith("hidden"):
            norms = np.linalg.norm(np.asarray(layer.kernel, dtype=np.float32), axis=0)
            assert norms.max() <= 2.0 + 1e-5


def test_hashed_masks_are_drawn_per_dropout_layer_not_shared() -> None:
    # Two Dropout layers at rate 0.5 in a row on ones: with one independent mask each, a quarter of the elements
    # survive both; with the same mask drawn twice, half would.
    width = 1 << 14
    stack = keras.Sequential(
        [keras.Input(shape=(width,)), keras.layers.Dropout(0.5, name="first"), keras.layers.Dropout(0.5)]
    )
    loop = EpochLoop(stack, keras.optimizers.SGD(), jit_compile=False, dropout_masks="hashed")
    key = tf.constant(epoch_key(0, 0), tf.uint64)
    outputs = loop._forward(tf.ones((1, width)), tf.constant(0), key).numpy()
    assert abs(float(np.mean(outputs > 0)) - 0.25) < 0.02
    assert set(np.unique(outputs)) == {0.0, 4.0}


def without_new_keys(cfg: OmegaConf) -> OmegaConf:
    """`cfg` as a run logged before the family grew: none of its keys, no schedule group."""
    old = OmegaConf.create(OmegaConf.to_container(cfg))
    with open_dict(old):
        for key in NEW_KEYS:
            group, name = key.split(".")
            del old[group][name]
        del old.train["label_smoothing"]
        del old["schedule"]
    return old


@pytest.mark.parametrize("loop", ["graph", "keras"])
def test_an_old_logged_config_reruns_bit_identically(loop: str) -> None:
    today = small_config(*TINY, f"train.loop={loop}", "model.dropout=0.3", "train.epochs=2")
    old = without_new_keys(today)
    assert "layers" not in old.model and "schedule" not in old
    upgraded = logged_config.upgrade(old)
    assert upgraded.model.layers == 1 and upgraded.schedule.name == "constant"
    ran_today, ran_old = train(today), train(upgraded)
    assert ran_today["history"] == ran_old["history"]
    for weights_today, weights_old in zip(
        ran_today["model"].get_weights(), ran_old["model"].get_weights(), strict=True
    ):
        np.testing.assert_array_equal(weights_today, weights_old)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.layers=4", "model.layers=4: must be an integer in 1..3"),
        ("model.layers=0", "model.layers=0: must be an integer in 1..3"),
        ("model.units_2=0", "model.units_2=0: must be a positive integer, or null"),
        ("model.input_dropout=1.0", "model.input_dropout=1.0: must be a number in [0, 1)"),
        ("model.max_norm=-1", "model.max_norm=-1: must be a number >= 0 (0 or null: no bound)"),
        ("train.label_smoothing=-0.1", "train.label_smoothing=-0.1: must be a number in [0, 1)"),
        ("schedule.warmup_epochs=1", "schedule.warmup_epochs=1: must be an integer in 0..0"),
    ],
)
def test_bad_values_are_refused_in_one_line(override: str, message: str) -> None:
    overrides = ["schedule=cosine"] if override.startswith("schedule") else []
    cfg = small_config(*overrides, override)
    with pytest.raises(ConfigError) as caught:
        validate(cfg)
    assert message in str(caught.value) and "\n" not in str(caught.value)
