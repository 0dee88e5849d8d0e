"""Fit and evaluate one configuration: config in, metrics out.

This module knows nothing of MLflow or Optuna. Tracking and pruning reach it as Keras callbacks; a callback that
raises (a pruned trial, a diverging loss) ends `train` with that exception.
"""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from hydra.utils import instantiate
from omegaconf import DictConfig
from tensorflow.python.framework import config as tf_config

from mnist_study.data import Split
from mnist_study.epoch_loop import EpochLoop, NonFiniteLossError
from mnist_study.metrics import confusion_matrix
from mnist_study.model import build_optimizer, compile_model, trainable_parameters
from mnist_study.precision import BFLOAT16, FLOAT32, effective_precision
from mnist_study.schedule import learning_rate, steps_per_epoch

log = logging.getLogger(__name__)
# `train.jit_compile=update`: XLA compiles the optimizer's update (and the loop's dropout masks) only.
UPDATE_ONLY = "update"


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
    # TensorFlow exposes only the enabling half publicly; the flag is process-wide, so a trial that asks for
    # non-deterministic ops must switch it off again rather than inherit the previous trial's setting.
    if deterministic:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    keras.utils.set_random_seed(seed)


def set_threads(intra_op: int | None, inter_op: int | None) -> None:
    """Size TensorFlow's thread pools (None keeps TensorFlow's choice: one thread per core).

    The pools exist once per process and can be sized only before TensorFlow runs its first op; a later request
    for a different size cannot take effect, so it is logged and ignored rather than failing the trial.
    """
    for name, wanted, getter, setter in (
        (
            "intra_op_threads",
            intra_op,
            tf.config.threading.get_intra_op_parallelism_threads,
            tf.config.threading.set_intra_op_parallelism_threads,
        ),
        (
            "inter_op_threads",
            inter_op,
            tf.config.threading.get_inter_op_parallelism_threads,
            tf.config.threading.set_inter_op_parallelism_threads,
        ),
    ):
        if wanted is None or getter() == wanted:
            continue
        if wanted < 0:
            raise ValueError(f"train.{name}={wanted}: must be >= 0 (0 lets TensorFlow choose) or null")
        try:
            setter(wanted)
        except RuntimeError:
            log.warning(
                "train.%s=%s ignored: TensorFlow's thread pools already exist in this process", name, wanted
            )


# Tensors built from a split's arrays, kept for the life of the process. Keyed by the split's identity (make_split
# is memoised, so every trial on the same data gets the same Split object) and the images' precision; the Split is
# kept alive beside its tensors so that an id is never reused for different data.
_TENSORS: dict[tuple[int, str], tuple[Split, dict[str, tf.Tensor | None]]] = {}
IMAGE_FIELDS = ("x_fit", "x_val", "x_test")
LABEL_FIELDS = ("y_fit", "y_val", "y_test")


def split_tensors(split: Split, precision: str = FLOAT32) -> dict[str, tf.Tensor | None]:
    """The split's arrays as TensorFlow tensors, converted once per process rather than in every `fit`.

    Keras copies NumPy input into a new tensor at the start of each `fit` and `evaluate` (the 55 000 training
    images are 172 MB as float32); tensors are sliced in place. For bfloat16 the images are stored in bfloat16:
    the hidden layer would round them to bfloat16 in every step anyway (the same rounding, so the same numbers),
    and each step then gathers half the bytes.
    """
    cached = _TENSORS.get((id(split), precision))
    if cached is None or cached[0] is not split:
        image_dtype = tf.bfloat16 if precision == BFLOAT16 else tf.float32

        def tensor(array: np.ndarray | None, dtype: tf.DType | None = None) -> tf.Tensor | None:
            return None if array is None else tf.convert_to_tensor(array, dtype=dtype)

        tensors = {name: tensor(getattr(split, name), image_dtype) for name in IMAGE_FIELDS}
        tensors.update({name: tensor(getattr(split, name)) for name in LABEL_FIELDS})
        cached = (split, tensors)
        _TENSORS[(id(split), precision)] = cached
    return cached[1]


def forget_tensors() -> None:
    """Forget the tensors built from splits, so the next fit converts its data again, as a fresh process would."""
    _TENSORS.clear()


