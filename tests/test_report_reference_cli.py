"""End to end: `python src/report.py ... reference=mnist-mlp_champion` on the session's smoke study, in a process
(real MNIST on 2000 images, Optuna, MLflow): the committed champion of the default study is refitted beside the
baseline, every variant is tested against both, a second report reuses every refit, and the champion's experiment
file carries the report's arithmetic. A name that is not a configuration ends in one line with nothing written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import PROJECT_ROOT, SmokeStudy, composed
from test_report_cli import report_cli
from test_report_reference import CHAMPION, OTHER_PRECISION

pytestmark = pytest.mark.slow  # Every test starts `python src/report.py`.

LABEL = f"{CHAMPION} (reference)"
# Two seeds, the study's best trial, no rerun check; 2000 images and one epoch for every refit, in the precision
# the configs do not default to.
ARGUMENTS = (
    "study_name=smoke",
    "seeds=2",
    "top_k=1",
    "rerun_check=false",
    "data.train_subset=2000",
    "train.epochs=1",
    f"train.precision={OTHER_PRECISION}",
    f"reference={CHAMPION}",
)


def must_pass(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode != 0:
        pytest.fail(f"report failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def reported(smoke_study: SmokeStudy, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A copy of the smoke study, then the same report with a reference twice: its folder and both outputs."""
    folder = tmp_path_factory.mktemp("reference")
    smoke_study.copy(folder)
    first = must_pass(report_cli(folder, *ARGUMENTS))
    second = must_pass(report_cli(folder, *ARGUMENTS))
    return folder, first, second


def report_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("mnist-mlp").experiment_id
    runs = client.search_runs([experiment], "tags.report = 'smoke'", max_results=200)
    return sorted(
        (run for run in runs if run.info.run_name == "report smoke"), key=lambda run: run.info.start_time
    )


def test_the_reference_is_refitted_from_its_file_under_the_reports_overrides(
    reported: tuple[Path, str, str],
) -> None:
    folder, first, _ = reported
    assert "report on study smoke: 4 configurations x 2 seeds" in first
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("mnist-mlp").experiment_id
    refits = client.search_runs([experiment], f"tags.`report.configuration` = '{LABEL}'")
    own = OmegaConf.load(PROJECT_ROOT / "experiments" / f"{CHAMPION}.yaml")
    assert sorted(run.data.params["seed"] for run in refits) == ["0", "1"]
    for run in refits:
        assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
        params = run.data.params
        assert params["model.units"] == str(own.model.units)
        assert params["train.batch_size"] == str(own.train.batch_size)
        # The report's own overrides win over the file's (14 epochs, all 60 000 images, the default precision).
        assert (params["train.epochs"], params["data.train_subset"]) == ("1", "2000")
        assert (params["train.precision"], params["data.val_size"]) == (OTHER_PRECISION, "0")


def test_the_report_tests_the_variant_against_both_references_and_says_so(reported: tuple[Path, str, str]) -> None:
    folder, _, _ = reported
    markdown = (folder / "report" / "report.md").read_text()
    for expected in (
        f"The second reference, {LABEL}: ",
        f"## Against the second reference: {LABEL}",
        "form one family of 2 hypotheses",
        f"`+experiments={CHAMPION}`",
        "(unadjusted: the second reference, not one of the study's claims)",
        f"for s in 0 1; do python src/run.py +experiments={CHAMPION} ",
    ):
        assert expected in markdown, expected
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    first_report = report_runs(client)[0]
    assert first_report.info.status == "FINISHED"
    assert first_report.data.tags["report.reference"] == CHAMPION
    assert first_report.data.tags["report.hypotheses"] == "2"
    summary = json.loads(
        Path(client.download_artifacts(first_report.info.run_id, "results.json", str(folder))).read_text()
    )
    assert summary[LABEL]["role"] == "reference" and len(summary[LABEL]["test_accuracy"]) == 2
    (variant,) = [row for row in summary.values() if row["role"] == "variant"]
    assert variant["seeds_compared_vs_reference"] == 2
    assert variant["verdict_vs_reference"].split(" at ")[0].split(" (")[0] in (
        f"better than {CHAMPION}",
        f"worse than {CHAMPION}",
        f"not distinguishable from {CHAMPION}",
    )


def test_a_second_report_reuses_every_refit_the_references_included(reported: tuple[Path, str, str]) -> None:
    folder, _, second = reported
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    first_report, second_report = report_runs(client)
    assert second_report.data.tags["report.refits"] == second_report.data.tags["report.refits_reused"] == "8"
    assert second.count("reused run") == 8
    assert sum(LABEL in line and "reused run" in line for line in second.splitlines()) == 2
    assert first_report.data.tags["report.refits_reused"] == "0"


def test_the_champion_experiment_retrains_under_the_reports_arithmetic(reported: tuple[Path, str, str]) -> None:
    folder, _, _ = reported
    text = (folder / "smoke_champion.yaml").read_text()
    assert (
        f"# With the report's own data.train_subset=2000 train.epochs=1 train.precision={OTHER_PRECISION}" in text
    )
    cfg = composed(f"hydra.searchpath=[file://{folder.parent}]", f"+{folder.name}=smoke_champion")
    assert (cfg.train.precision, cfg.train.epochs, cfg.data.train_subset) == (OTHER_PRECISION, 1, 2000)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nope", "error: reference=nope: experiments/ has no nope.yaml"),
        ("sweep", "error: reference=sweep: experiments/sweep.yaml is a study"),
    ],
)
def test_a_reference_that_is_no_configuration_is_one_line_and_writes_nothing(
    smoke_study: SmokeStudy, tmp_path: Path, name: str, expected: str
) -> None:
    smoke_study.copy(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    before = {run.info.run_id for run in client.search_runs(experiments, max_results=1000)}
    result = report_cli(tmp_path, "study_name=smoke", f"reference={name}")
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(expected)
    assert "Traceback" not in result.stderr
    after = client.search_runs(experiments, max_results=1000)
    assert {run.info.run_id for run in after} == before
    assert not any(run.info.status == "RUNNING" for run in after)
    assert not (tmp_path / "report").exists() and not (tmp_path / "smoke_champion.yaml").exists()
