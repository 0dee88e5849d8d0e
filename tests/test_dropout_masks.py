"""The epoch loop's own dropout masks (`train.dropout_masks=hashed`): SplitMix64, keyed by (seed, epoch, step,
layer); the right share dropped, Keras's scaling, and independent masks for every key."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from mnist_study.dropout_masks import (
    GOLDEN_GAMMA,
    drop_threshold,
    epoch_key,
    mask_key,
    mix64,
    mix64_tensor,
    scaled_mask,
)

SHAPE = (256, 1024)


def mask(rate: float, seed: int = 0, epoch: int = 0, step: int = 0, position: int = 1) -> np.ndarray:
    key = mask_key(tf.constant(epoch_key(seed, epoch), tf.uint64), tf.constant(step), position)
    return scaled_mask(tf.ones(SHAPE), rate, key).numpy()


def test_mix64_is_splitmix64() -> None:
    # The first outputs of SplitMix64 seeded with 0, as its reference implementation (splitmix64.c) prints them.
    assert mix64(GOLDEN_GAMMA) == 0xE220A8397B1DCDAF
    assert mix64(2 * GOLDEN_GAMMA) == 0x6E789E6AA1B965F4
    states = [(n * GOLDEN_GAMMA) % (1 << 64) for n in (1, 2, 3, 12345)]
    tensor = mix64_tensor(tf.constant(states, tf.uint64)).numpy().tolist()
    assert tensor == [mix64(state) for state in states]


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_the_share_dropped_is_the_rate_and_kept_elements_are_scaled_as_keras_does(rate: float) -> None:
    values = mask(rate)
    assert np.unique(values).tolist() == pytest.approx([0.0, 1 / (1 - rate)], rel=1e-6)
    dropped = float(np.mean(values == 0))
    # Five standard deviations of a binomial share over 262 144 elements.
    assert abs(dropped - rate) < 5 * math.sqrt(rate * (1 - rate) / values.size)


def test_rate_zero_drops_nothing() -> None:
    assert drop_threshold(0.0) == 0
    assert np.all(mask(0.0) == 1.0)
    with pytest.raises(ValueError, match="must be in"):
        drop_threshold(1.0)


def test_the_same_key_draws_the_same_mask() -> None:
    np.testing.assert_array_equal(mask(0.3, seed=4, epoch=2, step=17), mask(0.3, seed=4, epoch=2, step=17))


@pytest.mark.parametrize(
    "other", [{"seed": 1}, {"epoch": 1}, {"step": 1}, {"position": 2}], ids=["seed", "epoch", "step", "layer"]
)
def test_every_part_of_the_key_gives_an_independent_mask(other: dict[str, int]) -> None:
    rate = 0.3
    first, second = mask(rate) == 0, mask(rate, **other) == 0
    assert not np.array_equal(first, second)
    # Independent masks drop an element in both with probability rate^2.
    both = float(np.mean(first & second))
    assert abs(both - rate**2) < 5 * math.sqrt(rate**2 * (1 - rate**2) / first.size)


def test_neighbouring_elements_are_not_correlated() -> None:
    dropped = (mask(0.5) == 0).astype(np.float64).ravel()
    correlation = float(np.corrcoef(dropped[:-1], dropped[1:])[0, 1])
    assert abs(correlation) < 5 / math.sqrt(dropped.size)


def test_the_mask_has_no_gradient() -> None:
    inputs = tf.ones((4, 8))
    key = mask_key(tf.constant(epoch_key(0, 0), tf.uint64), tf.constant(0), 1)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = inputs * scaled_mask(inputs, 0.5, key)
    gradient = tape.gradient(outputs, inputs).numpy()
    # The gradient reaches kept elements scaled, and dropped ones not at all: exactly the mask.
    np.testing.assert_array_equal(gradient, scaled_mask(inputs, 0.5, key).numpy())
