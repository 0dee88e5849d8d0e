"""The MLflow model of a finished run: logged beside the run's metrics, so the UI's Models tab lists it with them.

The model is MLflow 3's "logged model" linked to the run: its metrics are the run's step-0 metrics (the test
scores), its params the run's params. `log_model` is called after those metrics are logged, so MLflow links them.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.models import infer_signature

from mnist_study.serving import digit_classifier
from mnist_study.serving.network import serving_network
from mnist_study.tracking import TrackedRun

# MLflow says, for every model it logs, that it copied uv.lock and pyproject.toml beside it (kept: they pin the
# environment the model was trained in) and that this environment has no pip: a sweep prints one line per trial.
# MLflow also says that it checks the input example against the signature (it does, by loading the model and
# predicting the example), with a download progress bar on stderr.
logging.getLogger("mlflow.utils.uv_utils").setLevel(logging.WARNING)
logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# Where MLflow's fluent API reads the experiment from when no run is active.
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_ID"
# The name of the model within its run (`runs:/<run id>/model`).
MODEL_NAME = "model"
# How many test images go into the logged input example (the request a person would send).
EXAMPLE_IMAGES = 2


@contextlib.contextmanager
def fluent_target(uri: str, experiment_id: str) -> Iterator[None]:
    """MLflow's model logging talks to the global tracking URI and puts the model in the global experiment (the
    store's Default one, not the run's, when no fluent run is active): point both at the run's for the duration."""
    previous_uri, previous_experiment = mlflow.get_tracking_uri(), os.environ.get(EXPERIMENT_VARIABLE)
    mlflow.set_tracking_uri(uri)
    os.environ[EXPERIMENT_VARIABLE] = experiment_id
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_uri)
        if previous_experiment is None:
            os.environ.pop(EXPERIMENT_VARIABLE, None)
        else:
            os.environ[EXPERIMENT_VARIABLE] = previous_experiment


def log_model(tracked: TrackedRun, trained: keras.Model, example: np.ndarray) -> str:
    """Log `trained` as the run's model (raw pixels in; see `digit_classifier`) and return the model's id.

    The saved network's size is logged first, as the run's metric `model_size_bytes`, so that the model carries
    it with the test scores. `example` holds a few raw test images (uint8, (n, 28, 28)); the signature is
    inferred from the model's own answer to them.
    """
    network = serving_network(trained)
    wrapper = digit_classifier.DigitClassifier()
    wrapper.network = network
    with quiet_schema_warnings():
        signature = infer_signature(example, wrapper.predict(None, example))
    client, run_id = tracked.client, tracked.run_id
    with (
        tempfile.TemporaryDirectory() as folder,
        fluent_target(client.tracking_uri, tracked.experiment_id),
        quiet_schema_warnings(),
    ):
        path = Path(folder) / "network.keras"
        network.save(path)
        size = path.stat().st_size
        client.log_batch(run_id, metrics=[Metric("model_size_bytes", float(size), int(time.time() * 1000), 0)])
        info = mlflow.models.Model.log(
            None,
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            python_model=digit_classifier.__file__,
            artifacts={digit_classifier.NETWORK_ARTIFACT: str(path)},
            signature=signature,
            input_example=example,
            run_id=run_id,
            # Named, so that MLflow does not load the model in a subprocess to find out (seconds per run).
            pip_requirements=requirements(),
        )
    return info.model_id


@contextlib.contextmanager
def quiet_schema_warnings() -> Iterator[None]:
    """Two of MLflow's warnings that say nothing about this model: an integer column (`digit`) cannot hold a
    missing value (a digit is never missing), and `predict` has no type hints MLflow can validate against (the
    signature, inferred from real images, does that)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*Inferred schema contains integer column", category=UserWarning
        )
        warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method", category=UserWarning)
        yield


def requirements() -> list[str]:
    """What the logged model needs to load, pinned to the versions it was trained with."""
    packages = ("mlflow", "keras", "tensorflow", "numpy", "pandas")
    return [f"{package}=={importlib.metadata.version(package)}" for package in packages]
