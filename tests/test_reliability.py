"""Reliability across hosts, for real: PostgreSQL, an `mlflow server`, sweep workers as processes that are killed,
moved to another host name, or left without their database for a while.

- A worker on another host (`unshare --uts`, a hostname of its own) is killed mid-trial: a worker on this host
  finds it dead by its heartbeat within the grace period, not hours later.
- Kills at the steps of a trial's life that leave the two stores apart (the test-only kill seam, at the calls
  listed in `kill_points.py`), each followed by a resume: the two stores converge (no MLflow run RUNNING unless its
  trial is; every COMPLETE trial has exactly one FINISHED run with its values).
- The storage password given only in the environment is written nowhere and shown in no command line.
- PostgreSQL stopped mid-trial: a short outage is ridden out; a long one stops the worker with one line, and the
  same command then finishes the study.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import PROJECT_ROOT, Services
from kill_points import KILL_POINTS, killed_at
from mnist_study.sweep.schema import FAIL_REASON, HOST, MLFLOW_RUN_ATTR, RETRY_OF, UNCOUNTED, is_counted
from mnist_study.sweep.storage import open_storage
from study_workers import (
    assert_converged,
    assert_study_complete,
    finish,
    start_worker,
    study_runs,
    wait_for_running_trial,
)

pytestmark = pytest.mark.slow

INTERVAL_S, GRACE_S = 1, 3
LIVENESS = [f"hydra.sweeper.heartbeat_interval_s={INTERVAL_S}", f"hydra.sweeper.heartbeat_grace_s={GRACE_S}"]
# A trial of a few seconds (1 000 images, many epochs), long enough to be caught mid-training.
LONG_TRIAL = ["train.epochs=40"]


def test_a_worker_killed_on_another_host_is_found_dead_by_its_heartbeat_within_the_grace(
    services: Services, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """The victim runs under its own host name, so no pid check can help: only its silence tells. The survivor
    keeps asking for short trials, so it looks for dead workers every few seconds."""
    # Six trials keep the survivor asking for several seconds after the kill: its short trials (a few seconds
    # each) cannot use up the budget before the victim's trial is past its grace, so it is always there to see it.
    study, n_trials = "elsewhere", 6
    rename = ["unshare", "--uts", "sh", "-c", 'hostname elsewhere && exec "$0" "$@"']
    # Its trial would train for minutes: it is still training when the survivor has started.
    victim = start_worker(services, tmp_path, study, n_trials, 0, *LIVENESS, "train.epochs=1000", prefix=rename)
    started.append(victim)
    doomed = wait_for_running_trial(services.storage, study, victim)
    assert doomed.user_attrs[HOST] == "elsewhere"
    survivor = start_worker(services, tmp_path, study, n_trials, 1, *LIVENESS)
    started.append(survivor)
    wait_for_running_trial(services.storage, study, survivor)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    assert finish(victim)[0] == -signal.SIGKILL
    code, stdout, stderr = finish(survivor)
    assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"

    trials, _ = assert_study_complete(services, study, n_trials)
    failed = next(trial for trial in trials if trial.number == doomed.number)
    assert failed.state == TrialState.FAIL and "no heartbeat from elsewhere" in failed.user_attrs[UNCOUNTED]
    # Found within the grace plus one interval, give or take one of the survivor's short trials (seconds).
    found_after = failed.datetime_complete.timestamp() - killed_at
    assert GRACE_S - 1 <= found_after <= GRACE_S + INTERVAL_S + 15, found_after
    assert_converged(services, study)


def test_kills_between_the_two_stores_writes_each_followed_by_a_resume_leave_both_stores_consistent(
    services: Services, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """One worker after another on one study, each killed at the next step, the last one left to finish.

    The steps are those where a death leaves one store ahead of the other. The two others are proven elsewhere,
    each at less cost than a worker's start-up here: a kill after the ask (a RUNNING trial that never beat) in
    tests/test_liveness.py, a kill mid-training in tests/test_faults.py and test_scaling.py.
    """
    study, n_trials = "faults", 2
    order = ("after_mlflow_run", "during_recovery", "after_tell")
    assert set(order) | {"after_ask", "mid_training"} == set(KILL_POINTS)
    for index, step in enumerate(order):
        worker = start_worker(services, tmp_path, study, n_trials, index, *LIVENESS, environment=killed_at(step))
        started.append(worker)
        code, stdout, stderr = finish(worker)
        assert code == -signal.SIGKILL, f"{step}: exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        if step != "during_recovery":  # It dies between failing a trial and closing that trial's run.
            assert_converged(services, study)
        time.sleep(GRACE_S)  # Every trial left behind is now past its grace, whatever its state.
    worker = start_worker(services, tmp_path, study, n_trials, len(order), *LIVENESS)
    started.append(worker)
    code, stdout, stderr = finish(worker)
    assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"

    trials, children = assert_study_complete(services, study, n_trials)
    assert_converged(services, study)
    by_number = {trial.number: trial for trial in trials}
    # Trial 0's worker died before the run's id reached the trial (after_mlflow_run); the next worker failed the
    # trial and died before closing the run (during_recovery); the one after found the run by its tags, closed it.
    (orphan,) = [run for run in children if run.data.tags["optuna.trial"] == "0"]
    assert MLFLOW_RUN_ATTR not in by_number[0].user_attrs and orphan.info.status == "KILLED"
    assert by_number[0].state == TrialState.FAIL and UNCOUNTED in by_number[0].user_attrs
    # Trial 1's verdict reached Optuna and its worker died before tagging the run (after_tell): the verdict
    # stands, counted, and its run was closed with it.
    (told,) = [run for run in children if run.data.tags["optuna.trial"] == "1"]
    assert is_counted(by_number[1]) and told.info.status == "FINISHED"


def test_a_password_given_only_in_the_environment_is_written_and_shown_nowhere(
    services: Services, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    password = urllib.parse.urlsplit(services.storage).password
    assert password, services.storage
    begun = time.time()
    worker = start_worker(services, tmp_path, "secret", 3, 0, *LIVENESS)
    started.append(worker)
    seen_in = set()
    while worker.poll() is None:
        seen_in |= command_lines_with(password)
        time.sleep(0.2)
    code, stdout, stderr = finish(worker)
    assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert not seen_in, seen_in
    assert password not in stdout + stderr
    assert not files_with(password, tmp_path, since=0)
    assert not files_with(password, PROJECT_ROOT, since=begun)

    client = MlflowClient(services.tracking)
    parents, children = study_runs(services.tracking, "secret")
    for run in [*parents, *children]:
        assert password not in repr(run.data.params) + repr(run.data.tags), run.info.run_name
        with tempfile.TemporaryDirectory() as scratch:
            folder = client.download_artifacts(run.info.run_id, "", scratch)
            assert not files_with(password, Path(folder), since=0), run.info.run_name
    storage = open_storage(services.storage)
    study = optuna.load_study(study_name="secret", storage=storage)
    system_attrs = storage.get_study_system_attrs(storage.get_study_id_from_name("secret"))
    assert password not in repr(study.user_attrs) + repr(system_attrs)
    for trial in study.get_trials():
        assert password not in repr(trial.user_attrs) + repr(trial.system_attrs), trial.number


def command_lines_with(text: str) -> set[str]:
    """The command lines of this machine's processes that contain `text`."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.add(command.replace(text, "<password>"))
    return found


