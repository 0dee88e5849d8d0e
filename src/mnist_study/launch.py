"""The servers `make ui`, `make serve` and `make dashboard` start, defined once, over the stores the project uses.

The stores follow the project's one rule (`mnist_study.paths`): `MLFLOW_TRACKING_URI` / `OPTUNA_STORAGE` when
set, the repository's `mlflow.db` / `optuna.db` otherwise. Each server listens on 127.0.0.1 only. The process
replaces itself with the server (exec), so Ctrl-C and a signal to the make target reach the server directly.

Run: python -m mnist_study.launch ui [--port 5000]
     python -m mnist_study.launch serve [--port 5001] [--model models:/mnist-mlp@champion]
     python -m mnist_study.launch dashboard [--port 8080] [--storage URL]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mnist_study.paths import TRACKING_VARIABLE, default_experiment, study_storage, tracking_uri
from mnist_study.secrets import redact
from mnist_study.serving import CHAMPION_ALIAS

HOST = "127.0.0.1"
# The environment's own bin/: the servers run from the same environment as this module.
BIN = Path(sys.executable).parent
# The registered model's champion, which the report sets (its name is the experiment's).
DEFAULT_MODEL = f"models:/{default_experiment()}@{CHAMPION_ALIAS}"
DEFAULT_PORTS = {"ui": 5000, "serve": 5001, "dashboard": 8080}
# MLflow 3's server starts job-execution consumers (GenAI scorers, each a full mlflow import) that viewing the
# runs of this project never uses: off, for a faster start and far less memory.
UI_ENVIRONMENT = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass(frozen=True)
class Launch:
    """A server's command line and what it adds to the environment."""

    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)


def is_server(uri: str) -> bool:
    """Whether a tracking URI names an MLflow server (which serves its own UI) rather than a store."""
    return uri.startswith(("http://", "https://"))


def mlflow_ui(store: str, port: int) -> Launch:
    """`mlflow ui` over a store (SQLite or a database URL), with one worker: it serves one person's browser."""
    command = [str(BIN / "mlflow"), "ui", "--backend-store-uri", store, "--host", HOST, "--port", str(port)]
    return Launch([*command, "--workers", "1"], dict(UI_ENVIRONMENT))


def model_server(model_uri: str, store: str, port: int) -> Launch:
    """`mlflow models serve` of one model from `store`, in this environment: no virtualenv is built and nothing
    is downloaded. MLflow starts uvicorn by name, so this environment's bin/ goes first on PATH."""
    command = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return Launch([*command, "--host", HOST, "--port", str(port)], {TRACKING_VARIABLE: store, "PATH": path})


def dashboard(storage: str, port: int) -> Launch:
    """optuna-dashboard over a study's storage. It takes the URL as an argument, which other users of the machine
    can read with ps: prefer a URL without a password, with the password in ~/.pgpass."""
    return Launch([str(BIN / "optuna-dashboard"), storage, "--host", HOST, "--port", str(port)])


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=sorted(DEFAULT_PORTS))
    parser.add_argument("--port", type=int, default=None, help="ui 5000, serve 5001, dashboard 8080")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"serve: the model URI (default {DEFAULT_MODEL})")
    parser.add_argument("--storage", default=None, help="dashboard: the study's storage (default: the rule's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = argument_parser().parse_args(argv)
    port = arguments.port or DEFAULT_PORTS[arguments.server]
    store = tracking_uri()
    if arguments.server == "dashboard":
        launch = dashboard(arguments.storage or study_storage(), port)
    elif arguments.server == "serve":
        launch = model_server(arguments.model, store, port)
    elif is_server(store):
        return show_served_ui(store)
    else:
        print_link(f"http://{HOST}:{port}", store)
        launch = mlflow_ui(store, port)
    run(launch)
    return 0  # Not reached: `run` replaces this process.


def print_link(base: str, store: str) -> None:
    """The link to the study's runs table in a UI at `base` over `store` (see `ui_link`)."""
    from mnist_study.ui_link import ui_link

    link = ui_link(base, store)
    print(f"MLflow UI {link.note}:\n  {redact(link.url)}", flush=True)


def show_served_ui(server: str) -> int:
    """A tracking server serves its own UI: say where, rather than start a second one; exit 2 if it is down."""
    from mnist_study.checks import unreachable

    reason = unreachable(server)
    if reason is not None:
        print(
            f"error: {TRACKING_VARIABLE}={redact(server)}: no MLflow server answers ({reason}); fix: start it "
            f"(make services) or unset {TRACKING_VARIABLE} to use the repository's mlflow.db",
            file=sys.stderr,
        )
        return 2
    print(f"The tracking server {redact(server)} serves the MLflow UI itself; nothing to start.")
    print_link(server.rstrip("/"), server)
    return 0


def run(launch: Launch) -> None:
    """Replace this process with the server."""
    sys.stdout.flush()
    os.execve(launch.command[0], launch.command, {**os.environ, **launch.environment})


if __name__ == "__main__":
    sys.exit(main())
