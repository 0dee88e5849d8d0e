"""The comparison a person sees: real `mlflow ui` and optuna-dashboard over a smoke study, in headless Chromium.

The session's smoke study (one baseline run and the smoke sweep, in a temporary store) is what they show; the
assertions are on rendered text and decoded images, never on HTTP status alone. The MLflow walk starts where a
person starts: a fresh browser at the link `make ui` prints, then only clicks to the compare view and the Models
tab. Screenshots land in the test's temporary folder (the path is printed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

import browser
from conftest import SmokeStudy
from mlflow_stores import new_store
from mnist_study import ui_link
from mnist_study.dataset_inputs import CONTEXT_TAG
from mnist_study.paths import STORAGE_VARIABLE, TRACKING_VARIABLE, default_experiment
from mnist_study.plots import CONFUSION_ARTIFACT, CURVES_ARTIFACT
from mnist_study.tracking import get_or_create_experiment
from servers import free_port, make_target, serve

# The tests over a built study: they train (slow) and open Chromium. The link's own tests need neither.
needs_study = pytest.mark.slow
# Skipped without Debian's chromium on a developer's machine, a failure under CI (tests/conftest.py).
needs_chromium = pytest.mark.system("chromium")

STUDY = "smoke"
# A common desktop screen: wide enough that the Models tab shows a model's source run beside its test accuracy.
SCREEN = (1920, 1080)
KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


@dataclass
class BuiltStudy:
    """The smoke study's stores, and its runs by name."""

    tracking_uri: str
    storage: str
    experiment_id: str
    runs: dict[str, Run]

    def finished(self) -> dict[str, Run]:
        """The runs that trained to the end, by name: the baseline and the COMPLETE trials (each logs a model)."""
        return {
            name: run
            for name, run in self.runs.items()
            if name == "baseline"
            or (name.startswith("trial-") and run.data.tags.get("optuna.state") == "COMPLETE")
        }

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
def study(smoke_study: SmokeStudy) -> BuiltStudy:
    """The session's smoke study (a baseline run and the smoke sweep through the real CLI, tests/conftest.py),
    only read here: the servers and the browser look at it, and their logs go to each test's own folder."""
    client = MlflowClient(tracking_uri=smoke_study.tracking_uri)
    experiment = client.get_experiment_by_name("mnist-mlp")
    assert experiment is not None
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    return BuiltStudy(smoke_study.tracking_uri, smoke_study.storage, experiment.experiment_id, runs)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    print(f"\nscreenshots: {folder}")


def printed_link(log_path: Path) -> str:
    """The link `make ui` printed before its UI started (the first lines of its log)."""
    links = re.findall(r"^  (http://\S+)$", log_path.read_text(), flags=re.MULTILINE)
    assert len(links) == 1, log_path.read_text()[-3000:]
    return links[0]


def test_the_link_waits_for_the_sweep_then_opens_the_runs(tmp_path: Path) -> None:
    """No experiment yet: the UI's front page and what creates it; the store is not created by looking. Once a
    job has created it: the experiment's Model training view, and the experiment is tagged as model training."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    link = ui_link.ui_link("http://127.0.0.1:5123", uri, "mnist-mlp")
    assert link == ui_link.UiLink(
        "http://127.0.0.1:5123/", None, "(no experiment 'mnist-mlp' yet: `make sweep` creates it)"
    )
    assert not (tmp_path / "mlflow.db").exists()
    assert default_experiment() == "mnist-mlp"  # conf/tracking/mlflow.yaml

    assert new_store(tmp_path) == uri  # The store a job would have created (its tables only).
    client = MlflowClient(tracking_uri=uri)
    experiment_id = get_or_create_experiment(client, "mnist-mlp", str(tmp_path / "mlruns"))
    assert client.get_experiment(experiment_id).tags[KIND_TAG] == MODEL_TRAINING
    link = ui_link.ui_link("http://127.0.0.1:5123", uri, "mnist-mlp")
    assert link.experiment_id == experiment_id
    assert link.url == f"http://127.0.0.1:5123/#/experiments/{experiment_id}?workflowType=machine_learning"

    # An experiment made before the tag existed gets it; a kind a person chose in the UI is kept.
    location = (tmp_path / "mlruns").as_uri()
    old = client.create_experiment("old", artifact_location=location)
    chosen = client.create_experiment("chosen", artifact_location=location, tags={KIND_TAG: "genai_development"})
    assert get_or_create_experiment(client, "old", str(tmp_path)) == old
    assert get_or_create_experiment(client, "chosen", str(tmp_path)) == chosen
    assert client.get_experiment(old).tags[KIND_TAG] == MODEL_TRAINING
    assert client.get_experiment(chosen).tags[KIND_TAG] == "genai_development"

    client.delete_experiment(old)
    assert ui_link.ui_link("http://127.0.0.1:5123", uri, "old").experiment_id is None


@needs_study
@needs_chromium
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


@needs_study
@needs_chromium
def test_every_finished_run_logged_its_model_into_the_experiment(study: BuiltStudy) -> None:
    """What the Models tab will list, checked at the source: one model per finished run, in the study's own
    experiment (tagged as model training), carrying the run's test accuracy."""
    client = MlflowClient(tracking_uri=study.tracking_uri)
    assert client.get_experiment(study.experiment_id).tags.get(KIND_TAG) == MODEL_TRAINING
    models = client.search_logged_models(experiment_ids=[study.experiment_id])
    elsewhere = [
        (model.experiment_id, model.source_run_id)
        for experiment in client.search_experiments()
        if experiment.experiment_id != study.experiment_id
        for model in client.search_logged_models(experiment_ids=[experiment.experiment_id])
    ]
    assert not elsewhere, f"models logged outside the study's experiment {study.experiment_id}: {elsewhere}"
    finished = study.finished()
    assert sorted(model.source_run_id for model in models) == sorted(run.info.run_id for run in finished.values())
    for model in models:
        run = client.get_run(model.source_run_id)
        metrics = {metric.key: metric.value for metric in model.metrics or []}
        assert metrics.get("test_accuracy") == run.data.metrics["test_accuracy"], run.info.run_name


