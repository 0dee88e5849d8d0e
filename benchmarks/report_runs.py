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


def report_results(client: MlflowClient, report_run_id: str) -> dict[str, dict]:
    """A report run's results.json: configuration label -> its overrides, test accuracies, mean, verdict."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # One small file: no progress bar.
    with tempfile.TemporaryDirectory() as scratch:
        return json.loads(Path(client.download_artifacts(report_run_id, "results.json", scratch)).read_text())
