"""Scaling out, for real: PostgreSQL as the Optuna storage, an `mlflow server` backed by it, three sweep workers.

The services come from `scripts/services.sh` (the same script `make services` runs) on free loopback ports with a
throwaway folder, so the test never touches a developer's running services. Everything is real: the database, the
tracking server, and `python src/run.py smoke ...` worker processes; one of them is killed with SIGKILL mid-trial.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import mnist_study.sweep.parent_run as parent_run
import mnist_study.sweep.schema as schema_module
from conftest import Services
from mnist_study.sweep import liveness
from mnist_study.sweep.ledger import TrialLedger
from mnist_study.sweep.schema import (
    MLFLOW_RUN_ATTR,
    PARENT_RUN_ATTR,
    PID,
    RETRY_OF,
    UNCOUNTED,
    is_counted,
)
from mnist_study.sweep.storage import open_storage
from study_workers import (
    EXPERIMENT,
    assert_study_complete,
    finish,
    start_worker,
    study_runs,
    wait_for_running_trial,
)

pytestmark = pytest.mark.slow


def test_three_workers_finish_one_study_on_postgresql(
    services: Services, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    n_trials = 6
    workers = [start_worker(services, tmp_path, "trio", n_trials, index) for index in range(3)]
    started.extend(workers)
    results = [finish(worker) for worker in workers]
    for code, stdout, stderr in results:
        assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"

    trials, children = assert_study_complete(services, "trio", n_trials)
    # Every counted trial ran (no worker died), each in exactly one worker, and the surplus asks never ran.
    assert sorted(trial.number for trial in trials if is_counted(trial)) == sorted(
        int(run.info.run_name.removeprefix("trial-")) for run in children
    )
    announced = [line for _, stdout, _ in results for line in stdout.splitlines() if line.startswith("trial ")]
    assert len(announced) == n_trials, announced
    # The uncounted ones are surplus asks for the last places of the budget, closed before they trained.
    surplus = [trial for trial in trials if not is_counted(trial)]
    assert all(
        trial.user_attrs[UNCOUNTED].startswith("surplus") and MLFLOW_RUN_ATTR not in trial.user_attrs
        for trial in surplus
    ), [(trial.number, trial.user_attrs.get(UNCOUNTED)) for trial in surplus]
    # All three workers joined one study: each printed the study line and each ran at least one trial's worth of
    # asks; the split between them depends on scheduling and is not asserted.
    assert all("study trio (maximize val_accuracy)" in stdout for _, stdout, _ in results)


def test_a_killed_worker_s_trial_ends_fail_and_the_others_complete_the_study(
    services: Services, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """SIGKILL one of three workers while it trains; the survivors finish the study.

    Recovery keys on the pid when the dead worker shared the host (as here): a surviving worker finds the pid gone
    before its next ask, closes the trial as an uncounted FAIL, closes its MLflow run KILLED and queues its
    parameters again. The victim is killed in its first trial, when the budget still holds trials nobody has
    asked for, so a survivor always asks again and the study completes without a rerun.
    """
    n_trials = 6
    workers = [start_worker(services, tmp_path, "kill", n_trials, index) for index in range(3)]
    started.extend(workers)
    victim, survivors = workers[0], workers[1:]
    killed = wait_for_running_trial(services.storage, "kill", victim)
    victim.send_signal(signal.SIGKILL)
    assert finish(victim)[0] == -signal.SIGKILL
    outputs = [finish(worker) for worker in survivors]
    for code, stdout, stderr in outputs:
        assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"

    trials, children = assert_study_complete(services, "kill", n_trials)
    after = next(trial for trial in trials if trial.number == killed.number)
    assert after.state == TrialState.FAIL
    assert f"process {victim.pid}" in after.user_attrs[UNCOUNTED]
    assert not is_counted(after)
    # Its parameters ran again, in a survivor, as a counted trial.
    retries = [trial for trial in trials if trial.user_attrs.get(RETRY_OF) == killed.number]
    assert len(retries) == 1 and is_counted(retries[0]) and retries[0].params == killed.params
    # Its MLflow run, left RUNNING by the dead process, was closed by the survivor that recovered the trial.
    (run,) = [run for run in children if run.info.run_id == killed.user_attrs[MLFLOW_RUN_ATTR]]
    assert run.info.status == "KILLED"
    assert run.data.tags["optuna.state"] == "FAIL"
    recovered = [
        line for _, stdout, _ in outputs for line in stdout.splitlines() if f"process {victim.pid}" in line
    ]
    assert len(recovered) == 1 and recovered[0].startswith(f"trial {killed.number}/{n_trials} FAIL worker died")


def test_workers_racing_on_a_study_without_parent_agree_on_one_parent_run(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight workers reach, at the same instant, a study that exists without a parent run id (say its creator died
    before recording one): exactly one creates the parent run and the others adopt it.

    Threads stand in for processes here: each has its own database connections and MLflow client, so the race is
    the one separate workers run on PostgreSQL, without eight interpreter start-ups.
    """
    # The study is not new, so nobody would record a parent: do not wait for a creator that will never come.
    monkeypatch.setattr(parent_run, "PARENT_WAIT_SECONDS", 0.0)
    storage = open_storage(services.storage)
    optuna.create_study(study_name="orphaned", storage=storage, direction="maximize")
    tracking = {"uri": services.tracking, "experiment": EXPERIMENT, "artifact_location": "unused-for-http"}
    barrier = threading.Barrier(8)

    def join(_: int) -> str:
        study = optuna.load_study(study_name="orphaned", storage=storage)
        barrier.wait()
        return parent_run.ParentRun.open(study, False, tracking, services.storage).run_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        run_ids = list(pool.map(join, range(8)))

    assert len(set(run_ids)) == 1, run_ids
    parents, _ = study_runs(services.tracking, "orphaned")
    assert [parent.info.run_id for parent in parents] == run_ids[:1]
    assert optuna.load_study(study_name="orphaned", storage=storage).user_attrs[PARENT_RUN_ATTR] == run_ids[0]


def test_a_worker_that_loses_the_race_to_recover_an_orphan_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two survivors find the same dead worker's trial; the one that comes second must skip it, not crash.

    The other survivor's FAIL is slipped in between this worker's listing of RUNNING trials and its first write,
    the window in which the three-worker test above once crashed a survivor (UpdateFinishedTrialError).
    """
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name="orphan", storage=storage)
    trial = study.ask()
    gone = subprocess.Popen(["true"])
    gone.wait()
    trial.set_user_attr(schema_module.HOST, liveness.this_host())
    trial.set_user_attr(PID, gone.pid)
    real_trial_id = schema_module.trial_id

    def other_worker_wins(storage_: optuna.storages.BaseStorage, name: str, number: int) -> int:
        optuna.load_study(study_name=name, storage=storage_).tell(number, state=TrialState.FAIL)
        return real_trial_id(storage_, name, number)

    monkeypatch.setattr(schema_module, "trial_id", other_worker_wins)
    assert TrialLedger(study, storage).recover(grace_s=3600) == []
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
