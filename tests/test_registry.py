"""The report turns its verdict into models: versions of `mnist-mlp`, aliases `baseline` and `champion`.

Studies are written here with Optuna's API (trials with known parameters and objective values), so that one
variant is sure to beat the baseline and another is the baseline's own configuration; the report then refits them
for real (2000 images, 2 seeds) and registers the seed-0 refits in a real sqlite MLflow registry.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import composed
from mnist_study.data import load_mnist
from mnist_study.sweep.schema import BASELINE_ATTR
from test_report_cli import report_cli

pytestmark = pytest.mark.slow

DISTRIBUTIONS = {
    "model.units": IntDistribution(16, 512, log=True),
    "train.epochs": IntDistribution(1, 3),
    "optimizer.learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
    "optimizer": CategoricalDistribution(["rmsprop", "adam"]),
}
# A deliberately weak baseline: 16 units, one epoch at a tenth of the usual learning rate.
WEAK = {"model.units": 16, "train.epochs": 1, "optimizer.learning_rate": 1e-4, "optimizer": "rmsprop"}
STRONG = {"model.units": 256, "train.epochs": 3, "optimizer.learning_rate": 1e-3, "optimizer": "adam"}


def write_study(storage: str, name: str, variants: list[tuple[dict, float]]) -> None:
    """A study whose trial 0 is the baseline (`WEAK`) and whose other trials have the given objective values."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params=WEAK, distributions=DISTRIBUTIONS, value=0.5, user_attrs={BASELINE_ATTR: True}
        )
    )
    for params, value in variants:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS, value=value))


def report(folder: Path, study: str) -> str:
    result = report_cli(
        folder,
        f"study_name={study}",
        "seeds=2",
        "top_k=2",
        "rerun_check=false",
        "data.train_subset=2000",
        "tracking.plots=false",
        f"experiments_dir={folder}/experiments",
    )
    if result.returncode != 0:
        pytest.fail(f"report failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Two reports in one store: first a study with a winning variant, then one whose variants cannot win."""
    folder = tmp_path_factory.mktemp("registry")
    (folder / "experiments").mkdir()
    storage = f"sqlite:///{folder}/optuna.db"
    # The study ranks the strong variant second, below a copy of the weak baseline, so the champion is chosen
    # among the variants that beat the baseline, not simply the study's top trial.
    write_study(storage, "wins", [(WEAK, 0.9), (STRONG, 0.8)])
    write_study(storage, "ties", [(WEAK, 0.9)])
    return folder, report(folder, "wins"), report(folder, "ties")


def aliases(client: MlflowClient) -> dict[str, dict[str, str]]:
    model = client.get_registered_model("mnist-mlp")
    return {alias: client.get_model_version("mnist-mlp", version).tags for alias, version in model.aliases.items()}


def test_the_champion_is_the_best_ranked_variant_that_beats_the_baseline(registry: tuple[Path, str, str]) -> None:
    folder, wins, _ = registry
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    versions = client.search_model_versions("name='mnist-mlp'")
    # The seed-0 refit of each baseline and variant: 1 + 2 for "wins", 1 + 1 for "ties"; never the seed replica.
    assert len(versions) == 5
    assert all("seed_replica" not in version.tags["overrides"] for version in versions)
    first = {version.tags["trial"]: version for version in versions if version.tags["study"] == "wins"}
    assert first["2"].tags["verdict"] == "better than the baseline at 95%"
    assert "models:/mnist-mlp@champion -> version" in wins and "(trial 2)" in wins
    for version in first.values():
        run = client.get_run(version.run_id)
        assert run.data.tags["report.seed"] == "0"
        assert version.source == client.get_logged_model(run.data.tags["model_id"]).artifact_location
        expected = {"study", "trial", "overrides", "test_accuracy", "ci95", "p_welch", "verdict", "report_run_id"}
        assert expected <= set(version.tags)


def test_the_champion_alias_loads_and_scores_what_its_run_logged(registry: tuple[Path, str, str]) -> None:
    folder, _, _ = registry
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    run = client.get_run(client.get_model_version_by_alias("mnist-mlp", "champion").run_id)
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    try:
        model = mlflow.pyfunc.load_model("models:/mnist-mlp@champion")
    finally:
        mlflow.set_tracking_uri(None)
    _, (images, labels) = load_mnist()
    answer = model.predict(images)
    assert list(answer.columns) == ["digit", "probabilities"]
    # Raw pixels in: the same test accuracy, image for image, as the run scored on its scaled copies.
    correct = int((answer["digit"].to_numpy() == labels).sum())
    assert correct == round(run.data.metrics["test_accuracy"] * len(labels))


def test_a_second_report_moves_the_aliases_by_the_same_rule(registry: tuple[Path, str, str]) -> None:
    folder, _, ties = registry
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    pointed = aliases(client)
    # The "ties" study's only variant is the baseline's own configuration: no variant wins, so the champion is
    # the baseline, and both aliases point at the latest report's baseline version.
    assert pointed["champion"]["study"] == pointed["baseline"]["study"] == "ties"
    assert pointed["champion"]["trial"] == pointed["baseline"]["trial"] == "0"
    assert "models:/mnist-mlp@champion -> version" in ties


def test_the_champion_becomes_an_experiment_that_retrains_it(registry: tuple[Path, str, str]) -> None:
    folder, _, _ = registry
    text = (folder / "experiments" / "wins_champion.yaml").read_text()
    assert text.startswith("# @package _global_\n# python src/run.py wins_champion\n")
    cfg = composed(f"hydra.searchpath=[file://{folder}]", "+experiments=wins_champion")
    assert cfg.name == "wins_champion"
    assert (cfg.model.units, cfg.train.epochs, cfg.optimizer.name) == (256, 3, "adam")
    assert cfg.optimizer.learning_rate == pytest.approx(1e-3)
