"""Shared test helpers: run the real CLI in a subprocess against stores in a temporary folder."""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from servers import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_PY = PROJECT_ROOT / "src" / "run.py"
SERVICES_SCRIPT = PROJECT_ROOT / "scripts" / "services.sh"
# The configs read the stores from these when set; a developer's own must never reach a test's subprocesses.
for _variable in ("OPTUNA_STORAGE", "MLFLOW_TRACKING_URI"):
    os.environ.pop(_variable, None)


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


@dataclass(frozen=True)
class Services:
    """The two URLs every worker is given, and how to stop and start the database alone (an outage)."""

    storage: str
    tracking: str
    environment: dict[str, str]

    def control(self, command: str) -> None:
        """`scripts/services.sh <command>` on these services (db-stop, db-start)."""
        done = subprocess.run(
            [str(SERVICES_SCRIPT), command], env=self.environment, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"services.sh {command} failed:\n{done.stdout}\n{done.stderr}")


def services_log(folder: Path) -> str:
    """The services' own logs, for a failure message."""
    parts = []
    for name in ("initdb.log", "pg.log", "mlflow.log"):
        path = folder / name
        if path.exists():
            parts.append(f"--- {name} (last 3000 chars)\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    """A throwaway PostgreSQL and mlflow server for this module, always stopped and deleted afterwards."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run and `make services` do it)")
    # Directly under /tmp, not pytest's tmp_path: as root, PostgreSQL runs as `postgres`, which cannot enter
    # pytest's root-only folders, and the Unix socket path must stay short.
    folder = Path(tempfile.mkdtemp(prefix="mnist-services-"))
    env = {
        **os.environ,
        "SERVICES_DIR": str(folder),
        "PGPORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "MLFLOW_WORKERS": "1",
        "PYTHON": sys.executable,
    }
    try:
        started = subprocess.run(
            [str(SERVICES_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300
        )
        if started.returncode != 0:
            pytest.fail(f"services did not start:\n{started.stdout}\n{started.stderr}\n{services_log(folder)}")
        exported = subprocess.run(
            [str(SERVICES_SCRIPT), "env"], env=env, capture_output=True, text=True, timeout=60, check=True
        ).stdout
        urls = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in exported.splitlines())
        yield Services(urls["OPTUNA_STORAGE"], urls["MLFLOW_TRACKING_URI"], env)
    finally:
        subprocess.run([str(SERVICES_SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """The workers a test starts; any still running when it ends (say, on a failed assertion) are killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()
