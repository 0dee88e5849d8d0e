"""Dead workers told from live ones on real Optuna storages: heartbeats, process identity, retries (no TF)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from conftest import vacant_pid
from mnist_study.checks import ConfigError
from mnist_study.sweep import liveness, schema
from mnist_study.sweep.ledger import TrialLedger
from mnist_study.sweep.storage import open_storage, real_url, shareable
from mnist_study.sweep.stores import retrying

SPACE = {"x": IntDistribution(0, 100)}
INTERVAL_S, GRACE_S = 1, 3


def store_url(kind: str, folder: Path) -> str:
    return str(folder / "optuna.journal") if kind == "journal" else f"sqlite:///{folder}/optuna.db"


@pytest.fixture(params=["journal", "sqlite"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, tmp_path)


# The tests that wait out a grace period (seconds of sleep each) run on SQLite in the fast tier, on the journal
# too with the slow tier.
@pytest.fixture(params=["sqlite", pytest.param("journal", marks=pytest.mark.slow)])
def waiting_storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, tmp_path)


@pytest.fixture
def other_pid() -> int:
    """A live process that is not this one: the one that started the tests, alive while they run."""
    return os.getppid()


def open_heartbeat_storage(url: str) -> optuna.storages.BaseStorage:
    return open_storage(url, (INTERVAL_S, GRACE_S))


def worked_on(study: optuna.Study, host: str, pid: int, started: str | None) -> optuna.Trial:
    """A new RUNNING trial, recorded as worked on by process `pid` (started at `started`) on `host`."""
    trial = study.ask(SPACE)
    for key, value in {schema.HOST: host, schema.PID: pid, schema.PROCESS_START: started}.items():
        trial.set_user_attr(key, value)
    return trial


def test_a_dead_worker_s_trial_is_failed_uncounted_and_queued_again_and_a_live_one_s_is_not(
    storage_url: str, other_pid: int
) -> None:
    storage = open_heartbeat_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    here = liveness.this_host()
    dead = worked_on(study, here, vacant_pid(), "12345")
    alive = worked_on(study, here, other_pid, liveness.process_start(other_pid))

    told = []

    def on_recovered(trial: optuna.trial.FrozenTrial, reason: str) -> None:
        # The hook comes last: the trial is failed and its params queued again, only its MLflow run is left open.
        stored = study.get_trials()
        queued = [
            waiting.user_attrs.get(schema.RETRY_OF) for waiting in stored if waiting.state == TrialState.WAITING
        ]
        told.append((trial.number, reason, stored[trial.number].state, queued))

    recovered = TrialLedger(study, storage, on_recovered=on_recovered).recover(GRACE_S)
    assert [(trial.number, reason.split(":")[0]) for trial, reason in recovered] == [(dead.number, "worker died")]
    assert told == [(dead.number, recovered[0][1], TrialState.FAIL, [dead.number])]
    states = {trial.number: trial for trial in study.get_trials()}
    assert states[dead.number].state == TrialState.FAIL and schema.UNCOUNTED in states[dead.number].user_attrs
    assert states[alive.number].state == TrialState.RUNNING
    assert schema.count_verdicts(states.values()) == 0
    retry = study.ask(SPACE)
    assert retry.params == dead.params and retry.user_attrs[schema.RETRY_OF] == dead.number
    # A second worker arriving later finds nothing left to recover.
    assert TrialLedger(study, storage).recover(GRACE_S) == []


def test_a_pid_given_to_another_process_does_not_pass_for_the_dead_worker(
    storage_url: str, other_pid: int
) -> None:
    """The recorded pid is alive, but it is another process: its start time differs from the recorded one."""
    storage = open_heartbeat_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    started = liveness.process_start(other_pid)
    assert started is not None
    reused = worked_on(study, liveness.this_host(), other_pid, str(int(started) - 1))

    ((trial, reason),) = TrialLedger(study, storage).recover(GRACE_S)
    assert trial.number == reused.number and f"process {other_pid}" in reason


def test_another_host_s_trial_lives_while_it_beats_however_long_and_dies_a_grace_after_its_last_beat(
    waiting_storage_url: str,
) -> None:
    """A trial from a host whose processes cannot be checked: only its heartbeat tells. It runs for longer than
    the grace period while beating and is never failed; once the beats stop it is failed after the grace."""
    storage = open_heartbeat_storage(waiting_storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = study.ask(SPACE)
    identifier = schema.trial_id(storage, study.study_name, trial.number)
    with liveness.Heartbeat(storage, identifier, INTERVAL_S):
        trial.set_user_attr(schema.HOST, "elsewhere")
        trial.set_user_attr(schema.PID, 1)
        deadline = time.monotonic() + GRACE_S + 2 * INTERVAL_S
        while time.monotonic() < deadline:
            assert TrialLedger(study, storage).recover(GRACE_S) == []
            time.sleep(0.5)
    stopped = time.monotonic()
    while not (recovered := TrialLedger(study, storage).recover(GRACE_S)):
        assert time.monotonic() - stopped < GRACE_S + 2 * INTERVAL_S, "never failed after its beats stopped"
        time.sleep(0.25)
    assert time.monotonic() - stopped > GRACE_S - 1  # Not before the grace (whole seconds on a database).
    ((failed, reason),) = recovered
    assert failed.number == trial.number and "no heartbeat from elsewhere" in reason


def test_a_trial_whose_worker_died_before_its_first_beat_is_failed_after_the_grace(
    waiting_storage_url: str,
) -> None:
    storage = open_heartbeat_storage(waiting_storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    study.ask(SPACE)
    assert TrialLedger(study, storage).recover(GRACE_S) == []
    time.sleep(GRACE_S + 0.5)
    ((_, reason),) = TrialLedger(study, storage).recover(GRACE_S)
    assert "no heartbeat recorded" in reason


def test_a_hidden_password_reaches_the_job_from_this_process_or_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql://study:s3cret@db.example:5432/optuna"
    shown = shareable(url)
    assert shown == "postgresql://study:***@db.example:5432/optuna" and real_url(shown) == url
    other = "postgresql://study:***@elsewhere:5432/optuna"
    with pytest.raises(ConfigError, match="OPTUNA_STORAGE"):
        real_url(other)
    monkeypatch.setenv("OPTUNA_STORAGE", other.replace("***", "pw2"))
    assert real_url(other) == other.replace("***", "pw2")
    assert real_url("sqlite:////tmp/o.db") == "sqlite:////tmp/o.db"


def test_a_store_that_comes_back_within_the_retry_time_is_ridden_out_and_one_that_does_not_is_reported() -> None:
    attempts: list[float] = []

    def unreachable_twice() -> str:
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        return "answered"

    assert retrying(unreachable_twice, 10, "the test store") == "answered"
    assert len(attempts) == 3 and attempts[2] - attempts[0] >= 3  # Pauses of 1 s, then 2 s.

    started = time.monotonic()

    def never_answers() -> None:
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    with pytest.raises(sqlalchemy.exc.OperationalError):
        retrying(never_answers, 2, "the test store")
    assert 1 <= time.monotonic() - started < 4
    # A request the store refuses on its merits is not retried.
    calls = []

    def integrity_error() -> None:
        calls.append(1)
        raise sqlalchemy.exc.IntegrityError("INSERT", {}, ValueError("duplicate"))

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        retrying(integrity_error, 10, "the test store")
    assert calls == [1]


def test_process_start_tells_this_process_from_a_dead_one() -> None:
    assert liveness.process_start(os.getpid()) is not None
    assert liveness.process_start(vacant_pid()) is None
