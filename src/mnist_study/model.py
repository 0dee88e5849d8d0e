"""The tutorial's network from config: 784 -> Dense(units, activation) [-> Dropout] -> Dense(10, softmax)."""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import math

import keras
from hydra.utils import instantiate
from omegaconf import DictConfig

from mnist_study.precision import FLOAT32, LAYER_POLICIES

NUM_PIXELS = 28 * 28
NUM_CLASSES = 10


def build_optimizer(optimizer_cfg: DictConfig) -> keras.optimizers.Optimizer:
    """The optimizer group's `_target_` class, built with every key of the group but `name` (a label for runs)."""
    arguments = {key: value for key, value in optimizer_cfg.items() if key != "name"}
    return instantiate(arguments, _convert_="all")


def build_model(
    units: int,
    activation: str = "relu",
    dropout: float = 0.0,
    name: str = "mnist_mlp",
    precision: str = FLOAT32,
) -> keras.Sequential:
    """The tutorial's multilayer perceptron; a Dropout layer is added only when `dropout > 0`.

    `precision` (see `mnist_study.precision`) sets each layer's dtype policy; float32 builds exactly the network
    built before the setting existed.
    """
    if units < 1:
        raise ValueError(f"model.units={units}: must be a positive integer")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model.dropout={dropout}: must be in [0, 1)")
    if precision not in LAYER_POLICIES:
        raise ValueError(f"train.precision={precision!r}: must be one of {', '.join(LAYER_POLICIES)}")
    hidden_policy, output_policy = LAYER_POLICIES[precision]
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=(NUM_PIXELS,)),
        keras.layers.Dense(units, activation=activation, name="hidden", dtype=hidden_policy),
    ]
    if dropout > 0:
        layers.append(keras.layers.Dropout(dropout, name="dropout", dtype=hidden_policy))
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax", name="output", dtype=output_policy))
    return keras.Sequential(layers, name=name)


def trainable_parameters(model: keras.Model) -> int:
    """The network's size: how many trainable weights it has (what a study may minimize or bound)."""
    return int(sum(math.prod(weight.shape) for weight in model.trainable_weights))


def compile_model(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    steps_per_execution: int = 1,
    jit_compile: bool | str = False,
) -> keras.Model:
    """Compile with the tutorial's loss on integer labels (the same numbers as one-hot, less work)."""
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model
