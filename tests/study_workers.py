"""Sweep workers as real processes against the test services: start them, wait for them, check their study."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from conftest import PROJECT_ROOT, RUN_PY, Services
from mnist_study.sweep.schema import FAIL_REASON, MLFLOW_RUN_ATTR, PARENT_RUN_ATTR, PID, is_counted
from mnist_study.sweep.storage import open_storage

EXPERIMENT = "scaling"
# Tiny and fixed, so that three TensorFlow processes sharing two cores finish in about a minute per study.
FAST = ["data.train_subset=1000", "train.epochs=1", "model.units=choice(32,64)"]
WORKER_TIMEOUT_S = 420.0


def start_worker(
    services: Services,
    folder: Path,
    study: str,
    n_trials: int,
    index: int,
    *overrides: str,
    environment: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[str]:
    """One `python src/run.py smoke ...` worker as a user on another host would start it: the two URLs in its
    environment (as `eval "$(scripts/services.sh env)"` puts them), its own output folders, then `overrides`.
    `prefix` runs it under another command (e.g. `unshare`)."""
    args = [
        "smoke",
        f"tracking.experiment={EXPERIMENT}",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.run.dir={folder}/outputs-{index}",
        f"hydra.sweep.dir={folder}/multirun-{index}",
        *FAST,
        *overrides,
    ]
    urls = {"OPTUNA_STORAGE": services.storage, "MLFLOW_TRACKING_URI": services.tracking}
    return subprocess.Popen(
        [*prefix, sys.executable, str(RUN_PY), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **urls, "PYTHONUNBUFFERED": "1", **(environment or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(worker: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait for a worker; its exit code and output."""
    try:
        stdout, stderr = worker.communicate(timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        stdout, stderr = worker.communicate()
        pytest.fail(f"worker {worker.pid} did not finish in {WORKER_TIMEOUT_S} s\n{stdout}\n{stderr}")
    return worker.returncode, stdout, stderr


def study_runs(tracking: str, study: str) -> tuple[list[Run], list[Run]]:
    """The study's parent runs (there must be one) and the runs nested under any of them."""
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        raise ValueError(f"no MLflow experiment {EXPERIMENT!r} at {tracking}")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [
        run
        for run in runs
        if run.data.tags.get("optuna.study") == study and "mlflow.parentRunId" not in run.data.tags
    ]
    parent_ids = {run.info.run_id for run in parents}
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") in parent_ids]
    return parents, children


def assert_study_complete(services: Services, study: str, n_trials: int) -> tuple[list[FrozenTrial], list[Run]]:
    """Exactly n_trials counted verdicts, nothing left RUNNING, one parent, one child per trial that ran."""
    loaded = optuna.load_study(study_name=study, storage=open_storage(services.storage))
    trials = loaded.get_trials()
    counted = [trial for trial in trials if is_counted(trial)]
    assert len(counted) == n_trials, [(t.number, t.state.name, t.user_attrs.get(FAIL_REASON)) for t in trials]
    assert len({trial.number for trial in trials}) == len(trials)
    assert all(trial.state.is_finished() for trial in trials), [(t.number, t.state.name) for t in trials]

    parents, children = study_runs(services.tracking, study)
    assert [parent.info.run_id for parent in parents] == [loaded.user_attrs[PARENT_RUN_ATTR]]
    assert parents[0].info.status == "FINISHED"
    # One run per trial at most; every run a trial recorded exists. A run whose worker died before recording its
    # id on the trial is found by its tags and closed KILLED.
    assert len({run.info.run_name for run in children}) == len(children)
    recorded = {trial.user_attrs[MLFLOW_RUN_ATTR] for trial in trials if MLFLOW_RUN_ATTR in trial.user_attrs}
    assert recorded <= {run.info.run_id for run in children}
    unrecorded = [run for run in children if run.info.run_id not in recorded]
    # On failure, say what each such run ended as and why, and what every trial says, to tell which path left it.
    assert all(run.info.status == "KILLED" for run in unrecorded), (
        [(r.info.run_name, r.info.status, r.data.tags.get("error")) for r in unrecorded],
        [(t.number, t.state.name, t.user_attrs.get(FAIL_REASON)) for t in trials],
    )
    assert all(run.info.status != "RUNNING" for run in children), [
        (r.info.run_name, r.info.status) for r in children
    ]
    return trials, children


def wait_for_running_trial(storage: str, study: str, worker: subprocess.Popen[str]) -> FrozenTrial:
    """The trial `worker` is training right now: RUNNING, owned by its pid, with its MLflow run open."""
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"worker {worker.pid} exited ({worker.returncode}) before it ran a trial")
        try:
            loaded = optuna.load_study(study_name=study, storage=open_storage(storage))
            trials = loaded.get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            trials = []  # The study does not exist yet.
        for trial in trials:
            if trial.user_attrs.get(PID) == worker.pid and MLFLOW_RUN_ATTR in trial.user_attrs:
                return trial
        time.sleep(0.2)
    pytest.fail(f"worker {worker.pid} never ran a trial")


def assert_converged(services: Services, study_name: str) -> None:
    """The invariant after any kill and one resume: no MLflow run is RUNNING unless its trial is, and every
    COMPLETE trial has exactly one FINISHED run, whose last objective is the trial's value."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(services.storage))
    trials = {trial.number: trial for trial in study.get_trials()}
    _, children = study_runs(services.tracking, study_name)
    for run in children:
        trial = trials[int(run.data.tags["optuna.trial"])]
        if run.info.status == "RUNNING":
            assert trial.state == TrialState.RUNNING, (run.info.run_name, trial.state)
    for trial in trials.values():
        if trial.state != TrialState.COMPLETE:
            continue
        runs = [run for run in children if run.data.tags["optuna.trial"] == str(trial.number)]
        assert [run.info.status for run in runs] == ["FINISHED"], (trial.number, [r.info.status for r in runs])
        assert runs[0].data.metrics["val_accuracy"] == pytest.approx(trial.value, abs=1e-6)
