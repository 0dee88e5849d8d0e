"""Training one configuration: the history it returns, and the same seed giving the same numbers."""

from __future__ import annotations

import math

import pytest

from conftest import small_config, small_run
from mnist_study.train import NonFiniteLossError, train


def test_train_returns_history_test_metrics_and_timings() -> None:
    result = small_run("train.epochs=2")
    assert set(result["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 2 for values in result["history"].values())
    assert result["epochs_run"] == 2
    # Two epochs on a few hundred images already learn something: far above the 10 % of guessing.
    assert 0.5 < result["test_accuracy"] <= 1.0
    assert math.isfinite(result["test_loss"])
    assert result["fit_seconds"] > 0 and result["evaluate_seconds"] > 0


def test_same_config_and_seed_give_identical_numbers() -> None:
    # The default `train.jit_compile=auto` trains this network with XLA (test_epoch_loop.py checks without).
    first = small_run("seed=3")
    second = train(small_config("seed=3"))
    assert first["test_loss"] == second["test_loss"]
    assert first["test_accuracy"] == second["test_accuracy"]
    assert first["history"]["val_loss"] == second["history"]["val_loss"]


def test_another_seed_gives_other_numbers() -> None:
    assert small_run("seed=3")["test_loss"] != small_run("seed=4")["test_loss"]


def test_diverging_loss_stops_training_with_a_reason() -> None:
    with pytest.raises(NonFiniteLossError, match="loss became"):
        train(small_config("optimizer=sgd", "optimizer.learning_rate=1e12"))