def train(
    cfg: DictConfig, callbacks: Sequence[keras.callbacks.Callback] = (), score_test: bool = True
) -> dict[str, Any]:
    """Train the configured network and score it on the test set.

    Returns the trained `model`, the per-epoch `history` (`loss`, `accuracy`, `val_loss`, `val_accuracy`),
    `test_loss`, `test_accuracy`, `test_confusion` (counts of true digit x predicted digit), the number of epochs
    run and timings in seconds. With `score_test=False` the test images are never passed through the network and
    the three test entries are None: for fits that choose between configurations (the report's re-scoring).
    """
    started = time.perf_counter()
    loop = cfg.train.loop
    if loop == "keras" and cfg.train.jit_compile is True and cfg.train.deterministic:
        # Keras quietly drops XLA when op determinism is on; a run must not claim a setting it did not use.
        raise ValueError(
            "train.jit_compile=true with train.loop=keras needs train.deterministic=false: "
            "Keras disables XLA under op determinism"
        )
    if loop == "keras" and cfg.train.jit_compile == UPDATE_ONLY:
        raise ValueError(
            "train.jit_compile=update needs train.loop=graph: Keras's fit compiles all of a step or none of it"
        )
    precision = effective_precision(cfg.train.precision)
    split: Split = instantiate(cfg.data)
    set_threads(cfg.train.intra_op_threads, cfg.train.inter_op_threads)
    set_determinism(cfg.seed, cfg.train.deterministic)
    data = split_tensors(split, precision)
    model = instantiate(cfg.model, precision=precision)
    steps = steps_per_epoch(int(data["x_fit"].shape[0]), cfg.train.batch_size)
    rate = learning_rate(cfg.get("schedule"), cfg.optimizer.learning_rate, cfg.train.epochs, steps)
    # A constant rate builds the optimizer exactly as before schedules existed.
    optimizer = build_optimizer(cfg.optimizer, None if isinstance(rate, float | int) else rate)
    validation = (data["x_val"], data["y_val"]) if data["x_val"] is not None else None
    fit_and_evaluate = fit_in_epochs if loop == "graph" else fit_with_keras
    prepared = time.perf_counter()
    history, score, fitted = fit_and_evaluate(
        Fit(cfg, model, optimizer, data, validation, tuple(callbacks), precision)
    )
    test_loss, test_accuracy, test_confusion = score() if score_test else (None, None, None)
    finished = time.perf_counter()
    return {
        "model": model,
        # The arithmetic the fit used: train.precision, or float32 where the CPU has no bfloat16.
        "precision": precision,
        "history": history,
        "epochs_run": len(history["loss"]),
        # Trainable weights: the network's size, which a study may minimize beside its accuracy.
        "n_params": trainable_parameters(model),
        "test_loss": None if test_loss is None else float(test_loss),
        "test_accuracy": None if test_accuracy is None else float(test_accuracy),
        "test_confusion": test_confusion,
        "prepare_seconds": prepared - started,
        "fit_seconds": fitted - prepared,
        "evaluate_seconds": finished - fitted,
    }


@dataclass(frozen=True)
class Fit:
    """What a training path (`fit_in_epochs`, `fit_with_keras`) needs: the config, the built network and
    optimizer, the split as tensors, the validation pair (None without a hold-out), the callbacks and the
    precision the fit uses."""

    cfg: DictConfig
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    data: dict[str, tf.Tensor | None]
    validation: tuple[tf.Tensor, tf.Tensor] | None
    callbacks: tuple[keras.callbacks.Callback, ...]
    precision: str = FLOAT32


# What a training path returns: the per-epoch history, what scores the fitted network on the test set (test loss,
# test accuracy, test confusion matrix) when called, and when fitting ended.
TestScores = tuple[float, float, np.ndarray]
Fitted = tuple[dict[str, list[float]], Callable[[], TestScores], float]


def jit_choice(cfg: DictConfig, precision: str | None = None) -> bool | str:
    """What XLA compiles in the epoch loop: all of it (True), nothing (False), or only the optimizer's update and
    the loop's dropout masks (`"update"`, the matrix products left to TensorFlow's oneDNN kernels).

    `train.jit_compile`, where `auto` means "where it helps" (benchmarks/README.md has the measurements): XLA fuses
    the tutorial network's small element-wise ops and fits it faster; Keras's own Dropout masks make a dropout
    model several times slower under XLA on CPU, so dropout models with `train.dropout_masks=keras` get no XLA;
    XLA's CPU matrix products do not use the bfloat16 instructions oneDNN uses, so bfloat16 fits, and dropout
    models with the loop's own masks, get `update`. Either way, the same seed gives the same numbers. `precision`
    is the one the fit uses (`train.precision` when None).
    """
    setting = cfg.train.jit_compile
    if setting != "auto":
        return setting
    dropout = has_dropout(cfg)
    if (precision or cfg.train.precision) == BFLOAT16 or (dropout and cfg.train.dropout_masks == "hashed"):
        return UPDATE_ONLY
    return not dropout


