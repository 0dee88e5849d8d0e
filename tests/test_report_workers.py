"""The report's refit workers: how each worker's TensorFlow thread pools are sized, and what is refused.

The workers themselves start processes and train, so they are exercised by the slow report tests
(`test_report_kills.py` trains a refit in a worker and compares it with the same refit reused; every report test
runs with the default two workers).
"""

from __future__ import annotations

import pytest

from mnist_study.report import workers


def test_one_worker_keeps_tensorflows_own_thread_pools() -> None:
    assert workers.thread_overrides(1) == ()


def test_two_workers_share_the_cores_between_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "cores", lambda: 2)
    assert workers.thread_overrides(2) == ("train.intra_op_threads=1", "train.inter_op_threads=1")
    monkeypatch.setattr(workers, "cores", lambda: 8)
    assert workers.thread_overrides(2) == ("train.intra_op_threads=4", "train.inter_op_threads=4")


def test_more_workers_than_cores_still_get_one_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "cores", lambda: 2)
    assert workers.thread_overrides(3) == ("train.intra_op_threads=1", "train.inter_op_threads=1")


def test_pools_the_command_line_sized_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "cores", lambda: 2)
    assert workers.thread_overrides(2, ["train.epochs=1", "train.intra_op_threads=2"]) == ()


def test_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match=r"workers=0: must be >= 1"):
        workers.thread_overrides(0)


def test_a_worker_pool_that_trained_nothing_started_no_process() -> None:
    with workers.RefitWorkers(2) as trainers:
        assert list(trainers.train([])) == []
    assert trainers.processes == []
