"""bfloat16 fits (`train.precision`) and dropout masks drawn by the epoch loop (`train.dropout_masks=hashed`): the
same seed gives the same numbers, nothing leaks into the next fit, and configs logged before either key existed
train exactly as they did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from omegaconf import DictConfig, open_dict

from conftest import small_config
from mnist_study import logged_config
from mnist_study.precision import cpu_flags, has_bfloat16
from mnist_study.train import jit_choice, train, use_xla, use_xla_for_update

# A few hundred images and one epoch: these tests compare numbers, not accuracies.
TINY = ("data.train_subset=256", "seed=5")
BFLOAT16 = "train.precision=bfloat16"
DROPOUT = "model.dropout=0.3"


def tiny(*overrides: str) -> DictConfig:
    """A few hundred images in float32 (the tests' reference arithmetic) unless the overrides set a precision."""
    chosen = any(item.startswith("train.precision=") for item in overrides)
    return small_config(*TINY, *(() if chosen else ("train.precision=float32",)), *overrides)


def numbers(result: dict[str, Any]) -> tuple:
    """Everything a run logs that the arithmetic decides."""
    return result["history"], result["test_loss"], result["test_accuracy"], result["test_confusion"].tolist()


@pytest.fixture(scope="module")
def float32_fit() -> dict[str, Any]:
    return train(tiny())


@pytest.fixture(scope="module")
def bfloat16_fit() -> dict[str, Any]:
    return train(tiny(BFLOAT16))


def test_bfloat16_gives_the_same_numbers_twice(bfloat16_fit: dict[str, Any]) -> None:
    assert numbers(train(tiny(BFLOAT16))) == numbers(bfloat16_fit)


def test_bfloat16_multiplies_in_bfloat16_and_keeps_float32_weights_and_softmax(
    bfloat16_fit: dict[str, Any], float32_fit: dict[str, Any]
) -> None:
    if not has_bfloat16(cpu_flags()):
        # This CPU falls back (tested in test_precision.py); the fit must then be the float32 fit.
        assert bfloat16_fit["precision"] == "float32"
        assert numbers(bfloat16_fit) == numbers(float32_fit)
        return
    assert bfloat16_fit["precision"] == "bfloat16"
    hidden, output = bfloat16_fit["model"].layers
    assert (hidden.compute_dtype, hidden.variable_dtype) == ("bfloat16", "float32")
    assert (output.compute_dtype, output.variable_dtype) == ("float32", "float32")
    assert all(weight.dtype == "float32" for weight in bfloat16_fit["model"].weights)
    # Other arithmetic, other last digits: the fit really ran in bfloat16.
    assert bfloat16_fit["history"]["loss"] != float32_fit["history"]["loss"]
    assert abs(bfloat16_fit["history"]["loss"][0] - float32_fit["history"]["loss"][0]) < 0.05


def test_a_bfloat16_fit_leaves_nothing_behind_for_the_next_fit(
    bfloat16_fit: dict[str, Any], float32_fit: dict[str, Any]
) -> None:
    # The fixture's bfloat16 fit ran before this float32 fit in the same process.
    assert keras.config.dtype_policy().name == "float32"
    after = train(tiny())
    assert after["precision"] == "float32"
    assert all(layer.compute_dtype == "float32" for layer in after["model"].layers)
    assert numbers(after) == numbers(float32_fit)


def test_a_bfloat16_network_is_served_and_reloaded_with_the_same_answers(
    bfloat16_fit: dict[str, Any], tmp_path: Path
) -> None:
    from mnist_study.data import load_mnist
    from mnist_study.serving.network import serving_network

    trained = bfloat16_fit["model"]
    _, (images, _) = load_mnist()
    scaled = images[:300].reshape(300, -1).astype("float32") / np.float32(255)
    served = serving_network(trained)
    answers = served.predict(images[:300], verbose=0)
    assert answers.dtype == np.float32
    assert np.array_equal(answers, trained.predict(scaled, verbose=0))
    # Plain Keras reloads the layers' dtype policies with them.
    served.save(tmp_path / "network.keras")
    loaded = keras.saving.load_model(tmp_path / "network.keras")
    assert np.array_equal(loaded.predict(images[:300], verbose=0), answers)


def old_config(*overrides: str) -> DictConfig:
    """A config as a run logged it before `train.precision` and `train.dropout_masks` existed, read back."""
    cfg = tiny(*overrides)
    with open_dict(cfg):
        del cfg.train["precision"]
        del cfg.train["dropout_masks"]
    return logged_config.upgrade(cfg)


def test_a_config_logged_before_precision_existed_trains_in_float32_exactly_as_before(
    float32_fit: dict[str, Any],
) -> None:
    old = old_config()
    assert old.train.precision == "float32"
    assert numbers(train(old)) == numbers(float32_fit)


def test_a_dropout_config_logged_before_the_loops_masks_trains_with_keras_masks_as_before() -> None:
    old = old_config(DROPOUT)
    assert old.train.dropout_masks == "keras"
    # As before the key existed: Keras's masks, so `auto` leaves the model to TensorFlow's kernels.
    assert not use_xla(old)
    as_logged = numbers(train(old))
    assert as_logged == numbers(train(tiny(DROPOUT, "train.precision=float32", "train.dropout_masks=keras")))
    assert as_logged != numbers(train(tiny(DROPOUT, "train.dropout_masks=hashed")))


def test_dropout_with_the_loops_masks_gives_the_same_numbers_twice(float32_fit: dict[str, Any]) -> None:
    cfg = tiny(DROPOUT)
    assert cfg.train.dropout_masks == "hashed" and use_xla_for_update(cfg)
    first, second = train(cfg), train(tiny(DROPOUT))
    assert numbers(first) == numbers(second)
    # The masks are drawn: the same network without dropout learns other numbers, and so does another seed.
    assert first["history"]["loss"] != float32_fit["history"]["loss"]
    assert first["history"]["loss"] != train(tiny(DROPOUT, "seed=6"))["history"]["loss"]


def test_dropout_with_the_loops_masks_runs_in_the_compiled_loop_with_the_same_numbers_twice() -> None:
    cfg = tiny(DROPOUT, "train.jit_compile=true")
    assert use_xla(cfg)
    assert numbers(train(cfg)) == numbers(train(tiny(DROPOUT, "train.jit_compile=true")))


def test_bfloat16_with_the_loops_dropout_masks_gives_the_same_numbers_twice() -> None:
    assert numbers(train(tiny(BFLOAT16, DROPOUT))) == numbers(train(tiny(BFLOAT16, DROPOUT)))


def test_auto_compiles_with_xla_where_it_pays() -> None:
    assert jit_choice(tiny()) is True
    assert jit_choice(tiny(DROPOUT)) == "update"
    assert jit_choice(tiny(DROPOUT, "train.dropout_masks=keras")) is False
    # XLA's CPU matrix products have no bfloat16 path: bfloat16 keeps oneDNN's and compiles only the update.
    assert jit_choice(tiny(BFLOAT16)) == "update"
    assert jit_choice(tiny(BFLOAT16), precision="float32") is True
    assert jit_choice(tiny(BFLOAT16, "train.jit_compile=true")) is True
    assert jit_choice(tiny("train.jit_compile=false")) is False


@pytest.mark.parametrize(
    "optimizer",
    [
        pytest.param(("optimizer=adam",), id="adam"),
        # The same question for another optimizer's update: with the slow tier.
        pytest.param(
            ("optimizer=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=true"),
            id="sgd",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_the_update_compiled_alone_gives_the_same_numbers_twice_and_the_same_math(optimizer: tuple) -> None:
    first = train(tiny(*optimizer, "train.jit_compile=update"))
    assert numbers(first) == numbers(train(tiny(*optimizer, "train.jit_compile=update")))
    # The same optimizer update as without XLA, up to the rounding of fused operations.
    without = train(tiny(*optimizer, "train.jit_compile=false"))
    assert first["history"]["loss"] == pytest.approx(without["history"]["loss"], rel=1e-4)
    assert first["test_loss"] == pytest.approx(without["test_loss"], rel=1e-3)


def test_update_only_is_refused_with_keras_fit() -> None:
    with pytest.raises(ValueError, match=r"train\.jit_compile=update needs train\.loop=graph"):
        train(tiny("train.loop=keras", "train.jit_compile=update"))
