"""One rule for the stores, and the servers `make ui`, `make serve` and `make dashboard` start over them.

The rule (`mnist_study.paths`): `MLFLOW_TRACKING_URI` / `OPTUNA_STORAGE` when set, the repository's `mlflow.db` /
`optuna.db` otherwise, for the configs, predict.py and the Makefile's servers alike. The slow tests run the real
make targets against stores and servers the test starts (docs/scaling.md's steps); `make serve` is run the same
way by tests/test_serving.py. The Makefile's Python check runs in a copy of the Makefile and the lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import PROJECT_ROOT, Services, composed
from mnist_study import launch, paths
from mnist_study.serving.predict import tracking_uri as predict_tracking_uri
from mnist_study.tracking import get_or_create_experiment
from servers import free_port, make_target, serve

ELSEWHERE_TRACKING = "http://tracking.example:5000"
ELSEWHERE_STORAGE = "postgresql://study@db.example/optuna"


def test_the_rule_takes_the_environment_and_falls_back_to_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.TRACKING_VARIABLE, raising=False)
    monkeypatch.setenv(paths.STORAGE_VARIABLE, "")  # Set but empty is unset, not an empty URL.
    assert paths.tracking_uri() == f"sqlite:///{PROJECT_ROOT}/mlflow.db"
    assert paths.study_storage() == f"sqlite:///{PROJECT_ROOT}/optuna.db"
    assert predict_tracking_uri(None) == paths.tracking_uri()
    monkeypatch.setenv(paths.TRACKING_VARIABLE, ELSEWHERE_TRACKING)
    monkeypatch.setenv(paths.STORAGE_VARIABLE, ELSEWHERE_STORAGE)
    assert (paths.tracking_uri(), paths.study_storage()) == (ELSEWHERE_TRACKING, ELSEWHERE_STORAGE)
    assert predict_tracking_uri(None) == ELSEWHERE_TRACKING
    assert predict_tracking_uri("sqlite:////x/mlflow.db") == "sqlite:////x/mlflow.db"  # The flag wins.


# Make's own closing line after a recipe fails: `make: ***` at the top level, `make[1]: ***` under another make
# (as `make test` runs these tests).
MAKES_OWN_LINE = re.compile(r"^make(\[\d+\])?: \*\*\*")


@pytest.mark.parametrize("environment", [{}, {"MLFLOW_TRACKING_URI": ELSEWHERE_TRACKING, "OPTUNA_STORAGE": ""}])
def test_the_configs_follow_the_rule(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    """A run's tracking.uri, a sweep's storage and the report's storage are the rule's, whatever is set."""
    for variable in (paths.TRACKING_VARIABLE, paths.STORAGE_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    run = composed()
    sweep = composed("+experiments=sweep", hydra=True)
    report = composed(config_name="report")
    assert run.tracking.uri == report.tracking.uri == paths.tracking_uri()
    assert sweep.hydra.sweeper.storage == report.storage == paths.study_storage()


def test_the_commands_name_their_store_and_listen_on_loopback() -> None:
    ui = launch.mlflow_ui("sqlite:////x/mlflow.db", 5123)
    assert ui.command[1:5] == ["ui", "--backend-store-uri", "sqlite:////x/mlflow.db", "--host"]
    assert ui.command[ui.command.index("--port") + 1] == "5123"
    assert ui.environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    served = launch.model_server("models:/m@champion", ELSEWHERE_TRACKING, 5124)
    assert served.command[1:5] == ["models", "serve", "-m", "models:/m@champion"]
    assert served.environment[paths.TRACKING_VARIABLE] == ELSEWHERE_TRACKING
    assert served.environment["PATH"].startswith(f"{launch.BIN}{os.pathsep}")
    board = launch.dashboard(ELSEWHERE_STORAGE, 5125)
    assert board.command[1] == ELSEWHERE_STORAGE
    for started in (ui, served, board):
        assert Path(started.command[0]).parent == launch.BIN and Path(started.command[0]).exists()
        assert started.command[started.command.index("--host") + 1] == "127.0.0.1"


@pytest.mark.parametrize(
    ("target", "variables", "expected"),
    [
        ("ui", {"UI_PORT": 5123}, "-m mnist_study.launch ui --port 5123"),
        ("serve", {"SERVE_PORT": 5124, "MODEL": "runs:/abc/model"}, 'serve --port 5124 --model "runs:/abc/model"'),
        ("serve", {}, "-m mnist_study.launch serve --port 5001"),
        ("dashboard", {"STORAGE": "sqlite:////x/o.db"}, 'dashboard --port 8080 --storage "sqlite:////x/o.db"'),
        ("dashboard", {}, "-m mnist_study.launch dashboard --port 8080"),
    ],
)
@pytest.mark.slow  # Runs make.
def test_the_make_targets_run_the_launcher(target: str, variables: dict, expected: str) -> None:
    """The Makefile defines no server command of its own: each target hands its settings to the launcher."""
    command = [arg for arg in make_target(target, **variables) if arg != "-s"]
    recipe = subprocess.run([*command[:1], "-n", *command[1:]], capture_output=True, text=True, check=True).stdout
    (line,) = [line for line in recipe.splitlines() if "mnist_study.launch" in line]
    assert line.rstrip().endswith(expected), line
    assert "sqlite:" not in line.replace(variables.get("STORAGE", "-"), ""), line  # No store of its own.


def copy_of_the_lock(folder: Path) -> Path:
    """The Makefile, pyproject.toml and uv.lock in `folder`, with an empty .venv: `make install` checks Python
    there without touching this checkout's environment."""
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        shutil.copy(PROJECT_ROOT / name, folder / name)
    (folder / ".venv").mkdir()
    return folder


