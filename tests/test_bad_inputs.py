"""Bad input through the real CLI: one clear line, a non-zero exit, no traceback, and no work started.

Every case runs `python src/run.py ...` in a subprocess against stores in a temporary folder. Validation happens
before TensorFlow or MLflow is imported, so each case takes a second or two; a slow one validates too late.
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import optuna
import pytest

from conftest import run_cli, store_overrides

pytestmark = pytest.mark.slow  # Every case starts `python src/run.py`.

STUDY = "smoke"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CLOSED = closed_port()

# (case id, arguments after `python src/run.py`, text the message must hold). `{tmp}` is the test's folder.
SINGLE_RUNS = [
    ("units-zero", ["model.units=0"], "model.units=0"),
    ("units-not-a-number", ["model.units=wide"], "model.units='wide'"),
    ("dropout-one", ["model.dropout=1.0"], "model.dropout=1.0"),
    ("unknown-optimizer", ["optimizer=adagrad"], "optimizer='adagrad' is not an option"),
    ("negative-learning-rate", ["optimizer.learning_rate=-0.1"], "optimizer.learning_rate=-0.1"),
    ("zero-epochs", ["train.epochs=0"], "train.epochs=0"),
    ("negative-batch", ["train.batch_size=-5"], "train.batch_size=-5"),
    ("val-size-too-large", ["data.val_size=60000"], "data.val_size=60000"),
    ("subset-too-large", ["data.train_subset=70000"], "data.train_subset=70000"),
    ("fit-on-validation", ["data.fit_on=validation"], "data.fit_on='validation'"),
    ("negative-seed", ["seed=-1"], "seed=-1"),
    ("tracking-server-down", [f"tracking.uri=http://127.0.0.1:{CLOSED}"], "tracking.uri=http://127.0.0.1"),
    ("tracking-uncreatable", ["tracking.uri=sqlite:////proc/no/such/mlflow.db"], "tracking.uri=sqlite:////proc"),
    ("unknown-key", ["model.unit=5"], "model.unit"),
    ("unknown-loop", ["train.loop=eager"], "train.loop='eager'"),
    ("plots-not-a-bool", ["tracking.plots=sometimes"], "tracking.plots='sometimes'"),
    ("unknown-experiment", ["baseline_typo"], "'baseline_typo' is neither"),
]
SWEEPS = [
    ("no-trials", ["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0"),
    ("grace-too-short", ["hydra.sweeper.heartbeat_grace_s=60"], "hydra.sweeper.heartbeat_grace_s=60"),
    ("negative-store-retry", ["hydra.sweeper.store_retry_s=-1"], "hydra.sweeper.store_retry_s=-1"),
    ("empty-study-name", ["hydra.sweeper.study_name="], "hydra.sweeper.study_name=''"),
    ("storage-scheme", ["hydra.sweeper.storage=foo://bar"], "hydra.sweeper.storage=foo://bar"),
    ("storage-folder-missing", ["hydra.sweeper.storage=sqlite:///{tmp}/missing/x.db"], "hydra.sweeper.storage"),
    (
        "storage-server-down",
        [f"hydra.sweeper.storage=postgresql://user:s3cret@127.0.0.1:{CLOSED}/db"],
        "hydra.sweeper.storage=postgresql://user:***@127.0.0.1",
    ),
    ("empty-interval", ["model.units=interval(100,10)"], "model.units=interval(100,10)"),
    ("unknown-parameter", ["model.width=choice(64,128)"], "model.width is not a key of the config"),
    ("unknown-option-in-space", ["optimizer=choice(adam,adagrad)"], "optimizer=adagrad is not an option"),
    ("space-reaches-bad-value", ["model.dropout=interval(0,1.5)"], "model.dropout=1.5"),
    ("fixed-bad-value", ["model.units=-3"], "model.units=-3"),
    # A sampler or pruner that cannot be built would otherwise fail every trial in turn, each one counted.
    (
        "unknown-pruner",
        ["hydra.sweeper.pruner._target_=optuna.pruners.Nope"],
        "pruner._target_=optuna.pruners.Nope",
    ),
    ("pruner-argument", ["+hydra.sweeper.pruner.patience=3"], "unexpected keyword argument 'patience'"),
    # A misspelt sweeper key would otherwise be ignored, and the study run with the defaults.
    ("misspelt-sweeper-key", ["+hydra.sweeper.n_trails=60"], "did you mean hydra.sweeper.n_trials?"),
    ("timeout-not-positive", ["hydra.sweeper.timeout_s=0"], "hydra.sweeper.timeout_s=0"),
    (
        "constraint-on-unknown-metric",
        ["+hydra.sweeper.constraints.val_acc='>= 0.9'"],
        "hydra.sweeper.constraints.val_acc: not a metric",
    ),
    (
        "constraints-with-a-sampler-that-ignores-them",
        [
            "+hydra.sweeper.constraints.n_params='<= 1000'",
            "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler",
        ],
        "RandomSampler: does not take constraints",
    ),
    (
        "sampler-not-a-sampler",
        ["~hydra.sweeper.sampler.seed", "hydra.sweeper.sampler._target_=optuna.pruners.NopPruner"],
        "optuna.samplers",
    ),
]


def optuna_db(folder: Path) -> str:
    return f"sqlite:///{folder}/optuna.db"


def prepare_study(folder: Path) -> None:
    """A study with one finished trial, so that 'no new trial' has something to compare against."""
    study = optuna.create_study(study_name=STUDY, storage=optuna_db(folder), direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))


def assert_no_work(folder: Path) -> None:
    """No MLflow run of any state, and the prepared study still holds exactly its one trial."""
    mlflow_db = folder / "mlflow.db"
    if mlflow_db.exists():
        with sqlite3.connect(mlflow_db) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "runs" in tables:
                assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    if (folder / "optuna.db").exists():
        trials = optuna.load_study(study_name=STUDY, storage=optuna_db(folder)).get_trials()
        assert len(trials) == 1 and trials[0].state.is_finished()


def assert_one_clear_line(result: object, expected: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    output = result.stdout + stderr  # type: ignore[attr-defined]
    assert result.returncode != 0, output  # type: ignore[attr-defined]
    assert expected in output, output
    assert "Traceback" not in output, output
    assert "s3cret" not in output, output


@pytest.mark.parametrize(("args", "expected"), [case[1:] for case in SINGLE_RUNS], ids=[c[0] for c in SINGLE_RUNS])
def test_a_bad_single_run_is_one_clear_line_and_starts_nothing(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = run_cli([*store_overrides(tmp_path), *args], timeout=120)
    assert_one_clear_line(result, expected)
    if args != ["model.unit=5"]:
        # Our own checks print exactly one line; Hydra's message for an unknown key is its own (five lines, clear).
        assert result.stderr.strip().startswith("error: ") and "\n" not in result.stderr.strip(), result.stderr
    assert_no_work(tmp_path)


@pytest.mark.parametrize(("args", "expected"), [case[1:] for case in SWEEPS], ids=[c[0] for c in SWEEPS])
def test_a_bad_sweep_is_one_clear_line_and_writes_no_trial_or_run(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    prepare_study(tmp_path)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = run_cli(["smoke", *store_overrides(tmp_path), f"hydra.sweeper.storage={optuna_db(tmp_path)}", *args])
    assert_one_clear_line(result, expected)
    assert result.stderr.strip().startswith("error: ") and "\n" not in result.stderr.strip(), result.stderr
    assert_no_work(tmp_path)
