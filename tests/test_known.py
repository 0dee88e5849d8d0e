"""Known configurations first: `hydra.sweeper.enqueue` and `hydra.sweeper.warm_start`, in real sweeps of the smoke
study on 300 images (`python src/run.py` in a subprocess, stores in a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import SmokeStudy, run_cli, store_overrides
from mnist_study.sweep.schema import (
    BASELINE_ATTR,
    ENQUEUED_ATTR,
    MLFLOW_RUN_ATTR,
    WARM_START_ATTR,
    count_verdicts,
)
from mnist_study.sweep.storage import open_storage

pytestmark = pytest.mark.slow

QUEUED = "hydra.sweeper.enqueue=[{model.units:48,optimizer:adam},{model.units:40,train.epochs:1}]"


def sweep(folder: Path, *arguments: str) -> str:
    storage = f"sqlite:///{folder}/optuna.db"
    result = run_cli(
        [
            "smoke",
            *store_overrides(folder),
            f"hydra.sweeper.storage={storage}",
            # What is checked is which trials ran, never how well: the smallest data and no figures.
            "data.train_subset=300",
            "tracking.plots=false",
            *arguments,
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def trials_of(folder: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(f"sqlite:///{folder}/optuna.db")).trials


def test_queued_configurations_run_right_after_the_baseline_and_once_across_a_resume(tmp_path: Path) -> None:
    sweep(tmp_path, "hydra.sweeper.n_trials=3", QUEUED)
    sweep(tmp_path, "hydra.sweeper.n_trials=4", QUEUED)  # The same command, resumed with a larger budget.
    trials = trials_of(tmp_path, "smoke")
    assert trials[0].user_attrs.get(BASELINE_ATTR)
    queued = [trial for trial in trials if trial.user_attrs.get(ENQUEUED_ATTR)]
    assert [trial.number for trial in queued] == [1, 2]
    assert queued[0].params["model.units"] == 48 and queued[0].params["optimizer"] == "adam"
    assert queued[1].params["model.units"] == 40 and queued[1].params["train.epochs"] == 1
    assert count_verdicts(trials) == 4 and len(trials) == 4


def test_a_warm_start_copies_an_earlier_study_s_complete_trials_without_counting_them(
    tmp_path: Path, smoke_study: SmokeStudy
) -> None:
    # The earlier study is the session's smoke study (a copy of its stores): two COMPLETE trials, 512 and 476
    # units wide, and a PRUNED one, which a warm start must not copy.
    smoke_study.copy(tmp_path)
    earlier = trials_of(tmp_path, "smoke")
    complete = [t for t in earlier if t.state == TrialState.COMPLETE]
    # The second study's space is narrower: trials of the earlier study with a width outside it are not copied.
    narrower = "model.units=tag(log, int(interval(32, 500)))"
    fits = [t for t in complete if t.params["model.units"] <= 500]
    # What the test exercises: a complete trial copied, one outside the space, one not complete.
    assert fits and len(fits) < len(complete) < len(earlier), [(t.state, t.params) for t in earlier]
    second = ["hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=second", "hydra.sweeper.warm_start=smoke"]
    output = sweep(tmp_path, *second, narrower)
    outside = len(complete) - len(fits)
    assert f"warm start: {len(fits)} COMPLETE trials of smoke copied, {outside} outside" in output
    trials = trials_of(tmp_path, "second")
    copies = [trial for trial in trials if WARM_START_ATTR in trial.user_attrs]
    assert sorted(c.params["model.units"] for c in copies) == sorted(t.params["model.units"] for t in fits)
    assert all(c.state == TrialState.COMPLETE and MLFLOW_RUN_ATTR not in c.user_attrs for c in copies)
    origins = sorted(copy.user_attrs[WARM_START_ATTR].rsplit("#", 1)[1] for copy in copies)
    assert origins == sorted(f"smoke/{trial.number}" for trial in fits)
    ran = [trial for trial in trials if WARM_START_ATTR not in trial.user_attrs]
    assert len(ran) == 2 and count_verdicts(trials) == 2 and all(MLFLOW_RUN_ATTR in t.user_attrs for t in ran)


def test_a_queued_configuration_outside_the_space_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    result = run_cli(
        ["smoke", *store_overrides(tmp_path), f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
         "hydra.sweeper.enqueue=[{model.units:99999}]"]
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: hydra.sweeper.enqueue[0]: model.units=99999")
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