def other_pythons() -> list[str]:
    """Interpreters on this machine that are not the lock's Python, and one that does not exist."""
    found = [shutil.which(f"python3.{minor}") for minor in (9, 10, 12, 13)]
    return ["python3.99-not-installed", *(path for path in found if path)]


@pytest.mark.slow  # Runs make.
def test_make_names_a_python_that_is_not_the_locks(tmp_path: Path) -> None:
    folder = copy_of_the_lock(tmp_path)
    for python in other_pythons():
        # UV=false: were the check to let this Python through, uv would never run anyway.
        done = subprocess.run(
            ["make", "-C", str(folder), "--no-print-directory", "install", f"PYTHON={python}", "UV=false"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (python, done.stdout, done.stderr)
        (line,) = [line for line in done.stderr.splitlines() if not MAKES_OWN_LINE.match(line)]
        assert line.startswith(f"make: uv.lock is for Python 3.11, and {python} is "), line
        assert "fix: install Python 3.11" in line and "make PYTHON=/path/to/python3.11" in line, line
        assert not (folder / ".venv" / ".installed").exists()
    # The lock's own Python passes the check (and the stand-in uv, `true`, does nothing).
    done = subprocess.run(
        ["make", "-C", str(folder), "--no-print-directory", "install", f"PYTHON={sys.executable}", "UV=true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and (folder / ".venv" / ".installed").exists(), done.stderr


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def make_ui_once(tracking: str) -> subprocess.CompletedProcess[str]:
    """`make ui` over an MLflow server: it prints where the server's own UI is and exits."""
    command = make_target("ui", UI_PORT=free_port())
    env = {**os.environ, paths.TRACKING_VARIABLE: tracking}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.slow
def test_make_ui_and_dashboard_serve_the_stores_the_environment_names(tmp_path: Path) -> None:
    """Stores outside the repository, named only by the two variables: `make ui` serves that MLflow store and,
    given that UI as a tracking server, points at it instead of starting another; `make dashboard` serves that
    study."""
    tracking, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    experiment_id = get_or_create_experiment(MlflowClient(tracking), "mnist-mlp", str(tmp_path / "mlruns"))
    optuna.create_study(study_name="launch-test", storage=storage)
    ui_port, board_port = free_port(), free_port()
    with serve(
        make_target("ui", UI_PORT=ui_port), ui_port, tmp_path / "ui.log", env={"MLFLOW_TRACKING_URI": tracking}
    ) as ui:
        found = get_json(f"{ui}/api/2.0/mlflow/experiments/get-by-name?experiment_name=mnist-mlp")
        assert found["experiment"]["experiment_id"] == experiment_id
        assert (
            f"{ui}/#/experiments/{experiment_id}?workflowType=machine_learning"
            in (tmp_path / "ui.log").read_text()
        )

        pointed = make_ui_once(ui)
        assert pointed.returncode == 0, pointed.stderr
        assert "serves the MLflow UI itself" in pointed.stdout
        assert f"{ui}/#/experiments/{experiment_id}?workflowType=machine_learning" in pointed.stdout
    with serve(
        make_target("dashboard", DASHBOARD_PORT=board_port),
        board_port,
        tmp_path / "board.log",
        env={"OPTUNA_STORAGE": storage},
    ) as board:
        studies = get_json(f"{board}/api/studies")["study_summaries"]
        assert [study["study_name"] for study in studies] == ["launch-test"]
    down = make_ui_once(ui)  # The same server, now stopped: one line, exit 2.
    assert down.returncode == 2 and down.stderr.startswith("error: MLFLOW_TRACKING_URI=http://127.0.0.1:"), down
    said = [line for line in down.stderr.splitlines() if not MAKES_OWN_LINE.match(line)]
    assert len(said) == 1 and "fix: start it (make services)" in said[0], down.stderr


@pytest.mark.slow
def test_the_scaling_steps_run_as_written(services: Services, tmp_path: Path) -> None:
    """docs/scaling.md: after `make services` and `eval "$(scripts/services.sh env)"`, `make ui` shows the
    study's runs on the shared MLflow server and `make dashboard` the study in PostgreSQL; no password shown."""
    experiment_id = get_or_create_experiment(MlflowClient(services.tracking), "mnist-mlp", str(tmp_path))
    optuna.create_study(study_name="scaling-steps", storage=services.storage, load_if_exists=True)
    pointed = make_ui_once(services.tracking)
    assert pointed.returncode == 0, pointed.stderr
    assert f"{services.tracking}/#/experiments/{experiment_id}?workflowType=machine_learning" in pointed.stdout
    port = free_port()
    with serve(
        make_target("dashboard", DASHBOARD_PORT=port),
        port,
        tmp_path / "board.log",
        env={"OPTUNA_STORAGE": services.storage},
    ) as board:
        studies = get_json(f"{board}/api/studies")["study_summaries"]
        assert "scaling-steps" in [study["study_name"] for study in studies]
    password = services.storage.split(":", 2)[2].split("@", 1)[0]
    assert password and password not in pointed.stdout + pointed.stderr + (tmp_path / "board.log").read_text()
