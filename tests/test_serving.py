"""Serving a run's model: a real `mlflow models serve` on loopback answers as the model does in-process.

One tiny run (the session's smoke-study baseline, trained through the CLI into a temporary store) has its logged
model (`runs:/<run id>/model`) served by `make serve MODEL=...` with `MLFLOW_TRACKING_URI` naming the store, and
real MNIST test images are posted to `/invocations` as JSON. The server's digits must equal those of
`mlflow.pyfunc.load_model(...)` in this process, and its probabilities must match theirs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import SmokeStudy
from mnist_study.data import load_mnist
from servers import free_port, make_target, serve

pytestmark = pytest.mark.slow

# Test images per request: a batch, so that the server's row order is checked too.
IMAGES = 32
# Loading TensorFlow and the model takes the server 20-60 s on a busy 2-core machine; the wait is bounded.
START_TIMEOUT = 300.0


@dataclass
class TrainedRun:
    """The tiny run's store and id, and a folder of this module's own for the server's log."""

    folder: Path
    tracking_uri: str
    run_id: str

    @property
    def model_uri(self) -> str:
        """The run's logged model, as a person names it."""
        return f"runs:/{self.run_id}/model"


@pytest.fixture(scope="module")
def trained(smoke_study: SmokeStudy, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """The session's smoke-study baseline: the smallest real run whose model's answers differ from image to
    image."""
    return TrainedRun(tmp_path_factory.mktemp("serving"), smoke_study.tracking_uri, smoke_study.run_id("baseline"))


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
