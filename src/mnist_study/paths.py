"""Where the project lives, so every working directory logs to and reads from the same places."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

# src/mnist_study/paths.py -> the repository root.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# The project's default MLflow store (conf/tracking/mlflow.yaml's `uri`): what `make ui` serves and
# `src/predict.py` reads unless told otherwise.
DEFAULT_TRACKING_URI = f"sqlite:///{PROJECT_ROOT}/mlflow.db"


def default_experiment() -> str:
    """The MLflow experiment every job logs to (conf/tracking/mlflow.yaml's `experiment`), which also names the
    registered model."""
    return str(OmegaConf.load(PROJECT_ROOT / "conf" / "tracking" / "mlflow.yaml").experiment)


def portable(text: str) -> str:
    """`text` with this checkout's absolute path made relative (`sqlite:////home/me/repo/optuna.db` becomes
    `sqlite:///optuna.db`), so that what a committed document quotes works from any clone's root."""
    return text.replace(f"{PROJECT_ROOT}/", "")


def register_resolvers() -> None:
    """Make `${project_root:}` usable in configs (for absolute storage, tracking and cache paths)."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


register_resolvers()
