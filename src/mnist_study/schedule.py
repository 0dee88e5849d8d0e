"""The learning rate a fit's optimizer is built with: `optimizer.learning_rate`, or a schedule around it.

The `schedule` config group chooses: `constant` (the tutorial's: the optimizer's rate at every step) or a Keras
schedule built from its `_target_` (`cosine`: CosineDecay with a linear warm-up). A schedule counts optimizer
steps, and how many steps an epoch has depends on the data and the batch size, so it is built here, by `train`,
once both are known.
"""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import math

import keras
from hydra.utils import instantiate
from omegaconf import DictConfig

# Keys of a schedule's config that are not arguments to its `_target_`.
OWN_KEYS = ("name", "warmup_epochs")


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: both training loops fill or keep a last, partial batch."""
    return math.ceil(images / batch_size)


def learning_rate(
    schedule_cfg: DictConfig | None, peak: float, epochs: int, steps: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """`peak` itself for a constant schedule (or a config without one); otherwise the schedule's `_target_`, over
    `epochs` epochs of `steps` steps, warming up from 0 to `peak` over `warmup_epochs` and decaying after."""
    if schedule_cfg is None or "_target_" not in schedule_cfg:
        return peak
    warmup_steps = int(schedule_cfg.get("warmup_epochs", 0)) * steps
    arguments = {key: value for key, value in schedule_cfg.items() if key not in OWN_KEYS}
    return instantiate(
        arguments,
        initial_learning_rate=0.0,
        decay_steps=max(epochs * steps - warmup_steps, 1),
        warmup_target=peak,
        warmup_steps=warmup_steps,
        _convert_="all",
    )