@needs_study
@needs_chromium
def test_a_person_follows_the_link_to_the_runs_the_comparison_and_the_models(
    study: BuiltStudy, screenshots: Path, tmp_path: Path
) -> None:
    baseline, best = study.runs["baseline"], study.best_variant()
    port = free_port()
    # `make ui` as a person runs it, its store named by MLFLOW_TRACKING_URI alone.
    log_path = tmp_path / "mlflow-ui.log"
    with (
        serve(
            make_target("ui", UI_PORT=port), port, log_path, env={TRACKING_VARIABLE: study.tracking_uri}
        ) as base,
        browser.chromium_page(*SCREEN) as page,
    ):
        link = printed_link(log_path)
        assert link == ui_link.experiment_url(base, study.experiment_id)
        # A fresh browser at the printed link: the runs table, not MLflow 3's GenAI overview.
        listed = browser.show_experiment(page, link, parents=[STUDY])
        browser.close_assistant(page)
        page.screenshot(path=screenshots / "experiment.png")
        assert {"baseline", STUDY, "trial-0", "trial-1", "trial-2"} <= set(listed), listed

        # The Dataset column names each training run's three splits, with the digests and contexts it logged.
        shown = browser.run_datasets(page)
        page.screenshot(path=screenshots / "datasets.png")
        for name in ("baseline", "trial-0", "trial-1", "trial-2"):
            logged = [
                (f"{item.dataset.name} ({item.dataset.digest})", tag.value)
                for item in study.runs[name].inputs.dataset_inputs
                for tag in item.tags
                if tag.key == CONTEXT_TAG
            ]
            assert len(logged) == 3, (name, logged)
            assert sorted((label, context.lower()) for label, context in shown[name]) == sorted(logged), name
        assert shown[STUDY] == [], shown[STUDY]  # The parent run trains nothing.
        page.get_by_text("Expand rows", exact=True).click()  # Back to one line per run for the rest.

        # Tick the baseline and the best variant, press Compare.
        runs = (baseline, best)
        browser.compare_runs(page, [run.info.run_name for run in runs])
        page.screenshot(path=screenshots / "compare.png", full_page=True)
        for metric in ("val_accuracy", "test_accuracy"):
            expected = [browser.format_metric(run.data.metrics[metric]) for run in runs]
            # Placed in the right row, and level with the metric's name where a person reads it.
            assert browser.metric_row(page, metric) == expected, metric
            assert browser.metric_row_on_screen(page, metric) == expected, metric

        # On to the Models tab: one logged model per finished run, each beside its run's test accuracy.
        browser.open_models_tab(page)
        shown = browser.logged_models_column(page, "test_accuracy")
        page.screenshot(path=screenshots / "models.png")
        expected_models = {
            name: browser.js_number(run.data.metrics["test_accuracy"]) for name, run in study.finished().items()
        }
        assert shown == expected_models

        width, height = browser.show_artifact(page, base, study.experiment_id, best.info.run_id, CURVES_ARTIFACT)
        page.screenshot(path=screenshots / "learning_curves.png")
        assert width > 300 and height > 150, (width, height)


@needs_study
@needs_chromium
def test_optuna_dashboard_lists_the_trials(study: BuiltStudy, screenshots: Path, tmp_path: Path) -> None:
    trials = optuna.load_study(study_name=STUDY, storage=study.storage).get_trials()
    port = free_port()
    # `make dashboard` as a person runs it, the study's storage named by OPTUNA_STORAGE alone.
    command = make_target("dashboard", DASHBOARD_PORT=port)
    env = {STORAGE_VARIABLE: study.storage}
    with serve(command, port, tmp_path / "dashboard.log", env=env) as base, browser.chromium_page() as page:
        shown = browser.show_dashboard_trials(page, base, STUDY)
        page.screenshot(path=screenshots / "dashboard_trials.png")
    assert shown == [f"Trial {trial.number}" for trial in trials]
