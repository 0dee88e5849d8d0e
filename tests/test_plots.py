"""Per-run figures: the confusion matrix's counts, the curves' content, best-effort logging, run descriptions."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import composed
from mlflow_stores import new_store
from mnist_study.callbacks import EpochRecorder
from mnist_study.describe import description, outcome, short_description
from mnist_study.metrics import confusion_matrix
from mnist_study.plots import CURVES_ARTIFACT, confusion_figure, learning_curves_figure, log_figure


def test_confusion_matrix_counts_truth_by_row_and_prediction_by_column() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 0, 2])
    matrix = confusion_matrix(labels, predicted, classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert matrix.sum() == len(labels)


def test_confusion_matrix_refuses_mismatched_or_out_of_range_input() -> None:
    with pytest.raises(ValueError, match="labels but"):
        confusion_matrix(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        confusion_matrix(np.array([0, 10]), np.array([0, 1]))


def test_confusion_figure_titles_the_accuracy() -> None:
    matrix = confusion_matrix(np.arange(10).repeat(3), np.r_[np.arange(10).repeat(3)[:-1], 0])
    figure = confusion_figure(matrix, "trial-1: test set")
    assert "29/30 correct (96.67%)" in figure.axes[0].get_title()


def test_learning_curves_draw_train_and_validation_per_epoch() -> None:
    history = {"loss": [0.9, 0.5], "val_loss": [0.6, 0.4], "accuracy": [0.8, 0.9], "val_accuracy": [0.85, 0.92]}
    figure = learning_curves_figure(history, "baseline")
    loss_axes, accuracy_axes = figure.axes
    assert [line.get_label() for line in loss_axes.get_lines()] == ["train", "validation"]
    assert list(accuracy_axes.get_lines()[1].get_ydata()) == [0.85, 0.92]
    assert list(accuracy_axes.get_lines()[1].get_xdata()) == [1, 2]


def test_learning_curves_refuse_a_run_without_epochs() -> None:
    with pytest.raises(ValueError, match="no epoch"):
        learning_curves_figure({}, "empty")


def test_epoch_recorder_keeps_every_epoch() -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((32, 4)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    recorder = EpochRecorder()
    model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[recorder])
    assert sorted(recorder.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(recorder.history["val_accuracy"]) == 3


def test_log_figure_stores_the_png_and_survives_a_failing_plot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = MlflowClient(tracking_uri=new_store(tmp_path))
    experiment = client.create_experiment("plots", artifact_location=(tmp_path / "mlruns").as_uri())
    run_id = client.create_run(experiment).info.run_id
    history = {"loss": [0.9, 0.5], "val_loss": [0.6, 0.4]}
    log_figure(client, run_id, lambda: learning_curves_figure(history, "ok"), CURVES_ARTIFACT)

    def broken() -> None:
        time.sleep(0.05)
        raise ValueError("cannot draw this")

    started = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        seconds = log_figure(client, run_id, broken, "plots/broken.png")
    elapsed = time.perf_counter() - started
    # The seconds returned (a run's `plot_seconds`) include the drawing, even a drawing that fails.
    assert 0.05 <= seconds <= elapsed
    assert "cannot draw this" in caplog.text
    stored = [item.path for item in client.list_artifacts(run_id, "plots")]
    assert stored == [CURVES_ARTIFACT]
    png = Path(client.download_artifacts(run_id, CURVES_ARTIFACT, str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_trial_description_says_its_parameters_in_words() -> None:
    cfg = composed(
        "optimizer=adam",
        "model.units=128",
        "model.dropout=0.25",
        "optimizer.learning_rate=0.0031",
        "trial.number=7",
        "trial.study_name=smoke",
    )
    text = description(cfg, "trial-7")
    assert text.startswith("Trial 7 of the Optuna study `smoke`.")
    assert "784 → 128 relu → 10 softmax network (dropout 0.25)" in text
    assert "adam at learning rate 0.0031 (beta_1 0.9, beta_2 0.999, epsilon 1e-07)" in text
    assert "for 5 epochs at batch size 128, seed 0" in text
    assert short_description(cfg) == "128 units, dropout 0.25, adam lr 0.0031, 5 epochs, batch 128"


def test_the_baseline_and_the_replica_say_what_they_are() -> None:
    assert description(composed(), "baseline").startswith("The baseline:")
    replica = description(composed("data.fit_on=test"), "seed_replica")
    assert "not an honest estimate" in replica


def test_outcome_sentences() -> None:
    history = {"loss": [0.5, 0.4], "val_accuracy": [0.9, 0.95]}
    assert (
        outcome(history, 0.9412, pruned=False) == "Finished 2 epochs, val_accuracy 0.9500, test_accuracy 0.9412."
    )
    assert outcome(history, None, pruned=True) == "Pruned after epoch 2, val_accuracy 0.9500."
