"""Dropout masks the epoch loop draws itself (`train.dropout_masks=hashed`): a counter-based generator, fast under
XLA and exactly repeatable.

Keras's Dropout layer draws its mask with `tf.random.stateless_uniform` and TensorFlow's automatic choice of
bit generator, which XLA compiles on CPU into code several times slower than the rest of a training step
(benchmarks/README.md). Here every mask element is a SplitMix64 output instead: its state is a key for the mask
plus the element's index times SplitMix64's increment, so element `i` is the `i+1`-th draw of a SplitMix64
generator seeded with the key. That is a handful of 64-bit multiplies, shifts and xors per element, which XLA
fuses into one vectorised loop. SplitMix64 is the generator `java.util.SplittableRandom` uses; its output passes
BigCrush.

The key of a mask depends only on the fit's seed, the epoch, the step within the epoch and the Dropout layer's
position in the model, so the same seed draws the same masks on every run, whatever ran before in the process.
"""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import functools

import tensorflow as tf

# SplitMix64's increment (2^64 divided by the golden ratio) and its output function's constants.
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
MIX_MULTIPLIERS = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
MIX_SHIFTS = (30, 27, 31)
UINT64 = 1 << 64


def mix64(value: int) -> int:
    """SplitMix64's output function on a Python int (mod 2^64): the same arithmetic as `mix64_tensor`."""
    value %= UINT64
    value = ((value ^ (value >> MIX_SHIFTS[0])) * MIX_MULTIPLIERS[0]) % UINT64
    value = ((value ^ (value >> MIX_SHIFTS[1])) * MIX_MULTIPLIERS[1]) % UINT64
    return value ^ (value >> MIX_SHIFTS[2])


def mix64_tensor(value: tf.Tensor) -> tf.Tensor:
    """SplitMix64's output function on a uint64 tensor, element by element (wrapping arithmetic)."""
    for shift, multiplier in zip(MIX_SHIFTS[:2], MIX_MULTIPLIERS, strict=True):
        value = tf.bitwise.bitwise_xor(value, tf.bitwise.right_shift(value, tf.constant(shift, tf.uint64)))
        value = value * tf.constant(multiplier, tf.uint64)
    return tf.bitwise.bitwise_xor(value, tf.bitwise.right_shift(value, tf.constant(MIX_SHIFTS[2], tf.uint64)))


def epoch_key(seed: int, epoch: int) -> int:
    """The key of one epoch's masks, from the fit's seed and the epoch (as a uint64 value)."""
    return mix64(mix64(seed) + (epoch + 1) * GOLDEN_GAMMA)


def mask_key(epoch_key: tf.Tensor, step: tf.Tensor, position: int) -> tf.Tensor:
    """The key of the mask of the Dropout layer at `position` in the model, at one step of the epoch."""
    counter = tf.cast(step, tf.uint64) * tf.constant(1 << 16, tf.uint64) + tf.constant(position + 1, tf.uint64)
    step_and_layer = mix64_tensor(counter * tf.constant(GOLDEN_GAMMA, tf.uint64))
    return mix64_tensor(tf.bitwise.bitwise_xor(epoch_key, step_and_layer))


def drop_threshold(rate: float) -> int:
    """The uint64 value below which an element is dropped, so that it is dropped with probability `rate`."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate {rate}: must be in [0, 1)")
    return min(int(rate * UINT64), UINT64 - 1)


@functools.cache
def _scaled_mask_function(rate: float) -> tf.types.experimental.GenericFunction:
    """The compiled mask of one rate: XLA fuses it into one loop, in a compiled epoch or as a cluster of its own
    inside an epoch run by TensorFlow's kernels."""
    threshold = drop_threshold(rate)
    scale = 1.0 / (1.0 - rate)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def scaled_mask(like: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        count = tf.size(like, out_type=tf.int64)
        counters = tf.bitcast(tf.range(1, count + 1, dtype=tf.int64), tf.uint64)
        bits = mix64_tensor(key + counters * tf.constant(GOLDEN_GAMMA, tf.uint64))
        keep = tf.reshape(bits >= tf.constant(threshold, tf.uint64), tf.shape(like))
        return tf.where(keep, tf.constant(scale, like.dtype), tf.constant(0.0, like.dtype))

    return scaled_mask


def scaled_mask(like: tf.Tensor, rate: float, key: tf.Tensor) -> tf.Tensor:
    """A dropout mask shaped and typed like `like`: 0 where an element is dropped, 1 / (1 - rate) where kept
    (Keras's scaling), drawn from `key` (see `mask_key`)."""
    return tf.stop_gradient(_scaled_mask_function(float(rate))(like, key))
