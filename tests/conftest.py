"""Shared test helpers: run the real CLI in a subprocess against stores in a temporary folder; the two tiers (a
fast test starts no subprocess, see tests/fast_tier.py); one rule for the system packages some tests need."""

from __future__ import annotations

import contextlib
import copy
import functools
import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from built_once import built_once, shared_root
from fast_tier import refusal_message, refusing_subprocesses
from mnist_study.report.workers import cores
from servers import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_PY = PROJECT_ROOT / "src" / "run.py"
SERVICES_SCRIPT = PROJECT_ROOT / "scripts" / "services.sh"
# The configs read the stores from these when set; a developer's own must never reach a test's subprocesses.
for _variable in ("OPTUNA_STORAGE", "MLFLOW_TRACKING_URI"):
    os.environ.pop(_variable, None)


# System packages some tests need: how to tell one is installed, and how to install it.
SYSTEM_PACKAGES: dict[str, tuple[Callable[[], bool], str]] = {
    "postgresql": (lambda: bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")), "apt-get install postgresql"),
    "chromium": (lambda: shutil.which("chromium") is not None, "apt-get install chromium"),
    "slurm": (
        lambda: all(shutil.which(name) for name in ("slurmctld", "slurmd", "munged", "sbatch")),
        "apt-get install slurm-wlm munge",
    ),
}
# Fast-tier tests that train call `train()` on this many images: enough to learn something, a second to fit.
FAST_TRAIN_SUBSET = 300


def under_ci() -> bool:
    """Whether the suite runs under CI (`CI=true`, as CI services and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_system(name: str) -> None:
    """Skip the calling test when the system package `name` is missing on a developer's machine; fail it under
    CI, which installs every one of them (.ci/run), so that a test never goes quietly unrun there."""
    if name not in SYSTEM_PACKAGES:
        raise ValueError(f"unknown system package {name!r}; known: {', '.join(SYSTEM_PACKAGES)}")
    installed, install = SYSTEM_PACKAGES[name]
    if installed():
        return
    message = f"{name} is not installed ({install}; .ci/run installs it)"
    if under_ci():
        pytest.fail(f"{message}, and under CI=true a missing system package is a failure", pytrace=False)
    pytest.skip(message)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many pytest-xdist workers `-n auto` (pyproject's addopts) starts: one per core for a tier or the whole
    suite, whose files then run side by side, each on its own worker (`--dist loadfile`, so that a file's module
    fixtures are built once); none when the arguments name a single file, where starting workers would cost more
    than they save (and `--pdb` works)."""
    files = {str(argument).split("::")[0] for argument in config.args}
    if len(files) == 1 and next(iter(files)).endswith(".py"):
        return 0
    return cores()


def in_fast_tier(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is None


@contextlib.contextmanager
def fast_tier_rule(item: pytest.Item) -> Iterator[None]:
    """In a fast-tier test, starting a subprocess fails the test, even when the code under test swallowed the
    error it raised."""
    if not in_fast_tier(item):
        yield
        return
    with refusing_subprocesses() as refused:
        try:
            yield
        finally:
            if refused:
                pytest.fail(refusal_message(refused), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """`@pytest.mark.system("chromium", ...)` is checked before any fixture is built; then the fixtures are built
    under the fast tier's rule. (Teardown is not guarded: a module's last test may stop what slow ones started.)"""
    for marker in item.iter_markers("system"):
        for name in marker.args:
            require_system(name)
    with fast_tier_rule(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with fast_tier_rule(item):
        return (yield)


def composed(*overrides: str, config_name: str = "config", hydra: bool = False) -> DictConfig:
    """A config of the project's as the commands compose it (with Hydra's own node when `hydra`), a fresh copy
    that the test may change.

    Composing reads and merges a dozen YAML files, and the suite composes the same command many times (the
    measurement is in benchmarks/README.md § The test suite), so each is composed once per process. A command
    that searches another folder (`hydra.searchpath=...`, a test's own files, which it may rewrite) is composed
    anew every time.
    """
    if any(item.startswith("hydra.searchpath=") for item in overrides):
        return compose_now(config_name, overrides, hydra)
    return copy.deepcopy(composed_once(config_name, overrides, hydra))


def compose_now(config_name: str, overrides: tuple[str, ...], hydra: bool) -> DictConfig:
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=hydra)


# Interpolations (`${oc.env:...}`, `${project_root:}`) stay unresolved in the kept config: each copy resolves
# them when read, under the environment of that moment.
composed_once = functools.cache(compose_now)


def small_config(*overrides: str) -> DictConfig:
    """The baseline config on a few hundred training images and one epoch (validation stays 5000 images, the
    test set 10 000), composed in this process for fast-tier tests that call `train()` directly."""
    return composed(f"data.train_subset={FAST_TRAIN_SUBSET}", "train.epochs=1", "train.verbose=0", *overrides)


@functools.cache
def small_run(*overrides: str) -> Mapping[str, Any]:
    """`train(small_config(*overrides))`, fitted once per test process: fast-tier tests that only read a fit's
    result share it (each fit costs seconds, mostly compiling). A test that needs a fresh fit calls `train()`."""
    from mnist_study.train import train

    return MappingProxyType(train(small_config(*overrides)))


def vacant_pid() -> int:
    """A process id that no process holds: what a dead worker's pid looks like once its process is gone (found
    in /proc, without starting a process to let it die)."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    # From the top of the range, which the kernel reaches last when it hands out new ids.
    for pid in range(pid_max - 1, 1, -1):
        if not Path(f"/proc/{pid}").exists():
            return pid
    raise RuntimeError("every process id is in use")


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


# The smoke study's own data and epochs (experiments/smoke.yaml), so that the baseline lines up with its trials.
SMOKE_BASELINE = ["data.train_subset=2000", "train.epochs=2"]


@dataclass(frozen=True)
class SmokeStudy:
    """A baseline run and the smoke study (three trials), in one MLflow store and one Optuna storage.

    Built once per session and shared: read it in place. A test that writes to the stores takes its own `copy`;
    the runs' artifacts stay in the shared folder, where new runs' artifacts also land, each under its own run id.
    """

    folder: Path

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.folder}/mlflow.db"

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.folder}/optuna.db"

    def run_id(self, name: str) -> str:
        """The id of the run named `name` (`baseline`, `smoke`, `trial-0`, ...)."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name("mnist-mlp")
        (run,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")
        return run.info.run_id

    def output_file(self, command: str) -> Path:
        """Where the build keeps what `python src/run.py COMMAND ...` printed (`baseline` or `smoke`)."""
        return self.folder / f"{command}.out"

    def output(self, command: str) -> str:
        """What the build's `python src/run.py COMMAND ...` printed."""
        return self.output_file(command).read_text()

    def copy(self, folder: Path) -> SmokeStudy:
        """The two stores copied into `folder`, for a test that writes to them."""
        for name in ("mlflow.db", "optuna.db"):
            shutil.copy(self.folder / name, folder / name)
        return SmokeStudy(folder)


def build_smoke_study(folder: Path) -> None:
    """`python src/run.py baseline ...`, then `python src/run.py smoke ...`, with both stores in `folder`; what
    each printed is kept beside them."""
    storage = f"sqlite:///{folder}/optuna.db"
    for args in (
        ["baseline", *SMOKE_BASELINE, *store_overrides(folder)],
        ["smoke", *store_overrides(folder), f"hydra.sweeper.storage={storage}"],
    ):
        result = run_cli(args)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        SmokeStudy(folder).output_file(args[0]).write_text(result.stdout)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> SmokeStudy:
    """The session's one smoke study (about a minute to build), shared by every test that only needs a study."""
    return SmokeStudy(built_once(shared_root(tmp_path_factory, worker_id), "smoke-study", build_smoke_study))


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
    require_system("postgresql")
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
