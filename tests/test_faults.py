"""Faults with real processes: Ctrl-C and kill -9 mid-trial, then the same command resumes; credentials redacted.

The sweeps are the smoke study made smaller still (1000 images, one epoch). A process is interrupted only once the
Optuna storage shows a trial RUNNING whose job has opened its MLflow run, so "mid-trial" never depends on timing.
A trial that diverges (NaN loss) inside a sweep is covered in test_sweep_cli.py
(`test_command_line_narrows_and_fixes_and_failed_trials_do_not_stop_the_sweep`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from conftest import PROJECT_ROOT, RUN_PY, Services, run_cli, store_overrides
from mnist_study.sweep.schema import MLFLOW_RUN_ATTR

STUDY = "faults"
SMALL = [
    "data.train_subset=1000",
    "train.epochs=1",
    f"hydra.sweeper.study_name={STUDY}",
    "hydra.sweeper.n_trials=2",
]
START_TIMEOUT_S = 300.0


def command(folder: Path) -> list[str]:
    storage = f"sqlite:///{folder}/optuna.db"
    return [
        sys.executable,
        str(RUN_PY),
        "smoke",
        *store_overrides(folder),
        f"hydra.sweeper.storage={storage}",
        *SMALL,
    ]


def start(folder: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the sweep with its output in a file (a pipe nobody reads could block it)."""
    log = folder / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command(folder),
            cwd=PROJECT_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=answer_ctrl_c,
        )
    return process, log


def answer_ctrl_c() -> None:
    """Let the sweep hear SIGINT as a foreground command does, however the tests were started.

    A shell without job control starts background commands (`make test &`, nohup) with SIGINT ignored, every
    child inherits that, and Python installs no KeyboardInterrupt handler for an ignored signal: the Ctrl-C
    case would then fail for a reason that has nothing to do with the sweep.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def trials(folder: Path) -> list[FrozenTrial]:
    """The study's trials, or none while the study does not exist yet."""
    try:
        return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder}/optuna.db").get_trials()
    except Exception:  # Not created yet (KeyError), or the database briefly locked by the sweep writing to it.
        return []


def wait_for(
    folder: Path, process: subprocess.Popen[bytes], log: Path, ready: Callable[[list[FrozenTrial]], object]
) -> FrozenTrial:
    """Poll the storage until `ready(trials)` returns a trial; fail with the sweep's output if it ends first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = ready(trials(folder))
        if found:
            return found  # type: ignore[return-value]
        if process.poll() is not None:
            pytest.fail(f"the sweep ended (exit {process.returncode}) before the marker:\n{log.read_text()}")
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"no marker within {START_TIMEOUT_S} s:\n{log.read_text()}")


def running_with_run(after: int) -> Callable[[list[FrozenTrial]], FrozenTrial | None]:
    """A RUNNING trial numbered `after` or later whose job has opened its MLflow run: a trial mid-training."""

    def ready(found: list[FrozenTrial]) -> FrozenTrial | None:
        for trial in found:
            if trial.number >= after and trial.state == TrialState.RUNNING and MLFLOW_RUN_ATTR in trial.user_attrs:
                return trial
        return None

    return ready


def runs(folder: Path) -> dict[str, object]:
    """Every MLflow run of the study's experiment, by run name."""
    client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("mnist-mlp")
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id], max_results=100)}


