"""Fit and evaluate one configuration: config in, metrics out.

This module knows nothing of MLflow or Optuna. Tracking and pruning reach it as Keras callbacks; a callback that
raises (a pruned trial, a diverging loss) ends `train` with that exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

import mnist_study.quiet_tensorflow  # noqa: F401  (before keras: silences TensorFlow start-up)
from mnist_study.data import make_split
from mnist_study.model import build_model, build_optimizer, compile_model


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run cannot recover and is a failure."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise as soon as the loss is NaN or infinite (Keras's TerminateOnNaN stops quietly; we want a reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(f"loss became {float(loss)} in epoch {self.epoch} (batch {batch + 1})")


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; with `deterministic`, also make TensorFlow's ops run-to-run exact."""
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        tf.config.experimental.disable_op_determinism()
    keras.utils.set_random_seed(seed)


def train(cfg: DictConfig, callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict[str, Any]:
    """Train the configured network and score it on the test set.

    Returns the per-epoch `history` (`loss`, `accuracy`, `val_loss`, `val_accuracy`), `test_loss`,
    `test_accuracy`, the number of epochs run and timings in seconds.
    """
    started = time.perf_counter()
    split = make_split(
        val_size=cfg.data.val_size,
        train_subset=cfg.data.train_subset,
        fit_on=cfg.data.fit_on,
        cache=cfg.data.cache,
    )
    set_determinism(cfg.seed, cfg.train.deterministic)
    model = build_model(cfg.model.units, cfg.model.activation, cfg.model.dropout)
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer, resolve=True))
    compile_model(model, optimizer, cfg.train.steps_per_execution, cfg.train.jit_compile)
    validation = (split.x_val, split.y_val) if split.x_val is not None else None
    prepared = time.perf_counter()
    history = model.fit(
        split.x_fit,
        split.y_fit,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        validation_data=validation,
        validation_batch_size=cfg.train.eval_batch_size,
        callbacks=[StopOnNonFiniteLoss(), *callbacks],
        verbose=cfg.train.verbose,
    )
    fitted = time.perf_counter()
    test_loss, test_accuracy = model.evaluate(
        split.x_test, split.y_test, batch_size=cfg.train.eval_batch_size, verbose=0
    )
    finished = time.perf_counter()
    return {
        "history": {key: [float(value) for value in values] for key, values in history.history.items()},
        "epochs_run": len(history.history["loss"]),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "prepare_seconds": prepared - started,
        "fit_seconds": fitted - prepared,
        "evaluate_seconds": finished - fitted,
    }
