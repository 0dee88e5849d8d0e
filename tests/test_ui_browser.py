"""The comparison a person sees: real `mlflow ui` and optuna-dashboard over a smoke study, in headless Chromium.

One baseline run and the smoke sweep are built into a temporary store; the assertions are on rendered text and
decoded images, never on HTTP status alone. Screenshots land in the test's temporary folder (the path is printed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from conftest import run_cli, store_overrides
from mnist_study import browser
from mnist_study.plots import CONFUSION_ARTIFACT, CURVES_ARTIFACT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(browser.CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]

STUDY = "smoke"
# The baseline with the smoke study's data and epochs, so that it lines up with the study's trials.
SMALL = ["data.train_subset=2000", "train.epochs=2"]


@dataclass
class BuiltStudy:
    """Where the smoke study was written, and its runs by name."""

    folder: Path
    tracking_uri: str
    storage: str
    experiment_id: str
    runs: dict[str, Run]

    def best_variant(self) -> Run:
        """The best COMPLETE trial that is not the baseline's own configuration (trial 0)."""
        trials = [
            run
            for name, run in self.runs.items()
            if name.startswith("trial-")
            and name != "trial-0"
            and run.data.tags.get("optuna.state") == "COMPLETE"
            and "val_accuracy" in run.data.metrics
        ]
        if not trials:
            raise LookupError("the smoke study has no COMPLETE trial besides the baseline")
        return max(trials, key=lambda run: run.data.metrics["val_accuracy"])


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    """A baseline run and the smoke sweep through the real CLI, in a temporary MLflow store and Optuna storage."""
    folder = tmp_path_factory.mktemp("ui")
    storage = f"sqlite:///{folder}/optuna.db"
    for args in (
        ["baseline", *SMALL, *store_overrides(folder)],
        [STUDY, *store_overrides(folder), f"hydra.sweeper.storage={storage}"],
    ):
        result = run_cli(args)
        if result.returncode != 0:
            pytest.fail(f"{args[0]}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("mnist-mlp")
    assert experiment is not None
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    return BuiltStudy(folder, tracking_uri, storage, experiment.experiment_id, runs)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    print(f"\nscreenshots: {folder}")


def test_every_run_carries_its_description_and_plots(study: BuiltStudy) -> None:
    """What the UI will show, checked at the source first: names, notes, curves and confusion matrices."""
    assert {"baseline", STUDY, "trial-0", "trial-1", "trial-2"} <= set(study.runs)
    client = MlflowClient(tracking_uri=study.tracking_uri)
    for name in ("baseline", "trial-0", "trial-1", "trial-2"):
        run = study.runs[name]
        note = run.data.tags["mlflow.note.content"]
        assert "784 → " in note and "learning rate" in note, note
        artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "plots")}
        assert CURVES_ARTIFACT in artifacts, (name, artifacts)
        finished = name == "baseline" or run.data.tags.get("optuna.state") == "COMPLETE"
        assert (CONFUSION_ARTIFACT in artifacts) == finished, (name, artifacts)
    assert (
        study.runs["trial-1"].data.tags["mlflow.note.content"].startswith(f"Trial 1 of the Optuna study `{STUDY}`")
    )


def test_mlflow_ui_lists_compares_and_shows_the_learning_curves(study: BuiltStudy, screenshots: Path) -> None:
    baseline, best = study.runs["baseline"], study.best_variant()
    port = browser.free_port()
    command = browser.mlflow_ui_command(study.tracking_uri, port)
    with browser.serve(command, port, study.folder / "mlflow-ui.log") as base, browser.chromium_page() as page:
        listed = browser.show_experiment(page, base, study.experiment_id, parents=[STUDY])
        browser.close_assistant(page)
        page.screenshot(path=screenshots / "experiment.png")
        assert {"baseline", STUDY, "trial-0", "trial-1", "trial-2"} <= set(listed), listed

        names = [baseline.info.run_name, best.info.run_name]
        browser.show_comparison(page, base, [baseline.info.run_id, best.info.run_id], study.experiment_id, names)
        page.screenshot(path=screenshots / "compare.png", full_page=True)
        for metric in ("val_accuracy", "test_accuracy"):
            expected = [browser.format_metric(run.data.metrics[metric]) for run in (baseline, best)]
            # Placed in the right row, and level with the metric's name where a person reads it.
            assert browser.metric_row(page, metric) == expected, metric
            assert browser.metric_row_on_screen(page, metric) == expected, metric

        width, height = browser.show_artifact(page, base, study.experiment_id, best.info.run_id, CURVES_ARTIFACT)
        page.screenshot(path=screenshots / "learning_curves.png")
        assert width > 300 and height > 150, (width, height)


def test_optuna_dashboard_lists_the_trials(study: BuiltStudy, screenshots: Path) -> None:
    trials = optuna.load_study(study_name=STUDY, storage=study.storage).get_trials()
    port = browser.free_port()
    command = browser.dashboard_command(study.storage, port)
    with browser.serve(command, port, study.folder / "dashboard.log") as base, browser.chromium_page() as page:
        shown = browser.show_dashboard_trials(page, base, STUDY)
        page.screenshot(path=screenshots / "dashboard_trials.png")
    assert shown == [f"Trial {trial.number}" for trial in trials]