def has_dropout(cfg: DictConfig) -> bool:
    """Whether the network has a Dropout layer: after its hidden layers, or on its input."""
    return bool(cfg.model.dropout) or bool(cfg.model.get("input_dropout", 0.0))


def use_xla(cfg: DictConfig, precision: str | None = None) -> bool:
    """Whether XLA compiles the whole epoch loop (see `jit_choice`)."""
    return jit_choice(cfg, precision) is True


def use_xla_for_update(cfg: DictConfig, precision: str | None = None) -> bool:
    """Whether XLA compiles the optimizer's update alone, inside an epoch run by TensorFlow's kernels."""
    return jit_choice(cfg, precision) == UPDATE_ONLY


def use_xla_for_scoring(cfg: DictConfig, precision: str | None = None) -> bool:
    """Whether the epoch loop's scoring passes (validation, test) are compiled by XLA too.

    Only where training is, and only if `train.jit_compile_scoring` asks: a forward pass gains nothing measurable
    from XLA, while each data set size (validation, test) costs a compile in every trial (benchmarks/README.md).
    """
    return use_xla(cfg, precision) and bool(cfg.train.jit_compile_scoring)


def label_smoothing(cfg: DictConfig) -> float:
    """`train.label_smoothing` (0, the tutorial's loss, for a config that predates it)."""
    return float(cfg.train.get("label_smoothing", 0.0))


def fit_in_epochs(fit: Fit) -> Fitted:
    """`train.loop=graph`: one TensorFlow call per epoch (see `epoch_loop`), compiled by XLA as `use_xla` and
    `use_xla_for_scoring` say."""
    cfg, data = fit.cfg, fit.data
    loop = EpochLoop(
        fit.model,
        fit.optimizer,
        jit_compile=use_xla(cfg, fit.precision),
        jit_compile_scoring=use_xla_for_scoring(cfg, fit.precision),
        dropout_masks=cfg.train.dropout_masks,
        jit_compile_update=use_xla_for_update(cfg, fit.precision),
        label_smoothing=label_smoothing(cfg),
    )
    history = loop.fit(
        data["x_fit"],
        data["y_fit"],
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        seed=cfg.seed,
        validation=fit.validation,
        validation_batch_size=cfg.train.eval_batch_size,
        callbacks=fit.callbacks,
        verbose=cfg.train.verbose,
    )
    fitted = time.perf_counter()
    score = functools.partial(loop.evaluate, data["x_test"], data["y_test"], cfg.train.eval_batch_size)
    return history, score, fitted


def fit_with_keras(fit: Fit) -> Fitted:
    """`train.loop=keras`: Keras's own `fit` and `evaluate`, `train.steps_per_execution` batches per call."""
    cfg, data, model = fit.cfg, fit.data, fit.model
    compile_model(model, fit.optimizer, cfg.train.steps_per_execution, cfg.train.jit_compile, label_smoothing(cfg))
    history = model.fit(
        data["x_fit"],
        data["y_fit"],
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        validation_data=fit.validation,
        validation_batch_size=cfg.train.eval_batch_size,
        callbacks=[StopOnNonFiniteLoss(), *fit.callbacks],
        verbose=cfg.train.verbose,
    )
    fitted = time.perf_counter()

    def score() -> TestScores:
        scores = model.evaluate(data["x_test"], data["y_test"], batch_size=cfg.train.eval_batch_size, verbose=0)
        predicted = model.predict(data["x_test"], batch_size=cfg.train.eval_batch_size, verbose=0).argmax(axis=1)
        confusion = confusion_matrix(np.asarray(data["y_test"]), predicted, classes=int(model.output_shape[-1]))
        return scores[0], scores[1], confusion

    as_floats = {key: [float(value) for value in values] for key, values in history.history.items()}
    return as_floats, score, fitted
