"""End to end through the real command line, in a subprocess, with the MLflow store in a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli, store_overrides
from mnist_study.launch import UI_ENVIRONMENT
from servers import free_port

pytestmark = pytest.mark.slow  # Every test starts `python src/run.py`.


def only_run(folder: Path) -> tuple[MlflowClient, object]:
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("mnist-mlp")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_small_run_logs_params_epoch_metrics_and_a_summary_line(cli, tmp_path: Path) -> None:
    result = cli("data.train_subset=2000", "train.epochs=2")
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "data.train_subset=2000,train.epochs=2"
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["data.fit_on"] == "train"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, key)] == [1, 2]
    assert {"test_loss", "test_accuracy"} <= set(run.data.metrics)
    summary = result.stdout.strip().splitlines()[-1]
    assert f"test_accuracy={run.data.metrics['test_accuracy']:.4f}" in summary
    assert run.info.run_id in summary
    # TensorFlow's start-up noise is silenced; what is left on stderr is ours.
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()


def test_seed_replica_fits_on_the_test_set(cli, tmp_path: Path) -> None:
    cli("seed_replica", "train.epochs=1", "tracking.plots=false")
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "seed_replica"
    assert run.data.params["data.fit_on"] == "test"
    assert run.data.tags["protocol"].startswith("tutorial")
    # tracking.plots=false: the run has its config but no figures (the other CLI tests check that they exist).
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts and "plots" not in artifacts
    assert "plot_seconds" not in run.data.metrics


def test_unknown_bare_word_is_one_clear_line(cli) -> None:
    result = cli("basline", check=False)
    assert result.returncode != 0
    assert "'basline'" in result.stderr and "baseline" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def baseline_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full baseline run (55 000 training images, 5 epochs), shared by the tests below."""
    folder = tmp_path_factory.mktemp("baseline")
    result = run_cli(store_overrides(folder))
    if result.returncode != 0:
        pytest.fail(f"baseline failed:\n{result.stdout}\n{result.stderr}")
    return folder


def test_baseline_reaches_the_tutorials_accuracy(baseline_folder: Path) -> None:
    client, run = only_run(baseline_folder)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "baseline"
    params = run.data.params
    assert (params["model.units"], params["optimizer.name"]) == ("512", "rmsprop")
    assert (params["train.epochs"], params["train.batch_size"]) == ("5", "128")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 5
    assert run.data.metrics["test_accuracy"] >= 0.975


def test_mlflow_ui_started_in_the_store_folder_lists_the_run(baseline_folder: Path) -> None:
    # `mlflow ui` with no store flags reads ./mlflow.db, which is where our default URI puts the runs. One worker
    # and no job consumers, as `make ui` starts it: by default MLflow starts four server workers and its job
    # consumers, each a full mlflow import.
    _, run = only_run(baseline_folder)
    port = free_port()
    mlflow_cli = [sys.executable, "-m", "mlflow", "ui", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(
        mlflow_cli,
        cwd=baseline_folder,
        env={**os.environ, **UI_ENVIRONMENT},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = json.dumps({"experiment_ids": [run.info.experiment_id]}).encode()
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/runs/search"
        deadline = time.monotonic() + 90
        while True:
            try:
                request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    listed = json.load(response)["runs"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        assert [item["info"]["run_id"] for item in listed] == [run.info.run_id]
    finally:
        server.terminate()
        server.wait(timeout=30)
