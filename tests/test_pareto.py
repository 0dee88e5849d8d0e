"""Studies of several objectives: accuracy against size (`python src/run.py pareto`), their front, their report."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from conftest import run_cli, store_overrides
from mnist_study.metrics import direction_for
from mnist_study.report.selection import top_trials
from mnist_study.sweep.schema import BASELINE_ATTR, MLFLOW_RUN_ATTR
from mnist_study.sweep.storage import open_storage

SMALL = ["data.train_subset=1000", "train.epochs=int(interval(1, 2))", "hydra.sweeper.n_trials=6"]


def dominates(first: list[float], second: list[float]) -> bool:
    """Whether `first` (accuracy up, size down) is at least as good in both and better in one."""
    no_worse = first[0] >= second[0] and first[1] <= second[1]
    return no_worse and (first[0] > second[0] or first[1] < second[1])


def test_sizes_and_times_are_minimized_and_accuracies_maximized() -> None:
    assert [direction_for(name) for name in ("val_accuracy", "val_loss", "n_params", "fit_seconds")] == [
        "maximize",
        "minimize",
        "minimize",
        "minimize",
    ]


@pytest.mark.slow
def test_a_two_objective_sweep_writes_a_pareto_front_that_dominates_nothing_of_itself(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(["pareto", *store_overrides(tmp_path), f"hydra.sweeper.storage={storage}", *SMALL])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "several objectives: a Pareto front, no pruning" in result.stdout
    study = optuna.load_study(study_name="mnist-pareto", storage=open_storage(storage))
    assert [direction.name for direction in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(trial.state == TrialState.COMPLETE for trial in study.trials)

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_experiment_by_name("mnist-pareto") is not None  # Its own experiment, its own models.
    runs = {trial.number: client.get_run(trial.user_attrs[MLFLOW_RUN_ATTR]) for trial in study.trials}
    front = {trial.number for trial in study.best_trials}
    for trial in study.trials:
        run = runs[trial.number]
        assert run.data.metrics["n_params"] == trial.values[1]  # Every run logs its size; the study minimizes it.
        assert run.data.tags["optuna.pareto_front"] == str(trial.number in front).lower()
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    with tempfile.TemporaryDirectory() as scratch:
        text = Path(client.download_artifacts(parent_id, "pareto.csv", scratch)).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {int(row["number"]) for row in rows} == front
    points = [[float(row["val_accuracy"]), float(row["n_params"])] for row in rows]
    assert not any(dominates(a, b) for a in points for b in points if a is not b)
    assert "plots/pareto_front.png" in [a.path for a in client.list_artifacts(parent_id, "plots")]


@pytest.mark.slow
def test_a_pruner_configured_for_a_two_objective_study_is_refused_in_one_line(tmp_path: Path) -> None:
    pruner = "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner}"
    result = run_cli(
        ["pareto", *store_overrides(tmp_path), f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db", pruner]
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: hydra.sweeper.pruner._target_='optuna.pruners.MedianPruner'"), result.stderr
    assert "several objectives" in last and not (tmp_path / "optuna.db").exists()


def test_the_report_compares_front_members_spread_along_it_never_the_baseline_or_dominated_trials() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    distributions = {"model.units": IntDistribution(16, 4096)}
    points = {
        16: (0.90, 12_730),
        64: (0.95, 50_890),
        128: (0.97, 101_770),
        256: (0.975, 203_530),
        512: (0.978, 407_050),
        1024: (0.980, 814_090),
        2048: (0.970, 1_628_170),  # Dominated by 128 units: never a candidate.
    }
    for units, values in points.items():
        attrs = {BASELINE_ATTR: True} if units == 512 else {}
        study.add_trial(
            create_trial(
                params={"model.units": units}, distributions=distributions, values=list(values), user_attrs=attrs
            )
        )
    picked = [trial.params["model.units"] for trial in top_trials(study, 3)]
    # The front without the baseline, best accuracy first: 1024, 256, 128, 64, 16; three spread along it.
    assert picked == [1024, 128, 16]
    assert [trial.params["model.units"] for trial in top_trials(study, 10)] == [1024, 256, 128, 64, 16]