def files_with(text: str, folder: Path, since: float) -> list[Path]:
    """Files under `folder` modified since `since` that contain `text` (the environment and git excluded)."""
    needle = text.encode()
    hits = []
    for root, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if name not in (".venv", ".git", "data")]
        for name in names:
            path = Path(root) / name
            try:
                if path.stat().st_mtime >= since and needle in path.read_bytes():
                    hits.append(path)
            except OSError:
                continue
    return hits


def test_a_database_restart_mid_trial_is_ridden_out(
    services: Services, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    study, n_trials = "restart", 2
    worker = start_worker(
        services, tmp_path, study, n_trials, 0, *LIVENESS, *LONG_TRIAL, "hydra.sweeper.store_retry_s=90"
    )
    started.append(worker)
    during = wait_for_running_trial(services.storage, study, worker)
    services.control("db-stop")
    time.sleep(5)
    services.control("db-start")
    code, stdout, stderr = finish(worker)
    assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    trials, _ = assert_study_complete(services, study, n_trials)
    # Ridden out, not recovered: the trial that trained through the restart finished with a verdict of its own.
    assert is_counted(next(trial for trial in trials if trial.number == during.number))
    assert_converged(services, study)


def test_a_database_down_for_longer_than_the_retry_time_stops_the_worker_with_one_line_and_a_rerun_finishes(
    services: Services, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    study, n_trials = "outage", 2
    # MLflow's own HTTP retries would otherwise wait minutes before the tracking server's errors surface.
    quick_http = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    arguments = [*LIVENESS, *LONG_TRIAL, "hydra.sweeper.store_retry_s=3"]
    worker = start_worker(services, tmp_path, study, n_trials, 0, *arguments, environment=quick_http)
    started.append(worker)
    interrupted = wait_for_running_trial(services.storage, study, worker)
    services.control("db-stop")
    try:
        code, stdout, stderr = finish(worker)
    finally:
        services.control("db-start")
    assert code == 1, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: the ") and "stopped answering" in last and "store_retry_s=3" in last, stderr
    assert urllib.parse.urlsplit(services.storage).password not in stderr

    rerun = start_worker(services, tmp_path, study, n_trials, 1, *LIVENESS, *LONG_TRIAL)
    started.append(rerun)
    code, stdout, stderr = finish(rerun)
    assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    trials, _ = assert_study_complete(services, study, n_trials)
    # The rerun found the stopped worker's trial dead (its process is gone), failed it uncounted, and ran its
    # parameters again as a counted trial.
    after = next(trial for trial in trials if trial.number == interrupted.number)
    assert after.state == TrialState.FAIL and f"process {worker.pid}" in after.user_attrs.get(UNCOUNTED, ""), [
        (t.number, t.state, t.user_attrs.get(FAIL_REASON)) for t in trials
    ]
    retries = [trial for trial in trials if trial.user_attrs.get(RETRY_OF) == interrupted.number]
    assert len(retries) == 1 and is_counted(retries[0]) and retries[0].params == interrupted.params
    assert_converged(services, study)
