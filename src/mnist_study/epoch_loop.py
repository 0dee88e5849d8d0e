"""Keras training one whole epoch per TensorFlow call, for small networks where `fit`'s bookkeeping dominates.

Keras's `fit` runs every batch as a nested function call behind a tf.data iterator, an Optional and a `tf.cond`.
For the tutorial's network on a 2-core CPU that machinery costs about as much as the arithmetic itself. This loop
keeps Keras's model, loss, optimizer and callbacks (it is keras-io's "training loop from scratch"), but runs every
batch of an epoch inside one `tf.while_loop` over tensors already in memory, and scores a data set the same way.

Numerics: the same model, loss and optimizer update as `fit`. The order of the training images differs (each epoch
is shuffled by a stateless shuffle seeded with `(seed, epoch)`, so the order is the same on every run), and the
last batch of an epoch is filled up to full size from the start of that epoch's order (see `batch_order`).

Dropout: by default the model's Dropout layers draw their own masks, as in `fit`. With `dropout_masks="hashed"`
the loop draws them instead, from a key of (seed, epoch, step, layer) (see `dropout_masks`), which XLA compiles
into fast code where Keras's random numbers are slow.
"""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import logging
import math
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from mnist_study.checks import DROPOUT_MASKS
from mnist_study.dropout_masks import epoch_key, mask_key, scaled_mask
from mnist_study.losses import PerImageLoss, per_image_loss


class _NewModelNewTrace(logging.Filter):
    """Drop TensorFlow's "frequent retracing" warning: each trial builds a new model, so it traces anew."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NewModelNewTrace())


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run cannot recover and is a failure."""


# A step's contribution to an epoch's totals: (sum of per-image losses, confusion matrix, batch mean loss).
StepTotals = tuple[tf.Tensor, tf.Tensor, tf.Tensor]


