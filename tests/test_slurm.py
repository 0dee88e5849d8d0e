"""The study's workers as a SLURM job array, on a real one-node cluster brought up from Debian's packages.

`scripts/slurm/cluster.sh` starts munged, slurmctld and slurmd with their files (and a slurm.conf it writes) in a
throwaway folder, on free ports; the services are PostgreSQL and an `mlflow server` as in the scaling tests. A
3-task array of `scripts/slurm/sweep-workers.sbatch` works on one small study; one task is cancelled with
`scancel` while it trains. The cluster's daemons and folder are removed afterwards, so the test runs again on the
same machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from conftest import PROJECT_ROOT, Services, require_system
from mnist_study.sweep.schema import MLFLOW_RUN_ATTR, PID, RETRY_OF, UNCOUNTED, is_counted
from mnist_study.sweep.storage import open_storage
from servers import free_port
from study_workers import EXPERIMENT, FAST, assert_converged, assert_study_complete

pytestmark = pytest.mark.slow

CLUSTER_SCRIPT = PROJECT_ROOT / "scripts" / "slurm" / "cluster.sh"
SBATCH_SCRIPT = PROJECT_ROOT / "scripts" / "slurm" / "sweep-workers.sbatch"
TIMEOUT_S = 600.0


@pytest.fixture(scope="module")
def slurm() -> Iterator[dict[str, str]]:
    """A one-node cluster for this module: the environment sbatch, squeue and scancel need."""
    require_system("slurm")
    # Directly under /tmp: munge's socket path must stay short.
    folder = Path(tempfile.mkdtemp(prefix="mnist-slurm-"))
    env = {
        **os.environ,
        "SLURM_DIR": str(folder),
        "SLURMCTLD_PORT": str(free_port()),
        "SLURMD_PORT": str(free_port()),
        "SLURM_CONF": str(folder / "slurm.conf"),
    }
    try:
        started = subprocess.run(
            [str(CLUSTER_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120
        )
        if started.returncode != 0:
            logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in folder.glob("*.log"))
            pytest.fail(f"the cluster did not start:\n{started.stdout}\n{started.stderr}\n{logs}")
        yield env
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=60)
        subprocess.run([str(CLUSTER_SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def slurm_command(env: dict[str, str], *command: str) -> str:
    done = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def task_of(pid: int) -> str:
    """The array task (`<job>_<task>`) a worker process belongs to, from its environment."""
    environment = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
        if "=" in item
    )
    return f"{environment['SLURM_ARRAY_JOB_ID']}_{environment['SLURM_ARRAY_TASK_ID']}"


def wait_for_trial_in_training(storage: str, study: str) -> FrozenTrial:
    """A RUNNING trial whose job has its MLflow run open: a task in the middle of training."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            running = optuna.load_study(study_name=study, storage=open_storage(storage)).get_trials(
                states=(TrialState.RUNNING,)
            )
        except KeyError:
            running = []
        for trial in running:
            if MLFLOW_RUN_ATTR in trial.user_attrs and PID in trial.user_attrs:
                return trial
        time.sleep(0.5)
    pytest.fail("no array task ever trained a trial")


def wait_for_array(env: dict[str, str], job: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while slurm_command(env, "squeue", "-h", "-j", job).strip():
        if time.monotonic() > deadline:
            pytest.fail(f"array {job} still queued or running after {TIMEOUT_S} s")
        time.sleep(1)


def test_a_job_array_finishes_one_study_with_a_cancelled_task_s_trial_redone(
    slurm: dict[str, str], services: Services, tmp_path: Path
) -> None:
    study, n_trials = "slurm", 5
    env = {**slurm, "OPTUNA_STORAGE": services.storage, "MLFLOW_TRACKING_URI": services.tracking}
    arguments = [
        "smoke",
        f"tracking.experiment={EXPERIMENT}",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.heartbeat_interval_s=1",
        "hydra.sweeper.heartbeat_grace_s=3",
        *FAST,
        "train.epochs=40",  # Trials of several seconds, so one can be cancelled while it trains.
    ]
    submitted = slurm_command(
        env,
        "sbatch", "--parsable", "--array=1-3", "--cpus-per-task=1", "--mem=2G",
        f"--output={tmp_path}/%x-%A_%a.out", str(SBATCH_SCRIPT), *arguments,
    )  # fmt: skip
    job = submitted.strip().split(";")[0]
    victim = wait_for_trial_in_training(services.storage, study)
    slurm_command(env, "scancel", task_of(victim.user_attrs[PID]))
    wait_for_array(env, job)
    logs = "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in tmp_path.glob("*.out")
    )

    trials, _ = assert_study_complete(services, study, n_trials)
    cancelled = next(trial for trial in trials if trial.number == victim.number)
    assert cancelled.state == TrialState.FAIL and UNCOUNTED in cancelled.user_attrs, logs
    assert not is_counted(cancelled)
    retries = [trial for trial in trials if trial.user_attrs.get(RETRY_OF) == victim.number]
    assert len(retries) == 1 and is_counted(retries[0]) and retries[0].params == victim.params, logs
    assert sum(1 for trial in trials if is_counted(trial)) == n_trials
    assert_converged(services, study)
