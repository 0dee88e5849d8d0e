"""Serving a run's model: a real `mlflow models serve` on loopback answers as the model does in-process.

One tiny run is trained through the CLI into a temporary store; its logged model (`runs:/<run id>/model`) is
served by `make serve MODEL=...` with `MLFLOW_TRACKING_URI` naming the store, and real MNIST test images are
posted to `/invocations` as JSON. The server's digits must equal those of `mlflow.pyfunc.load_model(...)` in this
process, and its probabilities must match theirs.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, store_overrides
from mnist_study.data import load_mnist
from servers import free_port, make_target, serve

pytestmark = pytest.mark.slow

# The smallest real run: enough to log a model whose answers differ from image to image.
SMALL = ["data.train_subset=2000", "train.epochs=1"]
# Test images per request: a batch, so that the server's row order is checked too.
IMAGES = 32
# Loading TensorFlow and the model takes the server 20-60 s on a busy 2-core machine; the wait is bounded.
START_TIMEOUT = 300.0


@dataclass
class TrainedRun:
    """Where the tiny run's store is, and its id."""

    folder: Path
    tracking_uri: str
    run_id: str

    @property
    def model_uri(self) -> str:
        """The run's logged model, as a person names it."""
        return f"runs:/{self.run_id}/model"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One tiny run through the real CLI, its MLflow store in a temporary folder."""
    folder = tmp_path_factory.mktemp("serving")
    # The temporary folder is also the working directory, so that nothing the run writes relative to it (MLflow
    # roots its Default experiment at ./mlruns) can land in the repository.
    result = run_cli([*SMALL, *store_overrides(folder)], cwd=folder)
    if result.returncode != 0:
        pytest.fail(f"training: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    found = re.search(r"mlflow_run=([0-9a-f]{32})", result.stdout + result.stderr)
    if found is None:
        pytest.fail(f"training printed no mlflow_run=<id>:\n{result.stdout}\n{result.stderr}")
    return TrainedRun(folder, f"sqlite:///{folder}/mlflow.db", found.group(1))


@pytest.fixture(scope="module")
def server(trained: TrainedRun) -> Iterator[str]:
    """`make serve` of the run's model, its store named by MLFLOW_TRACKING_URI alone, on a free loopback port;
    yields its base URL, then stops it."""
    port = free_port()
    env = {"MLFLOW_TRACKING_URI": trained.tracking_uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    command = make_target("serve", MODEL=trained.model_uri, SERVE_PORT=port)
    with serve(command, port, trained.folder / "serve.log", START_TIMEOUT, env) as url:
        yield url


def post(url: str, payload: object) -> tuple[int, dict]:
    """POST `payload` as JSON to the server's `/invocations`; the status and the decoded JSON answer."""
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_server_answers_as_the_model_does_in_process(trained: TrainedRun, server: str) -> None:
    import mlflow

    _, (test_images, _) = load_mnist()
    images = test_images[:IMAGES]
    status, answer = post(server, {"inputs": images.tolist()})
    assert status == 200, answer
    # The answer is the model's DataFrame in records orientation: one {"digit", "probabilities"} per image.
    assert list(answer) == ["predictions"]
    predictions = answer["predictions"]
    assert len(predictions) == IMAGES
    assert all(set(row) == {"digit", "probabilities"} for row in predictions)

    # `runs:/` resolves through MLflow's global tracking URI; this process's is restored afterwards.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(trained.tracking_uri)
    try:
        expected = mlflow.pyfunc.load_model(trained.model_uri).predict(images)
    finally:
        mlflow.set_tracking_uri(previous)
    assert [row["digit"] for row in predictions] == expected["digit"].tolist()
    np.testing.assert_allclose(
        np.array([row["probabilities"] for row in predictions]), np.stack(expected["probabilities"]), atol=1e-6
    )
    # A tiny model still tells digits apart: the answers are not one class repeated.
    assert len(set(expected["digit"])) > 1


def test_server_rejects_images_of_the_wrong_shape(server: str) -> None:
    status, answer = post(server, {"inputs": [[0, 255, 0]]})
    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "(-1, 28, 28)" in answer["message"]
