"""Take the README's screenshots from the project's default store and study (run: make screenshots).

docs/compare.png: MLflow's compare view of the `baseline` run against the study's best variant (the best COMPLETE
trial that is not the baseline's own configuration). docs/datasets.png: the runs table with each run's datasets.
docs/dashboard.png: optuna-dashboard's page for the study.
Both servers are started as `make ui` and `make dashboard` start them (mnist_study.launch), on free loopback ports,
and stopped afterwards; the page helpers are the browser test's (tests/browser.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import optuna
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "src"))
sys.path.insert(0, str(PROJECT_ROOT / "tests"))

import browser  # noqa: E402  (after the paths above)
from mnist_study import launch, ui_link  # noqa: E402
from mnist_study.paths import study_storage, tracking_uri  # noqa: E402
from mnist_study.sweep.schema import BASELINE_ATTR, MLFLOW_RUN_ATTR  # noqa: E402
from servers import free_port, serve  # noqa: E402

# Wide enough for two runs side by side, tall enough that MLflow's inner scroll area needs no scrolling.
VIEWPORT = (1280, 2600)


def best_variant(storage: str, study_name: str) -> tuple[optuna.trial.FrozenTrial, str]:
    """The best COMPLETE trial that is not the baseline's configuration, and its MLflow run id."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    complete = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not trial.user_attrs.get(BASELINE_ATTR) and trial.user_attrs.get(MLFLOW_RUN_ATTR)
    ]
    if not complete:
        raise SystemExit(
            f"study {study_name!r} has no COMPLETE trial besides the baseline: run `make sweep` first"
        )
    best = (
        max(complete, key=lambda trial: trial.value)
        if study.direction.name == "MAXIMIZE"
        else min(complete, key=lambda trial: trial.value)
    )
    return best, best.user_attrs[MLFLOW_RUN_ATTR]


def latest_baseline(client: MlflowClient, experiment_id: str) -> Run:
    """The most recent finished run named `baseline`."""
    runs = client.search_runs(
        [experiment_id],
        filter_string="attributes.run_name = 'baseline' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise SystemExit("no finished `baseline` run: run `python src/run.py baseline` first")
    return runs[0]


def compare_screenshot(tracking_uri: str, experiment: str, runs: list[Run], path: Path, logs: Path) -> None:
    """The compare view's run details, parameters that differ, and metrics: the part a person reads."""
    client_experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(experiment)
    if client_experiment is None:
        raise SystemExit(f"no experiment {experiment!r} in {tracking_uri}")
    port = free_port()
    ui = launch.mlflow_ui(tracking_uri, port)
    with (
        serve(ui.command, port, logs / "mlflow-ui.log", env=ui.environment) as base,
        browser.chromium_page(*VIEWPORT) as page,
    ):
        ids = [run.info.run_id for run in runs]
        names = [run.info.run_name for run in runs]
        browser.show_comparison(page, base, ids, client_experiment.experiment_id, names)
        browser.close_assistant(page)
        # The parallel-coordinates plot is empty for two runs; fold it away and keep only differing parameters.
        page.get_by_text("Visualizations", exact=True).first.click()
        page.get_by_text("Show diff only").first.click()
        # The metrics table scrolls inside a fixed height, which would hide the validation metrics at its end. Its
        # grids already hold every row, so the boxes around them are made as tall as their rows (layout only, no
        # content changes); then check that each name sits level with its own values on screen, so the picture
        # cannot show a number beside the wrong metric.
        page.evaluate(
            """() => {
                for (const grid of document.querySelectorAll('.ReactVirtualized__Grid')) {
                    const rows = grid.querySelector('.ReactVirtualized__Grid__innerScrollContainer');
                    const height = rows.scrollHeight + 'px';
                    let box = grid;
                    while (box && !box.className.toString().includes('collapse-content-box')) {
                        box.style.height = height;
                        box.style.maxHeight = 'none';
                        box = box.parentElement;
                    }
                }
            }"""
        )
        page.wait_for_timeout(1000)
        for metric in ("val_accuracy", "test_accuracy"):
            shown = browser.metric_row_on_screen(page, metric)
            expected = [browser.format_metric(run.data.metrics[metric]) for run in runs]
            if shown != expected:
                raise RuntimeError(f"{metric}: the screen shows {shown}, the runs have {expected}")
        top = page.get_by_text("Run details", exact=True).first.bounding_box()
        bottom = page.get_by_text("Artifacts", exact=True).first.bounding_box()
        if top is None or bottom is None:
            raise RuntimeError("the compare view did not render its run details and metrics")
        page.screenshot(
            path=path,
            clip={"x": top["x"] - 40, "y": top["y"] - 12, "width": 720, "height": bottom["y"] - top["y"]},
        )


def datasets_screenshot(tracking_uri: str, experiment_id: str, study_name: str, path: Path, logs: Path) -> None:
    """The runs table, the study's trials expanded under its parent run, every run's datasets shown."""
    port = free_port()
    ui = launch.mlflow_ui(tracking_uri, port)
    with (
        serve(ui.command, port, logs / "mlflow-ui-datasets.log", env=ui.environment) as base,
        browser.chromium_page(1440, 900) as page,
    ):
        browser.show_experiment(page, ui_link.experiment_url(base, experiment_id), parents=[study_name])
        browser.close_assistant(page)
        if not any(browser.run_datasets(page).values()):
            raise RuntimeError("no run on screen lists a dataset: they were logged before runs logged datasets")
        page.screenshot(path=path)


def dashboard_screenshot(storage: str, study_name: str, path: Path, logs: Path) -> None:
    """optuna-dashboard's study page: history, importances and the best trial."""
    port = free_port()
    with (
        serve(launch.dashboard(storage, port).command, port, logs / "dashboard.log") as base,
        browser.chromium_page(1280, 1000) as page,
    ):
        browser.show_dashboard_trials(page, base, study_name)
        page.goto(page.url.removesuffix("/trials"))
        browser.wait_for_text(page, "Hyperparameter Importance")
        page.wait_for_timeout(2000)  # Plotly animates its first draw.
        page.screenshot(path=path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=tracking_uri())
    parser.add_argument("--experiment", default="mnist-mlp")
    parser.add_argument("--storage", default=study_storage())
    parser.add_argument("--study", default="mnist-mlp")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"no experiment {args.experiment!r} in {args.tracking_uri}")
    trial, run_id = best_variant(args.storage, args.study)
    runs = [latest_baseline(client, experiment.experiment_id), client.get_run(run_id)]
    print(f"baseline {runs[0].info.run_id} vs trial {trial.number} ({run_id}): {trial.params}")
    with tempfile.TemporaryDirectory(prefix="screenshots-") as logs:
        compare_screenshot(args.tracking_uri, args.experiment, runs, args.out / "compare.png", Path(logs))
        datasets_screenshot(
            args.tracking_uri, experiment.experiment_id, args.study, args.out / "datasets.png", Path(logs)
        )
        dashboard_screenshot(args.storage, args.study, args.out / "dashboard.png", Path(logs))
    for name in ("compare.png", "datasets.png", "dashboard.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