def batch_order(size: int, batch_size: int, order: tf.Tensor, wrap: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Cut an order of `size` indices into `[steps, batch_size]` batches, with a weight for every slot.

    Every step has the same shape (one trace, XLA-friendly). Scoring (`wrap=False`) pads the last batch with
    weight-0 slots, which add nothing to a loss or a count. Training (`wrap=True`) fills it from the start of the
    same order instead, so every update averages a full batch: a last update from a handful of images (16 when
    the tutorial's 10 000 images meet batch 128) can undo an epoch of RMSprop, since RMSprop divides each step by
    the running size of full-batch gradients (benchmarks/README.md).
    """
    steps = math.ceil(size / batch_size)
    padding = steps * batch_size - size
    if wrap:
        filler = tf.tile(order, [math.ceil(padding / size)])[:padding] if padding else order[:0]
        indices = tf.concat([order, filler], axis=0)
        weights = tf.ones([steps * batch_size])
    else:
        indices = tf.concat([order, tf.zeros([padding], order.dtype)], axis=0)
        weights = tf.concat([tf.ones([size]), tf.zeros([padding])], axis=0)
    return tf.reshape(indices, (steps, batch_size)), tf.reshape(weights, (steps, batch_size))


def over_batches(
    step: Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], StepTotals],
    images: tf.Tensor,
    labels: tf.Tensor,
    batches: tf.Tensor,
    weights: tf.Tensor,
    classes: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Run `step(images, labels, weights, step index)` on every batch in one `tf.while_loop`: returns (batches
    run, loss sum, confusion, last loss).

    The loop stops after the first batch whose loss is not finite, so a diverging run is caught where it happens.
    """

    def keep_going(index: tf.Tensor, loss_sum: tf.Tensor, confusion: tf.Tensor, loss: tf.Tensor) -> tf.Tensor:
        return tf.logical_and(index < tf.shape(batches)[0], tf.math.is_finite(loss))

    def body(index: tf.Tensor, loss_sum: tf.Tensor, confusion: tf.Tensor, loss: tf.Tensor) -> tuple:
        batch = batches[index]
        step_loss_sum, step_confusion, loss = step(
            tf.gather(images, batch), tf.gather(labels, batch), weights[index], index
        )
        return index + 1, loss_sum + step_loss_sum, confusion + step_confusion, loss

    zero = tf.constant(0.0)
    no_counts = tf.zeros((classes, classes))
    return tf.while_loop(keep_going, body, (tf.constant(0), zero, no_counts, zero))


def weighted_totals(
    labels: tf.Tensor,
    probabilities: tf.Tensor,
    weights: tf.Tensor,
    loss: PerImageLoss = keras.losses.sparse_categorical_crossentropy,
) -> StepTotals:
    """A batch's summed loss, its confusion matrix (rows: true class) and its mean loss (`loss`: per image).

    The matrix's trace is the correct count (Keras's `accuracy`, not averaged). It is a product of one-hot matrices
    rather than a scatter, so it is exact, deterministic and compiles under XLA.
    """
    classes = probabilities.shape[-1]
    losses = loss(labels, probabilities) * weights
    truth = tf.one_hot(labels, classes) * weights[:, tf.newaxis]
    predicted = tf.one_hot(tf.argmax(probabilities, axis=-1), classes)
    loss_sum = tf.reduce_sum(losses)
    return loss_sum, tf.matmul(truth, predicted, transpose_a=True), loss_sum / tf.reduce_sum(weights)


class EpochLoop:
    """Train and score one Keras model with one TensorFlow call per epoch (or per scored data set)."""

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        jit_compile: bool,
        jit_compile_scoring: bool | None = None,
        dropout_masks: str = "keras",
        jit_compile_update: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        """`jit_compile`: XLA for training; scoring follows it unless `jit_compile_scoring` is given.
        `dropout_masks`: "keras" (the Dropout layers draw them) or "hashed" (this loop draws them; the model must
        be a `keras.Sequential`, whose layers run in the order they are listed). `jit_compile_update`: where the
        epoch is not compiled, compile the optimizer's update alone with XLA, which fuses its element-wise
        operations, while the matrix products stay with TensorFlow's kernels (oneDNN). `label_smoothing`: the
        loss's (`mnist_study.losses`), in training and scoring alike, as Keras's compiled loss."""
        if dropout_masks not in DROPOUT_MASKS:
            raise ValueError(f"train.dropout_masks={dropout_masks!r}: must be one of {', '.join(DROPOUT_MASKS)}")
        dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
        if dropout_masks == "hashed" and dropouts and not isinstance(model, keras.Sequential):
            raise ValueError("train.dropout_masks=hashed needs a keras.Sequential model (its layers run in order)")
        if any(layer.noise_shape is not None for layer in dropouts) and dropout_masks == "hashed":
            raise ValueError("train.dropout_masks=hashed draws one mask element per activation: no noise_shape")
        self.model = model
        self.optimizer = optimizer
        self.classes = int(model.output_shape[-1])
        self.loss = per_image_loss(label_smoothing)
        self.hashed_masks = dropout_masks == "hashed" and bool(dropouts)
        self._update = (
            tf.function(self._apply_gradients, jit_compile=True)
            if jit_compile_update and not jit_compile
            else self._apply_gradients
        )
        # Build the optimizer's slots now: variables cannot be created inside the traced epoch.
        optimizer.build(model.trainable_variables)
        # reduce_retracing: the validation and test sets differ in size only, so one general trace serves both.
        self._train = tf.function(self._train_batches, jit_compile=jit_compile, reduce_retracing=True)
        scoring = jit_compile if jit_compile_scoring is None else jit_compile_scoring
        self._score = tf.function(self._score_batches, jit_compile=scoring, reduce_retracing=True)

    def _forward(self, images: tf.Tensor, step: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        """The model's training forward pass; with hashed masks, layer by layer with the loop's own masks."""
        if not self.hashed_masks:
            return self.model(images, training=True)
        outputs = images
        for position, layer in enumerate(self.model.layers):
            if isinstance(layer, keras.layers.Dropout):
                outputs = outputs * scaled_mask(outputs, layer.rate, mask_key(key, step, position))
            else:
                outputs = layer(outputs, training=True)
        return outputs

    def _apply_gradients(self, gradients: list[tf.Tensor]) -> None:
        self.optimizer.apply(gradients, self.model.trainable_variables)

    def _train_step(
        self, images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, step: tf.Tensor, key: tf.Tensor
    ) -> StepTotals:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            probabilities = self._forward(images, step, key)
            totals = weighted_totals(labels, probabilities, weights, self.loss)
        # The batch's mean loss, as in `fit`: padding slots weigh nothing.
        self._update(tape.gradient(totals[2], variables))
        return totals

    def _score_step(self, images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, step: tf.Tensor) -> StepTotals:
        return weighted_totals(labels, self.model(images, training=False), weights, self.loss)

    def _train_batches(
        self, images: tf.Tensor, labels: tf.Tensor, batches: tf.Tensor, weights: tf.Tensor, key: tf.Tensor
    ) -> tuple:
        def step(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, index: tf.Tensor) -> StepTotals:
            return self._train_step(images, labels, weights, index, key)

        return over_batches(step, images, labels, batches, weights, self.classes)

    def _score_batches(
        self, images: tf.Tensor, labels: tf.Tensor, batches: tf.Tensor, weights: tf.Tensor
    ) -> tuple:
        return over_batches(self._score_step, images, labels, batches, weights, self.classes)

    def train_epoch(
        self, images: tf.Tensor, labels: tf.Tensor, batch_size: int, seed: int, epoch: int
    ) -> dict[str, float]:
        """One epoch over the images in an order fixed by `(seed, epoch)`; returns its `loss` and `accuracy`."""
        size = int(images.shape[0])
        order = tf.random.experimental.stateless_shuffle(tf.range(size), seed=[seed, epoch])
        batches, weights = batch_order(size, batch_size, order, wrap=True)
        # The dropout masks' key for this epoch, a tensor so that every epoch runs the same trace.
        key = tf.constant(epoch_key(seed, epoch), tf.uint64)
        steps, loss_sum, confusion, loss = self._train(images, labels, batches, weights, key)
        if not math.isfinite(float(loss)):
            raise NonFiniteLossError(f"loss became {float(loss)} in epoch {epoch + 1} (batch {int(steps)})")
        # Means over the images the epoch trained on (a wrapped last batch counts a few of them twice).
        seen = float(tf.reduce_sum(confusion))
        return {"loss": float(loss_sum) / seen, "accuracy": float(tf.linalg.trace(confusion)) / seen}

    def evaluate(self, images: tf.Tensor, labels: tf.Tensor, batch_size: int) -> tuple[float, float, np.ndarray]:
        """Mean loss, accuracy and the confusion matrix (counts; rows: true class) over a whole data set."""
        size = int(images.shape[0])
        _, loss_sum, confusion, _ = self._score(images, labels, *batch_order(size, batch_size, tf.range(size)))
        counts = np.rint(confusion.numpy()).astype(np.int64)
        return float(loss_sum) / size, float(np.trace(counts)) / size, counts

    def fit(
        self,
        images: tf.Tensor,
        labels: tf.Tensor,
        *,
        epochs: int,
        batch_size: int,
        seed: int,
        validation: tuple[tf.Tensor, tf.Tensor] | None = None,
        validation_batch_size: int = 1024,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: int = 0,
    ) -> dict[str, list[float]]:
        """Keras's `fit` contract, epoch by epoch: callbacks see the same logs, and may stop or raise."""
        steps = math.ceil(int(images.shape[0]) / batch_size)
        callback_list = keras.callbacks.CallbackList(
            list(callbacks),
            add_progbar=verbose != 0,
            model=self.model,
            verbose=verbose,
            epochs=epochs,
            steps=steps,
        )
        history: dict[str, list[float]] = {}
        self.model.stop_training = False
        callback_list.on_train_begin()
        for epoch in range(epochs):
            callback_list.on_epoch_begin(epoch)
            logs = self.train_epoch(images, labels, batch_size, seed, epoch)
            if validation is not None:
                val_loss, val_accuracy, _ = self.evaluate(*validation, validation_batch_size)
                logs.update(val_loss=val_loss, val_accuracy=val_accuracy)
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            callback_list.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callback_list.on_train_end(logs={key: values[-1] for key, values in history.items()})
        return history
