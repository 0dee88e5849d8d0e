"""End to end: `python src/run.py smoke ...` in a subprocess: real MNIST, Optuna and MLflow stores in tmp."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import PROJECT_ROOT, RUN_PY, SmokeStudy, run_cli, store_overrides
from mnist_study.serving import MODEL_ID_TAG
from mnist_study.sweep.schema import MLFLOW_RUN_ATTR
from mnist_study.sweep.storage import open_storage

pytestmark = pytest.mark.slow  # Every test starts `python src/run.py`.

SMOKE_BASELINE = {"model.units": 512, "optimizer": "rmsprop", "train.epochs": 2, "optimizer.learning_rate": 0.001}
PROGRESS = re.compile(r"^trial (\d+)/(\d+) (COMPLETE|PRUNED|FAIL) .*\) [\d.]+s ETA \S+$", re.MULTILINE)
ALWAYS_PRUNE = [
    "hydra.sweeper.pruner=null",
    "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.999}",
]


def sweep_args(folder: Path, storage: str, *extra: str) -> list[str]:
    return ["smoke", *store_overrides(folder), f"hydra.sweeper.storage={storage}", *extra]


def sweep(folder: Path, storage: str, *extra: str) -> str:
    """Run the smoke study; fail the test with its output unless it exits 0; return its stdout."""
    result = run_cli(sweep_args(folder, storage, *extra))
    if result.returncode != 0:
        pytest.fail(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result.stdout


def mlflow_runs(folder: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("mnist-mlp")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def split_runs(runs: list, study_name: str) -> tuple[object, dict[str, object]]:
    """The study's one parent run and its children by name."""
    parents = [run for run in runs if run.info.run_name == study_name]
    assert len(parents) == 1, [run.info.run_name for run in runs]
    parent = parents[0]
    children = {
        run.info.run_name: run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    return parent, children


def test_sweep_finishes_n_trials_then_extends_under_the_same_parent(
    smoke_study: SmokeStudy, tmp_path: Path
) -> None:
    # The session's smoke study: `python src/run.py smoke`, three trials, run once for every test that needs one.
    output = smoke_study.output("smoke")
    trials_run = 3
    assert [int(number) for number, _, _ in PROGRESS.findall(output)] == list(range(trials_run))
    study = optuna.load_study(study_name="smoke", storage=smoke_study.storage)
    trials = study.get_trials()
    assert [trial.number for trial in trials] == list(range(trials_run))
    assert all(trial.state.is_finished() and trial.state != TrialState.FAIL for trial in trials)
    # Both kinds of ending are among them, so that both branches below are checked.
    assert {trial.state for trial in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    assert trials[0].params == SMOKE_BASELINE
    # The objective is named once: the direction the sweep announces is the study's, and the metric it names is
    # the MLflow history each trial logged and what the trial reported to Optuna (checked per trial below).
    direction, objective = re.search(r"^study smoke \((\w+) (\w+)\) in ", output, re.MULTILINE).groups()
    assert study.direction.name.lower() == direction

    client, runs = mlflow_runs(smoke_study.folder)
    parent, children = split_runs(runs, "smoke")
    assert parent.info.status == "FINISHED"
    assert sorted(children) == [f"trial-{n}" for n in range(trials_run)]
    for trial in trials:
        child = children[f"trial-{trial.number}"]
        assert child.info.status == "FINISHED"
        assert child.data.tags["optuna.state"] == trial.state.name
        assert child.data.tags["optuna.trial"] == str(trial.number)
        history = client.get_metric_history(child.info.run_id, objective)
        # One value per epoch trained, equal to what the trial reported to Optuna at the same step.
        assert {m.step: m.value for m in history} == pytest.approx(trial.intermediate_values)
        assert ("test_accuracy" in child.data.metrics) == (trial.state == TrialState.COMPLETE)
        # A COMPLETE trial logs its network as a model; a PRUNED one logs none.
        assert (MODEL_ID_TAG in child.data.tags) == (trial.state == TrialState.COMPLETE)
    assert parent.data.metrics[f"best_{objective}"] == pytest.approx(study.best_value)
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "best.json", "plots"} <= artifacts
    plots = {item.path for item in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    assert "plots/accuracy_vs_width.png" in plots

    # The same command with a larger budget, on a copy of the stores, resumes: exactly two more trials, here
    # pruned by a pruner that always prunes, under the same parent run.
    smoke_study.copy(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    extended = trials_run + 2
    output = sweep(tmp_path, storage, f"hydra.sweeper.n_trials={extended}", *ALWAYS_PRUNE)
    added = list(range(trials_run, extended))
    assert [(int(n), state) for n, _, state in PROGRESS.findall(output)] == [(n, "PRUNED") for n in added]
    assert "at epoch 1" in output
    trials = optuna.load_study(study_name="smoke", storage=storage).get_trials()
    assert [trial.number for trial in trials] == list(range(extended))
    assert [trial.state for trial in trials[trials_run:]] == [TrialState.PRUNED, TrialState.PRUNED]
    assert [list(trial.intermediate_values) for trial in trials[trials_run:]] == [[1], [1]]
    client, runs = mlflow_runs(tmp_path)
    resumed_parent, children = split_runs(runs, "smoke")
    assert resumed_parent.info.run_id == parent.info.run_id and resumed_parent.info.status == "FINISHED"
    assert sorted(children) == sorted(f"trial-{n}" for n in range(extended))
    last = children[f"trial-{extended - 1}"]
    assert last.data.tags["optuna.state"] == "PRUNED"
    assert "test_accuracy" not in last.data.metrics
    assert MODEL_ID_TAG not in last.data.tags


def test_command_line_narrows_and_fixes_and_failed_trials_do_not_stop_the_sweep(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    # SGD at a learning rate of 1e12 diverges at once: every trial is a FAIL with the reason, none stops the sweep.
    narrow = ["model.units=choice(64,96)", "optimizer=sgd", "optimizer.learning_rate=1e12"]
    output = sweep(tmp_path, storage, "hydra.sweeper.n_trials=2", *narrow)

    assert "baseline not enqueued as trial 0: outside the search space (model.units=512)" in output
    assert [(int(n), state) for n, _, state in PROGRESS.findall(output)] == [(0, "FAIL"), (1, "FAIL")]
    trials = optuna.load_study(study_name="smoke", storage=storage).get_trials()
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.FAIL]
    _, runs = mlflow_runs(tmp_path)
    # A FAILED trial logs no model either.
    assert not any(MODEL_ID_TAG in run.data.tags for run in runs)
    for trial in trials:
        assert "loss became nan" in trial.user_attrs["fail_reason"]
        assert trial.params["model.units"] in (64, 96)
        assert "optimizer" not in trial.params and "optimizer.learning_rate" not in trial.params
        assert trial.user_attrs["fixed.optimizer"] == "sgd"
    _, runs = mlflow_runs(tmp_path)
    _, children = split_runs(runs, "smoke")
    assert len(children) == 2
    for child in children.values():
        assert child.info.status == "FAILED"
        assert child.data.tags["optuna.state"] == "FAIL"
        assert child.data.params["optimizer.name"] == "sgd"
        assert child.data.params["model.units"] in ("64", "96")


def test_two_workers_on_one_journal_finish_n_trials_together(tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    args = sweep_args(tmp_path, storage, "hydra.sweeper.n_trials=5", "hydra.sweeper.study_name=pair")
    workers = [
        subprocess.Popen(
            [sys.executable, str(RUN_PY), *args, f"hydra.sweep.dir={tmp_path}/multirun-{index}"],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"

    finished = [int(n) for stdout, _ in outputs for n, _, _ in PROGRESS.findall(stdout)]
    trials = optuna.load_study(study_name="pair", storage=open_storage(storage)).get_trials()
    counted = [trial for trial in trials if trial.state.is_finished() and "uncounted" not in trial.user_attrs]
    ran = [trial for trial in trials if MLFLOW_RUN_ATTR in trial.user_attrs]
    assert len(counted) == 5
    assert sorted(finished) == sorted(trial.number for trial in ran) == sorted(trial.number for trial in counted)
    assert len(set(finished)) == len(finished)
    assert all(trial.state.is_finished() for trial in trials)
    # Both processes built their samplers from one seed; each trial's number, not the process, sets its draw, so
    # no two trials train the same configuration (the learning rate is continuous: a repeat is a repeated seed).
    drawn = [tuple(sorted(trial.params.items())) for trial in counted]
    assert len(set(drawn)) == len(drawn), drawn
    _, runs = mlflow_runs(tmp_path)
    _, children = split_runs(runs, "pair")
    assert sorted(children) == sorted(f"trial-{trial.number}" for trial in ran)


def test_bad_sweeper_config_is_one_clear_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    result = run_cli(sweep_args(tmp_path, f"sqlite:///{tmp_path}/optuna.db", "hydra.sweeper.n_trials=0"))
    assert result.returncode != 0
    assert "error: hydra.sweeper.n_trials=0: must be an integer >= 1" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
