"""Where the project lives, which config groups it has, and where its stores are, so every command and working
directory uses the same ones.

The job's config groups are the folders of `conf/` (Hydra's own, `conf/hydra/`, aside), and a group's options its
YAML files: `config_groups`, `group_options` and `option_file` read them there, so a group or option added is known
everywhere at once.

The rule for the two stores, defined here once: the environment's `MLFLOW_TRACKING_URI` (MLflow's own variable)
and `OPTUNA_STORAGE` when set, the repository's own `mlflow.db` and `optuna.db` otherwise. The configs read it
through the `${tracking_uri:}` and `${study_storage:}` resolvers; `make ui`, `make serve` and `make dashboard`
(`mnist_study.launch`), `src/predict.py` and the report call the functions below.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

# src/mnist_study/paths.py -> the repository root.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The config group `experiments` (the repository root is on Hydra's search path): `python src/run.py <name>` runs
# `<name>.yaml` from here, and the report's `reference=<name>` refits it.
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"

# Hydra's config folder: the job's config groups, one folder each, and the sweeper's settings under hydra/.
CONF = PROJECT_ROOT / "conf"

# The environment variables that point every command at shared stores (`make services`, docs/scaling.md).
TRACKING_VARIABLE = "MLFLOW_TRACKING_URI"
STORAGE_VARIABLE = "OPTUNA_STORAGE"
# The repository's own stores, used when those variables are not set: MLflow's default SQLite file (what a plain
# `mlflow ui` at the repository root shows) and the study's SQLite file, both absolute so that any working
# directory logs to the same place.
DEFAULT_TRACKING_URI = f"sqlite:///{PROJECT_ROOT}/mlflow.db"
DEFAULT_STORAGE = f"sqlite:///{PROJECT_ROOT}/optuna.db"


def tracking_uri() -> str:
    """The MLflow store: `MLFLOW_TRACKING_URI` when set (and not empty), else the repository's `mlflow.db`."""
    return os.environ.get(TRACKING_VARIABLE) or DEFAULT_TRACKING_URI


def study_storage() -> str:
    """The Optuna storage: `OPTUNA_STORAGE` when set (and not empty), else the repository's `optuna.db`."""
    return os.environ.get(STORAGE_VARIABLE) or DEFAULT_STORAGE


def config_groups() -> tuple[str, ...]:
    """The job's config groups, sorted: the folders of conf/ but `hydra` (whose groups configure Hydra itself)."""
    return tuple(sorted(path.name for path in CONF.iterdir() if path.is_dir() and path.name != "hydra"))


def group_options(group: str) -> list[str] | None:
    """The options of a config group, sorted (its files `conf/<group>/<option>.yaml`); None when conf/ has no
    such folder."""
    folder = CONF / group
    if not folder.is_dir():
        return None
    return sorted(path.stem for path in folder.glob("*.yaml"))


def option_file(group: str, option: str) -> Path:
    """The file of one option of a config group."""
    return CONF / group / f"{option}.yaml"


def default_experiment() -> str:
    """The MLflow experiment every job logs to (conf/tracking/mlflow.yaml's `experiment`), which also names the
    registered model."""
    return str(OmegaConf.load(option_file("tracking", "mlflow")).experiment)


def portable(text: str) -> str:
    """`text` with this checkout's absolute path made relative (`sqlite:////home/me/repo/optuna.db` becomes
    `sqlite:///optuna.db`), so that what a committed document quotes works from any clone's root."""
    return text.replace(f"{PROJECT_ROOT}/", "")


def register_resolvers() -> None:
    """Make `${project_root:}`, `${tracking_uri:}` and `${study_storage:}` usable in configs. The store resolvers
    read the environment each time they are resolved (OmegaConf caches no custom resolver unless asked)."""
    for name, resolver in (
        ("project_root", lambda: str(PROJECT_ROOT)),
        ("tracking_uri", tracking_uri),
        ("study_storage", study_storage),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolvers()
