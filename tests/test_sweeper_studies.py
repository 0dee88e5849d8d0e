"""Trial accounting on real Optuna storages: budgets, surplus asks, dead workers, the creation race (no TF)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from mnist_study.sweep import parent_run, schema
from mnist_study.sweep.storage import open_storage
from mnist_study.sweep.sweeper import open_study

SPACE = {"x": IntDistribution(0, 100)}


@pytest.fixture(params=["journal", "sqlite"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "journal":
        return str(tmp_path / "optuna.journal")
    return f"sqlite:///{tmp_path}/optuna.db"


def test_storage_urls() -> None:
    assert isinstance(open_storage("journal:///tmp/x/a.journal"), optuna.storages.JournalStorage)
    with pytest.raises(ValueError, match="storage URL is required"):
        open_storage("")


def test_exactly_one_of_two_workers_racing_to_open_a_new_study_creates_it(storage_url: str) -> None:
    """Two workers, each with its own storage object on the one file (threads stand in for processes), are
    released together by a barrier to open a study that does not exist yet, round after round: every round,
    exactly one is told it created the study and neither fails."""
    rounds = 5
    barrier = threading.Barrier(2, timeout=60)

    def worker(_: int) -> list[bool]:
        barrier.wait()
        # Both open a brand-new storage at once too: on SQLite they race to create Optuna's tables first.
        storage = open_storage(storage_url)
        created = []
        for number in range(rounds):
            barrier.wait()
            created.append(open_study(f"s{number}", storage, "maximize")[1])
        return created

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(worker, range(2))
    assert [(a, b) for a, b in zip(first, second, strict=True) if a == b] == []
    storage = open_storage(storage_url)
    assert sorted(optuna.get_all_study_names(storage)) == sorted(f"s{n}" for n in range(rounds))
    with pytest.raises(ValueError, match="created to maximize"):
        open_study("s0", storage, "minimize")


def test_verdicts_count_complete_pruned_and_own_failures_only(storage_url: str) -> None:
    study = optuna.create_study(storage=open_storage(storage_url), direction="maximize")
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL):
        trial = study.ask(SPACE)
        if len(study.get_trials()) == 4:
            trial.set_user_attr(schema.UNCOUNTED, "worker died")
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    study.ask(SPACE)  # Running: not a verdict yet.
    trials = study.get_trials()
    assert schema.count_verdicts(trials) == 3
    assert schema.count_running(trials) == 1
    # Per state every trial is said, counted or not, in Optuna's order of the states; empty states left out.
    expected = {TrialState.RUNNING: 1, TrialState.COMPLETE: 1, TrialState.PRUNED: 1, TrialState.FAIL: 2}
    assert schema.state_counts(trials) == expected
    assert list(schema.state_counts(trials)) == list(expected)
    assert schema.state_counts_text(trials) == "1 RUNNING, 1 COMPLETE, 1 PRUNED, 2 FAIL"


def test_the_later_of_two_racing_asks_for_the_last_slot_is_surplus(tmp_path: Path) -> None:
    # Two workers (two storage objects on one journal file) both see 1 of 2 trials done, both ask.
    path = str(tmp_path / "race.journal")
    first = optuna.create_study(
        study_name="s",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path)),
        direction="maximize",
    )
    second = optuna.load_study(
        study_name="s", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    )
    done = first.ask(SPACE)
    first.tell(done, 1.0)
    mine, theirs = first.ask(SPACE), second.ask(SPACE)
    trials = first.get_trials()
    assert schema.rank(trials, mine.number) == 1  # Below budget 2: runs.
    assert schema.rank(trials, theirs.number) == 2  # Budget reached: never runs.
    # Once the surplus trial is closed uncounted, it no longer holds a place.
    theirs.set_user_attr(schema.UNCOUNTED, "surplus")
    second.tell(theirs, state=TrialState.FAIL)
    later = first.ask(SPACE)
    assert schema.rank(first.get_trials(), later.number) == 2


def test_claiming_the_parent_run_is_not_announced_as_a_new_study(storage_url: str) -> None:
    """Optuna logs "A new study created" for every study; the claim study is bookkeeping a user never made, so its
    creation says nothing (the user's own study is still announced), and the election still works."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("optuna")
    logger.addHandler(handler)
    verbosity = optuna.logging.get_verbosity()
    try:
        study = optuna.create_study(study_name="announced", storage=open_storage(storage_url))
        assert parent_run._claim(study, storage_url, None)
        assert not parent_run._claim(study, storage_url, None)
    finally:
        logger.removeHandler(handler)
    messages = [record.getMessage() for record in records]
    assert any("announced" in message for message in messages), messages
    assert not any(parent_run.CLAIM_SUFFIX in message for message in messages), messages
    assert optuna.logging.get_verbosity() == verbosity
