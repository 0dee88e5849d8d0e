"""Shared test helpers: run the real CLI in a subprocess against stores in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_PY = PROJECT_ROOT / "src" / "run.py"


def small_config(*overrides: str) -> DictConfig:
    """The baseline config on 2000 training images and one epoch (validation stays 5000 images), composed in
    this process for tests that call `train()` directly."""
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=["data.train_subset=2000", "train.epochs=1", "train.verbose=0", *overrides],
        )


def store_overrides(folder: Path) -> list[str]:
    """Hydra overrides that send a job's MLflow store and Hydra's outputs to `folder`, not the repository."""
    return [
        f"tracking.uri=sqlite:///{folder}/mlflow.db",
        f"tracking.artifact_location={folder}/mlruns",
        f"hydra.run.dir={folder}/outputs",
        f"hydra.sweep.dir={folder}/multirun",
    ]


def run_cli(args: list[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python src/run.py ARGS` the way a user would, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(RUN_PY), *args],
        cwd=cwd or PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the CLI with its MLflow store in `tmp_path`; on a non-zero exit, fail the test with the output."""

    def invoke(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = run_cli([*args, *store_overrides(tmp_path)])
        if check and result.returncode != 0:
            pytest.fail(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    return invoke
