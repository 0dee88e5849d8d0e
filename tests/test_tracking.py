"""MLflow logging on a real SQLite store: params, per-epoch metrics, tags, and no run left RUNNING."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from conftest import composed
from mlflow_stores import migrated_template, new_store
from mnist_study import tracking
from mnist_study.data import ARRAY_SHA256

CONF = Path(__file__).resolve().parents[1] / "conf"


def config_in(folder: Path, *overrides: str) -> DictConfig:
    return composed(f"tracking.uri={new_store(folder)}", f"tracking.artifact_location={folder}/mlruns", *overrides)


def test_flatten_uses_dotted_keys() -> None:
    assert tracking.flatten({"model": {"units": 512}, "seed": 0}) == {"model.units": 512, "seed": 0}


@pytest.mark.parametrize(
    "url",
    ["postgresql://study:s3cret@db.example:5432/optuna", "postgresql+psycopg2://study:s3cret@db/optuna"],
)
def test_redact_hides_url_passwords(url: str) -> None:
    redacted = tracking.redact(f"storage={url}")
    assert "s3cret" not in redacted
    assert "study:***@" in redacted


def test_default_store_is_mlflows_default_at_the_project_root() -> None:
    cfg = composed()
    root = CONF.parent
    assert cfg.tracking.uri == f"sqlite:///{root}/mlflow.db"
    assert cfg.tracking.artifact_location == f"{root}/mlruns"


@pytest.mark.slow  # It creates one store the long way: seconds of MLflow's migrations.
def test_a_test_s_copied_store_is_the_store_mlflow_creates(tmp_path: Path) -> None:
    """The tests' quick stores (tests/mlflow_stores.py) against one MLflow creates: same tables at the same schema
    revision, and the Default experiment made for the copy when it is first opened, not carried over."""
    migrated_template()  # Made before the copy, as it is for every test but a process's first.
    copied_at_ms = int(time.time() * 1000)
    copied = new_store(tmp_path / "copied")
    (tmp_path / "created").mkdir()
    created = f"sqlite:///{tmp_path}/created/mlflow.db"

    def tables_and_experiments(uri: str) -> tuple[list, list]:
        experiments = MlflowClient(uri).search_experiments()
        with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as connection:
            rows = connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
            # MLflow's migrations write a table's constraints in no fixed order: compare each definition's lines.
            tables = [
                (kind, name, sorted(line.strip(" ,") for line in (sql or "").splitlines()))
                for kind, name, sql in rows
            ]
            tables.append(connection.execute("SELECT version_num FROM alembic_version").fetchall())
        return tables, [(item.experiment_id, item.name, item.artifact_location) for item in experiments]

    assert tables_and_experiments(copied) == tables_and_experiments(created)
    assert MlflowClient(copied).get_experiment("0").creation_time >= copied_at_ms


def test_finished_run_has_params_epoch_metrics_tags_and_config(tmp_path: Path) -> None:
    cfg = config_in(tmp_path)
    with tracking.tracked_run(cfg, "unit-run", tags={"protocol": "p"}) as run:
        logger = run.epoch_logger()
        for epoch in range(3):
            logger.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_accuracy": 0.9, "ignored": 5.0})
        run.log_metrics({"test_accuracy": 0.97})
    client = MlflowClient(cfg.tracking.uri)
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "unit-run"
    assert logged.data.params["model.units"] == "512"
    assert logged.data.params["optimizer.name"] == "rmsprop"
    assert "tracking.uri" not in logged.data.params
    assert [m.step for m in client.get_metric_history(run.run_id, "loss")] == [1, 2, 3]
    assert "ignored" not in logged.data.metrics
    assert logged.data.tags["data.sha256.x_train"] == ARRAY_SHA256["x_train"]
    assert logged.data.tags["version.tensorflow"].startswith("2.21")
    assert len(logged.data.tags["mlflow.source.git.commit"]) in (40, len("unknown"))
    artifacts = [item.path for item in client.list_artifacts(run.run_id)]
    assert "config.yaml" in artifacts
    assert Path(logged.info.artifact_uri.removeprefix("file://")).is_relative_to(tmp_path / "mlruns")


def test_run_that_raises_ends_failed_with_the_reason(tmp_path: Path) -> None:
    cfg = config_in(tmp_path)
    with pytest.raises(RuntimeError), tracking.tracked_run(cfg, "failing") as run:
        raise RuntimeError("boom")
    logged = MlflowClient(cfg.tracking.uri).get_run(run.run_id)
    assert logged.info.status == "FAILED"
    assert logged.data.tags["error"] == "RuntimeError: boom"


def test_interrupted_run_ends_killed(tmp_path: Path) -> None:
    cfg = config_in(tmp_path)
    with pytest.raises(KeyboardInterrupt), tracking.tracked_run(cfg, "interrupted") as run:
        raise KeyboardInterrupt
    assert MlflowClient(cfg.tracking.uri).get_run(run.run_id).info.status == "KILLED"


def test_passwords_never_reach_params_or_config_artifact(tmp_path: Path) -> None:
    cfg = config_in(tmp_path, "trial.storage=postgresql://u:hunter2@localhost/optuna", "name=x")
    with tracking.tracked_run(cfg, "secret") as run:
        pass
    client = MlflowClient(cfg.tracking.uri)
    logged = client.get_run(run.run_id)
    everything = str(logged.data.params) + str(logged.data.tags)
    everything += Path(client.download_artifacts(run.run_id, "config.yaml", str(tmp_path))).read_text()
    assert "hunter2" not in everything