@pytest.mark.slow
def test_ctrl_c_then_kill_9_mid_trial_then_the_same_command_finishes_the_study(tmp_path: Path) -> None:
    # 1. Ctrl-C while trial 0 trains: the trial ends FAIL (uncounted, its params queued again), its MLflow run
    #    KILLED, the parent run closed KILLED, exit status 130, and one line instead of a traceback.
    process, log = start(tmp_path, "interrupted")
    interrupted = wait_for(tmp_path, process, log, running_with_run(after=0))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, log.read_text()
    output = log.read_text()
    assert "Traceback" not in output and "interrupted" in output, output
    after_interrupt = {trial.number: trial for trial in trials(tmp_path)}
    assert after_interrupt[interrupted.number].state == TrialState.FAIL
    assert "uncounted" in after_interrupt[interrupted.number].user_attrs
    requeued = [t for t in after_interrupt.values() if t.state == TrialState.WAITING]
    assert [t.user_attrs.get("retry_of") for t in requeued] == [interrupted.number]
    by_name = runs(tmp_path)
    parent_id = by_name[STUDY].info.run_id
    assert by_name[STUDY].info.status == "KILLED"
    assert by_name[f"trial-{interrupted.number}"].info.status == "KILLED"

    # 2. The same command, then kill -9 while a later trial trains, after at least one trial has finished.
    process, log = start(tmp_path, "killed")
    killed = wait_for(
        tmp_path,
        process,
        log,
        lambda found: (
            any(t.state == TrialState.COMPLETE for t in found)
            and running_with_run(after=interrupted.number + 1)(found)
        ),
    )
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    finished_before = {t.number: t for t in trials(tmp_path) if t.state == TrialState.COMPLETE}
    assert finished_before and killed.number not in finished_before
    assert runs(tmp_path)[f"trial-{killed.number}"].info.status == "RUNNING"  # Nobody could close it yet.

    # 3. The same command again: the dead worker's trial becomes an uncounted FAIL and its run KILLED; the study
    #    reaches n_trials counted trials under the same parent run, and what had finished is untouched.
    process, log = start(tmp_path, "resumed")
    assert process.wait(timeout=600) == 0, log.read_text()
    final = {trial.number: trial for trial in trials(tmp_path)}
    assert final[killed.number].state == TrialState.FAIL
    assert "worker died" in final[killed.number].user_attrs["fail_reason"]
    for number, before in finished_before.items():
        assert final[number].value == before.value
        assert final[number].datetime_complete == before.datetime_complete
    counted = [t for t in final.values() if t.state.is_finished() and "uncounted" not in t.user_attrs]
    assert len(counted) == 2
    assert all(trial.state.is_finished() for trial in final.values())
    by_name = runs(tmp_path)
    assert [name for name in by_name if name == STUDY] == [STUDY]  # One parent, never a second one.
    assert by_name[STUDY].info.run_id == parent_id
    assert by_name[STUDY].info.status == "FINISHED"
    assert by_name[f"trial-{killed.number}"].info.status in ("KILLED", "FAILED")
    assert not [name for name, run in by_name.items() if run.info.status == "RUNNING"]
    children = [run for run in by_name.values() if run.data.tags.get("mlflow.parentRunId") == parent_id]
    assert {run.info.run_name for run in children} == {
        f"trial-{n}" for n, t in final.items() if MLFLOW_RUN_ATTR in t.user_attrs
    }


@pytest.mark.slow
def test_a_storage_password_typed_on_the_command_line_is_absent_from_everything_logged(
    tmp_path: Path, services: Services
) -> None:
    """The password is typed in the storage URL (the environment is the better way: tests/test_reliability.py):
    everything this project writes shows it as `***`."""
    storage = services.storage
    password = urllib.parse.urlsplit(storage).password
    assert password and f":{password}@" in storage
    result = run_cli(
        [
            "smoke",
            *store_overrides(tmp_path),
            f"tracking.uri={services.tracking}",
            f"hydra.sweeper.storage={storage}",
            "data.train_subset=1000",
            "train.epochs=1",
            "hydra.sweeper.study_name=secret",
            "hydra.sweeper.n_trials=1",
        ]
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert password not in output
    assert "***" in output  # The storage is shown, redacted: `study secret (...) in postgresql://study:***@...`.

    # Optuna: the study's and every trial's attributes and params.
    rdb = optuna.storages.RDBStorage(storage)
    study = optuna.load_study(study_name="secret", storage=rdb)
    recorded = [study.user_attrs, rdb.get_study_system_attrs(rdb.get_study_id_from_name("secret"))]
    for trial in study.get_trials():
        recorded += [trial.user_attrs, trial.system_attrs, trial.params]
    assert len(study.get_trials()) == 1
    assert password not in repr(recorded)

    # MLflow: every run's params and tags, and every artifact file the server stored (config.yaml, trials.csv...).
    client = MlflowClient(tracking_uri=services.tracking)
    experiment = client.get_experiment_by_name("mnist-mlp")
    logged = client.search_runs([experiment.experiment_id])
    assert len(logged) == 2  # The study's parent run and its one trial.
    for run in logged:
        assert password not in repr(run.data.params) + repr(run.data.tags)
        assert run.data.params.get("trial.storage", "***").count("***") == 1
    artifacts = list((Path(services.environment["SERVICES_DIR"]) / "mlflow-artifacts").rglob("*"))
    texts = [path.read_bytes() for path in artifacts if path.is_file()]
    assert [path.name for path in artifacts if path.name == "config.yaml"], artifacts
    assert all(password.encode() not in text for text in texts)
