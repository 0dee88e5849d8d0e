"""The training loss, named once for both training loops: cross-entropy on integer labels, with label smoothing
(`train.label_smoothing`) when asked.

Without smoothing it is Keras's sparse cross-entropy, the tutorial's loss, so such runs compute exactly what they
computed before the setting existed. With smoothing each label becomes a one-hot vector mixed with the uniform
distribution (Szegedy et al. 2016), which Keras offers on one-hot labels only.
"""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
from collections.abc import Callable

import keras
import tensorflow as tf

from mnist_study.checks import check_label_smoothing

PerImageLoss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def per_image_loss(label_smoothing: float = 0.0) -> PerImageLoss:
    """`loss(labels, probabilities)`: one loss per image, labels as integers."""
    check_label_smoothing(label_smoothing)
    if label_smoothing == 0:
        return keras.losses.sparse_categorical_crossentropy

    def smoothed(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
        one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), probabilities.shape[-1])
        return keras.losses.categorical_crossentropy(one_hot, probabilities, label_smoothing=label_smoothing)

    return smoothed
