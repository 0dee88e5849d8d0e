"""The tutorial's network from config, grown to a family: 784 [-> Dropout] -> (Dense(units, activation)
[-> Dropout]) x 1-3 -> Dense(10, softmax).

The defaults (one hidden layer, no input dropout, no max-norm) build exactly the tutorial's network, layer names
included, so every config logged before the family grew builds the same network again.
"""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import math

import keras
from hydra.utils import instantiate
from omegaconf import DictConfig

from mnist_study.checks import check_network
from mnist_study.losses import per_image_loss
from mnist_study.precision import FLOAT32, LAYER_POLICIES

NUM_PIXELS = 28 * 28
NUM_CLASSES = 10


def build_optimizer(
    optimizer_cfg: DictConfig, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule | None = None
) -> keras.optimizers.Optimizer:
    """The optimizer group's `_target_` class, built with every key of the group but `name` (a label for runs);
    `learning_rate`, when given (a schedule: `mnist_study.schedule`), replaces the group's own."""
    arguments = {key: value for key, value in optimizer_cfg.items() if key != "name"}
    optimizer = instantiate(arguments, _convert_="all")
    if learning_rate is None:
        return optimizer
    # Built again rather than given the schedule as an override, so that Hydra never has to convert a Keras object.
    return optimizer.__class__.from_config({**optimizer.get_config(), "learning_rate": learning_rate})


def hidden_widths(layers: int, units: int, units_2: int | None, units_3: int | None) -> list[int]:
    """The hidden layers' widths: `units` for the first, and for a deeper layer its own width, or the first
    layer's when that width is null (so `model.layers=3` alone is three layers of `model.units`)."""
    deeper = [units if width is None else width for width in (units_2, units_3)]
    return [units, *deeper][:layers]


def layer_name(base: str, position: int) -> str:
    """The first hidden layer keeps the tutorial's names (`hidden`, `dropout`); deeper ones are numbered."""
    return base if position == 1 else f"{base}_{position}"


def build_model(
    units: int,
    activation: str = "relu",
    dropout: float = 0.0,
    name: str = "mnist_mlp",
    precision: str = FLOAT32,
    layers: int = 1,
    units_2: int | None = None,
    units_3: int | None = None,
    input_dropout: float = 0.0,
    max_norm: float | None = 0,
) -> keras.Sequential:
    """The tutorial's multilayer perceptron with `layers` hidden layers.

    A Dropout layer follows each hidden layer only when `dropout > 0`, and precedes the first only when
    `input_dropout > 0`. `max_norm` bounds the norm of each hidden unit's incoming weights
    (`keras.constraints.MaxNorm`, applied after every update; 0 or None: no bound). `precision` (see
    `mnist_study.precision`) sets each layer's dtype policy; float32 builds exactly the network built before the
    setting existed.
    """
    check_network(units, layers, units_2, units_3, dropout, input_dropout, max_norm)
    widths = hidden_widths(layers, units, units_2, units_3)
    if precision not in LAYER_POLICIES:
        raise ValueError(f"train.precision={precision!r}: must be one of {', '.join(LAYER_POLICIES)}")
    hidden_policy, output_policy = LAYER_POLICIES[precision]
    network: list[keras.layers.Layer] = [keras.Input(shape=(NUM_PIXELS,))]
    if input_dropout > 0:
        network.append(keras.layers.Dropout(input_dropout, name="input_dropout", dtype=hidden_policy))
    for position, width in enumerate(widths, start=1):
        # A fresh constraint per layer: Keras ties a constraint object to nothing, but one per layer keeps each
        # layer's config its own when the model is saved.
        constraint = keras.constraints.MaxNorm(max_value=max_norm, axis=0) if max_norm else None
        network.append(
            keras.layers.Dense(
                width,
                activation=activation,
                kernel_constraint=constraint,
                name=layer_name("hidden", position),
                dtype=hidden_policy,
            )
        )
        if dropout > 0:
            dropout_name = layer_name("dropout", position)
            network.append(keras.layers.Dropout(dropout, name=dropout_name, dtype=hidden_policy))
    network.append(keras.layers.Dense(NUM_CLASSES, activation="softmax", name="output", dtype=output_policy))
    return keras.Sequential(network, name=name)


def trainable_parameters(model: keras.Model) -> int:
    """The network's size: how many trainable weights it has (what a study may minimize or bound)."""
    return int(sum(math.prod(weight.shape) for weight in model.trainable_weights))


def compile_model(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    steps_per_execution: int = 1,
    jit_compile: bool | str = False,
    label_smoothing: float = 0.0,
) -> keras.Model:
    """Compile with the tutorial's loss on integer labels (the same numbers as one-hot, less work), smoothed when
    `label_smoothing > 0` (see `mnist_study.losses`)."""
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy" if label_smoothing == 0 else per_image_loss(label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model
