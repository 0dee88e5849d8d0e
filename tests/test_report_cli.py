"""End to end: a smoke study, then `python src/report.py` on it in a subprocess (real MNIST, Optuna, MLflow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import PROJECT_ROOT, SmokeStudy
from mnist_study.data import ARRAY_SHA256
from mnist_study.report.rerun import logged_metrics, rerun_here
from mnist_study.report.selection import top_trials
from mnist_study.sweep.schema import MLFLOW_RUN_ATTR
from test_report import assert_self_contained

pytestmark = pytest.mark.slow  # Every test starts `python src/report.py`.

REPORT_PY = PROJECT_ROOT / "src" / "report.py"


def report_argv(folder: Path, *args: str) -> list[str]:
    """The command line of `python src/report.py ARGS` with every store and output in `folder`."""
    stores = [
        f"storage=sqlite:///{folder}/optuna.db",
        f"tracking.uri=sqlite:///{folder}/mlflow.db",
        f"tracking.artifact_location={folder}/mlruns",
        f"output_dir={folder}/report",
        f"hydra.run.dir={folder}/outputs",
    ]
    if not any(arg.startswith("experiments_dir=") for arg in args):
        # The champion's experiment file goes beside the stores, never into the repository's experiments/.
        stores.append(f"experiments_dir={folder}")
    if not any(arg.startswith("workers=") for arg in args):
        # Refits of a few hundred images in this process: two worker processes would each import TensorFlow for
        # seconds of training. The default two workers are tested where they matter, in test_report_kills.py.
        stores.append("workers=1")
    return [sys.executable, str(REPORT_PY), *stores, *args]


def report_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python src/report.py ARGS` with every store and output in `folder`."""
    return subprocess.run(
        report_argv(folder, *args),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def reported(smoke_study: SmokeStudy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's smoke study (3 trials on 2000 images), then a report on it: re-scoring, 2 seeds,
    the top trial."""
    folder = tmp_path_factory.mktemp("report")
    smoke_study.copy(folder)
    arguments = ("study_name=smoke", "seeds=2", "top_k=1", "rescore.trials=5", "data.train_subset=2000")
    result = report_cli(folder, *arguments)
    if result.returncode != 0:
        pytest.fail(f"report failed:\n{result.stdout}\n{result.stderr}")
    return folder


def test_report_holds_every_section(reported: Path) -> None:
    markdown = (reported / "report" / "report.md").read_text()
    for expected in (
        "seed_replica (fits on test)",
        "baseline (trial 0)",
        "test accuracy (mean ± std)",
        "95 % CI",
        "p (Welch)",
        "Welch's t-test",
        "97.5 %",
        ARRAY_SHA256["x_train"],
        "| tensorflow |",
        "uv.lock sha256",
        "Rerun check",
        "bit-identical",
        "for s in 0 1; do python src/run.py",
        "## Re-scoring",
        "the test set was not scored",
    ):
        assert expected in markdown, expected
    for name in ("accuracy", "learning_curves", "optimization_history", "param_importances"):
        assert f"figures/{name}.png" in markdown
    assert_self_contained((reported / "report" / "report.html").read_text())
    # The champion's experiment file is written where the report is told, and nowhere in the repository.
    assert (reported / "smoke_champion.yaml").read_text().startswith("# @package _global_\n")
    assert not (PROJECT_ROOT / "experiments" / "smoke_champion.yaml").exists()


def test_refits_are_children_of_a_report_run_under_the_studys_parent(reported: Path) -> None:
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{reported}/optuna.db")
    client = MlflowClient(f"sqlite:///{reported}/mlflow.db")
    experiment = client.get_experiment_by_name("mnist-mlp").experiment_id
    runs = client.search_runs([experiment], "tags.report = 'smoke'", max_results=100)
    (report_run,) = [run for run in runs if run.info.run_name == "report smoke"]
    assert report_run.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]
    assert report_run.info.status == "FINISHED"
    assert report_run.data.tags["rerun.verdict"].startswith("bit-identical")
    artifacts = {item.path for item in client.list_artifacts(report_run.info.run_id)}
    assert {"report.md", "report.html", "results.json", "rescoring.json"} <= artifacts
    # Every COMPLETE trial besides the baseline (up to rescore.trials=5), at seeds 1 and 2 after its own value.
    downloaded = client.download_artifacts(report_run.info.run_id, "rescoring.json", str(reported))
    rescored = json.loads(Path(downloaded).read_text())
    assert rescored["seeds"] == [1, 2]
    assert sorted(rescored["scores"]) == sorted(f"trial {trial.number}" for trial in top_trials(study, 5))
    assert all(len(scores) == 3 for scores in rescored["scores"].values())
    refits = [run for run in runs if run.info.run_id != report_run.info.run_id]
    assert len(refits) == 3 * 2  # replica, baseline, top 1; two seeds each
    for run in refits:
        assert run.data.tags["mlflow.parentRunId"] == report_run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.params["data.val_size"] == "0"
        assert "test_accuracy" in run.data.metrics
    assert sorted(run.data.params["seed"] for run in refits) == ["0", "0", "0", "1", "1", "1"]


def test_rerun_detects_a_tampered_logged_metric(reported: Path) -> None:
    uri = f"sqlite:///{reported}/mlflow.db"
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{reported}/optuna.db")
    original = study.best_trial.user_attrs[MLFLOW_RUN_ATTR]
    client = MlflowClient(uri)
    # A copy of the run's record (config and metrics), with its test accuracy changed by one image in 10 000.
    copy = client.create_run(client.get_run(original).info.experiment_id, run_name="tampered").info.run_id
    client.log_text(
        copy, Path(client.download_artifacts(original, "config.yaml", str(reported))).read_text(), "config.yaml"
    )
    for key, steps in logged_metrics(client, original).items():
        for step, value in steps.items():
            client.log_metric(copy, key, value + (0.0001 if key == "test_accuracy" else 0.0), step=step)
    result = rerun_here(uri, copy)
    assert not result.identical
    assert result.largest_at == "test_accuracy at step 0"
    assert result.largest_difference == pytest.approx(0.0001)
    assert result.verdict.startswith("differs")


def test_unknown_study_is_one_line(tmp_path: Path) -> None:
    result = report_cli(tmp_path, "study_name=nope")
    assert result.returncode != 0
    assert "error: no study 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
