"""The report's re-scoring (report/rescore.py): the study's best trials ranked by validation over more seeds, never
by the test set, and the same ranking every time the same study is re-scored.

The study is written with Optuna's API so that its own values rank a weak configuration first; the re-scoring
fits are real (1000 MNIST images, in this process) and put it back where it belongs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import optuna
import pytest
from hydra import initialize_config_dir

import mnist_study.data
from conftest import PROJECT_ROOT
from mnist_study.report import rescore
from mnist_study.report.selection import ReportError, top_trials
from test_registry import DISTRIBUTIONS, STRONG, WEAK, write_study

FORWARDED = ("data.train_subset=1000", "tracking.plots=false")


def study_ranking_weak_first(tmp_path: Path) -> optuna.Study:
    """Trial 1 is the weak configuration with a lucky value; trial 2 the strong one with a poor value."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    write_study(storage, "lucky", [(WEAK, 0.99), (STRONG, 0.5)])
    return optuna.load_study(study_name="lucky", storage=storage)


def test_ranked_orders_by_mean_then_by_the_studys_order_and_keeps_the_rest_after() -> None:
    study = optuna.create_study(direction="maximize")
    for value in (0.9, 0.8, 0.7, 0.6):
        study.add_trial(optuna.trial.create_trial(params=WEAK, distributions=DISTRIBUTIONS, value=value))
    pool = study.trials
    scored = [
        rescore.Rescored(pool[0], (0.875, 0.0625, 0.0625)),  # mean 1/3
        rescore.Rescored(pool[1], (0.5, 0.5, 0.5)),  # mean 0.5
        rescore.Rescored(pool[2], (0.25, 0.625, 0.625)),  # mean 0.5 too, later in the study's order
    ]
    assert [t.number for t in rescore.ranked(pool, scored, maximize=True)] == [1, 2, 0, 3]
    assert [t.number for t in rescore.ranked(pool, scored, maximize=False)] == [0, 1, 2, 3]
    assert [t.number for t in rescore.ranked(pool, [], maximize=True)] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("trials", "seeds", "message"),
    [(-1, [1], "rescore.trials=-1"), (3, [1, 1], "distinct"), (3, [-2], "rescore.seeds")],
)
def test_bad_rescoring_settings_are_one_line_errors(trials: int, seeds: list[int], message: str) -> None:
    with pytest.raises(ReportError, match=message):
        rescore.check(trials, seeds)


def without_test_set(split: mnist_study.data.Split) -> mnist_study.data.Split:
    """The same split with its test set ruined: images of NaN, every label shifted by one."""
    return dataclasses.replace(
        split,
        x_test=np.full_like(split.x_test, np.nan),
        y_test=((split.y_test + 1) % 10).astype(split.y_test.dtype),
    )


@pytest.mark.slow
def test_rescoring_ranks_on_validation_only_and_the_same_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_study.train import train

    study = study_ranking_weak_first(tmp_path)
    pool = top_trials(study, 2)
    assert [t.number for t in pool] == [1, 2]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        fits = rescore.plan(pool, [1, 2], FORWARDED)
    assert [(fit.trial.number, fit.seed) for fit in fits] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(fit.cfg.data.val_size == 5000 and fit.cfg.seed == fit.seed for fit in fits)

    first = rescore.run(fits)
    # The strong configuration wins on validation at seeds 1 and 2, however poor its lucky-seed value.
    assert [t.number for t in rescore.ranked(pool, first, maximize=True)] == [2, 1]
    assert {entry.trial.number: entry.scores[0] for entry in first} == {1: 0.99, 2: 0.5}

    # Again, with the test set ruined: if anything the ranking uses came from the test set, it would change.
    real_split = mnist_study.data.make_split
    monkeypatch.setattr(mnist_study.data, "make_split", lambda **kwargs: without_test_set(real_split(**kwargs)))
    ruined = train(fits[2].cfg)
    assert ruined["test_accuracy"] < 0.2, "the ruined test set must reach training for this test to mean anything"
    second = rescore.run(fits)
    assert [entry.scores for entry in second] == [entry.scores for entry in first]
