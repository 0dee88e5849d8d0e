"""What the benchmarks read back from a finished report, without TensorFlow: the user path's benchmarks
(`default_study.py`) and the post hoc ones (`rescoring.py`) share it instead of importing each other."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# The default study's name, which is also its registered model's and MLflow experiment's.
STUDY = "mnist-mlp"


def store_uris(folder: Path) -> dict[str, str]:
    """The Optuna and MLflow stores of a study run in `folder` (`default_study.py` keeps them there)."""
    return {"optuna": f"sqlite:///{folder}/optuna.db", "mlflow": f"sqlite:///{folder}/mlflow.db"}


def tracking_overrides(folder: Path) -> list[str]:
    """The overrides that send a job's MLflow runs and artifacts to `folder`."""
    return [f"tracking.uri={store_uris(folder)['mlflow']}", f"tracking.artifact_location={folder}/mlruns"]


def report_command(python: str, folder: Path, extra: list[str]) -> list[str]:
    """`python src/report.py` on the study whose stores are in `folder`, everything it writes kept there."""
    return [
        python, "src/report.py", f"storage={store_uris(folder)['optuna']}", f"output_dir={folder}/report",
        f"experiments_dir={folder}", f"hydra.run.dir={folder}/outputs", *tracking_overrides(folder), *extra,
    ]  # fmt: skip


def report_results(client: MlflowClient, report_run_id: str) -> dict[str, dict]:
    """A report run's results.json: configuration label -> its overrides, test accuracies, mean, verdict."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # One small file: no progress bar.
    with tempfile.TemporaryDirectory() as scratch:
        return json.loads(Path(client.download_artifacts(report_run_id, "results.json", scratch)).read_text())
